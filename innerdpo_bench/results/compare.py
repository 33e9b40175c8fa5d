"""Comparisons of loaded runs on the rows they share: B − A per shift (of two runs or two seed groups), and
baseline deltas.

Rows of two runs are matched by row id (sha256 of prompt, chosen and rejected); the k-th repeat of a
duplicated pair is matched with the other run's k-th repeat. Pure functions of loaded rows
(`records.RunRows`); the statistics are `stats.paired_bootstrap`, `stats.mcnemar_exact` and `stats.holm`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from innerdpo_bench.errors import UserError, unknown_choice
from innerdpo_bench.evaluation import scoring
from innerdpo_bench.evaluation.suites import SHIFTS
from innerdpo_bench.results import stats
from innerdpo_bench.results.provenance import data_label

if TYPE_CHECKING:
    from innerdpo_bench.results.records import RunRows
    from innerdpo_bench.results.rowsfile import ShiftRows


def check_shifts(shifts: Iterable[str] | None) -> list[str] | None:
    """Validate --shift names (UserError with a suggestion for a typo); None means every shift."""
    if not shifts:
        return None
    for shift in shifts:
        if shift not in SHIFTS:
            raise unknown_choice("shift", shift, SHIFTS)
    return list(dict.fromkeys(shifts))


# --------------------------------------------------------------------------- alignment and comparison


def align(shift_rows: Sequence[ShiftRows]) -> list[np.ndarray]:
    """Index arrays, one per input, that pick the rows present in every input, in the first input's order."""
    positions = [rows.position for rows in shift_rows]
    common = [key for key in positions[0] if all(key in other for other in positions[1:])]
    return [np.fromiter((position[key] for key in common), dtype=np.intp, count=len(common))
            for position in positions]


@dataclass(frozen=True)
class ShiftComparison:
    """B − A on one shift, on the rows both scored (matched by row id).

    With seed groups, `acc_a` / `acc_b` are the means over each group's seeds, the per-row score is the
    seed-mean correctness, and (b, c) count rows where A's / B's seed mean is higher (a sign test that is
    McNemar's for one seed each). `seeds_a` / `seeds_b` are (seed, accuracy) per run on the shared rows.
    """

    shift: str
    n: int                  # shared rows
    n_a: int                # rows A scored on this shift (the smallest of its seeds)
    n_b: int
    acc_a: float
    acc_b: float
    delta: float            # acc_b − acc_a
    lo: float               # 95 % paired bootstrap interval of delta (exact bound when no row is discordant)
    hi: float
    b: int                  # A right, B wrong
    c: int                  # B right, A wrong
    p: float                # McNemar exact two-sided
    p_holm: float | None = None
    seeds_a: tuple[tuple[int | None, float], ...] = ()
    seeds_b: tuple[tuple[int | None, float], ...] = ()

    @property
    def interval(self) -> str:
        """How [lo, hi] was computed: "bootstrap", or "exact" (`stats.no_discordance_interval`) when b = c = 0."""
        return "exact" if self.b + self.c == 0 else "bootstrap"

    @property
    def significant(self) -> bool:
        """The 95 % paired interval excludes 0."""
        return not self.lo <= 0.0 <= self.hi

    def seed_spread(self, side: str) -> tuple[float, float | None]:
        """(mean, sample std) of the per-seed accuracies of side "a" or "b"."""
        seeds = self.seeds_a if side == "a" else self.seeds_b
        return stats.seed_spread([acc for _, acc in seeds])

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["significant"] = self.significant
        data["interval"] = self.interval
        data["seeds_a"] = [{"seed": seed, "acc": acc} for seed, acc in self.seeds_a]
        data["seeds_b"] = [{"seed": seed, "acc": acc} for seed, acc in self.seeds_b]
        for side in ("a", "b"):
            data[f"seed_mean_{side}"], data[f"seed_std_{side}"] = self.seed_spread(side)
        return data


def _describe_data(rows: RunRows, shift: str) -> str:
    prov = (rows.report.get("provenance") or {}).get(shift)
    return f"{data_label(prov)}, N={len(rows.shifts[shift])}" if prov else f"N={len(rows.shifts[shift])}"


def compare_shift(runs_a: Sequence[RunRows], runs_b: Sequence[RunRows], shift: str, metric: str = "acc",
                  resamples: int = stats.RESAMPLES, seed: int = 0) -> ShiftComparison:
    """Compare two runs (or two seed groups) on one shift; UserError when they share no rows."""
    every = [*runs_a, *runs_b]
    for rows in every:
        rows.check_metric(metric)
    shift_rows = [rows.shift(shift) for rows in every]
    index = align(shift_rows)
    n = len(index[0])
    if n == 0:
        a, b = runs_a[0], runs_b[0]
        raise UserError(f"{a.ident} and {b.ident} share no {shift} rows: they were scored on different data "
                        f"({_describe_data(a, shift)} vs {_describe_data(b, shift)})")
    scores = [rows.score(metric)[i].astype(float) for rows, i in zip(shift_rows, index)]  # each [n]
    per_run = [(rows.seed, float(score.mean())) for rows, score in zip(every, scores)]
    score_a = np.mean(scores[: len(runs_a)], axis=0)
    score_b = np.mean(scores[len(runs_a):], axis=0)
    b, c = stats.discordant(score_a, score_b)
    if b + c:
        delta, lo, hi = stats.paired_bootstrap(score_a, score_b, resamples=resamples, seed=seed)
    else:  # every row scored alike: no bootstrap can say how large a gap these rows leave possible
        delta, (lo, hi) = 0.0, stats.no_discordance_interval(n)
    return ShiftComparison(
        shift=shift, n=n, n_a=min(len(rows) for rows in shift_rows[: len(runs_a)]),
        n_b=min(len(rows) for rows in shift_rows[len(runs_a):]), acc_a=float(score_a.mean()),
        acc_b=float(score_b.mean()), delta=delta, lo=lo, hi=hi, b=b, c=c, p=stats.mcnemar_exact(b, c),
        seeds_a=tuple(per_run[: len(runs_a)]), seeds_b=tuple(per_run[len(runs_a):]))


def compare_runs(runs_a: Sequence[RunRows], runs_b: Sequence[RunRows], metric: str = "acc",
                 shifts: Sequence[str] | None = None, resamples: int = stats.RESAMPLES,
                 seed: int = 0) -> list[ShiftComparison]:
    """Per shift, B − A with a paired bootstrap interval and McNemar's p, Holm-adjusted over the shifts
    compared. `shifts` None compares every shift both sides scored; a named shift must be in both."""
    metric = scoring.resolve_metric(metric)
    if resamples < 1:
        raise UserError(f"--resamples must be at least 1, got {resamples}")
    every = [*runs_a, *runs_b]
    if shifts:
        wanted = check_shifts(shifts)
        for rows in every:
            for shift in wanted:
                rows.shift(shift)
    else:
        wanted = [shift for shift in every[0].shifts if all(shift in rows.shifts for rows in every)]
        if not wanted:
            raise UserError(f"{runs_a[0].ident} and {runs_b[0].ident} have no shift in common")
    results = [compare_shift(runs_a, runs_b, shift, metric, resamples, seed) for shift in wanted]
    adjusted = stats.holm([result.p for result in results])
    return [dataclasses.replace(result, p_holm=p) for result, p in zip(results, adjusted)]


# --------------------------------------------------------------------------- baseline deltas


@dataclass(frozen=True)
class Delta:
    """A baseline delta with its 95 % paired bootstrap interval; `significant` when it excludes 0."""

    delta: float
    lo: float
    hi: float
    n: int
    p: float

    @property
    def significant(self) -> bool:
        return not self.lo <= 0.0 <= self.hi


def delta_vs_baseline(members: Sequence[RunRows], reference: RunRows | Sequence[RunRows], metric: str = "acc",
                      resamples: int = stats.RESAMPLES, seed: int = 0) -> dict[str, Delta | None]:
    """{shift: Delta} of a run (or a group's runs, pooled) minus `reference` (a run, or a group's runs pooled:
    the test of `compare --group-seeds`), on their shared rows.

    None for a shift that either side did not score or where they share no rows, and everywhere for an
    implicit-reward metric when a side is a base model, so a table can leave the cell unmarked.
    """
    metric = scoring.resolve_metric(metric, kind="metric for a baseline delta")
    references = list(reference) if isinstance(reference, Sequence) else [reference]
    out: dict[str, Delta | None] = {shift: None for shift in SHIFTS}
    if scoring.METRICS[metric].needs_adapter and not all(r.has_adapter for r in [*references, *members]):
        return out
    for shift in SHIFTS:
        if not all(shift in r.shifts for r in references) or not all(shift in m.shifts for m in members):
            continue
        try:
            result = compare_shift(references, members, shift, metric, resamples, seed)
        except UserError:
            continue
        out[shift] = Delta(result.delta, result.lo, result.hi, result.n, result.p)
    return out
