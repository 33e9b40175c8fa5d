"""The run detail screen: resolved config (differences from the baseline first), curves, results, sample
completions of the base and the adapter side by side (when the run has samples.jsonl), live log."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Log, Static
from textual.worker import get_current_worker

from innerdpo_bench import rundir
from innerdpo_bench.errors import UserError
from innerdpo_bench.evaluation import scoring, textstats
from innerdpo_bench.evaluation.samplefile import read_samples, samples_path_for
from innerdpo_bench.evaluation.suites import SHIFTS
from innerdpo_bench.results.curves import CURVE_HELP, parse_series
from innerdpo_bench.store import Run
from innerdpo_bench.tui.charts import Chart, available_metrics
from innerdpo_bench.tui.data import (FileFollower, Progress, checkpoint_paths, comparable_config, config_diff,
                                     default_log, format_duration, log_paths, parse_metrics, run_config)
from innerdpo_bench.tui.messages import LogLines, MetricsRecords
from innerdpo_bench.tui.view import SHORT_HEADERS, STATUS_STYLES

TAIL_INTERVAL_S = 0.25
# The results table's eval.json columns: the registry's harness metrics (the first, acc, with its stderr), then
# the per-token log-ratio and the row count.
HEADLINE, *OTHER_HARNESS = (scoring.METRICS[name].harness_key for name in scoring.HARNESS_METRICS)
SCORE_COLUMNS = (*OTHER_HARNESS, *scoring.MARGINS)


def _value_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    return "-" if value is None else str(value)


def _score(metrics: dict[str, float], name: str, stderr: bool = True) -> str:
    """`0.812 ± 0.017` (lm-eval's stderr), `-` when missing or NaN."""
    value = metrics.get(name)
    if value is None or value != value:
        return "-"
    stderr = metrics.get(f"{name}_stderr") if stderr else None
    text = f"{value:+.3f}" if name in scoring.MARGINS else f"{value:.3f}"
    return text + (f" ± {stderr:.3f}" if stderr is not None and stderr == stderr else "")


def _stats_text(stats: textstats.TextStats) -> str:
    def number(value: float | None, digits: int = 2) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    return f"rep {number(stats.rep)} distinct2 {number(stats.distinct2)} len {number(stats.len, 0)}"


def _completion_text(label: str, outputs: dict) -> Text:
    """One column: its label, the greedy completion (wrapped by the widget), and the sampled one if any."""
    text = Text(label + "\n", style="bold")
    for decoding in ("greedy", "sampled"):
        output = outputs.get(decoding)
        if output is None:
            continue
        if decoding == "sampled":
            text.append("\nsampled\n", style="bold dim")
        body = (output.get("text") or "").strip()
        text.append(body or "(empty)", style="" if body else "dim italic")
        if not output.get("finished", True):
            text.append(f" … [cut at {output.get('n_tokens')} tokens]", style="dim")
    return text


class RunDetailScreen(Screen):
    """One run: what it is, how training went, how it scored, and its log as it grows."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("v", "evaluate", "Eval now", tooltip="Queue an eval-only run of this run's checkpoint"),
        Binding("o", "show_path", "Run dir", tooltip="Show (and copy) the run directory's path"),
        Binding("l", "next_log", "Next log", tooltip="Follow the training log (step lines), train.log, eval.log "
                "or worker.log"),
        Binding("m", "next_metric(1)", "Next curve", tooltip="Chart the next logged metric (loss, its terms, reward "
                "margin, pair accuracies, NLL, learning rate)"),
        Binding("M", "next_metric(-1)", "Prev curve", show=False, tooltip="Chart the previous logged metric"),
        Binding("n", "next_prompt(1)", "Next prompt", show=False, tooltip="Show the next sample prompt of this shift"),
        Binding("N", "next_prompt(-1)", "Prev prompt", show=False, tooltip="Show the previous sample prompt"),
        Binding("s", "next_shift", "Next shift", show=False, tooltip="Show the samples of the next shift"),
        Binding("j", "scroll_log(1)", "Down", show=False),
        Binding("k", "scroll_log(-1)", "Up", show=False),
    ]

    def __init__(self, run: Run, baseline: Run | None, home: Path) -> None:
        super().__init__()
        self.run = run
        self.baseline = baseline
        self.home = home
        self.log_name = default_log(run)
        self.metrics: list[dict[str, Any]] = []
        self.curve_labels: dict[str, str] = {}
        self.metric = "loss"
        self._config_from_file = False
        self._shown_results: dict | None = None
        self.log_loaded = threading.Event()  # tests and snapshots wait for the first read
        self.samples: list[dict] = []        # samples.jsonl's records; shown one prompt at a time
        self.sample_shift: str | None = None
        self.sample_index = 0

    def compose(self) -> ComposeResult:
        yield Static("", id="detail-title")
        with Horizontal(id="detail-top"):
            with Vertical(id="detail-config"):
                yield Static("", id="config-title", classes="section")
                yield DataTable(id="config-table", cursor_type="row", show_header=False)
            with Vertical(id="detail-right"):
                yield Static("results", classes="section")
                yield DataTable(id="results-table", cursor_type="none")
        yield Static("", id="chart-label")
        yield Chart(id="detail-chart")
        with Vertical(id="samples-pane"):  # shown only when the run has samples.jsonl
            yield Static("", id="samples-title", classes="section")
            with VerticalScroll(id="samples-scroll"):
                yield Static("", id="samples-prompt")
                with Horizontal(id="samples-columns"):
                    yield Static("", id="samples-base")
                    yield Static("", id="samples-model")
        yield Static("", id="log-title", classes="section")
        yield Log(id="log", max_lines=5000, auto_scroll=True)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        results = self.query_one("#results-table", DataTable)
        results.add_column("shift", key="shift")
        results.add_column(Text(f"{HEADLINE} ± stderr", justify="right"), key=HEADLINE)
        for name in (*SCORE_COLUMNS, "n"):
            results.add_column(Text(name, justify="right"), key=name)
        self._show_run(self.run, None)
        self._show_config()
        self._load_samples()
        self._follow()

    # ------------------------------------------------------------------ store updates

    def apply_run(self, run: Run, progress: Progress | None, baseline: Run | None) -> None:
        """The app's poll saw this run again (status, results, run_dir may have changed)."""
        restart = run.run_dir != self.run.run_dir
        config_changed = run.run_dir != self.run.run_dir or (baseline and baseline.id) != (
            self.baseline and self.baseline.id)
        self.run, self.baseline = run, baseline
        self._show_run(run, progress)
        if config_changed or not self._config_from_file:
            self._show_config()
        if restart:
            self.log_name = default_log(run)
            self._follow()

    def _show_run(self, run: Run, progress: Progress | None) -> None:
        title = Text(no_wrap=True, overflow="ellipsis")
        title.append(f"run {run.id} ", style="bold")
        title.append(run.name)
        title.append(f"  {run.status}", style=STATUS_STYLES.get(run.status, ""))
        if progress is not None and progress.phase == "train" and progress.step is not None and progress.max_steps:
            title.append(f"  step {progress.step}/{progress.max_steps}  ETA {format_duration(progress.eta_s)}")
        elif progress is not None and progress.elapsed_s is not None:
            label = (progress.eval_text if progress.phase == "eval" else progress.phase) if run.status == "running" \
                else "took"
            title.append(f"  {label} {format_duration(progress.elapsed_s)}", style="dim")
        if run.run_dir:
            title.append(f"  {self._short_path(Path(run.run_dir))}", style="dim")
        if run.error:
            title.append(f"\n{run.error}", style="red")
        self.query_one("#detail-title", Static).update(title)
        if run.results == self._shown_results:
            return  # unchanged: keep the table (and its scroll) as it is
        if self._shown_results is not None:
            self._load_samples()   # a finished evaluation may have written them
        self._shown_results = run.results
        results = self.query_one("#results-table", DataTable)
        results.clear()
        for shift in (*SHIFTS, "coherence"):
            metrics = run.results.get(shift, {})
            if shift == "coherence":
                if "nll_ratio" in metrics:
                    results.add_row(Text("nll_ratio"), Text(_score(metrics, "nll_ratio"), justify="right"),
                                    *[""] * (len(SCORE_COLUMNS) + 1), key=shift)
                continue
            n = metrics.get("n")
            # acc is the headline number: it gets its ± stderr; the others stay narrow enough for 80 columns.
            results.add_row(Text(SHORT_HEADERS[shift]), Text(_score(metrics, HEADLINE), justify="right"),
                            *(Text(_score(metrics, name, stderr=False), justify="right") for name in SCORE_COLUMNS),
                            Text("-" if n is None or n != n else f"{n:.0f}", justify="right"), key=shift)

    def _short_path(self, path: Path) -> str:
        """A run directory relative to the workspace when it lies inside it (short, and the same on any machine)."""
        try:
            return str(path.relative_to(self.home))
        except ValueError:
            return str(path)

    def _show_config(self) -> None:
        config, source = run_config(self.run)
        self._config_from_file = source == rundir.CONFIG
        differ: set[str] = set()
        title = "config" if self._config_from_file else "config (queued spec)"
        if self.baseline is not None and self.baseline.id != self.run.id:
            # what differs in the two runs' settings (the same source for both, bookkeeping left out), not in
            # whatever each one's pane shows: a failed run's config.json lacks the eval options a queued spec has
            differ = {key for key, _, _ in config_diff(self.run, self.baseline)}
            mine = comparable_config(self.run)
            config = {**config, **{key: mine.get(key) for key in differ if key not in config}}
            title += f" · {len(differ)} ≠ run {self.baseline.id}"
        self.query_one("#config-title", Static).update(title)
        table = self.query_one("#config-table", DataTable)
        table.clear(columns=True)
        table.add_column("key", key="key")
        table.add_column("value", key="value")
        width = max((len(key) for key in config), default=0) + 2
        # Keys that differ from the baseline come first and highlighted; the rest keep their order. The key column
        # holds the value too, so a narrow pane still shows it (the value column repeats it for wide ones).
        for key in sorted(config, key=lambda name: name not in differ):
            style = "bold yellow" if key in differ else ""
            value = _value_text(config.get(key))
            table.add_row(Text(("≠ " if key in differ else "  ") + key.ljust(width) + value, style=style),
                          Text(value, style=style), key=key)

    # ------------------------------------------------------------------ samples

    def _load_samples(self) -> None:
        records: list[dict] = []
        if self.run.run_dir:
            path = samples_path_for(rundir.RunPaths(Path(self.run.run_dir), self.run.kind).eval_json)
            try:
                records = read_samples(path)[1] if path.is_file() else []
            except UserError:
                records = []
        if records != self.samples:
            self.samples = records
            shifts = self.sample_shifts
            if self.sample_shift not in shifts:
                self.sample_shift, self.sample_index = (shifts[0] if shifts else None), 0
        self.query_one("#samples-pane").set_class(bool(self.samples), "shown")
        self._show_sample()

    @property
    def sample_shifts(self) -> list[str]:
        return list(dict.fromkeys(record["shift"] for record in self.samples))

    def shown_samples(self) -> list[dict]:
        """The records of the shift on screen."""
        return [record for record in self.samples if record["shift"] == self.sample_shift]

    def _show_sample(self) -> None:
        records = self.shown_samples()
        if not records:
            return
        record = records[self.sample_index % len(records)]
        stats = textstats.sample_stats(records)[self.sample_shift]
        title = Text(no_wrap=True, overflow="ellipsis")
        title.append(f"samples · {self.sample_shift} · prompt {self.sample_index % len(records) + 1}/{len(records)}")
        title.append(f"  adapter {_stats_text(stats['model'])} · base {_stats_text(stats['base'])}", style="dim")
        title.append("  n: next prompt · s: next shift", style="dim")
        self.query_one("#samples-title", Static).update(title)
        self.query_one("#samples-prompt", Static).update(Text.assemble(("prompt  ", "bold"), record["prompt"].strip()))
        own_base = self.run.kind == "eval"    # a base model's run: both columns are the base
        for who, widget_id, label in (("base", "#samples-base", "base (adapter off)"),
                                      ("model", "#samples-model", "this run" if own_base else "adapter")):
            self.query_one(widget_id, Static).update(_completion_text(label, record.get(who, {})))

    def action_next_prompt(self, step: int) -> None:
        records = self.shown_samples()
        if records:
            self.sample_index = (self.sample_index + step) % len(records)
            self._show_sample()

    def action_next_shift(self) -> None:
        shifts = self.sample_shifts
        if shifts:
            self.sample_shift = shifts[(shifts.index(self.sample_shift) + 1) % len(shifts)]
            self.sample_index = 0
            self._show_sample()

    # ------------------------------------------------------------------ curves and log

    def _follow(self) -> None:
        self.metrics = []
        self.log_loaded.clear()
        paths = log_paths(self.run)
        log_path = paths.get(self.log_name)
        checkpoint = checkpoint_paths(self.run)
        metrics_path = checkpoint.metrics if checkpoint is not None else None
        self.query_one(Log).clear()
        title = f"{self.log_name} (l: next log)" if log_path else "no log yet: the run has not started"
        self.query_one("#log-title", Static).update(title)
        self._show_curves()
        self._tail(log_path, metrics_path)

    @work(thread=True, exclusive=True, group="tail", exit_on_error=False)
    def _tail(self, log_path: Path | None, metrics_path: Path | None) -> None:
        """Follow the log and metrics.jsonl until the screen closes or switches log (thread; posts only)."""
        worker = get_current_worker()
        log = FileFollower(log_path) if log_path else None
        metrics = FileFollower(metrics_path, tail_bytes=None) if metrics_path else None
        first = True
        while not worker.is_cancelled:
            if metrics is not None:
                lines, reset = metrics.read()
                if lines or reset:
                    self.post_message(MetricsRecords(parse_metrics(lines), reset))
            if log is not None:
                lines, reset = log.read()
                if lines or reset or first:
                    self.post_message(LogLines(log.path, lines, reset))
            elif first:
                self.post_message(LogLines(Path(), [], False))
            first = False
            time.sleep(TAIL_INTERVAL_S)

    def on_log_lines(self, message: LogLines) -> None:
        current = log_paths(self.run).get(self.log_name)
        if current is not None and message.path != current:
            return  # a late message from the log followed before
        log = self.query_one(Log)
        if message.reset:
            log.clear()
        log.write_lines(message.lines)
        self.log_loaded.set()

    def on_metrics_records(self, message: MetricsRecords) -> None:
        if message.reset:
            self.metrics = []
        self.metrics += message.records
        self._show_curves()

    def _show_curves(self) -> None:
        """The chart of the metric chosen (m cycles), with axes, from the metrics.jsonl records read so far; the label
        line gives its first and last values."""
        series = parse_series([json.dumps(record) for record in self.metrics])
        metrics = available_metrics({0: series})
        if metrics and self.metric not in metrics:
            self.metric = metrics[0]
        steps, values = series.get(self.metric, ([], []))
        for name in ("loss", "rewards_margin"):
            xs, ys = series.get(name, ([], []))
            self.curve_labels[name] = (f"{name} {ys[0]:.4g} → {ys[-1]:.4g} (step {xs[-1]})" if ys
                                       else f"{name}: no metrics yet")
        label = Text(no_wrap=True, overflow="ellipsis")
        if values:
            label.append(f"{self.metric}", style="bold")
            label.append(f" ({CURVE_HELP.get(self.metric, self.metric)}) {values[0]:.4g} → {values[-1]:.4g} at step "
                         f"{steps[-1]}, {len(steps)} points · m: next of {len(metrics)}", style="dim")
        else:
            label.append("curves: no metrics yet", style="dim")
        self.query_one("#chart-label", Static).update(label)
        self.query_one(Chart).draw([(self.metric, steps, values)], "", "step")

    def action_next_metric(self, step: int) -> None:
        metrics = available_metrics({0: parse_series([json.dumps(record) for record in self.metrics])})
        if metrics:
            index = metrics.index(self.metric) if self.metric in metrics else -step
            self.metric = metrics[(index + step) % len(metrics)]
            self._show_curves()

    # ------------------------------------------------------------------ keys

    def action_next_log(self) -> None:
        names = list(log_paths(self.run)) or list(rundir.LOG_NAMES)  # the training log first, for a trained run
        self.log_name = names[(names.index(self.log_name) + 1) % len(names)] if self.log_name in names else names[0]
        self._follow()

    def action_scroll_log(self, lines: int) -> None:
        log = self.query_one(Log)
        log.scroll_to(y=log.scroll_y + lines, animate=False)

    def action_evaluate(self) -> None:
        self.app.confirm_evaluate(self.run.id)

    def action_show_path(self) -> None:
        if not self.run.run_dir:
            self.app.notify(f"run {self.run.id} has no run directory yet (status {self.run.status})", severity="warning")
            return
        self.app.copy_to_clipboard(self.run.run_dir)
        self.app.notify(f"run directory (copied): {self.run.run_dir}", timeout=10)
