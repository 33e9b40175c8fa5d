"""Training curves from a run's metrics.jsonl: one (steps, values) series per logged metric, for the dashboard's
charts and `innerdpo plot --curves` (pure reading; a half-written last line or a malformed one is skipped)."""

from __future__ import annotations

import json
import math
from pathlib import Path

# The curves worth a chart, in the order offered: the objective and its terms, the reward margin, the pair
# accuracies, the policy's NLL of chosen completions, the learning rate.
CURVE_METRICS = ("loss", "loss_output", "loss_hidden", "rewards_margin", "reward_acc", "pref_acc", "nll_chosen_pi",
                 "learning_rate")
CURVE_HELP = {"loss": "training loss", "loss_output": "output (DPO/IPO) term", "loss_hidden": "hidden-state term",
              "rewards_margin": "reward margin", "reward_acc": "reward accuracy (pairs)",
              "pref_acc": "preference accuracy (pairs)", "nll_chosen_pi": "policy NLL of chosen",
              "learning_rate": "learning rate"}
Series = tuple[list[int], list[float]]
NOT_CURVES = frozenset({"step", "elapsed_s", "epoch", "time", "resumed_from_step"})   # bookkeeping, not curves


def parse_series(lines: list[str]) -> dict[str, Series]:
    """metrics.jsonl lines → {metric: (steps, values)}: training records only (not the runtime summary, not a
    validation record), finite numbers only, a step's later record replacing an earlier one (a resumed run)."""
    by_step: dict[str, dict[int, float]] = {}
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or not isinstance(record.get("step"), int) or "train_runtime" in record \
                or "loss" not in record:
            continue
        for key, value in record.items():
            if key in NOT_CURVES or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                by_step.setdefault(key, {})[record["step"]] = float(value)
    return {key: (sorted(points), [points[step] for step in sorted(points)]) for key, points in by_step.items()}


def read_series(path: Path | None) -> dict[str, Series]:
    """`parse_series` of a metrics.jsonl; empty when there is none (a run that has not trained yet)."""
    if path is None:
        return {}
    try:
        return parse_series(Path(path).read_text(encoding="utf-8", errors="replace").splitlines())
    except OSError:
        return {}
