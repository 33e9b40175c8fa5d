"""Charts with axes (plotext, through textual-plotext): a run's training curves, several runs' curves overlaid, and
a sweep key against a shift's accuracy. The data comes from `results.curves` and `results.plotdata`, the same
functions `innerdpo plot --curves` and `innerdpo plot --x` draw with matplotlib."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual_plotext import PlotextPlot

from innerdpo_bench.errors import UserError
from innerdpo_bench.evaluation.suites import SHIFTS
from innerdpo_bench.results import plotdata
from innerdpo_bench.results.curves import CURVE_HELP, CURVE_METRICS, Series, read_series
from innerdpo_bench.results.summaries import metrics_path
from innerdpo_bench.store import Run


class Chart(PlotextPlot):
    """A line chart: `draw` replaces what it shows; `lines` keeps the last drawing's data (labels, x, y) for tests."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.lines: list[tuple[str, list, list]] = []

    def draw(self, lines: list[tuple[str, list, list]], title: str, xlabel: str, ylabel: str = "",
             errors: list[list[float]] | None = None) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        self.lines = lines
        for index, (label, xs, ys) in enumerate(lines):
            if not xs:
                continue
            plt.plot(xs, ys, label=label, marker="braille")
            if errors is not None and any(errors[index]):
                plt.error(xs, ys, yerr=errors[index])   # the bars over the line: ± std over seeds
        plt.title(title)
        plt.xlabel(xlabel)
        if ylabel:
            plt.ylabel(ylabel)
        self.refresh()


class SeriesLoaded(Message):
    def __init__(self, series: dict[int, dict[str, Series]]) -> None:
        super().__init__()
        self.series = series


def run_label(run: Run) -> str:
    return f"{run.id} {run.name}"


def available_metrics(series: dict[int, dict[str, Series]]) -> list[str]:
    """The curve metrics some run logged, in CURVE_METRICS order (then any other logged number)."""
    logged = {key for by_metric in series.values() for key in by_metric}
    return [key for key in CURVE_METRICS if key in logged] + sorted(logged - set(CURVE_METRICS))


class CurvesScreen(Screen):
    """Training curves of several runs overlaid, one metric at a time (m / M cycle the metrics)."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("m", "metric(1)", "Next metric"),
                Binding("M", "metric(-1)", "Prev metric", show=False)]

    def __init__(self, runs: list[Run], metric: str = "loss") -> None:
        super().__init__()
        self.runs = runs
        self.metric = metric
        self.series: dict[int, dict[str, Series]] | None = None

    def compose(self) -> ComposeResult:
        yield Static(Text(f"curves of {len(self.runs)} run(s) · m: next metric", no_wrap=True), id="chart-title")
        yield Chart(id="curves-chart")
        yield Static("", id="chart-note")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._load()

    @work(thread=True, group="curves", exit_on_error=False)
    def _load(self) -> None:
        self.post_message(SeriesLoaded({run.id: read_series(metrics_path(run)) for run in self.runs}))

    def on_series_loaded(self, message: SeriesLoaded) -> None:
        self.series = message.series
        metrics = available_metrics(self.series)
        if self.metric not in metrics and metrics:
            self.metric = metrics[0]
        self._draw()

    def action_metric(self, step: int) -> None:
        metrics = available_metrics(self.series or {})
        if metrics:
            index = metrics.index(self.metric) if self.metric in metrics else -step
            self.metric = metrics[(index + step) % len(metrics)]
            self._draw()

    def _draw(self) -> None:
        lines = [(run_label(run), *(self.series or {}).get(run.id, {}).get(self.metric, ([], [])))
                 for run in self.runs]
        self.query_one(Chart).draw(lines, f"{self.metric}: {CURVE_HELP.get(self.metric, self.metric)}", "step")
        missing = [str(run.id) for run, (_, xs, _) in zip(self.runs, lines) if not xs]
        note = f"metrics: {', '.join(available_metrics(self.series or {}))}"
        if missing:
            note += f" · no {self.metric} logged by run(s) {', '.join(missing)} (not trained yet, or eval-only)"
        self.query_one("#chart-note", Static).update(Text(note, style="dim"))


class ParamScreen(Screen):
    """A sweep key on the x axis against a shift's accuracy: one line per value of the other varied keys, each point
    the mean ± sample std over its runs (seeds). x / s cycle the key and the shift."""

    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("x", "next_key", "Next key"),
                Binding("s", "next_shift", "Next shift")]

    def __init__(self, runs: list[Run], x_key: str | None = None, shift: str = "in_domain") -> None:
        super().__init__()
        self.runs = [run for run in runs if run.kind == "train_eval"]
        self.keys = plotdata.sweep_keys(self.runs)
        self.x_key = x_key if x_key in self.keys else (self.keys[0] if self.keys else None)
        self.shift = shift
        self.lines: list[plotdata.ParamLine] = []

    def compose(self) -> ComposeResult:
        yield Static("", id="chart-title")
        yield Chart(id="param-chart")
        yield Static("", id="chart-note")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._draw()

    def action_next_key(self) -> None:
        if self.keys:
            self.x_key = self.keys[(self.keys.index(self.x_key) + 1) % len(self.keys)]
            self._draw()

    def action_next_shift(self) -> None:
        self.shift = SHIFTS[(SHIFTS.index(self.shift) + 1) % len(SHIFTS)]
        self._draw()

    def _draw(self) -> None:
        title = self.query_one("#chart-title", Static)
        if self.x_key is None:
            title.update("no sweep key: the runs shown do not differ in any train option")
            return
        try:
            self.lines = plotdata.param_lines(self.runs, self.x_key, self.shift)
        except UserError as err:
            self.lines = []
            title.update(Text(str(err), style="yellow"))
            self.query_one(Chart).draw([], "", self.x_key)
            return
        title.update(Text(f"{self.shift} acc against {self.x_key} · mean ± std over seeds · x: key "
                          f"({', '.join(self.keys)}) · s: shift", no_wrap=True, overflow="ellipsis"))
        numeric = all(isinstance(point.x, (int, float)) for line in self.lines for point in line.points)
        categories = sorted({str(point.x) for line in self.lines for point in line.points})

        def x_of(point):
            return point.x if numeric else categories.index(str(point.x)) + 1

        self.query_one(Chart).draw([(line.label, [x_of(p) for p in line.points], [p.mean for p in line.points])
                                    for line in self.lines], f"{self.shift} vs {self.x_key}", self.x_key,
                                   f"{self.shift} acc", errors=[[p.std or 0.0 for p in line.points]
                                                                for line in self.lines])
        table = "  ".join(f"{line.label}: " + ", ".join(
            f"{p.x}→{p.mean:.3f}" + (f"±{p.std:.3f}" if p.std is not None else "") + f" (n={p.n})" for p in line.points)
            for line in self.lines)
        note = table if numeric else f"x: {', '.join(f'{i + 1}={c}' for i, c in enumerate(categories))} · {table}"
        self.query_one("#chart-note", Static).update(Text(note, style="dim"))


def detail_chart_lines(series: dict[str, Series], metric: str) -> list[tuple[str, list, list]]:
    """The detail screen's chart: one metric of one run."""
    xs, ys = series.get(metric, ([], []))
    return [(metric, xs, ys)]


def chart_path_of(run: Run) -> Path | None:
    return metrics_path(run)
