"""The bars of `innerdpo plot` from loaded runs: one per run (or seed group) and shift, with whiskers (pure)."""

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
