"""What the dashboard reads, as plain data: store snapshots, training progress, configs, and growing files.

No Textual here: the app's thread workers call these functions and post the results as messages, and the
tests call them directly. The dashboard writes only intents, through `Store` (see `app.py`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from innerdpo_bench import rundir
from innerdpo_bench.config.naming import eval_name
from innerdpo_bench.config.spec import RunSpec
from innerdpo_bench.errors import UserError
from innerdpo_bench.progress import last_count_line, last_metrics_record
from innerdpo_bench.queue.runspec import base_spec
from innerdpo_bench.rundir import EVAL_LOG, TRAIN_LOG, RunPaths, TrainPaths
from innerdpo_bench.store import Run, Store

TAIL_BYTES = 64 * 1024          # how much of an existing log the detail screen shows at first
MAX_LINE_CHARS = 2000           # longer lines are cut: a runaway line must not stall the UI


@dataclass(frozen=True)
class Progress:
    """Where a run is: `phase` is queued | train | eval | done | failed | cancelled; `step` of `max_steps`
    comes from the last metrics.jsonl record; `eta_s` extrapolates the steps per second observed since the first
    logged step (records carry a `time`), else the time since the run started. While evaluating, `scoring` is the
    last count line of eval.log: (pass, requests done, of all), e.g. ("scoring with the base model", 120, 400).
    The harness scores all four shifts in one batch of requests, so this counts requests, not shifts."""

    phase: str
    step: int | None = None
    max_steps: int | None = None
    elapsed_s: float | None = None
    eta_s: float | None = None
    scoring: tuple[str, int, int] | None = None

    @property
    def eval_text(self) -> str:
        """"eval" and, once eval.log has a count, the pass, whose model and how far: "scoring base 30%",
        "samples adapter 2/12"."""
        if self.scoring is None:
            return "eval"
        stage, done, total = self.scoring
        if stage.startswith("generating samples with the "):
            who = stage.removeprefix("generating samples with the ").removesuffix(" model")
            return f"samples {who} {min(done, total)}/{total}"
        who = stage.removeprefix("scoring with the ").removesuffix(" model")
        return f"scoring {who} {min(done, total) / total:.0%}" if total else "eval"

    @property
    def fraction(self) -> float | None:
        if self.phase == "done":
            return 1.0
        if self.step is None or not self.max_steps:
            return None
        return min(1.0, self.step / self.max_steps)


@dataclass(frozen=True)
class Snapshot:
    """One poll of the store: every run (by id, with results) and the progress of each."""

    runs: list[Run]
    progress: dict[int, Progress] = field(default_factory=dict)
    polled_at: float = 0.0


# --------------------------------------------------------------------------- store and progress


def checkpoint_paths(run: Run) -> TrainPaths | None:
    """Where `innerdpo train` writes: RUN/checkpoint for a trained run; None for an eval-only run or before a
    worker claims the run."""
    if not run.run_dir or run.kind != "train_eval":
        return None
    return RunPaths.of(run).checkpoint


def progress_of(run: Run, now: float) -> Progress:
    """A run's progress from its spec (max_steps) and, while it runs, its checkpoint's status.json and
    metrics.jsonl (only running runs touch files: a poll reads hundreds of runs every second)."""
    max_steps = run.spec.train.max_steps if run.spec.train is not None else None
    if run.status == "queued":
        return Progress("queued", None, max_steps)
    if run.status != "running":
        elapsed = run.finished_at - run.started_at if run.finished_at and run.started_at else None
        if run.claims > 1 and elapsed is not None:
            elapsed = max(elapsed, _training_seconds(run) or 0.0)   # a retried run: every attempt's training
        return Progress(run.status, max_steps if run.status == "done" else None, max_steps, elapsed)
    elapsed = max(0.0, now - run.started_at) if run.started_at else None
    checkpoint = checkpoint_paths(run)
    if run.kind == "eval" or checkpoint is None:
        if run.kind != "eval":
            return Progress("train", None, max_steps, elapsed)
        return Progress("eval", None, max_steps, elapsed, scoring=_scoring(run))
    if rundir.read_status(checkpoint.root).get("state") == "complete":
        return Progress("eval", max_steps, max_steps, elapsed, scoring=_scoring(run))
    beat = rundir.read_progress(checkpoint.root)
    if beat is not None:
        return progress_from_beat(beat, max_steps, elapsed, now)
    record = last_metrics_record(checkpoint.metrics)   # a run trained before heartbeats
    step = int(record["step"]) if record is not None else None
    first = first_metrics_record(checkpoint.metrics) if record is not None else None
    last_time, first_time = _record_time(record), _record_time(first)
    if last_time is not None and first_time is not None and step and step > first["step"] and max_steps:
        # observed steps per second since the first logged step: model loading and warm-up do not count; a
        # resumed run's elapsed_s counts only training time, so a pause between attempts does not either
        spent = _seconds_between(first, record, first_time, last_time)
        rate = (step - first["step"]) / max(1e-9, spent)
        eta = max(0.0, max(0, max_steps - step) / rate - max(0.0, now - last_time))
    else:  # one record so far, or one written before records had a time: the time since the run started
        eta = elapsed / step * max(0, max_steps - step) if step and max_steps and elapsed is not None else None
    return Progress("train", step, max_steps, elapsed, eta)


def progress_from_beat(beat: dict[str, Any], max_steps: int | None, elapsed: float | None, now: float) -> Progress:
    """Training progress from its per-step heartbeat (progress.json): the step, and the ETA from the recent step
    rate (seconds per step over the last steps) times the steps left, less the time since the beat (at most one
    step's: a slow step does not make the ETA 0)."""
    step, total = beat["step"], beat.get("max_steps") or max_steps
    step_s, at = beat.get("step_s"), beat.get("time")
    if isinstance(beat.get("elapsed_s"), (int, float)) and elapsed is not None:
        elapsed = max(elapsed, float(beat["elapsed_s"]))   # a resumed run: the earlier attempts' training too
    eta = None
    if isinstance(step_s, (int, float)) and isinstance(at, (int, float)) and total:
        eta = max(0.0, max(0, total - step) * step_s - min(max(0.0, now - at), step_s))
    return Progress("train", step, total, elapsed, eta)


def _training_seconds(run: Run) -> float | None:
    """Training seconds over all of a run's attempts (metrics.jsonl's last `elapsed_s`, which a resumed attempt
    continues): a retried run's last claim alone misses the earlier attempts."""
    from innerdpo_bench.results.summaries import last_record

    record = last_record(run)
    value = record.get("elapsed_s") if record is not None else None
    return float(value) if isinstance(value, (int, float)) else None


def _scoring(run: Run) -> tuple[str, int, int] | None:
    """The eval stage's last count line (eval.log of the run directory), None before one or without a directory."""
    return last_count_line(RunPaths.of(run).eval_log) if run.run_dir else None


def _record_time(record: dict[str, Any] | None) -> float | None:
    """A metrics.jsonl record's wall-clock `time` as unix seconds (written as ISO 8601 UTC; a number is read
    as unix seconds), None without one."""
    value = record.get("time") if record is not None else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


def _seconds_between(first: dict[str, Any], last: dict[str, Any], first_time: float, last_time: float) -> float:
    """Training seconds between two records: their `elapsed_s` difference where both have it, else wall clock."""
    if all(isinstance(record.get("elapsed_s"), (int, float)) for record in (first, last)):
        return float(last["elapsed_s"]) - float(first["elapsed_s"])
    return last_time - first_time


def first_metrics_record(path: Path) -> dict[str, Any] | None:
    """The first JSON line of a metrics.jsonl that has a step."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                except ValueError:
                    return None
                if isinstance(record, dict) and "step" in record:
                    return record
    except OSError:
        return None
    return None


def load_snapshot(home: str | os.PathLike, clock: Callable[[], float]) -> Snapshot:
    """Read every run, then the progress files of the unfinished ones. One read-only store connection, closed after:
    the dashboard never creates, migrates or repairs a store (an empty one is `EmptyStore`, shown as broken)."""
    with Store(home, busy_timeout_s=5.0, readonly=True) as store:
        runs = store.list_runs()
    now = clock()
    progress = {run.id: progress_of(run, now) for run in runs}
    return Snapshot(runs, progress, now)


def format_duration(seconds: float | None) -> str:
    """45s, 12m05s, 3h05m; "-" when unknown."""
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


# --------------------------------------------------------------------------- config


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} → {"a.b": 1}: nested config sections as dotted keys."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def spec_config(spec: RunSpec) -> dict[str, Any]:
    """A run spec as flat config keys: the train options top-level (as config.json has them), the rest dotted."""
    train = spec.train_json()
    rest = {"eval": spec.eval.to_json(), "sweep": spec.sweep, "source_run": spec.source_run}
    return {**train, **flatten({key: value for key, value in rest.items() if value is not None})}


def run_config(run: Run) -> tuple[dict[str, Any], str]:
    """The run's config by the one rule (`config.spec`: the stored spec's values) and where it came from: once
    training has started, what it resolved and recorded in checkpoint/config.json (versions, resolved layers...)
    adds the keys the spec does not have; before that, the queued spec alone."""
    config = spec_config(run.spec)
    checkpoint = checkpoint_paths(run)
    if checkpoint is not None:
        try:
            return {**flatten(json.loads(checkpoint.config.read_text(encoding="utf-8"))), **config}, rundir.CONFIG
        except (OSError, ValueError):
            pass
    return config, "spec"


# What two runs' configs may differ in without being different experiments: where they log, checkpoint and
# cache, and the names derived from the rest.
NOISE = frozenset({"display_name", "output_dir", "report_to", "save_steps", "save_total_limit", "ref_cache",
                   "save_steps_resolved", "base_model_path", "name", "sweep"})


def is_noise(key: str) -> bool:
    return key in NOISE or key.startswith("versions.")


def differing_keys(config: dict[str, Any], baseline: dict[str, Any]) -> set[str]:
    """Keys whose value differs from the baseline's, or that only one of the two has; bookkeeping (`NOISE`) left out."""
    return {key for key in config.keys() | baseline.keys()
            if not is_noise(key) and config.get(key, ...) != baseline.get(key, ...)}


def comparable_config(run: Run) -> dict[str, Any]:
    """A run's settings from its spec (train options, then eval.* options), the same source for every run, so two
    runs compare key by key whatever stage each reached (config.json adds resolved values only a started run has)."""
    return {**run.spec.train_json(), **{f"eval.{key}": value for key, value in run.spec.eval.to_json().items()}}


def config_diff(run_a: Run, run_b: Run) -> list[tuple[str, str, str]]:
    """(key, A's value, B's value) for every setting that differs, bookkeeping left out, in key order."""
    a, b = comparable_config(run_a), comparable_config(run_b)
    return [(key, value_text(a.get(key)), value_text(b.get(key))) for key in sorted(differing_keys(a, b))]


def value_text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ",".join(str(item) for item in value)
    return str(value)


def eval_spec(run: Run) -> RunSpec:
    """An eval-only run spec that scores `run`'s model again: a trained run's RUN/checkpoint (training must
    be complete), or the checkpoint an eval-only run scored. The train config is carried over so the
    results table shows the method and seed; UserError when there is nothing to evaluate yet."""
    evaluation = run.spec.eval
    if run.kind == "train_eval":
        checkpoint = checkpoint_paths(run)
        if checkpoint is None or rundir.read_status(checkpoint.root).get("state") != "complete":
            raise UserError(f"run {run.id} has no finished checkpoint to evaluate yet (status {run.status})")
        target = str(checkpoint.root)
    else:
        target = str(evaluation.checkpoint or "")
    spec = base_spec(target, evaluation.suite, evaluation.limit, evaluation.samples)
    return spec.replace(name=eval_name(run.name, run.id), train=run.spec.train, source_run=run.id)


# --------------------------------------------------------------------------- growing files


class FileFollower:
    """Reads the lines appended to a file since the last call (a log or metrics.jsonl), like `tail -f`.

    The first call returns at most the last TAIL_BYTES; a partial last line waits for its newline; a file
    that shrank (rotated, recreated) is read again from the start and `reset` is set.
    """

    def __init__(self, path: Path, tail_bytes: int | None = TAIL_BYTES) -> None:
        self.path = path
        self.offset: int | None = None
        self.tail_bytes = tail_bytes
        self.partial = b""

    def read(self) -> tuple[list[str], bool]:
        """(new complete lines, reset) where reset means the earlier lines no longer apply."""
        try:
            size = self.path.stat().st_size
        except OSError:
            return [], False
        reset = False
        if self.offset is None or size < self.offset:
            reset = self.offset is not None
            self.offset = max(0, size - self.tail_bytes) if self.tail_bytes is not None else 0
            self.partial = b""
            skip_first = self.offset > 0
        else:
            skip_first = False
        if size == self.offset:
            return [], reset
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            chunk = handle.read(size - self.offset)
        self.offset += len(chunk)
        data = self.partial + chunk
        *complete, self.partial = data.split(b"\n")
        if skip_first and complete:
            complete = complete[1:]  # we started mid-line
        lines = [line.decode("utf-8", errors="replace").rstrip("\r")[:MAX_LINE_CHARS] for line in complete]
        return lines, reset


def parse_metrics(lines: list[str]) -> list[dict[str, Any]]:
    """metrics.jsonl lines → records that have a step (malformed lines skipped)."""
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and "step" in record:
            records.append(record)
    return records


TRAINING_LOG = f"{rundir.CHECKPOINT}/{TRAIN_LOG}"   # the training step lines (train.log is the subprocess's output)


def log_paths(run: Run) -> dict[str, Path]:
    """The run's logs by name (checkpoint/train.log for a trained run, train.log, eval.log, worker.log); empty
    before a worker claims it."""
    if not run.run_dir:
        return {}
    paths = RunPaths.of(run)
    training = {TRAINING_LOG: paths.checkpoint.train_log} if run.kind == "train_eval" else {}
    return {**training, **paths.logs}


def default_log(run: Run) -> str:
    """The log worth watching: the most recently written of train.log and eval.log."""
    paths = log_paths(run)
    candidates = [name for name in (TRAINING_LOG, TRAIN_LOG, EVAL_LOG) if name in paths and paths[name].exists()]
    if not candidates:
        return EVAL_LOG if run.kind == "eval" else TRAIN_LOG
    return max(candidates, key=lambda name: paths[name].stat().st_mtime_ns)
