"""Resumable checkpoints of a training run: what one holds beyond the Trainer's files, the marker that says it is
whole, picking the newest intact one, and the sampler that replays an interrupted epoch's order.

`--save-steps N` makes the Trainer write `RUN/checkpoints/checkpoint-N/` (adapter, optimizer.pt, scheduler.pt,
rng_state*.pth, trainer_state.json); `CheckpointCallback.on_save` then adds ours and, last, the marker:

    transforms.json, transforms.safetensors   the InnerDPO transform (its ETHER parameters)
    learned_sign.safetensors                  the learned_sign align method's θ
    early_best.safetensors                    early stopping's best weights so far (with --eval-fraction)
    innerdpo_state.json                       the interrupted epoch's sample order, early-stopping counters, elapsed s
    complete.json                             written last (atomically): size and sha256 of every other file

A checkpoint without `complete.json` (killed mid-save) is never picked; one whose files do not match their
recorded sha256 is corrupt: `pick_checkpoint` falls back to the previous one, else to a fresh start, and logs
why. Choices the issue left open, made here:
  * default `--save-steps`: 10 % of `--max-steps`, rounded up to a multiple of `--logging-steps`, so a checkpoint
    step is a logging step; an explicit N that is not one forces a log record at each checkpoint (the metrics
    since the last record would otherwise be lost to a resume); both an uninterrupted and a resumed run write it;
  * no checkpoint at the final step (the adapter is saved then anyway), and a run that completes deletes
    `checkpoints/`: its adapter is the result;
  * rotation (`--save-total-limit`) is ours, after the marker, so the last intact checkpoint is removed only
    once a newer one is whole (the Trainer's own rotation would delete it first);
  * the sampler: transformers' length-grouped sampler draws each epoch's order from the global RNG, which the
    Trainer restores only after it skips the trained batches, so a mid-epoch resume would draw another order.
    `ReplaySampler` keeps the order it handed out; a resumed run replays it for the interrupted epoch, and the
    order of every uninterrupted run is unchanged.

Preemption drill: with INNERDPO_STOP_AT_STEP=K in its environment a training process stops itself (SIGSTOP)
right after writing step K's metrics record, before that step's checkpoint, as a preemption would find it; the
tests then SIGKILL it, knowing exactly which checkpoints exist.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch.utils.data import Sampler
from transformers import TrainerCallback

from innerdpo_bench import files, rundir, runstate
from innerdpo_bench.config import TrainConfig
from innerdpo_bench.errors import UserError
# the checkpoints' layout lives in rundir (the worker reads it without importing torch); re-exported here
from innerdpo_bench.runstate import CHECKPOINT_MARKER as MARKER
from innerdpo_bench.runstate import CHECKPOINT_NAME as _NAME
from innerdpo_bench.runstate import CHECKPOINTS, checkpoints_dir, has_checkpoint, list_checkpoints  # noqa: F401

log = logging.getLogger("innerdpo_bench")

STATE = "innerdpo_state.json"
EARLY_BEST = "early_best.safetensors"


# --------------------------------------------------------------------------- the sampler


class ReplaySampler(Sampler):
    """Wraps the Trainer's train sampler: hands out its order unchanged and remembers it (`order`), or, once, a
    given `replay` order (the interrupted epoch of a resumed run)."""

    def __init__(self, inner: Sampler, replay: list[int] | None = None):
        self.inner = inner
        self.replay = replay
        self.order: list[int] = []

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self):
        if self.replay is not None:
            self.order, self.replay = self.replay, None
        else:
            self.order = [int(i) for i in self.inner]
        return iter(self.order)

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(epoch)


# --------------------------------------------------------------------------- what a checkpoint holds


@dataclass
class Resumable:
    """The training state outside the Trainer's own checkpoint files, saved with each checkpoint.

    `clock()` is the run's elapsed training seconds (over all attempts); `replay` the order a resumed run's
    first epoch replays; `resumed_from` the step this attempt started from (0 for a fresh run)."""

    transform: torch.nn.Module | None = None
    learned_sign: torch.nn.Module | None = None
    early: object | None = None                       # validation.EarlyStopping
    sampler: ReplaySampler | None = None              # set when the Trainer builds its dataloader
    replay: list[int] | None = None
    elapsed_offset: float = 0.0
    resumed_from: int = 0
    started: float = field(default_factory=time.monotonic)

    def clock(self) -> float:
        return self.elapsed_offset + time.monotonic() - self.started

    def save(self, folder: Path, state) -> None:
        """Write our files into a Trainer checkpoint folder (rank 0)."""
        from innerdpo_bench.methods.transforms import transform_state

        if self.transform is not None:
            runstate.save_transform(folder, *transform_state(self.transform))
        if self.learned_sign is not None:
            runstate.save_learned_sign(folder, self.learned_sign.layers, self.learned_sign.logits)
        mid_epoch = not float(state.epoch or 0).is_integer()  # at an epoch's end the next epoch draws afresh
        record = {"step": state.global_step, "elapsed_s": self.clock(),
                  "sampler_order": self.sampler.order if mid_epoch and self.sampler is not None else None}
        early = self.early
        if early is not None:
            record["early"] = {name: getattr(early, name) for name in
                               ("best_loss", "best_step", "misses", "stopped_early", "last_eval_step",
                                "stop_reason")}
            if early._best is not None:
                files.atomic_save_tensors(folder / EARLY_BEST, {str(i): t.contiguous() for i, t in enumerate(early._best)})
        rundir.write_json(folder / STATE, record)

    def load(self, folder: Path, max_steps: int) -> int:
        """Restore our state from a checkpoint folder in place (the Trainer restores the rest) and log from which
        step the run goes on; that step."""
        record = json.loads((folder / STATE).read_text())
        with torch.no_grad():
            if self.transform is not None and (folder / rundir.TRANSFORMS_WEIGHTS).is_file():
                self.transform.load_state_dict(runstate.load_transform(folder)[1])
            if self.learned_sign is not None:
                self.learned_sign.logits.copy_(runstate.load_learned_sign(folder)[1])
        if self.early is not None and "early" in record:
            for name, value in record["early"].items():
                setattr(self.early, name, value)
            if (folder / EARLY_BEST).is_file():
                best = load_file(str(folder / EARLY_BEST))
                self.early._best = [best[str(i)] for i in range(len(best))]
        self.replay = record["sampler_order"]
        self.elapsed_offset = float(record["elapsed_s"])
        self.resumed_from = int(record["step"])
        self.started = time.monotonic()
        log.info("resuming from %s: step %d of %d", folder.name, self.resumed_from, max_steps)
        return self.resumed_from


# --------------------------------------------------------------------------- markers, picking, rotation


def mark_complete(folder: Path) -> None:
    """Write `complete.json` last: the size and sha256 of every file in the folder (recursively), whose modes
    follow the umask (`files.share_modes`)."""
    files.share_modes(folder)
    listing = {str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": files.sha256_file(p)}
               for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MARKER}
    rundir.write_json(folder / MARKER, {"written": rundir.now_iso(), "files": listing})


def check(folder: Path) -> str | None:
    """None if the checkpoint is whole and intact, else why not."""
    try:
        listing = json.loads((folder / MARKER).read_text())["files"]
    except FileNotFoundError:
        return "it has no completion marker (killed while saving?)"
    except (OSError, ValueError, KeyError, TypeError):
        return f"its {MARKER} is unreadable"
    if STATE not in listing:
        return f"it lacks {STATE}"
    for name, expected in listing.items():
        path = folder / name
        try:
            if path.stat().st_size != expected["size"] or files.sha256_file(path) != expected["sha256"]:
                return f"{name} differs from what was saved"
        except OSError:
            return f"{name} is missing"
    return None


def pick_checkpoint(run_dir: Path) -> Path | None:
    """The newest intact checkpoint, logging each newer one skipped and why; None (with a log line) without one."""
    skipped = []
    for step, folder in reversed(list_checkpoints(run_dir)):
        reason = check(folder)
        if reason is None:
            if skipped:
                log.warning("%s; falling back to %s", "; ".join(skipped), folder.name)
            return folder
        skipped.append(f"{folder.name} is not usable: {reason}")
    log.warning("%s; starting from step 0", "; ".join(skipped) if skipped else "no checkpoint to resume from")
    return None


def rotate(run_dir: Path, keep: int, newest: Path | None = None) -> None:
    """Keep the newest `keep` intact checkpoints; remove older ones and any unmarked or newer-than-`newest`
    leftovers (half-written by a killed attempt)."""
    kept = 0
    for step, folder in reversed(list_checkpoints(run_dir)):
        newer = newest is not None and step > int(_NAME.match(newest.name).group(1))
        if not newer and (folder / MARKER).is_file() and kept < keep:
            kept += 1
            continue
        shutil.rmtree(folder, ignore_errors=True)


class CheckpointCallback(TrainerCallback):
    """Checkpoint at the Trainer's save steps (not at the final one), with our state and the marker written
    after the Trainer's files; force a log record at each checkpoint step; rotate."""

    def __init__(self, run_dir: Path, resumable: Resumable, keep: int):
        self.save_started = time.monotonic()
        self.run_dir = Path(run_dir)
        self.resumable = resumable
        self.keep = keep

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save:
            if state.global_step >= state.max_steps:
                control.should_save = False   # train() writes the adapter now; a checkpoint would be deleted at once
            else:
                control.should_log = True
                self.save_started = time.monotonic()
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs and os.environ.get("INNERDPO_STOP_AT_STEP") == str(state.global_step):
            os.kill(os.getpid(), signal.SIGSTOP)

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        folder = checkpoints_dir(self.run_dir) / f"checkpoint-{state.global_step}"
        ours = time.monotonic()
        self.resumable.save(folder, state)
        mark_complete(folder)
        rotate(self.run_dir, self.keep, folder)
        done = time.monotonic()
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        log.info("checkpoint %s saved in %.2fs (%.2fs of it our state, checksums and rotation), %.1f MB",
                 folder.name, done - self.save_started, done - ours, size / 1e6)


# --------------------------------------------------------------------------- a run directory to resume


def truncate_metrics(path: Path, step: int) -> None:
    """Keep the metrics.jsonl records up to `step` (what the resumed attempt will not write again)."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by the kill
        if isinstance(record, dict) and record.get("step", 0) <= step and "train_runtime" not in record:
            kept.append(line + "\n")
    files.atomic_write_text(path, "".join(kept))


def check_same_run(run_dir: Path, options: dict) -> None:
    """UserError when the options differ from the ones the run directory was trained with (other than
    bookkeeping ones, `TrainConfig.names(role="bookkeeping")`): a resumed run must be the same run."""
    try:
        stored = json.loads((Path(run_dir) / rundir.CONFIG).read_text())
    except (OSError, ValueError):
        return  # killed before config.json: nothing to compare, and nothing to resume either
    changed = [f"{name} ({stored.get(name)!r} → {value!r})" for name, value in options.items()
               if name not in TrainConfig.names(role="bookkeeping") and name in stored and stored[name] != value]
    if changed:
        raise UserError(f"--resume: {run_dir} was trained with other options: {', '.join(changed)}; resume it with "
                        "its own (omit the flags) or train into another --output-dir")


def stored_options(run_dir: Path, fields: set[str]) -> dict:
    """The TrainConfig fields of a run directory's config.json (`innerdpo train --resume --output-dir RUN`)."""
    path = Path(run_dir) / rundir.CONFIG
    try:
        stored = json.loads(path.read_text())
    except OSError:
        raise UserError(f"--resume: {run_dir} holds no {rundir.CONFIG}; give METHOD and the options, or --config") from None
    except ValueError:
        raise UserError(f"--resume: {path} is not valid JSON") from None
    return {name: value for name, value in stored.items() if name in fields}


def open_attempt(run_dir: Path, cfg, resume_run: bool, rank: int) -> bool | None:
    """Open the run directory for this attempt, marking it running (rank 0): True to resume an existing one (checked
    to be the same run: `check_same_run`), False for a fresh one (`prepare_run_dir`: an existing non-empty one
    is refused unless `resume_run`), None when `resume_run` finds it complete (nothing to do)."""
    resuming = resume_run and run_dir.is_dir() and any(run_dir.iterdir())
    if resuming and rundir.read_status(run_dir).get("state") == "complete":
        log.warning("%s is complete already; nothing to resume", run_dir)
        return None
    if rank == 0:
        if resuming:  # config.json holds the canonical method and the resolved output loss
            check_same_run(run_dir, {**cfg.to_dict(), "method": cfg.canonical_method,
                                     "output_loss": cfg.resolved_output_loss})
        else:
            rundir.prepare_run_dir(run_dir)
        rundir.write_status(run_dir, "running", **({} if resuming else {"started": rundir.now_iso()}))
    return resuming


def start_attempt(run_dir: Path) -> Path | None:
    """Prepare an existing run directory for another attempt: the checkpoint to resume from (None: from step 0),
    newer or broken checkpoints removed, metrics.jsonl cut back to that step. Rank 0, with train.log attached."""
    folder = pick_checkpoint(run_dir)
    rotate(run_dir, keep=10**9, newest=folder) if folder is not None else \
        shutil.rmtree(checkpoints_dir(run_dir), ignore_errors=True)
    step = int(_NAME.match(folder.name).group(1)) if folder is not None else 0
    truncate_metrics(Path(run_dir) / rundir.METRICS, step)
    for leftover in (rundir.ADAPTER + ".tmp",):
        shutil.rmtree(Path(run_dir) / leftover, ignore_errors=True)
    return folder
