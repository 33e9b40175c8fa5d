"""The line plots of `innerdpo plot --curves` and `--x`: the same data as the dashboard's charts (`results.curves`,
`results.plotdata.param_lines`), drawn with matplotlib."""

from __future__ import annotations

from pathlib import Path

from innerdpo_bench.errors import UserError


def _store(home: str | None):
    from innerdpo_bench.cli.app import open_store

    return open_store(home, readonly=True)


def curve_sources(refs: list[str] | None, home: str | None) -> list[tuple[str, Path]]:
    """(label, metrics.jsonl) per RUN: a store run id (its checkpoint's), or a run directory (DIR/metrics.jsonl or
    DIR/checkpoint/metrics.jsonl); none given: every trained run of the store."""
    from innerdpo_bench.results.summaries import metrics_path
    from innerdpo_bench.rundir import CHECKPOINT, METRICS

    sources = []
    ids = [ref for ref in refs or [] if ref.strip().isdigit() and not Path(ref).expanduser().exists()]
    runs = {}
    if ids or not refs:
        with _store(home) as store:
            runs = {str(run.id): run for run in store.list_runs() if run.kind == "train_eval" and run.run_dir}
    for ref in refs or list(runs):
        if ref in runs or ref in ids:
            if ref not in runs:
                raise UserError(f"run {ref} has no training run directory (not trained yet, or an eval-only run)")
            run = runs[ref]
            sources.append((f"{run.id} {run.name}", metrics_path(run)))
            continue
        folder = Path(ref).expanduser()
        path = next((p for p in (folder / METRICS, folder / CHECKPOINT / METRICS) if p.is_file()), None)
        if path is None:
            raise UserError(f"{ref}: no {METRICS} there (a run directory, or a store run id with --home)")
        sources.append((folder.name, path))
    if not sources:
        raise UserError("no trained run to plot")
    return sources


def _figure(width_in: float, height_in: float, dpi: int):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width_in, height_in), dpi=dpi, layout="constrained")
    ax.spines[["top", "right"]].set_visible(False)
    return plt, fig, ax


def _save(plt, fig, target: Path, dpi: int) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=dpi, metadata={"Date": None} if target.suffix.lower() == ".svg" else None)
    plt.close(fig)


def draw_curves(refs: list[str] | None, metric: str, home: str | None, target: Path, width_in: float,
                height_in: float, dpi: int) -> int:
    """One line per run of `metric` against the step; the number of lines drawn. UserError when no run logged it."""
    from innerdpo_bench.results.curves import CURVE_HELP, read_series

    series = [(label, read_series(path).get(metric)) for label, path in curve_sources(refs, home)]
    drawn = [(label, points) for label, points in series if points and points[0]]
    if not drawn:
        raise UserError(f"no run logged {metric!r} (metrics: loss, loss_output, loss_hidden, rewards_margin, "
                        "reward_acc, pref_acc, nll_chosen_pi, learning_rate)")
    plt, fig, ax = _figure(width_in, height_in, dpi)
    for label, (steps, values) in drawn:
        ax.plot(steps, values, label=label, linewidth=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel(CURVE_HELP.get(metric, metric))
    fig.legend(loc="outside right upper", fontsize="small", frameon=False)
    _save(plt, fig, target, dpi)
    return len(drawn)


def draw_param(refs: list[str] | None, x_key: str, shift: str, home: str | None, target: Path, width_in: float,
               height_in: float, dpi: int) -> int:
    """`x_key` against `shift`'s accuracy over the store's done runs (or RUNs, store ids), one line per value of the
    other varied keys, error bars ± std over seeds; the number of lines."""
    from innerdpo_bench.evaluation.suites import SHIFTS
    from innerdpo_bench.results import plotdata

    if shift not in SHIFTS:
        from innerdpo_bench.errors import unknown_choice

        raise unknown_choice("--shift", shift, SHIFTS)
    with _store(home) as store:
        runs = [run for run in store.list_runs("done") if run.kind == "train_eval"]
    if refs:
        wanted = {int(ref) for ref in refs if ref.strip().isdigit()}
        if len(wanted) != len(refs):
            raise UserError("--x plots store runs: give run ids (or none: every done run)")
        runs = [run for run in runs if run.id in wanted]
    lines = plotdata.param_lines(runs, x_key, shift)
    numeric = all(isinstance(point.x, (int, float)) for line in lines for point in line.points)
    categories = sorted({str(point.x) for line in lines for point in line.points})
    plt, fig, ax = _figure(width_in, height_in, dpi)
    for line in lines:
        xs = [point.x if numeric else categories.index(str(point.x)) for point in line.points]
        ax.errorbar(xs, [point.mean for point in line.points], yerr=[point.std or 0.0 for point in line.points],
                    label=line.label, marker="o", capsize=3, linewidth=1.2)
    if not numeric:
        ax.set_xticks(range(len(categories)), categories)
    ax.set_xlabel(x_key)
    ax.set_ylabel(f"{shift} accuracy (mean ± std over seeds)")
    ax.axhline(0.5, color="0.4", linestyle=":", linewidth=0.8)
    fig.legend(loc="outside right upper", fontsize="small", frameon=False)
    _save(plt, fig, target, dpi)
    return len(lines)
