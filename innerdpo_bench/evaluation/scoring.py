"""The metric registry: every way a preference row is scored correct, defined once (torch-free, numpy only).

With ℓ_c, ℓ_r the adapter's summed continuation log-probs of chosen and rejected, b_c, b_r the base
model's (the same model, adapter off), and n_c, n_r their token counts floored at 1, a row is correct
when, strictly (a tie is wrong):

    acc             ℓ_c / n_c > ℓ_r / n_r                   eval.json `acc` (open_pref_eval's default)
    acc_sum         ℓ_c > ℓ_r                               eval.json `acc_sum`
    reward_acc      (ℓ_c − b_c) / n_c > (ℓ_r − b_r) / n_r   implicit reward per token
    reward_acc_sum  ℓ_c − b_c > ℓ_r − b_r                   implicit reward, reward-bench's DPO score

The harness (`tasks/utils.pair_metrics`, one row of Python floats) and the statistics commands (whole
shifts of numpy arrays) score through the same functions. The old spellings `mean`, `sum`,
`reward_mean`, `reward_sum` are aliases (`resolve_metric`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from innerdpo_bench.errors import unknown_choice

AGGREGATIONS = ("mean", "sum")


# --------------------------------------------------------------------------- the rules


def per_token(logp, n) -> np.ndarray:
    """logp / max(n, 1): a summed log-prob as nats per token (an empty completion counts as one token)."""
    return np.asarray(logp, dtype=float) / np.maximum(np.asarray(n, dtype=float), 1.0)


def _check_agg(agg: str) -> None:
    if agg not in AGGREGATIONS:
        raise ValueError(f"agg must be one of {AGGREGATIONS}, got {agg!r}")


def logprob_correct(logp_chosen, logp_rejected, n_chosen, n_rejected, agg: str = "mean") -> np.ndarray:
    """Reference-free correctness per row, as the harness scores it (strict >, ties wrong):

    mean: logp_c / n_c > logp_r / n_r   (eval.json `acc`)
    sum:  logp_c > logp_r               (eval.json `acc_sum`)
    """
    _check_agg(agg)
    if agg == "sum":
        return np.asarray(logp_chosen, dtype=float) > np.asarray(logp_rejected, dtype=float)
    return per_token(logp_chosen, n_chosen) > per_token(logp_rejected, n_rejected)


def implicit_reward_correct(logp_chosen, logp_rejected, base_logp_chosen, base_logp_rejected, n_chosen,
                            n_rejected, agg: str = "sum") -> np.ndarray:
    """Implicit-reward correctness per row: the DPO reward r(y) = logp_adapter(y) − logp_base(y) (β = 1;
    β > 0 does not change a comparison) ranks chosen above rejected, strictly:

    sum:  logp(c) − logp_base(c)  >  logp(r) − logp_base(r)                    (reward-bench's DPO score)
    mean: (logp(c) − logp_base(c)) / n_c  >  (logp(r) − logp_base(r)) / n_r     (per token)

    For the base model itself every reward is 0, so every row is a tie and wrong.
    """
    _check_agg(agg)
    reward_chosen = np.asarray(logp_chosen, dtype=float) - np.asarray(base_logp_chosen, dtype=float)
    reward_rejected = np.asarray(logp_rejected, dtype=float) - np.asarray(base_logp_rejected, dtype=float)
    if agg == "mean":
        reward_chosen, reward_rejected = per_token(reward_chosen, n_chosen), per_token(reward_rejected, n_rejected)
    return reward_chosen > reward_rejected


class PairLogprobs(Protocol):
    """What a scorer reads: per-row arrays (a shift's `ShiftRows`) or the scalars of one row (`RowRecord`)."""

    logp_chosen: Any
    logp_rejected: Any
    n_chosen: Any
    n_rejected: Any
    base_logp_chosen: Any
    base_logp_rejected: Any


@dataclass(frozen=True)
class RowRecord:
    """One scored preference row, the one record type of the package: the harness scores one
    (`tasks/utils.pair_metrics`, where the base model's log-probs, the shift, the row id and the verdict are not
    known yet: None), `innerdpo eval` writes one per line of eval_rows.jsonl (every field set: `ROW_FIELDS`), and
    the statistics read a shift of them back as arrays (`results.rowsfile.ShiftRows`, the same field names)."""

    logp_chosen: float                       # summed log-prob of the chosen completion under the adapter
    logp_rejected: float
    n_chosen: int                            # completion token counts (floored at 1 by the rules)
    n_rejected: int
    base_logp_chosen: float | None = None    # the same under the base model (adapter off)
    base_logp_rejected: float | None = None
    shift: str | None = None
    row_id: str | None = None
    correct: bool | None = None              # the harness's `acc` verdict


# A rows-file line: every field, in this order, with its JSON type (an int is a float; a bool is no number).
ROW_FIELDS = ("shift", "row_id", "logp_chosen", "logp_rejected", "n_chosen", "n_rejected", "base_logp_chosen",
              "base_logp_rejected", "correct")
ROW_TYPES: dict[str, type] = {"shift": str, "row_id": str, "logp_chosen": float, "logp_rejected": float,
                              "n_chosen": int, "n_rejected": int, "base_logp_chosen": float,
                              "base_logp_rejected": float, "correct": bool}


def base_model_pair(rows: PairLogprobs) -> RowRecord:
    """The base model's log-probs in the adapter's place: what a reference-free rule scores for the base."""
    return RowRecord(rows.base_logp_chosen, rows.base_logp_rejected, rows.n_chosen, rows.n_rejected)


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Metric:
    name: str                                      # the public name (--metric, JSON, captions)
    rule: str                                      # the rule in words, as captions state it
    axis_label: str                                # the plot's y axis
    score: Callable[[PairLogprobs], np.ndarray]    # correct per row: bool [rows], or a bool for one row
    harness_key: str | None = None                 # the eval.json metric it reproduces
    needs_adapter: bool = False                    # scores logp_adapter − logp_base
    aliases: tuple[str, ...] = ()                  # old spellings, still accepted


METRICS: dict[str, Metric] = {metric.name: metric for metric in (
    Metric("acc", "mean per-token log-prob of chosen > rejected (strict)", "accuracy",
           lambda r: logprob_correct(r.logp_chosen, r.logp_rejected, r.n_chosen, r.n_rejected, "mean"),
           harness_key="acc", aliases=("mean",)),
    Metric("acc_sum", "summed log-prob of chosen > rejected (strict)", "accuracy (summed log-prob)",
           lambda r: logprob_correct(r.logp_chosen, r.logp_rejected, r.n_chosen, r.n_rejected, "sum"),
           harness_key="acc_sum", aliases=("sum",)),
    Metric("reward_acc", "implicit reward, per token: (logp − logp_base)(chosen)/n_c > (logp − logp_base)"
           "(rejected)/n_r (strict; base = adapter off)", "implicit-reward accuracy",
           lambda r: implicit_reward_correct(r.logp_chosen, r.logp_rejected, r.base_logp_chosen,
                                             r.base_logp_rejected, r.n_chosen, r.n_rejected, "mean"),
           needs_adapter=True, aliases=("reward_mean",)),
    Metric("reward_acc_sum", "implicit reward: logp(chosen) − logp_base(chosen) > logp(rejected) − "
           "logp_base(rejected) (strict; base = adapter off; reward-bench's DPO score)",
           "implicit-reward accuracy (summed)",
           lambda r: implicit_reward_correct(r.logp_chosen, r.logp_rejected, r.base_logp_chosen,
                                             r.base_logp_rejected, r.n_chosen, r.n_rejected, "sum"),
           needs_adapter=True, aliases=("reward_sum",)),
)}


@dataclass(frozen=True)
class Margin:
    """A per-row number rather than a verdict: the harness reports its mean (with stderr) beside the accuracies."""

    name: str                                      # the eval.json key
    rule: str
    value: Callable[[PairLogprobs], np.ndarray]    # float [rows], or a float for one row


MARGINS: dict[str, Margin] = {margin.name: margin for margin in (
    Margin("logratio", "logp_c / n_c − logp_r / n_r (mean-token log-ratio, nats per token)",
           lambda r: per_token(r.logp_chosen, r.n_chosen) - per_token(r.logp_rejected, r.n_rejected)),
)}
ALIASES: dict[str, str] = {alias: metric.name for metric in METRICS.values() for alias in metric.aliases}
HARNESS_METRICS = tuple(name for name, metric in METRICS.items() if metric.harness_key)    # acc, acc_sum
BASE_METRICS = tuple(name for name, metric in METRICS.items() if not metric.needs_adapter)   # a base model has these
REWARD_METRICS = tuple(name for name, metric in METRICS.items() if metric.needs_adapter)     # reward_acc(_sum)
# What the harness reports per shift (eval.json's keys): its accuracies, then the margins.
HARNESS_KEYS = (*(METRICS[name].harness_key for name in HARNESS_METRICS), *MARGINS)


def resolve_metric(name: str, allowed: Iterable[str] = METRICS, kind: str = "--metric") -> str:
    """The public name of a metric given by its name or an old spelling; UserError with a "did you mean"
    hint when it is unknown or not one of `allowed` (public names; a table may add its own, e.g. transfer)."""
    allowed = list(allowed)
    canonical = ALIASES.get(name, name)
    if canonical not in allowed:
        raise unknown_choice(kind, name, allowed, aliases={a: m for a, m in ALIASES.items() if m in allowed})
    return canonical


def lookup(name: str) -> Metric:
    """The registry entry for a public name or an alias."""
    return METRICS[resolve_metric(name)]


def metric_help(names: Iterable[str] = METRICS, extra: str = "") -> str:
    """--help text: each metric with its rule (then `extra`), and the deprecated spellings it still accepts."""
    names = [name for name in names if name in METRICS]
    parts = [f"{name} ({METRICS[name].rule})" for name in names]
    old = [f"{alias} = {METRICS[name].name}" for name in names for alias in METRICS[name].aliases]
    return ("; ".join(parts) + (f"; {extra}" if extra else "") + "."
            + (f" Deprecated spellings, still accepted: {', '.join(old)}." if old else ""))
