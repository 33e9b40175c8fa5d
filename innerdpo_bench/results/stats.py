"""Statistics over per-row preference scores: paired bootstrap, McNemar, Holm, transfer, seed spread.

Pure functions of numpy arrays and plain numbers; no files, no store, no model (`scoring.py` says when a
row is correct, `results/` loads the per-row records, `cli/stats.py` prints). The formulas are also in
`docs/statistics.md`.

Bootstraps here resample rows with replacement. The statistic is a mean over rows, so it depends only
on how many times each distinct row value is drawn: drawing n rows from n is a multinomial over the
distinct values with probabilities count/n. `_bootstrap_means` samples those multinomial counts
directly, which has exactly the distribution of resampling row indices but costs
O(resamples × distinct values) instead of O(resamples × n): 10,000 resamples of 10,000 rows take
milliseconds and no [resamples, n] index matrix.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

LEVEL = 0.95
RESAMPLES = 10_000
REFERENCE_SHIFT = "in_domain"


# --------------------------------------------------------------------------- bootstrap


def _bootstrap_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """`resamples` bootstrap means of `values` (rows drawn with replacement); shape [resamples]."""
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    distinct, counts = np.unique(values, return_counts=True)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(len(values), counts / len(values), size=resamples)  # [resamples, distinct]
    return draws @ distinct / len(values)


def _percentile_interval(means: np.ndarray, level: float) -> tuple[float, float]:
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return float(lo), float(hi)


def bootstrap_interval(correct, resamples: int = RESAMPLES, seed: int = 0,
                       level: float = LEVEL) -> tuple[float, float, float]:
    """(accuracy, lo, hi): the mean of `correct` (bools, or per-row scores in [0, 1]) and its percentile
    bootstrap interval at `level` (rows resampled with replacement, `resamples` times, fixed `seed`)."""
    values = np.asarray(correct, dtype=float)
    if values.size == 0:
        raise ValueError("bootstrap_interval needs at least one row")
    lo, hi = _percentile_interval(_bootstrap_means(values, resamples, seed), level)
    return float(values.mean()), lo, hi


def paired_bootstrap(correct_a, correct_b, resamples: int = RESAMPLES, seed: int = 0,
                     level: float = LEVEL) -> tuple[float, float, float]:
    """(delta, lo, hi) for delta = acc(B) − acc(A) on the same rows, aligned (row i of A is row i of B).

    Paired: rows are resampled jointly, so each draw keeps a row's A and B scores together; only the
    per-row difference d_i = b_i − a_i matters, and delta = mean(d). The interval is the percentile
    bootstrap interval of mean(d) at `level`. Identical runs give (0, 0, 0).
    """
    a = np.asarray(correct_a, dtype=float)
    b = np.asarray(correct_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired_bootstrap needs two aligned 1-d arrays, got shapes {a.shape} and {b.shape}")
    if a.size == 0:
        raise ValueError("paired_bootstrap needs at least one shared row")
    diff = b - a
    lo, hi = _percentile_interval(_bootstrap_means(diff, resamples, seed), level)
    return float(diff.mean()), lo, hi


def no_discordance_interval(n: int, level: float = LEVEL) -> tuple[float, float]:
    """(lo, hi) for delta = acc(B) − acc(A) when none of `n` paired rows is discordant (every row scored alike).

    A bootstrap of such rows only ever draws zeros, a zero-width interval that reads like certainty. With
    π_b, π_c the probabilities that a row is discordant either way, delta = π_c − π_b and |delta| ≤ π_b + π_c,
    the discordance rate. Seeing 0 discordant rows of n, its exact (Clopper–Pearson) one-sided upper limit at
    `level` is u = 1 − (1 − level)^(1/n) (≈ 3/n at 95 %, the "rule of three"), so [−u, u] covers delta with
    probability ≥ level: the widest gap these n rows cannot rule out.
    """
    if n < 1:
        raise ValueError("no_discordance_interval needs at least one row")
    upper = 1.0 - (1.0 - level) ** (1.0 / n)
    return -upper, upper


# --------------------------------------------------------------------------- tests


def discordant(correct_a, correct_b) -> tuple[int, int]:
    """(b, c) for McNemar: b = rows A gets right and B wrong, c = rows B gets right and A wrong.

    Per-row scores in [0, 1] (a seed group's mean correctness) generalise this to a sign test:
    b counts rows where A scores higher, c rows where B does; ties drop out as concordant rows do.
    """
    a = np.asarray(correct_a, dtype=float)
    b = np.asarray(correct_b, dtype=float)
    return int(np.count_nonzero(a > b)), int(np.count_nonzero(b > a))


def mcnemar_exact(b: int, c: int) -> float:
    """McNemar's exact two-sided p-value: under H0 the b + c discordant rows split as Binomial(b + c, ½).

    p = min(1, 2 · P(X ≤ min(b, c))), X ~ Binomial(b + c, ½); p = 1 when there are no discordant rows.
    Exact integer arithmetic (Python's int / int is correctly rounded), so large counts do not underflow.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be non-negative, got b={b}, c={c}")
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    term, tail = 1, 1  # C(n, 0), running sum of C(n, j) for j ≤ k
    for j in range(k):
        term = term * (n - j) // (j + 1)
        tail += term
    return min(1.0, 2 * tail / 2**n)


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values, in the input order (None entries are skipped and stay None).

    With the m p-values sorted ascending, p_(1) ≤ … ≤ p_(m): adj_(i) = max_{j ≤ i} min(1, (m − j + 1) p_(j)).
    Rejecting where adj ≤ α controls the family-wise error rate at α (Holm 1979).
    """
    present = [(p, i) for i, p in enumerate(pvalues) if p is not None]
    adjusted: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(sorted(present)):
        running = max(running, min(1.0, (len(present) - rank) * p))
        adjusted[i] = running
    return adjusted


# --------------------------------------------------------------------------- transfer


def normalised_transfer(acc: Mapping[str, float | None], base_acc: Mapping[str, float | None],
                        reference: str = REFERENCE_SHIFT) -> dict[str, float | None]:
    """Per shift, the share of the in-domain improvement that carries over:

    gain(s) = acc(adapter, s) − acc(base, s);   transfer(s) = gain(s) / gain(in_domain)

    None where a value is missing or gain(in_domain) = 0 (undefined). transfer(in_domain) = 1 by
    construction; a negative value means the adapter made that shift worse while improving in-domain
    (or the reverse, when gain(in_domain) < 0).
    """
    reference_gain = _gain(acc.get(reference), base_acc.get(reference))
    out: dict[str, float | None] = {}
    for shift in acc:
        gain = _gain(acc.get(shift), base_acc.get(shift))
        out[shift] = None if gain is None or not reference_gain else gain / reference_gain
    return out


def _gain(acc: float | None, base_acc: float | None) -> float | None:
    return None if acc is None or base_acc is None else acc - base_acc


def differential_elicitation(acc: float | None, base_acc: float | None, target_acc: float | None) -> float | None:
    """GENIES' differential elicitation (Clymer et al. 2023) on one shift:

    DE = (acc(adapter, s) − acc(base, s)) / (acc(best run trained on s's data, s) − acc(base, s))

    the share of the improvement that training on the shift's own data achieves. None when a value is
    missing or the denominator is 0.
    """
    if acc is None or base_acc is None or target_acc is None or target_acc == base_acc:
        return None
    return (acc - base_acc) / (target_acc - base_acc)


def seed_spread(values: Sequence[float]) -> tuple[float, float | None]:
    """(mean, sample standard deviation) over seeds; the std is None for a single seed."""
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
