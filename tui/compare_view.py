"""The compare screen: two runs per shift as `innerdpo compare A B` gives them (both accuracies, the delta, its
paired 95% bootstrap interval, McNemar's exact p, Holm-adjusted p) and their configs side by side, differing keys
only, without bookkeeping (output directory, trackers, checkpoints, display name)."""

from __future__ import annotations

import math

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from innerdpo_bench.errors import UserError
from innerdpo_bench.store import Run
from innerdpo_bench.tui.data import config_diff

COLUMNS = ("shift", "N", "acc A", "acc B", "Δ B−A", "95% CI", "b/c", "p McNemar", "p Holm")


class Compared(Message):
    def __init__(self, results: list | None, error: str | None) -> None:
        super().__init__()
        self.results, self.error = results, error


def _num(value: float | None, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.2e}" if value < 1e-3 else f"{value:.4f}"


def compare_cells(result) -> list[Text]:
    """One shift's row, as `innerdpo compare` prints it (a Δ whose interval excludes 0 is bold and coloured)."""
    delta = Text(_num(result.delta, signed=True), justify="right")
    if result.significant:
        delta.stylize(f"bold {'green' if result.delta > 0 else 'red'}")
    return [Text(result.shift), Text(str(result.n), justify="right"), Text(_num(result.acc_a), justify="right"),
            Text(_num(result.acc_b), justify="right"), delta,
            Text(f"[{_num(result.lo, True)}, {_num(result.hi, True)}]", justify="right"),
            Text(f"{result.b}/{result.c}", justify="right"), Text(_p(result.p), justify="right"),
            Text(_p(result.p_holm), justify="right")]


class CompareScreen(Screen):
    """A (the reference) and B: per-shift statistics from their per-row records, and the config diff."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("w", "swap", "Swap A/B")]

    def __init__(self, run_a: Run, run_b: Run) -> None:
        super().__init__()
        self.run_a, self.run_b = run_a, run_b
        self.results: list | None = None
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="compare-title")
        with Vertical(id="compare-body"):
            yield Static("per shift (innerdpo compare)", classes="section")
            yield DataTable(id="compare-table", cursor_type="none")
            yield Static("", id="compare-note")
            yield Static("config: the keys that differ (bookkeeping left out)", classes="section")
            yield DataTable(id="diff-table", cursor_type="row")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._show()

    def _show(self) -> None:
        title = Text(no_wrap=True, overflow="ellipsis")
        title.append("A ", style="bold")
        title.append(f"run {self.run_a.id} {self.run_a.name}")
        title.append("  vs  B ", style="bold")
        title.append(f"run {self.run_b.id} {self.run_b.name}")
        self.query_one("#compare-title", Static).update(title)
        table = self.query_one("#compare-table", DataTable)
        table.clear(columns=True)
        for name in COLUMNS:
            table.add_column(name, key=name)
        self.query_one("#compare-note", Static).update(Text("loading per-row records…", style="dim"))
        diff = self.query_one("#diff-table", DataTable)
        diff.clear(columns=True)
        diff.add_column("key", key="key")
        diff.add_column(f"A (run {self.run_a.id})", key="a")
        diff.add_column(f"B (run {self.run_b.id})", key="b")
        for key, value_a, value_b in config_diff(self.run_a, self.run_b):
            diff.add_row(Text(key), Text(value_a, style="yellow"), Text(value_b, style="yellow"), key=key)
        if not diff.row_count:
            diff.add_row(Text("(same config)", style="dim"), Text(""), Text(""))
        self._compare(self.run_a, self.run_b)

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def _compare(self, run_a: Run, run_b: Run) -> None:
        from innerdpo_bench.results import compare, locate

        try:
            rows_a, rows_b = locate.load_run(run_a), locate.load_run(run_b)
            self.post_message(Compared(compare.compare_runs([rows_a], [rows_b], "acc", None), None))
        except UserError as err:
            self.post_message(Compared(None, str(err)))

    def on_compared(self, message: Compared) -> None:
        self.results, self.error = message.results, message.error
        note = self.query_one("#compare-note", Static)
        if message.error is not None:
            note.update(Text(f"no paired test: {message.error}", style="yellow"))
            return
        table = self.query_one("#compare-table", DataTable)
        for result in message.results:
            table.add_row(*compare_cells(result), key=result.shift)
        note.update(Text("Δ = acc(B) − acc(A) on the rows both scored; 95% paired bootstrap; McNemar's exact test; "
                         "bold: the interval excludes 0", style="dim"))

    def action_swap(self) -> None:
        self.run_a, self.run_b = self.run_b, self.run_a
        self._show()
