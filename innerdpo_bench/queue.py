"""The queue worker: claim runs from the store and run each as `train` then `eval` subprocesses that log into its run directory.

A run directory is `HOME/runs/<id>-<slug>/`:

    worker.log               what workers did with the run: claims, commands, exit codes, requeues, errors
    train.log, eval.log      the subprocesses' stdout and stderr, appended over attempts (a file, never a pipe)
    worker.json              the subprocess running now (host, pid, stage), so a later attempt can stop a leftover
    checkpoint/              `innerdpo train --output-dir`: status.json, config.json, adapter/, eval.json, ...
    checkpoint.attempt-N/    an earlier attempt's unfinished checkpoint, moved aside and kept
    eval.json                eval-only runs (base models): `innerdpo eval BASE --output RUN/eval.json`

The checkpoint is a subdirectory because `train` refuses a non-empty --output-dir and the worker's logs
exist before train starts. A later attempt reuses a checkpoint whose status.json says `complete` (only
eval runs again), and moves any other aside: nothing that finished is redone or lost.

One claimed run, step by step: (re)create the run directory (a queued run whose directory was deleted
gets a fresh one, noted in worker.log); stop a leftover subprocess of an earlier attempt; run train and
then eval, each in its own process group (`start_new_session`), heartbeating every `heartbeat_s`;
read eval.json, `record_results`, `finish` done. A failed stage finishes the run `failed` with the
one-line reason (status.json's error, else the log's error line).

What stops a subprocess: a pending cancel (heartbeat False, `cancel_requested`) → SIGTERM to its
group, SIGKILL after `grace_s`, run `cancelled`; a lost claim (requeued as stale, removed) → the same,
and the run is left to its new owner; the worker's `stop` event (SIGTERM or Ctrl-C to `innerdpo
worker`) → the same, and the run goes back to the queue with `release` (its attempt counted), so a
shutdown never waits for a long training run and never loses one. On Linux a subprocess also gets
SIGTERM when its worker dies, even by SIGKILL (PR_SET_PDEATHSIG), so a killed worker leaves no
orphan holding the GPU; the run stays `running` until some worker's `requeue_stale(stale_after_s)`
(at start, between runs, and every `stale_after_s` while busy) re-queues it, or fails it after
`max_attempts`. All workers of one home must use the same `stale_after_s`.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from innerdpo_bench import rundir
from innerdpo_bench.errors import UserError
from innerdpo_bench.store import Run, Store, resolve_home

RUNS_DIR = "runs"
CHECKPOINT = "checkpoint"
WORKER_LOG = "worker.log"
EVAL_LOG = "eval.log"
CHILD = "worker.json"
TRAIN_ONLY_KEYS = ("output_dir", "quiet")   # the worker sets these itself

Say = Callable[[str], None]


# --------------------------------------------------------------------------- specs (what `queue add` stores)


def _absolute_if_path(value: str | None) -> str | None:
    """An existing relative path made absolute (the worker runs elsewhere); anything else as given."""
    if value and Path(value).expanduser().exists():
        return str(Path(value).expanduser().resolve())
    return value


def check_eval_options(suite: str | None, limit: int | None) -> None:
    """UserError now, at queue time, for a suite or row limit that `innerdpo eval` would refuse later."""
    from innerdpo_bench import suites

    suites.suite_refs(suite, None)
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}")


def train_specs(config: dict[str, Any], seeds: list[int] | None = None, suite: str | None = None,
                limit: int | None = None) -> list[dict[str, Any]]:
    """One run spec per seed (`seeds` overrides config["seed"]), each validated as `innerdpo train` would.

    A spec is {"name": display name, "train": every TrainConfig field but output_dir, "eval": {"suite",
    "limit"}}; the method is stored by its canonical name, existing relative paths made absolute.
    """
    from innerdpo_bench.config import TrainConfig, display_name

    check_eval_options(suite, limit)
    specs = []
    for seed in seeds if seeds else [config.get("seed", 0)]:
        cfg = TrainConfig(**{**config, "seed": seed}).validate()
        cfg.method = cfg.canonical_method
        cfg.base_model = _absolute_if_path(cfg.base_model)
        cfg.dataset = _absolute_if_path(cfg.dataset)
        train = {key: value for key, value in cfg.to_dict().items() if key not in TRAIN_ONLY_KEYS}
        specs.append({"name": display_name(cfg), "train": train, "eval": {"suite": suite, "limit": limit}})
    return specs


def base_spec(base_model: str, suite: str | None = None, limit: int | None = None) -> dict[str, Any]:
    """An eval-only run of a base model (method "none"): the base-model row of the results table."""
    check_eval_options(suite, limit)
    if not base_model.strip():
        raise UserError("BASE_MODEL is empty; give a hub id, a model directory, or tiny-random")
    return {"name": "none", "eval": {"checkpoint": _absolute_if_path(base_model), "suite": suite, "limit": limit}}


def parse_seeds(text: str | None) -> list[int] | None:
    """"1,2,3" → [1, 2, 3]; UserError naming --seeds otherwise."""
    if text is None:
        return None
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--seeds takes comma-separated integers like 1,2,3, not {text!r}") from None
    if not seeds:
        raise UserError("--seeds is empty; give comma-separated integers like 1,2,3")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {text!r} repeats a seed")
    return seeds


def queue_order(runs: Iterable[Run]) -> list[Run]:
    """Running (oldest first), then queued in claim order, then finished runs by id."""
    runs = list(runs)
    running = sorted((run for run in runs if run.status == "running"), key=lambda run: (run.started_at or 0, run.id))
    queued = sorted((run for run in runs if run.status == "queued"), key=lambda run: (run.priority, run.id))
    rest = [run for run in runs if run.status not in ("running", "queued")]
    return running + queued + rest


# --------------------------------------------------------------------------- commands and paths


def slug(run: Run) -> str:
    """File-name-safe label for the run directory, e.g. `hs-none-InnerDPO-align-logodds-s1`."""
    label = run.name
    seed = run.spec.get("train", {}).get("seed")
    if seed is not None:
        label += f"-s{seed}"
    elif run.kind == "eval":
        label += "-" + Path(str(run.spec.get("eval", {}).get("checkpoint", ""))).name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-.")[:80] or "run"


def default_run_dir(home: Path, run: Run) -> Path:
    return home / RUNS_DIR / f"{run.id}-{slug(run)}"


def eval_json_path(run: Run, run_dir: Path) -> Path:
    return run_dir / (CHECKPOINT if run.kind == "train_eval" else "") / rundir.EVAL


def _flags(options: dict[str, Any]) -> list[str]:
    """{"max_steps": 3, "filter_sinks": False} → ["--max-steps", "3", "--no-filter-sinks"]; None is left out."""
    argv = []
    for key, value in options.items():
        if value is None:
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        else:
            argv += [flag, str(value)]
    return argv


def stage_command(run: Run, stage: str, run_dir: Path) -> list[str]:
    """The argv of a run's `train` or `eval` subprocess (`sys.executable -m innerdpo_bench ...`).

    Every key of spec["train"] becomes a flag, so a bad key fails in train with its own usage error."""
    python = [sys.executable, "-m", "innerdpo_bench"]
    evaluation = run.spec.get("eval", {})
    eval_flags = _flags({"suite": evaluation.get("suite"), "limit": evaluation.get("limit")})
    if stage == "train":
        train = {key: value for key, value in run.spec.get("train", {}).items() if key not in TRAIN_ONLY_KEYS}
        method = train.pop("method", None)
        return [*python, "train", str(method), *_flags(train), "--output-dir", str(run_dir / CHECKPOINT), "--quiet"]
    if run.kind == "train_eval":
        return [*python, "eval", str(run_dir / CHECKPOINT), *eval_flags]
    return [*python, "eval", str(evaluation.get("checkpoint")), *eval_flags, "--output", str(run_dir / rundir.EVAL)]


# --------------------------------------------------------------------------- processes


_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_worker() -> None:
    """preexec_fn (Linux): SIGTERM this child when the worker thread that started it dies, even by SIGKILL."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _terminate(proc: subprocess.Popen, grace_s: float) -> int:
    """SIGTERM the subprocess's group, SIGKILL it after `grace_s`; the exit code."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        _signal_group(proc.pid, signal.SIGKILL)
        return proc.wait()


def _cmdline(pid: int) -> str | None:
    """The process's command line (Linux /proc), or None if it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace") or None


def _describe_exit(stage: str, code: int) -> str:
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        return f"{stage} was killed by {name}" + (" (out of memory?)" if code == -signal.SIGKILL else "")
    return f"{stage} exited with code {code}"


def error_line(log_text: str) -> str:
    """The line of a subprocess log that says what went wrong: our `error: ...` line, typer's boxed usage
    error, else the last line (a traceback's exception). Box-drawing characters are stripped."""
    lines = [line.strip(" \t│╭╮╰╯─") for line in log_text.splitlines()]
    lines = [line for line in lines if line]
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].lower().startswith("error:"):
            return lines[index][len("error:"):].strip()
        if lines[index] == "Error" and index + 1 < len(lines):
            return lines[index + 1]
    return lines[-1][:500] if lines else ""


# --------------------------------------------------------------------------- the worker


@dataclass(frozen=True)
class WorkerOptions:
    poll_s: float = 2.0             # idle wait between claims
    stale_after_s: float = 60.0     # silence after which a running run is requeued (same for all workers)
    grace_s: float = 10.0           # SIGTERM → SIGKILL
    max_attempts: int = 3           # claims before a run that keeps going stale is failed
    once: bool = False              # exit when nothing is queued or running instead of polling
    max_runs: int | None = None     # claims per worker process (all devices together)

    @property
    def heartbeat_s(self) -> float:
        """Several heartbeats fit in `stale_after_s`, and never more than 5 s apart."""
        return max(0.1, min(5.0, self.stale_after_s / 4))

    def validate(self) -> WorkerOptions:
        for name in ("poll_s", "stale_after_s", "grace_s"):
            if not getattr(self, name) > 0:
                raise UserError(f"--{name[:-2].replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.max_runs is not None and self.max_runs < 1:
            raise UserError(f"--max-runs must be at least 1, got {self.max_runs}")
        if self.max_attempts < 1:
            raise UserError(f"--max-attempts must be at least 1, got {self.max_attempts}")
        return self


class _Budget:
    """The --max-runs claims shared by one process's device loops."""

    def __init__(self, max_runs: int | None) -> None:
        self.left = max_runs
        self.lock = threading.Lock()

    @property
    def spent(self) -> bool:
        return self.left is not None and self.left <= 0

    def claim(self, store: Store, worker: str) -> Run | None:
        with self.lock:
            if self.spent:
                return None
            run = store.claim_next(worker)
            if run is not None and self.left is not None:
                self.left -= 1
            return run


class _Failed(Exception):
    """A stage failed; the message is the run's one-line error."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _Interrupted(Exception):
    """A stage was stopped: `reason` is "stopped" (worker shutdown), "cancelled" or "lost"."""

    def __init__(self, reason: str, exit_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.exit_code = reason, exit_code


class Worker:
    """One claim loop on one device (None: inherit CUDA_VISIBLE_DEVICES; "cpu": hide every GPU)."""

    def __init__(self, home: str | os.PathLike | None, device: str | None, options: WorkerOptions,
                 stop: threading.Event, say: Say = lambda message: None, budget: _Budget | None = None) -> None:
        self.home = resolve_home(home)
        self.device = device
        self.options = options
        self.stop = stop
        self.say = say
        self.budget = budget or _Budget(options.max_runs)
        self.host = socket.gethostname()
        self.name = f"{self.host}:{os.getpid()}:{device or 'any'}"
        self.store: Store | None = None
        self.processed = 0

    # ---------------------------------------------------------------- loop

    def loop(self) -> int:
        """Claim and process runs until stopped, out of budget, or (with `once`) drained; runs processed."""
        self.store = Store(self.home)
        try:
            self._requeue_stale()
            while not self.stop.is_set():
                run = self.budget.claim(self.store, self.name)
                if run is None:
                    if self.budget.spent or (self.options.once and self._drained()):
                        break
                    self.stop.wait(self.options.poll_s)
                    self._requeue_stale()
                    continue
                self.process(run)
                self.processed += 1
                self._requeue_stale()
        finally:
            self.store.close()
        return self.processed

    def _drained(self) -> bool:
        counts = self.store.counts()
        return counts["queued"] == 0 and counts["running"] == 0

    def _requeue_stale(self) -> None:
        for run_id in self.store.requeue_stale(self.options.stale_after_s, self.options.max_attempts):
            run = self.store.get_run(run_id)
            message = (f"run {run_id}: its worker stopped heartbeating for over {self.options.stale_after_s:g}s; "
                       f"now {run.status}" + (f" ({run.error})" if run.status == "failed" else ""))
            self.say(message)
            if run.run_dir:
                self._note(Path(run.run_dir), message, best_effort=True)

    # ---------------------------------------------------------------- one run

    def process(self, run: Run) -> str:
        """Run a claimed run to its end; the status it ended in ("queued" if handed back, "lost")."""
        run_dir = Path(run.run_dir) if run.run_dir else self._new_run_dir(run)
        self.say(f"run {run.id} ({run.name}) attempt {run.attempts} on {self.name}: {run_dir}")
        try:
            self._prepare(run, run_dir)
            if run.kind == "train_eval":
                self._train(run, run_dir)
            self._stage(run, "eval", run_dir, run_dir / EVAL_LOG)
            return self._record(run, run_dir)
        except _Failed as failure:
            return self._end(run, run_dir, "failed", str(failure), failure.exit_code)
        except _Interrupted as stop:
            return self._interrupted(run, run_dir, stop)
        except UserError:
            raise  # the store itself failed (locked, corrupt): the worker stops with that one line
        except OSError as err:
            where = f"{err.filename}: " if err.filename else ""
            return self._end(run, run_dir, "failed", f"cannot write the run directory ({where}{err.strerror or err})")
        except Exception as err:  # a worker bug must not leave the run `running`
            self._note(run_dir, traceback.format_exc(), best_effort=True)
            return self._end(run, run_dir, "failed", f"worker error: {type(err).__name__}: {err}")

    def _new_run_dir(self, run: Run) -> Path:
        """HOME/runs/<id>-<slug>, or <id>-<slug>.N if that holds files (a store deleted and started afresh
        reuses ids; an old run's complete checkpoint must never be taken for this run's)."""
        base = path = default_run_dir(self.home, run)
        suffix = 1
        while path.exists() and any(path.iterdir()):
            suffix += 1
            path = base.with_name(f"{base.name}.{suffix}")
        return path

    def _prepare(self, run: Run, run_dir: Path) -> None:
        missing = run.run_dir is not None and not run_dir.is_dir()
        run_dir.mkdir(parents=True, exist_ok=True)
        if run.run_dir is None:
            self.store.set_run_dir(run.id, run_dir)
        if missing:
            self.say(f"run {run.id}: its directory {run_dir} was missing (deleted?); recreated it")
            self._note(run_dir, "the run directory was missing (deleted?); recreated it, earlier logs are gone")
        self._note(run_dir, f"attempt {run.attempts} claimed by {self.name}")
        self._stop_leftover(run, run_dir)

    def _train(self, run: Run, run_dir: Path) -> None:
        checkpoint = run_dir / CHECKPOINT
        if rundir.read_status(checkpoint).get("state") == "complete":
            self._note(run_dir, f"{checkpoint} is complete from an earlier attempt; not training again")
            return
        if checkpoint.exists():
            aside = next(run_dir / f"{CHECKPOINT}.attempt-{n}" for n in range(1, 10_000)
                         if not (run_dir / f"{CHECKPOINT}.attempt-{n}").exists())
            checkpoint.rename(aside)
            self._note(run_dir, f"moved the unfinished {checkpoint.name}/ of an earlier attempt to {aside.name}/")
        code = self._stage(run, "train", run_dir, run_dir / rundir.TRAIN_LOG)
        status = rundir.read_status(checkpoint)
        if status.get("state") != "complete":
            raise _Failed(f"train exited with code {code} but {checkpoint / rundir.STATUS} says "
                          f"{status.get('state', 'nothing')}", code)

    def _stage(self, run: Run, stage: str, run_dir: Path, log_path: Path) -> int:
        """Run one subprocess to its end, heartbeating; its exit code if 0, else _Failed / _Interrupted."""
        if self.stop.is_set():  # shutting down between stages: do not start what would be stopped at once
            raise _Interrupted("stopped")
        command = stage_command(run, stage, run_dir)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if self.device is not None:
            env["CUDA_VISIBLE_DEVICES"] = "" if self.device == "cpu" else self.device
        self._note(run_dir, f"{stage}: {' '.join(command)}")
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"\n===== {rundir.now_iso()} attempt {run.attempts} {stage} on {self.name} =====\n")
            log.flush()
            start = log.tell()
            try:
                proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        cwd=run_dir, env=env, start_new_session=True,
                                        preexec_fn=_die_with_worker if _LIBC is not None else None)
            except OSError as err:
                raise _Failed(f"cannot start {stage} ({command[0]}): {err.strerror or err}") from None
        try:
            rundir.write_json(run_dir / CHILD, {"host": self.host, "pid": proc.pid, "stage": stage,
                                                "attempt": run.attempts, "worker": self.name})
            code = self._wait(run, proc)
        finally:
            if proc.poll() is None:  # an exception while waiting: never leave the subprocess behind
                _terminate(proc, self.options.grace_s)
            _signal_group(proc.pid, signal.SIGKILL)  # stray grandchildren of a finished stage
        self._note(run_dir, f"{stage} exited with code {code}")
        if code == 0:
            return code
        status_error = rundir.read_status(run_dir / CHECKPOINT).get("error") if stage == "train" else None
        with open(log_path, encoding="utf-8", errors="replace") as log:
            log.seek(start)
            reason = status_error or error_line(log.read())
        raise _Failed(_describe_exit(stage, code) + (f": {reason}" if reason else f" (see {log_path})"), code)

    def _wait(self, run: Run, proc: subprocess.Popen) -> int:
        """Wait for the subprocess, heartbeating; stop it on a cancel, a lost claim or the worker's stop."""
        next_beat = time.monotonic() + self.options.heartbeat_s
        next_requeue = time.monotonic() + self.options.stale_after_s
        warned = False
        while True:
            try:
                return proc.wait(timeout=min(0.2, self.options.heartbeat_s))
            except subprocess.TimeoutExpired:
                pass
            reason = "stopped" if self.stop.is_set() else None
            if reason is None and time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self.options.heartbeat_s
                try:
                    if not self.store.heartbeat(run.id, self.name):
                        reason = "cancelled" if self._holds(run, cancel_requested=True) else "lost"
                    if time.monotonic() >= next_requeue:
                        next_requeue = time.monotonic() + self.options.stale_after_s
                        self._requeue_stale()
                except UserError as err:  # a lock held past the busy timeout: keep the run going, say so once
                    if not warned:
                        self.say(f"run {run.id}: heartbeat failed ({err}); still running it")
                        warned = True
            if reason is not None:
                raise _Interrupted(reason, _terminate(proc, self.options.grace_s))

    def _holds(self, run: Run, cancel_requested: bool | None = None) -> bool:
        try:
            current = self.store.get_run(run.id)
        except UserError:  # removed
            return False
        holds = current.status == "running" and current.worker == self.name
        return holds and (cancel_requested is None or current.cancel_requested == cancel_requested)

    def _record(self, run: Run, run_dir: Path) -> str:
        path = eval_json_path(run, run_dir)
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
            shifts, coherence, provenance = report["shifts"], report.get("coherence") or {}, report.get("provenance")
            if not isinstance(shifts, dict) or not shifts:
                raise ValueError("no shifts")
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise _Failed(f"eval exited with code 0 but {path} is missing or unreadable ({err})") from None
        if not self._holds(run):  # requeued or removed while eval ran: its new owner records
            raise _Interrupted("lost")
        results = {**shifts, "coherence": coherence}
        results = {shift: {metric: float("nan") if value is None else value for metric, value in metrics.items()
                           if value is None or isinstance(value, (int, float))}
                   for shift, metrics in results.items() if isinstance(metrics, dict)}
        self.store.record_results(run.id, results, provenance)
        return self._end(run, run_dir, "done", None, 0)

    def _interrupted(self, run: Run, run_dir: Path, stop: _Interrupted) -> str:
        if stop.reason == "cancelled":
            return self._end(run, run_dir, "cancelled", "cancelled while running", stop.exit_code)
        if stop.reason == "stopped":
            if self.store.release(run.id, self.name):
                self.say(f"run {run.id}: worker stopping; the run is back in the queue")
                self._note(run_dir, f"worker stopping: attempt {run.attempts} stopped, run returned to the queue",
                           best_effort=True)
                return "queued"
            if self._holds(run, cancel_requested=True):
                return self._end(run, run_dir, "cancelled", "cancelled while running", stop.exit_code)
        self.say(f"run {run.id}: no longer held by {self.name} (requeued as stale, or removed); stopped it")
        self._note(run_dir, f"attempt {run.attempts}: the run is no longer held by {self.name} (requeued as stale, "
                            "or removed); stopped its subprocess", best_effort=True)
        return "lost"

    def _end(self, run: Run, run_dir: Path, status: str, error: str | None, exit_code: int | None = None) -> str:
        if not self.store.finish(run.id, self.name, status, exit_code=exit_code, error=error):
            self._note(run_dir, f"attempt {run.attempts} ended {status} but the run is no longer held by "
                                f"{self.name}; left to its new owner", best_effort=True)
            return "lost"
        self.say(f"run {run.id} {status}" + (f": {error}" if error else ""))
        self._note(run_dir, f"attempt {run.attempts} {status}" + (f": {error}" if error else ""), best_effort=True)
        return status

    # ---------------------------------------------------------------- files

    def _note(self, run_dir: Path, message: str, best_effort: bool = False) -> None:
        """Append a timestamped line to RUN/worker.log (OSError propagates unless best_effort)."""
        try:
            with open(run_dir / WORKER_LOG, "a", encoding="utf-8") as log:
                log.write(f"{rundir.now_iso()} {message.rstrip()}\n")
        except OSError:
            if not best_effort:
                raise

    def _stop_leftover(self, run: Run, run_dir: Path) -> None:
        """Stop a subprocess an earlier attempt left running on this host (its worker was killed before
        PR_SET_PDEATHSIG could act, or it is not Linux, or the old worker hangs), before reusing its files."""
        try:
            child = json.loads((run_dir / CHILD).read_text(encoding="utf-8"))
            pid, host = int(child["pid"]), child["host"]
        except (OSError, ValueError, KeyError, TypeError):
            return
        if host != self.host or str(run_dir) not in (_cmdline(pid) or ""):
            return
        self._note(run_dir, f"stopping pid {pid}, the {child.get('stage')} of attempt {child.get('attempt')}, "
                            "still running")
        for signum in (signal.SIGTERM, signal.SIGKILL):
            _signal_group(pid, signum)
            deadline = time.monotonic() + self.options.grace_s
            while _cmdline(pid) is not None and time.monotonic() < deadline:
                time.sleep(0.1)
            if _cmdline(pid) is None:
                return


def default_devices() -> list[str]:
    """One worker per visible GPU (CUDA_VISIBLE_DEVICES if set, else torch's count); ["cpu"] without one."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        devices = [device.strip() for device in visible.split(",") if device.strip() and device.strip() != "-1"]
        return devices or ["cpu"]
    import torch

    return [str(index) for index in range(torch.cuda.device_count())] or ["cpu"]


def parse_devices(text: str | None) -> list[str]:
    """"0,1" → ["0", "1"]; "cpu" → ["cpu"]; None → default_devices(). UserError for repeats or junk."""
    if text is None:
        return default_devices()
    devices = [part.strip() for part in text.split(",") if part.strip()]
    if not devices or any(not (device.isdigit() or device == "cpu") for device in devices):
        raise UserError(f"--devices takes GPU indices like 0,1 (or cpu), not {text!r}")
    if len(set(devices)) != len(devices):
        raise UserError(f"--devices {text!r} repeats a device")
    return devices


def serve(home: str | os.PathLike | None, devices: list[str], options: WorkerOptions, stop: threading.Event,
          say: Say = lambda message: None) -> int:
    """Run one Worker loop per device, each on its own thread with its own store connection, until all end;
    the number of runs processed. The caller sets `stop` (from a signal handler) to shut down. A store error
    in one loop stops them all and is re-raised here."""
    options.validate()
    Store(home).close()  # a corrupt or newer store: one clear error before any thread starts
    budget = _Budget(options.max_runs)
    errors: list[BaseException] = []
    workers = [Worker(home, device, options, stop, say, budget) for device in devices]

    def run(worker: Worker) -> None:
        try:
            worker.loop()
        except BaseException as err:  # noqa: BLE001 (handed to the main thread)
            errors.append(err)
            stop.set()

    threads = [threading.Thread(target=run, args=(worker,), name=worker.name, daemon=True) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():  # join in slices so the main thread keeps handling signals
            thread.join(0.2)
    if errors:
        raise errors[0]
    return sum(worker.processed for worker in workers)


# --------------------------------------------------------------------------- submitit (SLURM)


def submitit_job(home: str, options: WorkerOptions, devices: list[str] | None = None) -> int:
    """What one submitit job runs: a worker over the GPUs its allocation shows (CUDA_VISIBLE_DEVICES), until
    the queue is drained; the number of runs it processed. Its lines go to the job's stdout log."""
    return serve(home, devices or default_devices(), dataclasses.replace(options, once=True), threading.Event(),
                 say=lambda message: print(message, flush=True))


def submit_workers(home: str | os.PathLike | None, options: WorkerOptions, jobs: int = 1, cluster: str | None = None,
                   gpus_per_job: int | None = None, timeout_min: int = 24 * 60, partition: str | None = None,
                   devices: list[str] | None = None) -> list:
    """Start `jobs` workers through submitit (`innerdpo worker --submitit`); their submitit Job objects.

    `cluster` None lets submitit's AutoExecutor choose: SLURM where `sbatch` exists, else local subprocesses
    that outlive this process ("local"; "debug" runs in this process, for tests). `gpus_per_job` defaults to
    1 on SLURM and to no GPU locally. Each job runs `submitit_job`; its log is HOME/submitit/<job id>_0_log.out.
    A job killed by SLURM (preemption, time limit) takes its subprocesses with it and its run is re-queued
    when it goes stale, as with any killed worker.
    """
    try:
        import submitit
    except ImportError:
        raise UserError("--submitit needs the optional dependency submitit: pip install 'innerdpo-bench[slurm]'") from None
    options.validate()
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    home = resolve_home(home)
    Store(home).close()  # a bad store fails here, not in every job
    executor = submitit.AutoExecutor(folder=home / "submitit", cluster=cluster)
    if gpus_per_job is None and executor.cluster == "slurm":
        gpus_per_job = 1
    executor.update_parameters(name="innerdpo-worker", timeout_min=timeout_min, gpus_per_node=gpus_per_job,
                               slurm_partition=partition)
    return [executor.submit(submitit_job, str(home), options, devices) for _ in range(jobs)]
