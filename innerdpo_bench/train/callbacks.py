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


CURVE_POINTS = 1000   # metrics.jsonl records per run at most (about): every step up to it, then every k-th step
RATE_WINDOW = 20      # the heartbeat's seconds per step: over the last this many steps


def curve_every(max_steps: int, logging_steps: int) -> int:
    """The Trainer's logging interval: every step while the run has at most CURVE_POINTS steps, else every
    ceil(max_steps / CURVE_POINTS)-th, and never sparser than --logging-steps (which sets train.log's lines)."""
    return max(1, min(logging_steps, -(-max_steps // CURVE_POINTS)))


class RunFilesCallback(TrainerCallback):
    """Write `metrics.jsonl` records, `train.log` lines and the `progress.json` heartbeat (rank 0 only).

    A record is written at every logging step (`curve_every`: each step up to CURVE_POINTS, so a 20-step run has
    20 points), a train.log line every `log_every` steps (--logging-steps) and at the first and last. Every record
    carries `time` (UTC wall clock, ISO 8601) and `elapsed_s` (training seconds since the run started, over all its
    attempts: `clock`, a resumed run's `resume.Resumable.clock`). The last record is the Trainer's runtime summary
    (train_runtime, train_samples_per_second, train_steps_per_second, train_loss, for this attempt's steps) with
    `resumed_from_step`. progress.json is replaced after every optimiser step: {step, max_steps, time (unix
    seconds), elapsed_s, step_s (seconds per step over the last RATE_WINDOW steps, None before two)}, what the
    dashboard's progress and ETA read."""

    def __init__(self, run_dir: Path, clock=None, log_every: int = 1):
        self.run_dir = run_dir
        self.summary: dict = {}
        started = time.monotonic()
        self.clock = clock or (lambda: time.monotonic() - started)
        self.resumed_from = 0
        self.log_every = max(1, log_every)
        self.recent: list[tuple[int, float]] = []   # (step, elapsed_s) of the last steps

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.recent = [(state.global_step, self.clock())]
            self._beat(state)

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.recent = [*self.recent, (state.global_step, self.clock())][-(RATE_WINDOW + 1):]
            self._beat(state)

    def _beat(self, state) -> None:
        (first_step, first_s), (last_step, last_s) = self.recent[0], self.recent[-1]
        step_s = (last_s - first_s) / (last_step - first_step) if last_step > first_step else None
        beat = {"step": state.global_step, "max_steps": state.max_steps, "time": round(time.time(), 3),
                "elapsed_s": round(last_s, 3), "step_s": None if step_s is None else round(step_s, 4)}
        try:
            rundir.write_progress(self.run_dir, beat)
        except OSError:   # a heartbeat is best effort: the dashboard falls back to metrics.jsonl
            pass

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
        step = state.global_step
        if step % self.log_every and step > 1 and step < state.max_steps:
            return  # a curve point: metrics.jsonl has it, train.log keeps --logging-steps' pace
        log.info("step %d %s", step, " ".join(f"{k}={record[k]:.4g}" for k in keys if k in record))


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
