"""The worker as a process: SIGTERM requeues its run, only a kill counts, a killed worker's run is finished."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from innerdpo_bench import rundir
from innerdpo_bench.store import Store

from helpers.worker import add, alive, fake_spec, get, pid_of, run_dir_of, wait_for, worker_process


# --------------------------------------------------------------------------- the worker CLI as a process


def test_sigterm_to_the_worker_requeues_the_run_and_exits_130(home, fake_stage):
    (run_id,) = add(home, fake_spec(train={"sleep": 60}))
    proc = worker_process(fake_stage, home, "--stale-after", "5", "--grace", "5")
    pid = pid_of(home, run_id)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 130, output
    assert "SIGTERM: stopping" in output and "back in the queue" in output
    assert "Traceback" not in output
    assert not alive(pid)
    run = get(home, run_id)
    assert (run.status, run.attempts, run.claims) == ("queued", 0, 1)


def test_sigterm_sigterm_sigkill_counts_one_attempt_and_worker_log_never_repeats_a_number(home, fake_stage):
    """Two graceful stops and a kill: only the kill counts toward --max-attempts (2 here, so counting the stops
    would have failed the run), and worker.log numbers each claim once (1 to 4) from the store's `claims`."""
    (run_id,) = add(home, fake_spec(train={"sleep": 60}))
    for signum in (signal.SIGTERM, signal.SIGTERM, signal.SIGKILL):
        proc = worker_process(fake_stage, home, "--stale-after", "30", "--grace", "5")
        claims = get(home, run_id).claims
        wait_for(lambda: get(home, run_id).claims == claims + 1 and get(home, run_id).status == "running",
                 what="the next claim")
        pid = pid_of(home, run_id)
        (run_dir_of(home, run_id) / "train.pid").unlink()
        proc.send_signal(signum)
        proc.wait(timeout=30)
        wait_for(lambda: not alive(pid), timeout=10, what="the train subprocess to stop")
    run = get(home, run_id)
    assert (run.status, run.attempts, run.claims) == ("running", 1, 3)  # held by the killed worker
    with Store(home) as store:  # let the next claim finish quickly: the same spec without the long sleep
        store._con.execute("UPDATE runs SET spec = ? WHERE id = ?", (json.dumps(fake_spec()), run_id))
    final = worker_process(fake_stage, home, "--stale-after", "30", "--max-attempts", "2", "--once")
    output, _ = final.communicate(timeout=60)
    assert final.returncode == 0, output
    run = get(home, run_id)
    assert (run.status, run.attempts, run.claims) == ("done", 2, 4), run.error
    log = (Path(run.run_dir) / "worker.log").read_text()
    assert [log.count(f"attempt {n} claimed") for n in (1, 2, 3, 4)] == [1, 1, 1, 1], log
    assert log.count("not counted toward --max-attempts") == 2


def test_a_killed_worker_takes_its_subprocess_along_and_a_restarted_one_finishes_the_run(home, fake_stage):
    (run_id,) = add(home, fake_spec(train={"sleep": 60, "once": True}))
    proc = worker_process(fake_stage, home, "--stale-after", "1")
    pid = pid_of(home, run_id)
    proc.kill()
    proc.wait(timeout=10)
    wait_for(lambda: not alive(pid), timeout=10, what="the orphaned train to die (PR_SET_PDEATHSIG)")
    assert get(home, run_id).status == "running"  # until it goes stale
    restarted = worker_process(fake_stage, home, "--stale-after", "1", "--once")
    output, _ = restarted.communicate(timeout=60)
    assert restarted.returncode == 0, output
    run = get(home, run_id)
    assert (run.status, run.attempts) == ("done", 2)
    run_dir = Path(run.run_dir)
    assert rundir.read_status(run_dir / "checkpoint.attempt-1")["state"] == "interrupted"
    worker_log = (run_dir / "worker.log").read_text()
    # the restarted worker sees the dead pid on its host: no wait for the silence, and it says which it was
    assert "is no longer running on this host; now queued" in worker_log and "attempt 2 done" in worker_log
