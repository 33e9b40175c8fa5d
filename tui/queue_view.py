"""The queue view: running, queued and finished runs with progress and ETA; add, cancel, retry, reorder."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from innerdpo_bench.store import Run
from innerdpo_bench.store.claims import earlier_attempts, queue_order, running_note
from innerdpo_bench.tui.data import Progress, format_duration
from innerdpo_bench.tui.keyed_table import ColumnSpec, KeyedTable
from innerdpo_bench.tui.view import STATUS_STYLES

COLUMNS = (("id", "run"), ("status", "status"), ("progress", "progress"), ("eta", "ETA"), ("elapsed", "elapsed"),
           ("name", "name"), ("seed", "seed"), ("attempts", "tries"), ("worker", "worker"), ("error", "error"))
RIGHT = {"id", "eta", "elapsed", "seed", "attempts"}
BAR_WIDTH = 10
WIDTHS = {"name": 36, "worker": 18}    # fixed: a long name is cut with an ellipsis, not pushing columns off


def fitted(text: str, width: int, style: str = "") -> Text:
    """`text` cut to `width` cells with a trailing ellipsis when longer."""
    cell = Text(text, style=style, no_wrap=True, overflow="ellipsis")
    cell.truncate(width, overflow="ellipsis")
    return cell
_EIGHTHS = " ▏▎▍▌▋▊▉"


def progress_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    """A text bar with eighth-cell resolution: 0.43 → '████▎     '."""
    fraction = min(1.0, max(0.0, fraction))
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (_EIGHTHS[part] if part else "")).ljust(width)


def progress_cell(run: Run, progress: Progress | None, position: int | None) -> Text:
    """The progress column: a bar and % while training, the phase otherwise, the place in line if queued."""
    if run.status == "queued":
        return Text(f"#{position} in line" if position is not None else "queued", style="dim")
    if progress is None:
        return Text("-", style="dim")
    fraction = progress.fraction
    style = STATUS_STYLES.get(run.status, "")
    if run.status == "running" and progress.phase == "eval":  # training is done; the bar is the scoring pass's
        done = progress.scoring[1] / progress.scoring[2] if progress.scoring and progress.scoring[2] else 1.0
        return Text(f"{progress_bar(min(1.0, done))} {progress.eval_text}", style="cyan")
    if fraction is None:
        return Text(progress.phase, style=style)
    return Text(f"{progress_bar(fraction)} {fraction:4.0%}", style=style)


def error_cell(run: Run) -> Text:
    """The run's error (red), then its earlier attempts and why each went back to the queue (`earlier_attempts`)."""
    cell = Text(run.error or "", style="red")
    earlier = earlier_attempts(run)
    if earlier:
        cell.append(("  " if run.error else "") + f"earlier attempts: {earlier}", style="yellow")
    return cell


def queue_rows(runs: list[Run], progress: dict[int, Progress], name_width: int = WIDTHS["name"]
               ) -> list[tuple[str, dict[str, Text]]]:
    """The queue in worker order (running, queued by priority, then finished) as keyed rows of cells."""
    ordered = queue_order(runs)
    positions = {run.id: index + 1 for index, run in enumerate(r for r in ordered if r.status == "queued")}
    rows = []
    for run in ordered:
        run_progress = progress.get(run.id)
        note = running_note(run)
        status = run.status + (f" ({note})" if note else "")
        seed = run.spec.seed
        running = run.status == "running"
        cells = {
            "id": Text(str(run.id)),
            "status": Text(status, style=STATUS_STYLES.get(run.status, "")),
            "progress": progress_cell(run, run_progress, positions.get(run.id)),
            "eta": Text(format_duration(run_progress.eta_s) if running and run_progress else "-"),
            "elapsed": Text(format_duration(run_progress.elapsed_s) if run_progress else "-"),
            "name": fitted(run.name, name_width),
            "seed": Text("-" if seed is None else str(seed)),
            "attempts": Text(str(run.claims)),   # every start: "attempt N" in worker.log and below
            "worker": fitted(run.worker or "-", WIDTHS["worker"]),
            "error": error_cell(run),
        }
        for key in RIGHT:
            cells[key].justify = "right"
        rows.append((str(run.id), cells))
    return rows


class QueueTable(KeyedTable):
    """The queue, in the order workers take runs."""


class QueueView(Vertical):
    """Queue table and a line about the highlighted run; every change goes through the app's intents."""

    BINDINGS = [
        Binding("a", "app.add_run", "Add", tooltip="Queue new training runs (a form)"),
        Binding("c", "cancel", "Cancel", tooltip="Cancel the highlighted run (asks first)"),
        Binding("R", "retry", "Retry", tooltip="Queue a failed or cancelled run again (R: r reverses a sort)"),
        Binding("K", "move_up", "Up", tooltip="Move a queued run one place up"),
        Binding("J", "move_down", "Down", tooltip="Move a queued run one place down"),
        Binding("t", "move_to_front", "Front", tooltip="Move a queued run to the front of the queue"),
        Binding("v", "evaluate", "Eval", show=False, tooltip="Queue an evaluation of this run's checkpoint"),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.runs: dict[int, Run] = {}
        self.progress: dict[int, Progress] = {}

    def compose(self) -> ComposeResult:
        yield QueueTable(id="queue-table")
        yield Static("", id="queue-status")

    name_width = WIDTHS["name"]

    def on_mount(self) -> None:
        self._lay_out()

    def _lay_out(self) -> None:
        """Columns for the terminal width: the name column takes what a wide terminal leaves (full names at 200)."""
        self.name_width = max(WIDTHS["name"], min(100, self.app.size.width - 110))
        widths = {**WIDTHS, "name": self.name_width}
        table = self.query_one(QueueTable)
        table.set_columns([ColumnSpec(key, Text(label, justify="right" if key in RIGHT else "left"),
                                      width=widths.get(key)) for key, label in COLUMNS])
        self._stale = True
        if self.runs and self.parent is not None and self.parent.display:
            self.refresh_table()

    def on_resize(self) -> None:
        if max(WIDTHS["name"], min(100, self.app.size.width - 110)) != self.name_width:
            self._lay_out()

    def apply_runs(self, runs: list[Run], progress: dict[int, Progress]) -> None:
        """A new snapshot: shown now if the queue is on screen, else when it is (`refresh_table`)."""
        if list(self.runs.values()) == runs and progress == self.progress and not self._stale:
            return
        self.runs = {run.id: run for run in runs}
        self.progress = progress
        self._stale = True
        if self.parent is not None and self.parent.display:
            self.refresh_table()

    _stale = True

    def refresh_table(self) -> None:
        table = self.query_one(QueueTable)
        if table.columns and self._stale:  # else on_mount lays out and shows them
            self._stale = False
            table.show(queue_rows(list(self.runs.values()), self.progress, self.name_width))
            self._show_status()

    def selected_run(self) -> Run | None:
        key = self.query_one(QueueTable).current_key
        return self.runs.get(int(key)) if key is not None else None

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        self._show_status()

    @on(DataTable.RowSelected)
    def _selected(self) -> None:
        run = self.selected_run()
        if run is not None:
            self.app.open_detail(run.id)

    def _show_status(self) -> None:
        counts = {}
        for run in self.runs.values():
            counts[run.status] = counts.get(run.status, 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in counts.items()) or "empty: press a to queue runs"
        line = Text(no_wrap=True, overflow="ellipsis")
        run = self.selected_run()
        if run is not None:
            line.append(f"run {run.id} ", style="bold")
            line.append(run.name)
            progress = self.progress.get(run.id)
            if progress is not None and progress.step is not None and progress.max_steps:
                line.append(f" · step {progress.step}/{progress.max_steps}")
            if run.worker:
                line.append(f" · {run.worker}", style="dim")
        self.query_one("#queue-status", Static).update(Text("\n").join([line, Text(f"queue: {summary}", style="dim")]))

    # ------------------------------------------------------------------ intents

    def action_cancel(self) -> None:
        if (run := self.selected_run()) is not None:
            self.app.confirm_cancel(run.id)

    def action_retry(self) -> None:
        if (run := self.selected_run()) is not None:
            self.app.retry(run.id)

    def action_move_up(self) -> None:
        if (run := self.selected_run()) is not None:
            self.app.move(run.id, "up")

    def action_move_down(self) -> None:
        if (run := self.selected_run()) is not None:
            self.app.move(run.id, "down")

    def action_move_to_front(self) -> None:
        if (run := self.selected_run()) is not None:
            self.app.move(run.id, "front")

    def action_evaluate(self) -> None:
        if (run := self.selected_run()) is not None:
            self.app.confirm_evaluate(run.id)
