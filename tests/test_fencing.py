"""Fencing and retries with real worker processes and the fake stages of tests/helpers/worker.py (FAKE_STAGE: real
subprocesses that write what train and eval write, held by a file until a test lets them end).

A worker frozen (SIGSTOP) past --stale-after while its run is claimed again and finished by another, then resumed
(SIGCONT), writes nothing: not eval.json, not the store, not a log line other than its note that it stopped. A
training child killed by SIGKILL is retried up to the run's --retries; one that exits with a usage error is not.
Every wait is for a state (a file, a status, a process gone), never for a length of time."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
from pathlib import Path

import pytest

from innerdpo_bench import rundir
from innerdpo_bench.rundir import RunPaths
from innerdpo_bench.store import Store

from helpers.cli import invoke
from helpers.worker import add, alive, fake_spec, get, pid_of, run_dir_of, wait_for, worker_process

pytestmark = pytest.mark.slow   # worker processes: a few seconds each


def files_of(root: Path) -> dict[str, tuple]:
    """Every file and folder under `root` (worker.log aside, compared on its own): its content's sha256 and mtime."""
    return {str(path.relative_to(root)): (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
            if path.is_file() else "dir" for path in sorted(root.rglob("*")) if path.name != "worker.log"}


def store_row(home, run_id) -> tuple:
    run = get(home, run_id)
    with Store(home, readonly=True) as store:
        provenance = store.get_provenance(run_id)
    return (run.status, run.worker, run.heartbeat_at, run.finished_at, run.exit_code, run.error, run.attempts,
            run.claims, run.results, provenance, run.requeues)


def stop_all(*procs) -> None:
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait(timeout=30)


@pytest.mark.parametrize("frozen_in", ["train", "eval"])
def test_a_worker_frozen_past_stale_after_then_resumed_writes_nothing(home, fake_stage, frozen_in):
    """train: the probe's case. Worker A is frozen while its training child runs on and completes; B requeues the
    silent run, finds the checkpoint complete, evaluates it and records it done. A, resumed, used to start a
    second evaluation that rewrote eval.json. eval: A is frozen while its evaluation child runs, on what B takes for
    another host (so B cannot stop that child); B evaluates and publishes; A's child then ends. Either way, A and
    its child change nothing that B published, and A adds only its note that it stopped."""
    runs = home / "runs"
    runs.mkdir(parents=True)
    hold = runs / (f"{frozen_in}.hold" if frozen_in == "train" else "eval.hold.eval.attempt-1")
    hold.touch()
    (run_id,) = add(home, fake_spec())
    frozen = worker_process(fake_stage, home, "--stale-after", "1", "--max-runs", "1")
    other = None
    try:
        child = pid_of(home, run_id, frozen_in)
        frozen.send_signal(signal.SIGSTOP)
        run_dir = run_dir_of(home, run_id)
        paths = RunPaths(run_dir, "train_eval")
        if frozen_in == "train":
            hold.unlink()   # the training child ends while its worker is frozen
            wait_for(lambda: rundir.read_status(paths.checkpoint.root).get("state") == "complete",
                     what="training to complete")
        else:               # as if A ran on another host: B cannot stop A's child, which goes on
            child_file = json.loads(paths.child.read_text())
            paths.child.write_text(json.dumps({**child_file, "host": "elsewhere"}))
        other = worker_process(fake_stage, home, "--stale-after", "1", "--once")
        output, _ = other.communicate(timeout=120)
        assert other.returncode == 0, output
        run = get(home, run_id)
        assert (run.status, run.claims, run.worker.split(":")[1]) == ("done", 2, str(other.pid)), output
        published = (paths.eval_json.read_bytes(), paths.eval_json.stat().st_mtime_ns, store_row(home, run_id))
        if frozen_in == "eval":
            assert alive(child)
            hold.unlink()   # A's evaluation child ends now, after B published (its staging folder is gone)
            wait_for(lambda: not alive(child), what="the frozen worker's evaluation child to end")
        files, log = files_of(run_dir), paths.worker_log.read_text()
        frozen.send_signal(signal.SIGCONT)
        said, _ = frozen.communicate(timeout=120)
        assert frozen.returncode == 0, said
        assert (paths.eval_json.read_bytes(), paths.eval_json.stat().st_mtime_ns, store_row(home, run_id)) == published
        assert files_of(run_dir) == files
        added = paths.worker_log.read_text()[len(log):].splitlines()
        assert len(added) == 1 and "attempt 1: the run is no longer held" in added[0] and "wrote nothing" in added[0]
        assert f"run {run_id}: attempt 1 no longer holds it" in said and "Traceback" not in said
        assert f"claimed by {socket.gethostname()}:{frozen.pid}:" in log
    finally:
        stop_all(frozen, other)


def test_a_training_child_killed_by_sigkill_is_retried_then_done(home, fake_stage):
    """The run's one default retry: the SIGKILLed attempt goes back to the queue with its reason, the next one
    finishes; `queue ls` shows both attempts and why the first ended."""
    runs = home / "runs"
    runs.mkdir(parents=True)
    (runs / "train.hold").touch()
    (run_id,) = add(home, fake_spec())
    proc = worker_process(fake_stage, home, "--stale-after", "30", "--once")
    try:
        child = pid_of(home, run_id, "train")
        (run_dir_of(home, run_id) / "train.pid").unlink()
        (runs / "train.hold").unlink()
        os.kill(child, signal.SIGKILL)   # what the kernel's out-of-memory killer does
        output, _ = proc.communicate(timeout=120)
    finally:
        stop_all(proc)
    assert proc.returncode == 0, output
    run = get(home, run_id)
    assert (run.status, run.claims, run.attempts, run.error) == ("done", 2, 2, None), output
    reason = (f"train was killed by SIGKILL (out of memory?) (see {run.run_dir}/train.log); retried (1 of --retries 1)")
    assert [(requeue.claim, requeue.reason) for requeue in run.requeues] == [(1, reason)]
    assert rundir.read_status(Path(run.run_dir) / "checkpoint.attempt-1")["state"] == "running"   # kept aside
    listed = invoke("queue", "ls", "--all", "--home", home).output
    assert "earlier attempts" in listed and "1: train was killed by SIGKILL" in listed.replace("\n", " ")
    record = json.loads(invoke("queue", "ls", "--json", "--home", home).output)[0]
    assert (record["claims"], record["retries"], record["requeues"][0]["reason"]) == (2, 1, reason)


def test_no_retry_without_retries_left_or_after_an_error_the_run_reports(home, fake_stage):
    """A usage error (exit 2) or a failure the run reports (exit 1, a NaN loss) fails at once whatever --retries
    says; a SIGKILL with --retries 0 fails at once too. Nothing is queued again. One worker takes all three."""
    runs = home / "runs"
    runs.mkdir(parents=True)
    with Store(home) as store:
        usage, reported = (store.add_runs([fake_spec(seed, train={"exit": code, "error": "--lora-r must be at least 1"})
                                           ], retries=retries)[0] for seed, code, retries in ((0, 2, 1), (1, 1, 3)))
        (killed,) = store.add_runs([fake_spec(2)], retries=0)
    (runs / f"{rundir.default_run_dir(home, get(home, killed)).name}.train.hold").touch()   # this run's only
    proc = worker_process(fake_stage, home, "--stale-after", "30", "--once")
    try:
        os.kill(pid_of(home, killed, "train"), signal.SIGKILL)
        output, _ = proc.communicate(timeout=120)
    finally:
        stop_all(proc)
    assert proc.returncode == 0, output
    for run_id, code in ((usage, 2), (reported, 1)):
        run = get(home, run_id)
        assert (run.status, run.claims, run.requeues, run.exit_code, run.error) == (
            "failed", 1, (), code, f"train exited with code {code}: --lora-r must be at least 1"), output
    run = get(home, killed)
    assert (run.status, run.claims, run.requeues, run.exit_code) == ("failed", 1, (), -signal.SIGKILL), output
    assert run.error.startswith("train was killed by SIGKILL") and "not retried: --retries 0 used up" in run.error
