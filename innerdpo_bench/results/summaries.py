"""Training summary columns of the results table, read from a run's metrics.jsonl: the last logged loss, reward
margin and reward accuracy, and the training time over all attempts (`elapsed_s`). Registered in `columns.COLUMNS`;
a file is read once per change (cached by its size and modification time), only its tail."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

from innerdpo_bench.progress import last_metrics_record
from innerdpo_bench.results.columns import COLUMNS, Column, finite_or_none
from innerdpo_bench.rundir import RunPaths
from innerdpo_bench.store import Run

SUMMARIES = {   # column → (metrics.jsonl key, help)
    "final_loss": ("loss", "training: the last logged loss"),
    "final_margin": ("rewards_margin", "training: the last logged reward margin β·(Δlogp chosen − Δlogp rejected)"),
    "final_acc": ("reward_acc", "training: the last logged reward accuracy (pairs with a positive margin)"),
    "train_s": ("elapsed_s", "training: seconds of training over all attempts (metrics.jsonl elapsed_s)"),
}


def metrics_path(run: Run) -> Path | None:
    """A trained run's checkpoint/metrics.jsonl; None for an eval-only run or one no worker has claimed."""
    if not run.run_dir or run.kind != "train_eval":
        return None
    return RunPaths.of(run).checkpoint.metrics


@functools.lru_cache(maxsize=65536)
def _last_step_record(path: str, size: int, mtime_ns: int) -> dict[str, Any] | None:
    return last_metrics_record(Path(path), lambda record: "loss" in record and "train_runtime" not in record)


def last_record(run: Run) -> dict[str, Any] | None:
    """The last training record (with a loss) of a run's metrics.jsonl, None without one."""
    path = metrics_path(run)
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return _last_step_record(str(path), stat.st_size, stat.st_mtime_ns)


def _summary(key: str):
    def value(run: Run) -> float | None:
        record = last_record(run)
        return finite_or_none(record.get(key)) if record is not None else None
    return value


COLUMNS.update({name: Column(help_, _summary(key), numeric=True) for name, (key, help_) in SUMMARIES.items()})
