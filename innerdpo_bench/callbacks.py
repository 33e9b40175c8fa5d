"""Trainer callbacks of a training run: `metrics.jsonl` and `train.log` records, and the rich progress bar."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from transformers import TrainerCallback

from innerdpo_bench import rundir

log = logging.getLogger("innerdpo_bench")


class RunFilesCallback(TrainerCallback):
    """Write `metrics.jsonl` records and `train.log` lines (rank 0 only)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.summary: dict = {}

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if "train_runtime" in logs:
            self.summary = dict(logs)
            return
        record = {"step": state.global_step, **logs, "time": round(time.time(), 3)}  # unix s: the dashboard's ETA
        rundir.append_jsonl(self.run_dir / rundir.METRICS, record)
        keys = ("loss", "loss_output", "loss_hidden", "reward_acc", "pref_acc", "rewards_margin", "learning_rate")
        if not any(k in record for k in keys):
            return  # e.g. a validation record: EarlyStopping writes its own log line
        log.info("step %d %s", state.global_step, " ".join(f"{k}={record[k]:.4g}" for k in keys if k in record))


class RichProgressCallback(TrainerCallback):
    """A rich progress bar over optimiser steps, showing the latest loss and pair accuracy."""

    def __init__(self, title: str):
        self.title = title
        self.progress = None
        self.task = None

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                                 transient=False)
        self.progress.start()
        self.task = self.progress.add_task(self.title, total=state.max_steps, info="")

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(self.task, completed=state.global_step)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.progress is not None and logs and "loss" in logs:
            info = f"loss {logs['loss']:.4f}  acc {logs.get('reward_acc', float('nan')):.2f}"
            self.progress.update(self.task, info=info)

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
