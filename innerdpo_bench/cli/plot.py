"""`innerdpo plot`: bars of accuracy per shift (a run or a seed group per bar), training curves (--curves METRIC),
or a sweep key against a shift's accuracy (--x KEY), as PNG, SVG or PDF with matplotlib."""

from __future__ import annotations

import typer

from innerdpo_bench.cli.app import app, console, err_console, handle_errors, home_option
from innerdpo_bench.cli.stats import RUN_HELP, _metric_option
from innerdpo_bench.errors import UserError
from innerdpo_bench.evaluation import scoring
from innerdpo_bench.results import locate, plotdata, stats

PLOT_SUFFIXES = (".png", ".svg", ".pdf")


# --------------------------------------------------------------------------- plot


@app.command("plot")
@handle_errors
def plot_command(
    runs: list[str] | None = typer.Argument(None, help="RUNs to plot, each " + RUN_HELP[0].lower() + RUN_HELP[1:] +
                                            " Default: every done run in the store.", show_default=False),
    curves: str | None = typer.Option(None, "--curves", help="Instead of bars: this training metric against the "
                                      "step, one line per RUN (loss, loss_output, loss_hidden, rewards_margin, "
                                      "reward_acc, pref_acc, nll_chosen_pi, learning_rate; from metrics.jsonl).",
                                      show_default=False),
    x_key: str | None = typer.Option(None, "--x", help="Instead of bars: this sweep key (a train option, e.g. alpha) "
                                     "on the x axis against --shift's accuracy, one line per value of the other "
                                     "keys the runs vary; points are the mean ± std over seeds.", show_default=False),
    shift: str = typer.Option("in_domain", "--shift", help="With --x: the shift on the y axis."),
    out: str | None = typer.Option(None, "--out", help="Output file: .png, .svg or .pdf. Default: "
                                   "HOME/plots/shifts-METRIC.png in the workspace, never the current directory.",
                                   show_default=False),
    group_seeds: bool = typer.Option(False, "--group-seeds", help="One bar per set of runs that differ only by "
                                     "seed: mean over seeds, whiskers ± seed std."),
    metric: str = _metric_option(),
    width_in: float = typer.Option(8.0, "--width-in", help="Figure width in inches."),
    height_in: float = typer.Option(4.5, "--height-in", help="Figure height in inches."),
    dpi: int = typer.Option(150, "--dpi", help="Dots per inch (a PNG is width·dpi × height·dpi pixels)."),
    resamples: int = typer.Option(stats.RESAMPLES, "--resamples", help="Bootstrap resamples for the whiskers."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap random seed."),
    home: str | None = home_option(),
) -> None:
    """Grouped bars of accuracy per shift, one bar per run (or seed group), for a paper.

    Whiskers: a run's 95% bootstrap interval over its rows; with --group-seeds, ± the sample standard deviation
    over seeds (none for a single seed); the figure's caption says which. The dotted line is chance (0.5). The
    legend sits outside the axes, long names wrapped.
    """
    from pathlib import Path

    target = Path(out).expanduser() if out else Path("shifts.png")   # the default's place comes below
    if target.suffix.lower() not in PLOT_SUFFIXES:
        raise UserError(f"--out {out}: the suffix must be one of {', '.join(PLOT_SUFFIXES)}")
    if width_in <= 0 or height_in <= 0 or dpi <= 0:
        raise UserError(f"--width-in, --height-in and --dpi must be positive (got {width_in:g}, {height_in:g}, {dpi})")
    if resamples < 1:
        raise UserError(f"--resamples must be at least 1, got {resamples}")
    if curves and x_key:
        raise UserError("--curves and --x are two plots: give one")
    if curves:
        from innerdpo_bench.cli.charts import draw_curves

        target = target if out else _default_plot_path(home, f"curves-{curves}")
        lines = draw_curves(runs, curves, home, target, width_in, height_in, dpi)
        console.print(f"plot: {target} ({lines} curves)", soft_wrap=True, markup=False)
        return
    if x_key:
        from innerdpo_bench.cli.charts import draw_param

        target = target if out else _default_plot_path(home, f"{shift}-vs-{x_key}")
        lines = draw_param(runs, x_key, shift, home, target, width_in, height_in, dpi)
        console.print(f"plot: {target} ({lines} lines)", soft_wrap=True, markup=False)
        return
    metric = scoring.resolve_metric(metric)
    loaded = locate.load_runs(runs, home) if runs else _store_runs(home)
    bars = plotdata.bar_series(loaded, metric, group_seeds, resamples, seed)
    target = target if out else _default_plot_path(home, metric)
    _draw(bars, target, metric, width_in, height_in, dpi, group_seeds)
    console.print(f"plot: {target} ({len({bar.label for bar in bars})} series, "
                  f"{round(width_in * dpi)}×{round(height_in * dpi)} px at {dpi} dpi)", soft_wrap=True, markup=False)


def _default_plot_path(home: str | None, metric: str):
    """HOME/plots/shifts-METRIC.png (a name beginning curves- or naming a shift: that name); a UserError (give --out)
    when HOME holds no workspace (plots of run directories alone), so nothing lands in the current directory."""
    from innerdpo_bench.store import STORE_FILE, resolve_home
    from innerdpo_bench.store.location import has_store

    workspace = resolve_home(home)
    if not has_store(workspace):
        raise UserError(f"no store at {workspace / STORE_FILE} to hold the plot: give --out FILE (or --home)")
    return workspace / "plots" / (f"{metric}.png" if metric.startswith("curves-") or "-vs-" in metric
                                  else f"shifts-{metric}.png")


def _store_runs(home: str | None) -> list[locate.RunRows]:
    loaded, skipped = [], []
    for run in locate.done_runs(home):
        try:
            loaded.append(locate.load_run(run))
        except UserError:
            skipped.append(str(run.id))
    if skipped:
        err_console.print(f"[dim]left out run(s) {', '.join(skipped)}: no per-row records[/dim]", soft_wrap=True)
    if not loaded:
        raise UserError("the store has no done run with per-row records to plot")
    return loaded


def _draw(bars: list[plotdata.Bar], target, metric: str, width_in: float, height_in: float, dpi: int,
          group_seeds: bool = False) -> None:
    import matplotlib.pyplot as plt

    fig = plot_figure(bars, metric, width_in, height_in, dpi, group_seeds)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=dpi, metadata={"Date": None} if target.suffix.lower() == ".svg" else None)
    plt.close(fig)


LEGEND_WRAP = 30       # characters per legend line: a long display name wraps instead of being clipped


def plot_figure(bars: list[plotdata.Bar], metric: str, width_in: float, height_in: float, dpi: int,
                group_seeds: bool = False):
    """The figure of `innerdpo plot`: grouped bars, whiskers only where there is an interval, the legend outside
    the axes on the right (names wrapped; more series than fit get two columns), and a caption under the axes
    saying what a whisker is. Choice: a series without an interval (one seed with --group-seeds) gets no
    whisker rather than a zero-width one."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from innerdpo_bench.evaluation.suites import SHIFTS

    labels = list(dict.fromkeys(bar.label for bar in bars))
    shifts = [s for s in SHIFTS if any(bar.shift == s for bar in bars)]
    by_key = {(bar.label, bar.shift): bar for bar in bars}
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(width_in, height_in), dpi=dpi, layout="constrained")
    colors = plt.get_cmap("tab10" if len(labels) <= 10 else "tab20")
    for k, label in enumerate(labels):
        present = [(i, by_key[(label, s)]) for i, s in enumerate(shifts) if (label, s) in by_key]
        x = np.array([i for i, _ in present]) - 0.4 + width * (k + 0.5)
        values = np.array([bar.value for _, bar in present])
        errors = np.array([[bar.value - bar.lo if bar.has_interval else np.nan for _, bar in present],
                           [bar.hi - bar.value if bar.has_interval else np.nan for _, bar in present]])
        ax.bar(x, values, width * 0.92, yerr=np.clip(errors, 0.0, None), capsize=2,
               label=textwrap.fill(label, LEGEND_WRAP), color=colors(k % colors.N),
               error_kw={"elinewidth": 0.8, "capthick": 0.8})
    ax.axhline(0.5, color="0.4", linestyle=":", linewidth=0.8)
    ax.set_xticks(range(len(shifts)), [s.replace("_", " ") for s in shifts])
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel(scoring.lookup(metric).axis_label)
    ax.spines[["top", "right"]].set_visible(False)
    lines = sum(textwrap.fill(label, LEGEND_WRAP).count("\n") + 1 for label in labels)
    fig.legend(loc="outside right upper", ncols=1 if lines * 0.2 < height_in * 0.8 else 2, fontsize="small",
               frameon=False)
    fig.supxlabel(plotdata.whisker_caption(bars, group_seeds) + " Dotted line: chance (0.5).", fontsize="x-small",
                  wrap=True)
    return fig
