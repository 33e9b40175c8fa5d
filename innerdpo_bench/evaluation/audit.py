"""Label-orientation audit: an exact binomial test of each shift's accuracy against chance, flagging shifts far below it.

A model that prefers `chosen` no more often than a coin would scores about 0.5; one that scores far *below*
0.5 systematically prefers the rejected text, which usually means the dataset's `chosen` is the less
plausible completion for that model: a label-orientation error (the hub's ETHICS justice set, whose chosen is
the unreasonable excuse, gave the seed's base model 0.27). With k correct rows of n (strict accuracy, ties
count as wrong), the two-sided exact binomial test against p = 1/2 gives

    p_value = min(1, 2 · min(P[X ≤ k], P[X ≥ k])),   X ~ Binomial(n, 1/2),   P[X = i] = C(n, i) / 2ⁿ,

computed in exact integer arithmetic (for p = 1/2 this equals the "sum of outcomes no more likely than k"
rule of `scipy.stats.binomtest`). A shift is `below_chance` when k / n < 0.5 and p_value < 0.01.
Pure Python, no torch: eval.json, the runs caption, the eval table and the TUI can all call it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from fractions import Fraction
from math import comb

CHANCE = 0.5
BELOW_CHANCE_P = 0.01
WARNING = ("chosen may be the less plausible text for this model; check the dataset's orientation "
           "(which completion is `chosen`)")


@dataclass(frozen=True)
class ShiftAudit:
    """The audit of one shift: k correct of n, the exact two-sided p-value against 0.5, and the verdict."""

    correct: int
    n: int
    acc: float
    p_value: float
    below_chance: bool

    def to_dict(self) -> dict:
        return asdict(self)


def binomial_p_value(correct: int, n: int) -> float:
    """Two-sided exact binomial p-value of `correct` successes in `n` trials against p = 1/2 (module docstring)."""
    if n < 1 or not 0 <= correct <= n:
        raise ValueError(f"need 0 <= correct <= n and n >= 1, got correct={correct}, n={n}")
    lower = sum(comb(n, i) for i in range(0, correct + 1))          # 2ⁿ · P[X ≤ k]
    upper = sum(comb(n, i) for i in range(correct, n + 1))          # 2ⁿ · P[X ≥ k]
    return float(min(Fraction(1), Fraction(2 * min(lower, upper), 2 ** n)))


def audit_shift(correct: int, n: int, alpha: float = BELOW_CHANCE_P) -> ShiftAudit:
    """`ShiftAudit` of k = `correct` of `n`: below chance when k / n < 0.5 and the p-value < `alpha`."""
    p_value = binomial_p_value(correct, n)
    return ShiftAudit(correct, n, correct / n, p_value, correct / n < CHANCE and p_value < alpha)


def correct_count(acc: float, n: int) -> int:
    """The k behind a recorded accuracy k / n (eval.json keeps acc and n)."""
    correct = round(acc * n)
    if abs(correct - acc * n) > 1e-6 * max(n, 1):
        raise ValueError(f"accuracy {acc} is not a whole number of rows out of {n}")
    return correct


def audit_counts(counts: Mapping[str, tuple[int, int]], alpha: float = BELOW_CHANCE_P) -> dict[str, ShiftAudit]:
    """{shift: ShiftAudit} from {shift: (correct, n)}."""
    return {shift: audit_shift(correct, n, alpha) for shift, (correct, n) in counts.items()}


def audit_shifts(shifts: Mapping[str, Mapping], alpha: float = BELOW_CHANCE_P) -> dict[str, ShiftAudit]:
    """{shift: ShiftAudit} from eval.json-style `{shift: {"acc": k / n, "n": n, ...}}` (strict `acc`)."""
    return audit_counts({shift: (correct_count(m["acc"], int(m["n"])), int(m["n"])) for shift, m in shifts.items()},
                        alpha)


def recorded(shifts: Mapping[str, Mapping]) -> dict[str, ShiftAudit]:
    """The verdicts an evaluation recorded (eval.json's `below_chance` and `chance_p` beside `acc` and `n`), as
    `ShiftAudit`s, without testing again; shifts without a verdict are left out."""
    return {shift: ShiftAudit(correct_count(m["acc"], int(m["n"])), int(m["n"]), m["acc"], m["chance_p"],
                              m["below_chance"])
            for shift, m in shifts.items() if "below_chance" in m}


def warnings(audits: Mapping[str, ShiftAudit]) -> list[str]:
    """One line per below-chance shift, for a table caption or a terminal."""
    return [f"{shift}: accuracy {a.acc:.3f} (n={a.n}) is below chance (exact binomial p = {a.p_value:.2g}); {WARNING}"
            for shift, a in audits.items() if a.below_chance]
