"""The queue worker: claim runs from the store and run each as `train` then `eval` subprocesses that log into its run directory.

The run directory's layout is `rundir.RunPaths`. A later attempt reuses a checkpoint whose status.json says
`complete` (only eval runs again), resumes one that holds a training checkpoint (`train --resume`: only the
remaining steps run, `resume.py`), and moves any other aside: nothing that finished is redone or lost.

One claimed run, step by step: (re)create the run directory (a queued run whose directory was deleted
gets a fresh one, noted in worker.log); stop a leftover subprocess of an earlier attempt; write the stored
training config to RUN/train_spec.json and run `innerdpo train --config` on it, then `innerdpo eval` into this
claim's RUN/eval.attempt-N/, each in its own process group (`start_new_session`), heartbeating every
`heartbeat_s`; read the staged eval.json, then `Store.complete`: in one transaction, check the claim, publish it as
the run's eval.json, record the results, end the run done. A failed stage finishes the run `failed` with the
one-line reason (status.json's error, else the log's error line); one killed by a signal from outside (out of
memory, a scheduler: `process.killed`) is queued again while the run's --retries allow (`Store.retry_or_fail`).

Fencing: the run's claim count at claim time is this attempt's token (`store/held.py`). Before each step that
writes what the run shares (its directory, a stage, the store) and after each stage, `_check_claim` heartbeats by
that token; every store write carries it. A worker frozen past --stale-after, whose run another worker took and
perhaps finished, finds its token stale when it wakes and stops without writing (one worker.log line says so).

What stops a subprocess: a pending cancel (heartbeat False, `cancel_requested`) → SIGTERM to its
group, SIGKILL after `grace_s`, run `cancelled`; a lost claim (requeued as stale, removed) → the same,
and the run is left to its new owner; the worker's `stop` event (SIGTERM or Ctrl-C to `innerdpo
worker`) → the same, and the run goes back to the queue with `release` (no attempt counted: a graceful stop), so a
shutdown never waits for a long training run and never loses one. On Linux a subprocess also gets
SIGTERM when its worker dies, even by SIGKILL (PR_SET_PDEATHSIG), so a killed worker leaves no
orphan holding the GPU; the run stays `running` until some worker's `requeue_stale(stale_after_s)`
(at start, between runs, and every `stale_after_s` while busy) re-queues it, or fails it after
`max_attempts`. All workers of one home must use the same `stale_after_s`. Several loops (one per device)
share a process through `launch.serve`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from innerdpo_bench import progress, rundir, runstate
from innerdpo_bench.config import flag_name
from innerdpo_bench.errors import UserError
from innerdpo_bench.evaluation.report import read_eval_report, results_of
from innerdpo_bench.queue import process
from innerdpo_bench.queue.options import Budget, WorkerOptions
from innerdpo_bench.rundir import RunPaths
from innerdpo_bench.store import Run, Store, claims, resolve_home

Say = Callable[[str], None]
RETRY_DELAYS_S = (1.0, 2.0, 4.0)   # between tries of a store write that ends a run


def stage_command(run: Run, stage: str, run_dir: Path, resume_train: bool = False) -> list[str]:
    """The argv of a run's `train` or `eval` subprocess (`sys.executable -m innerdpo_bench ...`). Training reads
    the stored config from RUN/train_spec.json (`Worker` writes it), so a bad key fails in train. Evaluation writes
    into this claim's staging folder (`RunPaths.staged_eval`), never the run's eval.json: the worker publishes it
    there once its claim is checked (`Worker._record`)."""
    paths = RunPaths(run_dir, run.kind)
    python = [sys.executable, "-m", "innerdpo_bench"]
    if stage == "train":
        return [*python, "train", "--config", str(paths.train_spec), "--output-dir", str(paths.checkpoint.root),
                "--quiet", *(["--resume"] if resume_train else [])]
    evaluation = run.spec.eval
    eval_flags = [arg for key in ("suite", "limit", "samples") if getattr(evaluation, key) is not None
                  for arg in (flag_name(key), str(getattr(evaluation, key)))]
    checkpoint = paths.checkpoint.root if run.kind == "train_eval" else evaluation.checkpoint
    return [*python, "eval", str(checkpoint), *eval_flags, "--output", str(paths.staged_eval(run.claims))]


class _Failed(Exception):
    """A stage failed; the message is the run's one-line error. `killed`: by a signal from outside (out of memory, a
    scheduler), a cluster-like failure that the run's --retries may retry (`process.killed`)."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.killed = exit_code is not None and process.killed(exit_code)


class _Interrupted(Exception):
    """A stage was stopped: `reason` is "stopped" (worker shutdown), "cancelled" or "lost"."""

    def __init__(self, reason: str, exit_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.exit_code = reason, exit_code


class Worker:
    """One claim loop on one device (None: inherit CUDA_VISIBLE_DEVICES; "cpu": hide every GPU)."""

    def __init__(self, home: str | os.PathLike | None, device: str | None, options: WorkerOptions,
                 stop: threading.Event, say: Say = lambda message: None, budget: Budget | None = None,
                 store_url: str | None = None) -> None:
        self.home = resolve_home(home)
        self.store_url = store_url      # --store; None: the workspace's store
        self.device = device
        self.options = options
        self.stop = stop
        self.say = say
        self.budget = budget or Budget(options.max_runs)
        self.host = socket.gethostname()
        self.name = f"{self.host}:{os.getpid()}:{device or 'any'}"
        self.store: Store | None = None
        self.processed = 0

    # ---------------------------------------------------------------- loop

    def loop(self) -> int:
        """Claim and process runs until stopped, out of budget, or (with `once`) drained; runs processed."""
        self.store = Store(self.home, url=self.store_url)
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
        """Requeue (or fail) runs whose worker went silent for `stale_after_s`, or at once those held by a worker on
        this host whose process is gone (killed, or exited after the store failed: `claims.worker_gone`)."""
        held = {run.id: run.worker for run in self.store.list_runs("running")}
        dead = sorted({worker for worker in held.values() if claims.worker_gone(worker, self.host)})
        for run_id in self.store.requeue_stale(self.options.stale_after_s, self.options.max_attempts, dead):
            run = self.store.get_run(run_id)
            why = (f"its worker {held[run_id]} is no longer running on this host" if held.get(run_id) in dead
                   else f"its worker stopped heartbeating for over {self.options.stale_after_s:g}s")
            message = f"run {run_id}: {why}; now {run.status}" + (f" ({run.error})" if run.status == "failed" else "")
            self.say(message)
            if run.run_dir:
                self._note(RunPaths.of(run), message, best_effort=True)

    # ---------------------------------------------------------------- one run

    def process(self, run: Run) -> str:
        """Run a claimed run to its end; the status it ended in ("queued" if handed back, "lost")."""
        paths = RunPaths.of(run) if run.run_dir else RunPaths(self._new_run_dir(run), run.kind)
        self.say(f"run {run.id} ({run.name}) attempt {run.claims} on {self.name}: {paths.root}")
        staged = paths.staged_eval(run.claims)
        try:
            self._prepare(run, paths)
            if run.kind == "train_eval":
                self._train(run, paths)
            self._stage(run, "eval", paths)
            return self._record(run, paths, staged)
        except _Failed as failure:
            return self._end(run, paths, "failed", str(failure), failure.exit_code, retry=failure.killed)
        except _Interrupted as stop:
            return self._interrupted(run, paths, stop)
        except UserError:
            raise  # the store itself failed (locked, corrupt): the worker stops with that one line
        except OSError as err:
            where = f"{err.filename}: " if err.filename else ""
            return self._end(run, paths, "failed", f"cannot write the run directory ({where}{err.strerror or err})")
        except Exception as err:  # a worker bug must not leave the run `running`
            self._note(paths, traceback.format_exc(), best_effort=True)
            return self._end(run, paths, "failed", f"worker error: {type(err).__name__}: {err}")
        finally:
            shutil.rmtree(staged.parent, ignore_errors=True)   # this attempt's own folder (published, or not to be)

    def _new_run_dir(self, run: Run) -> Path:
        """HOME/runs/<id>-<slug>, or <id>-<slug>.N if that holds files (a store deleted and started afresh
        reuses ids; an old run's complete checkpoint must never be taken for this run's)."""
        base = path = rundir.default_run_dir(self.home, run)
        suffix = 1
        while path.exists() and any(path.iterdir()):
            suffix += 1
            path = base.with_name(f"{base.name}.{suffix}")
        return path

    def _check_claim(self, run: Run) -> None:
        """The fence before each step that writes what the run shares (its directory, a stage, the store): a
        heartbeat by this claim's token, so it also tells the other workers this one is alive. Stop, writing
        nothing, unless the claim still holds the run (`_Interrupted("lost")`, or "cancelled" when a cancel is
        pending)."""
        if not self.store.heartbeat(run.id, self.name, run.claims):
            raise _Interrupted("cancelled" if self._holds(run, cancel_requested=True) else "lost")

    def _prepare(self, run: Run, paths: RunPaths) -> None:
        self._check_claim(run)
        missing = run.run_dir is not None and not paths.root.is_dir()
        paths.root.mkdir(parents=True, exist_ok=True)
        if run.run_dir is None and not self.store.set_run_dir(run.id, paths.root, self.name, run.claims):
            raise _Interrupted("lost")
        rundir.write_run_record(paths, run)   # what `doctor --repair` re-imports if the store is lost
        if missing:
            self.say(f"run {run.id}: its directory {paths.root} was missing (deleted?); recreated it")
            self._note(paths, "the run directory was missing (deleted?); recreated it, earlier logs are gone")
        self._note(paths, f"attempt {run.claims} claimed by {self.name} ({run.attempts} counted of --retries "
                          f"{run.retries} + 1 and --max-attempts {self.options.max_attempts}: graceful stops are not)")
        self._stop_leftover(paths)
        for folder in paths.staged_evals():   # earlier claims' unpublished evaluations: never to be published
            if folder != paths.staged_eval(run.claims).parent:
                shutil.rmtree(folder, ignore_errors=True)

    def _train(self, run: Run, paths: RunPaths) -> None:
        checkpoint = paths.checkpoint.root
        self._check_claim(run)   # before moving the checkpoint aside or writing train_spec.json
        if rundir.read_status(checkpoint).get("state") == "complete":
            self._note(paths, f"{checkpoint} is complete from an earlier attempt; not training again")
            return
        resumable = runstate.has_checkpoint(checkpoint)   # no torch import: no silent seconds
        if resumable:
            steps = [step for step, _ in runstate.list_checkpoints(checkpoint)]
            self._note(paths, f"resuming the unfinished {checkpoint.name}/ of an earlier attempt from its training "
                              f"checkpoint (newest at step {steps[-1]})")
        elif checkpoint.exists():
            aside = next(paths.aside(n) for n in range(1, 10_000) if not paths.aside(n).exists())
            checkpoint.rename(aside)
            self._note(paths, f"moved the unfinished {checkpoint.name}/ of an earlier attempt to {aside.name}/")
        rundir.write_json(paths.train_spec, run.spec.train_json())
        code = self._stage(run, "train", paths, resumable)
        status = rundir.read_status(checkpoint)
        if status.get("state") != "complete":
            raise _Failed(f"train exited with code {code} but {paths.checkpoint.status} says "
                          f"{status.get('state', 'nothing')}", code)

    def _stage(self, run: Run, stage: str, paths: RunPaths, resume_train: bool = False) -> int:
        """Run one subprocess to its end, heartbeating; its exit code if 0, else _Failed / _Interrupted."""
        if self.stop.is_set():  # shutting down between stages: do not start what would be stopped at once
            raise _Interrupted("stopped")
        self._check_claim(run)   # a frozen worker, resumed after its run was claimed again, starts nothing
        command = stage_command(run, stage, paths.root, resume_train)
        log_path = paths.train_log if stage == "train" else paths.eval_log
        # INNERDPO_HOME: training keeps its reference cache in the workspace (refcache.cache_root), shared by its runs
        # TQDM_DISABLE: the harness's and datasets' progress bars are carriage-return noise in a log file; the
        # stages write their own count lines (progress.ProgressLines), which the dashboard reads.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "INNERDPO_HOME": str(self.home), "TQDM_DISABLE": "1"}
        if self.device is not None:
            env["CUDA_VISIBLE_DEVICES"] = "" if self.device == "cpu" else self.device
        self._note(paths, f"{stage}: {' '.join(command)}")
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(f"\n===== {rundir.now_iso()} attempt {run.claims} {stage} on {self.name} =====\n")
            log.flush()
            start = log.tell()
            try:
                proc = process.start(command, log, cwd=paths.root, env=env)
            except OSError as err:
                raise _Failed(f"cannot start {stage} ({command[0]}): {err.strerror or err}") from None
        try:
            rundir.write_json(paths.child, {"host": self.host, "pid": proc.pid, "stage": stage,
                                            "attempt": run.claims, "worker": self.name})
            code = self._wait(run, proc, self._progress_reporter(run, stage, paths))
        finally:
            if proc.poll() is None:  # an exception while waiting: never leave the subprocess behind
                process.terminate(proc, self.options.grace_s)
            process.signal_group(proc.pid, signal.SIGKILL)  # stray grandchildren of a finished stage
        self._check_claim(run)   # it ended while this worker was frozen past --stale-after: note nothing, stop
        self._note(paths, f"{stage} exited with code {code}")
        if code == 0:
            return code
        status_error = rundir.read_status(paths.checkpoint.root).get("error") if stage == "train" else None
        with open(log_path, encoding="utf-8", errors="replace") as log:
            log.seek(start)   # a killed stage's last line is no error of its own (a progress line): not quoted
            reason = status_error or (None if process.killed(code) else process.error_line(log.read()))
        raise _Failed(process.describe_exit(stage, code) + (f": {reason}" if reason else f" (see {log_path})"), code)

    def _progress_reporter(self, run: Run, stage: str, paths: RunPaths) -> Callable[[], object]:
        """A progress line now (`progress.ProgressLines`: the run, its stage, elapsed time), and a callable that
        `_wait` calls at each heartbeat: a line at about every 10% of a training run's steps (metrics.jsonl)."""
        lines = progress.ProgressLines(self.say)
        label = f"run {run.id} ({run.name}): {'training' if stage == 'train' else 'evaluating'}"
        total = run.spec.train.max_steps if stage == "train" and run.spec.train is not None else None
        total = total if isinstance(total, int) and total > 0 else None

        def report() -> object:
            if stage == "eval":   # eval's own count lines in eval.log: scoring, then sample generation
                counted = progress.last_count_line(paths.eval_log)
                return lines.update(f"{label}: {counted[0]}", *counted[1:]) if counted else lines.update(label)
            return lines.update(label, (progress.last_step(paths.checkpoint.metrics) or 0) if total else None, total)

        report()
        return report

    def _wait(self, run: Run, proc: subprocess.Popen, report: Callable[[], object] = lambda: None) -> int:
        """Wait for the subprocess, heartbeating (and calling `report`); stop it on a cancel, a lost claim or the
        worker's stop."""
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
                report()
                try:
                    if not self.store.heartbeat(run.id, self.name, run.claims):
                        reason = "cancelled" if self._holds(run, cancel_requested=True) else "lost"
                    if time.monotonic() >= next_requeue:
                        next_requeue = time.monotonic() + self.options.stale_after_s
                        self._requeue_stale()
                except UserError as err:  # a lock held past the busy timeout: keep the run going, say so once
                    if not warned:
                        self.say(f"run {run.id}: heartbeat failed ({err}); still running it")
                        warned = True
            if reason is not None:
                raise _Interrupted(reason, process.terminate(proc, self.options.grace_s))

    def _holds(self, run: Run, cancel_requested: bool | None = None) -> bool:
        """Whether this claim (worker and claim number) still holds the run; a store that fails (locked, corrupt)
        raises, stopping the worker with that line, rather than pass for a lost claim."""
        try:
            current = self.store.get_run(run.id)
        except UserError as err:
            if str(err) != f"no run with id {run.id}":
                raise
            return False  # removed
        holds = current.status == "running" and current.worker == self.name and current.claims == run.claims
        return holds and (cancel_requested is None or current.cancel_requested == cancel_requested)

    def _record(self, run: Run, paths: RunPaths, staged: Path) -> str:
        """Read this claim's staged evaluation, then, in one store transaction that checks the claim first, publish
        it as the run's eval.json, record its results and end the run done (`Store.complete`)."""
        try:
            report = read_eval_report(staged, required=("shifts",))
        except UserError as err:
            raise _Failed(f"eval exited with code 0 but {err}") from None
        if not report["shifts"]:
            raise _Failed(f"eval exited with code 0 but {staged} scored no shift")
        results = results_of(report, self._sample_columns(run, paths, staged))
        completed = self._retry(lambda: self.store.complete(run.id, self.name, run.claims, results,
                                                            report.get("provenance"),
                                                            lambda: rundir.publish_eval(staged, paths.eval_json)),
                                run, "record that it ended done, with its results")
        if not completed:  # requeued or removed while eval ran: nothing published, its new owner records
            raise _Interrupted("lost")
        self.say(f"run {run.id} done")
        self._note(paths, f"attempt {run.claims} done", best_effort=True)   # eval.json published, results recorded
        return "done"

    def _sample_columns(self, run: Run, paths: RunPaths, staged: Path) -> dict[str, dict]:
        """`samplefile.sample_columns` when the entry asked for samples; nothing when it did not, or the file is
        unreadable (noted)."""
        from innerdpo_bench.evaluation.samplefile import sample_columns

        if not run.spec.eval.samples:
            return {}
        try:
            return sample_columns(staged)
        except UserError as err:
            self._note(paths, f"no sample statistics: {err}", best_effort=True)
            return {}

    def _interrupted(self, run: Run, paths: RunPaths, stop: _Interrupted) -> str:
        if stop.reason == "cancelled":
            return self._end(run, paths, "cancelled", "cancelled while running", stop.exit_code)
        if stop.reason == "stopped":
            if self.store.release(run.id, self.name, run.claims):
                self.say(f"run {run.id}: worker stopping; the run is back in the queue")
                self._note(paths, f"worker stopping: attempt {run.claims} stopped, run returned to the queue "
                                  "(not counted toward --max-attempts)",
                           best_effort=True)
                return "queued"
            if self._holds(run, cancel_requested=True):
                return self._end(run, paths, "cancelled", "cancelled while running", stop.exit_code)
        self.say(f"run {run.id}: attempt {run.claims} no longer holds it (requeued as stale, claimed again, or "
                 "removed); stopped, writing nothing")
        self._note(paths, f"attempt {run.claims}: the run is no longer held by {self.name} (requeued as stale, "
                          "claimed again, or removed); stopped its subprocess and wrote nothing", best_effort=True)
        return "lost"

    def _retry(self, write: Callable[[], object], run: Run, what: str) -> object:
        """A store write that ends a run, tried again after 1, 2 and 4 s when the store refuses it (a full disk, a
        lock held too long); its last UserError stops the worker with that line, and the run goes back to the
        queue as soon as another worker on this host starts (`_requeue_stale`), or after `stale_after_s`."""
        for delay in RETRY_DELAYS_S:
            try:
                return write()
            except UserError as err:
                self.say(f"run {run.id}: cannot {what} ({err}); retrying in {delay:g}s")
                if self.stop.wait(delay):
                    break
        return write()

    def _end(self, run: Run, paths: RunPaths, status: str, error: str | None, exit_code: int | None = None,
             retry: bool = False) -> str:
        """End the attempt `status` (with `retry`: a cluster-like failure, queued again while the run's --retries
        allow, `Store.retry_or_fail`); the status it ended in, or "lost" when the claim no longer held."""
        if retry:
            ended = self._retry(lambda: self.store.retry_or_fail(run.id, self.name, run.claims, error, exit_code,
                                                                 self.options.max_attempts), run, "record its failure")
            finished, status = ended is not None, ended or status
            if ended == "queued":
                self.say(f"run {run.id}: {error}; queued again (--retries)")
                self._note(paths, f"attempt {run.claims} failed ({error}); the run is queued again (--retries)",
                           best_effort=True)
                return "queued"
            error = self.store.get_run(run.id).error if finished else error   # failed or cancelled: the store's line
        else:
            finished = self._retry(lambda: self.store.finish(run.id, self.name, status, exit_code=exit_code,
                                                             error=error, claim=run.claims),
                                   run, f"record that it ended {status}")
        if not finished:
            self._note(paths, f"attempt {run.claims} ended {status} but the run is no longer held by "
                              f"{self.name}; left to its new owner", best_effort=True)
            return "lost"
        self.say(f"run {run.id} {status}" + (f": {error}" if error else ""))
        self._note(paths, f"attempt {run.claims} {status}" + (f": {error}" if error else ""), best_effort=True)
        return status

    # ---------------------------------------------------------------- files

    def _note(self, paths: RunPaths, message: str, best_effort: bool = False) -> None:
        """Append a timestamped line to RUN/worker.log (OSError propagates unless best_effort)."""
        try:
            with open(paths.worker_log, "a", encoding="utf-8") as log:
                log.write(f"{rundir.now_iso()} {message.rstrip()}\n")
        except OSError:
            if not best_effort:
                raise

    def _stop_leftover(self, paths: RunPaths) -> None:
        """Stop a subprocess an earlier attempt left running on this host (its worker was killed before
        PR_SET_PDEATHSIG could act, or it is not Linux, or the old worker hangs), before reusing its files."""
        try:
            child = json.loads(paths.child.read_text(encoding="utf-8"))
            pid, host = int(child["pid"]), child["host"]
        except (OSError, ValueError, KeyError, TypeError):
            return
        if host != self.host or str(paths.root) not in (claims.cmdline(pid) or ""):
            return
        self._note(paths, f"stopping pid {pid}, the {child.get('stage')} of attempt {child.get('attempt')}, "
                          "still running")
        process.stop_group(pid, self.options.grace_s)
