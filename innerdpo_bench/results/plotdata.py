"""What `innerdpo plot` draws, as data (pure): the bars of loaded runs (one per run or seed group and shift, with
whiskers), and a sweep key against a shift's accuracy over store runs (`param_lines`: one line per value of the
other keys the runs vary, mean ± std over the runs of a point, which differ only by seed)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from innerdpo_bench.evaluation import scoring
from innerdpo_bench.evaluation.suites import SHIFTS
from innerdpo_bench.results import stats
from innerdpo_bench.results.seeds import group_by_seed

if TYPE_CHECKING:
    from innerdpo_bench.results.records import RunRows
    from innerdpo_bench.store import Run


@dataclass(frozen=True)
class Bar:
    """One bar of `innerdpo plot`: a run or a seed group on one shift; `lo`/`hi` are the whisker ends."""

    label: str
    shift: str
    value: float
    lo: float
    hi: float
    n_runs: int
    has_interval: bool = True     # False: one seed of a seed group, whose spread is unknown (no whisker)


def bar_series(runs: Sequence[RunRows], metric: str = "acc", group_seeds: bool = False,
               resamples: int = stats.RESAMPLES, seed: int = 0) -> list[Bar]:
    """Bars per (run or seed group) × shift. One run: accuracy with its 95 % bootstrap interval over rows.
    A seed group: the mean over seeds, whiskers ± the sample std over seeds (none for a single seed:
    `has_interval` False)."""
    metric = scoring.resolve_metric(metric)
    for rows in runs:
        rows.check_metric(metric)
    groups = group_by_seed(runs) if group_seeds else [[rows] for rows in runs]
    labels = _labels(groups, group_seeds)
    bars = []
    for label, group in zip(labels, groups):
        for shift in SHIFTS:
            members = [rows for rows in group if shift in rows.shifts]
            if not members:
                continue
            if group_seeds:
                mean, std = stats.seed_spread([float(r.shifts[shift].score(metric).mean()) for r in members])
                spread = std or 0.0
                bars.append(Bar(label, shift, mean, mean - spread, mean + spread, len(members), std is not None))
            else:
                value, lo, hi = stats.bootstrap_interval(members[0].shifts[shift].score(metric), resamples, seed)
                bars.append(Bar(label, shift, value, lo, hi, 1))
    return bars


def _labels(groups: list[list[RunRows]], group_seeds: bool) -> list[str]:
    """Legend labels: the display name, with the seed (then the run) added where names repeat."""
    labels = [group[0].name + (f" (n={len(group)})" if group_seeds and len(group) > 1 else "") for group in groups]
    if len(set(labels)) == len(labels):
        return labels
    if not group_seeds:
        labels = [label + (f" s{group[0].seed}" if group[0].seed is not None else "")
                  for label, group in zip(labels, groups)]
    counts = {label: labels.count(label) for label in labels}
    return [f"{label} [{group[0].ident}]" if counts[label] > 1 else label for label, group in zip(labels, groups)]


def whisker_caption(bars: Sequence[Bar], group_seeds: bool) -> str:
    """What the whiskers of these bars are, for the figure's caption."""
    if not group_seeds:
        return "Whiskers: 95% bootstrap interval over each run's rows."
    text = "Whiskers: ± sample standard deviation over seeds (n in the legend)."
    if any(not bar.has_interval for bar in bars):
        text += " A series with one seed has no whisker."
    return text


NOT_SWEPT = frozenset({"seed", "device", "logging_steps"})   # and the bookkeeping fields (`_train_keys`)


def _train_keys(runs: Sequence[Run]) -> set[str]:
    """The train options of these runs' configs, bookkeeping left out."""
    from innerdpo_bench.config import TrainConfig

    if not any(run.spec.train is not None for run in runs):
        return set()
    return set(TrainConfig.names()) - set(TrainConfig.names(role="bookkeeping"))


def sweep_keys(runs: Sequence[Run]) -> list[str]:
    """The train options whose values differ among the runs (what a sweep varied), numeric ones first; never the
    seed or bookkeeping."""
    from innerdpo_bench.results import columns

    keys = sorted(_train_keys(runs) - NOT_SWEPT)
    # a key that does not apply to a run (α of a dpo run: None) does not make it vary; the method tells them apart
    varied = [key for key in keys if len({repr(value) for run in runs
                                          if (value := columns.value(run, key)) is not None}) > 1]
    numeric = [key for key in varied if columns.is_numeric(key, [columns.value(run, key) for run in runs])]
    return numeric + [key for key in varied if key not in numeric]


@dataclass(frozen=True)
class ParamPoint:
    """One x value of a line: the mean of its runs' values, their sample std (None for one run), how many."""

    x: float | str
    mean: float
    std: float | None
    n: int


@dataclass(frozen=True)
class ParamLine:
    label: str                    # the other varied keys' values, e.g. `dpo` or `hs-none-InnerDPO align=logodds`
    points: tuple[ParamPoint, ...]


def param_lines(runs: Sequence[Run], x_key: str, shift: str = "in_domain", metric: str = "acc") -> list[ParamLine]:
    """`x_key` against `shift`'s `metric` (the store's results) over the runs that have both: one line per value of
    the method and the other varied keys (`sweep_keys`), points in x order, each the mean ± sample std over its
    runs (they differ only by seed). UserError when `x_key` is not an option of these runs or nothing has both."""
    from innerdpo_bench.config.naming import label as key_label
    from innerdpo_bench.errors import UserError, unknown_choice
    from innerdpo_bench.results import columns

    keys = sweep_keys(runs)
    known = sorted(_train_keys(runs))
    if x_key not in known:
        raise unknown_choice("--x", x_key, keys or known)
    others = [key for key in keys if key != x_key]
    groups: dict[str, dict[object, list[float]]] = {}
    for run in runs:
        x = columns.value(run, x_key)
        value = columns.finite_or_none(run.results.get(shift, {}).get(scoring.METRICS[metric].harness_key))
        if x is None or value is None:
            continue
        parts = [columns.method_of(run), *(f"{key_label(key)}={columns.format_value(columns.value(run, key))}"
                                           for key in others if key != "method" and columns.value(run, key) is not None)]
        groups.setdefault(" ".join(parts), {}).setdefault(x, []).append(value)
    if not groups:
        raise UserError(f"no done run has both {x_key} and a {shift} {metric}")
    lines = []
    for label, by_x in groups.items():
        points = []
        for x in sorted(by_x, key=lambda value: (isinstance(value, str), value)):
            mean, std = stats.seed_spread(by_x[x])
            points.append(ParamPoint(x, mean, std, len(by_x[x])))
        lines.append(ParamLine(label, tuple(points)))
    return lines

