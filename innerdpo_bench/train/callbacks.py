"""Trainer callbacks of a training run: `metrics.jsonl` and `train.log` records, and the progress display (rich's
bar on a terminal, plain lines elsewhere)."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from pathlib import Path

from transformers import TrainerCallback

from innerdpo_bench import rundir
from innerdpo_bench.progress import ProgressLines, is_terminal
from innerdpo_bench.train import trackers

log = logging.getLogger("innerdpo_bench")


class RunFilesCallback(TrainerCallback):
    """Write `metrics.jsonl` records and `train.log` lines (rank 0 only).

    Every record carries `time` (UTC wall clock, ISO 8601) and `elapsed_s` (training seconds since the run
    started, over all its attempts: `clock`, a resumed run's `resume.Resumable.clock`). The last record is the
    Trainer's runtime summary (train_runtime, train_samples_per_second, train_steps_per_second, train_loss,
    for this attempt's steps) with `resumed_from_step`."""

    def __init__(self, run_dir: Path, clock=None):
        self.run_dir = run_dir
        self.summary: dict = {}
        started = time.monotonic()
        self.clock = clock or (lambda: time.monotonic() - started)
        self.resumed_from = 0

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        stamp = {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                 "elapsed_s": round(self.clock(), 3)}
        if "train_runtime" in logs:
            self.summary = dict(logs)
            rundir.append_jsonl(self.run_dir / rundir.METRICS, {"step": state.global_step, **logs, **stamp,
                                                                 "resumed_from_step": self.resumed_from})
            return
        record = {"step": state.global_step, **logs, **stamp}
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
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

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


class PlainProgressCallback(TrainerCallback):
    """Progress as plain lines (`progress.ProgressLines`) on stdout, about every 10% of the steps, with the
    latest loss and pair accuracy: what `innerdpo train` prints when its output is not a terminal."""

    def __init__(self, title: str, say=None):
        self.title = title
        self.say = say or (lambda line: print(line, flush=True))
        self.lines: ProgressLines | None = None
        self.info = ""

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.lines = ProgressLines(self.say)
            self.lines.update(f"training {self.title}", 0, state.max_steps)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.info = f"loss {logs['loss']:.4f} acc {logs.get('reward_acc', float('nan')):.2f}"

    def on_step_end(self, args, state, control, **kwargs):
        if self.lines is not None:
            self.lines.update(f"training {self.title}", state.global_step, state.max_steps, self.info)


def progress_callback(title: str) -> TrainerCallback:
    """rich's bar when stdout is a terminal, else plain lines."""
    return RichProgressCallback(title) if is_terminal() else PlainProgressCallback(title)
def flat(config: dict) -> dict[str, str | int | float | bool]:
    """A config with nested values as JSON strings (what wandb's config and mlflow's params take)."""
    return {key: value if isinstance(value, (str, int, float, bool)) else json.dumps(value, default=str)
            for key, value in config.items() if value is not None}


class TrackerConfigCallback(TrainerCallback):
    """After the trackers' own `on_train_begin` (they set up there), give each the run's resolved config
    (`trackers.py`): a TensorBoard text record, wandb's config, mlflow's params."""

    def __init__(self, config: dict, handler):
        self.config = config
        self.handler = handler

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        for callback in self.handler.callbacks:
            kind = type(callback).__name__
            if kind == "TensorBoardCallback" and callback.tb_writer is not None:
                text = json.dumps(self.config, indent=2, sort_keys=True, default=str)
                callback.tb_writer.add_text("innerdpo/config", "```\n" + text + "\n```")
            elif kind == "WandbCallback" and getattr(callback, "_wandb", None) is not None and callback._wandb.run:
                callback._wandb.config.update(flat(self.config), allow_val_change=True)
            elif kind == "MLflowCallback" and getattr(callback, "_ml_flow", None) is not None:
                callback._ml_flow.log_params({f"innerdpo.{k}": str(v)[:500] for k, v in flat(self.config).items()})


def attach_trackers(trainer, names: list[str], run_dir: Path, config: dict, resumed_from: int = 0) -> None:
    """Point the Trainer's TensorBoard callback at RUN/tensorboard (purging events after `resumed_from`) and add
    the callback that gives each tracker the resolved config (`trackers.py` says what each gets)."""
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback):
            callback.logging_dir = str(Path(run_dir) / trackers.TENSORBOARD_DIR)
            if resumed_from:
                callback.tb_writer = callback._SummaryWriter(log_dir=callback.logging_dir, purge_step=resumed_from + 1)
    if names:
        trainer.add_callback(TrackerConfigCallback(config, trainer.callback_handler))
