"""Worker faults: a lost run dir, garbage status, disk full, leftover child, bad spec, NaN, a refusing store."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from innerdpo_bench import rundir
from innerdpo_bench.config import TrainConfig
from innerdpo_bench.errors import UserError
from innerdpo_bench.queue import runspec
from innerdpo_bench.queue import worker as queue_worker
from innerdpo_bench.store import STORE_FILE, Store

from helpers.cli import invoke
from helpers.worker import add, fake_spec, get, options, run_dir_of, work


# --------------------------------------------------------------------------- run directories, a full disk, a leftover


def test_a_deleted_run_directory_under_a_queued_run_is_recreated(home, fake_stage):
    (run_id,) = add(home, fake_spec(train={"exit": 1, "once": True}))
    work(home)
    run_dir = run_dir_of(home, run_id)
    shutil.rmtree(run_dir)
    with Store(home) as store:
        store.retry(run_id)
    work(home)
    run = get(home, run_id)
    assert run.status == "done" and Path(run.run_dir) == run_dir
    assert "was missing (deleted?); recreated it" in (run_dir / "worker.log").read_text()


def test_a_binary_status_json_from_an_earlier_attempt_is_set_aside_not_a_traceback(home, fake_stage):
    """An earlier attempt left checkpoint/status.json as garbage bytes: never taken for complete, the checkpoint
    is moved aside and trained again, and the run ends done (it was a UnicodeDecodeError that failed the run)."""
    (run_id,) = add(home, fake_spec(train={"exit": 1, "once": True}))
    work(home)
    run_dir = run_dir_of(home, run_id)
    (run_dir / "checkpoint" / "status.json").write_bytes(b"\xff\xfe\x00garbage")
    with Store(home) as store:
        store.retry(run_id)
    work(home)
    run = get(home, run_id)
    assert (run.status, run.error) == ("done", None)
    assert (run_dir / "checkpoint.attempt-1" / "status.json").read_bytes().startswith(b"\xff")
    assert "Traceback" not in (run_dir / "worker.log").read_text()


def test_a_fresh_store_never_takes_an_old_run_directory_with_the_same_id(home, fake_stage):
    (run_id,) = add(home, fake_spec())
    work(home)
    old_dir = run_dir_of(home, run_id)
    (home / STORE_FILE).unlink()
    for suffix in ("-wal", "-shm"):
        (home / (STORE_FILE + suffix)).unlink(missing_ok=True)
    (new_id,) = add(home, fake_spec())
    assert new_id == run_id
    work(home)
    assert run_dir_of(home, new_id) == old_dir.with_name(old_dir.name + ".2")


def test_disk_full_on_a_log_fails_the_run_with_a_clear_error_and_a_consistent_store(home, fake_stage, monkeypatch):
    (run_id, other_id) = add(home, fake_spec(), fake_spec(seed=1))
    real_open = open

    def full_disk(path, *args, **kwargs):
        if Path(path).name == "train.log" and f"/{run_id}-" in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(queue_worker, "open", full_disk, raising=False)
    work(home)
    run = get(home, run_id)
    assert run.status == "failed"
    assert run.error == f"cannot write the run directory ({run.run_dir}/train.log: No space left on device)"
    assert run.results == {} and run.worker is not None and run.finished_at is not None
    assert get(home, other_id).status == "done"  # the worker went on
    with Store(home) as store:
        assert store.counts() == {"queued": 0, "running": 0, "done": 1, "failed": 1, "cancelled": 0}


def test_a_leftover_subprocess_of_an_earlier_attempt_is_stopped_first(home, fake_stage):
    (run_id,) = add(home, fake_spec())
    with Store(home) as store:
        run = store.get_run(run_id)
        run_dir = rundir.default_run_dir(home, run)
        run_dir.mkdir(parents=True)
        store.set_run_dir(run_id, run_dir)
    # an orphan whose command line names the run directory, as a real train subprocess's does
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(run_dir)],
                              start_new_session=True)
    rundir.write_json(run_dir / rundir.CHILD, {"host": socket.gethostname(), "pid": orphan.pid, "stage": "train",
                                              "attempt": 1})
    work(home)
    assert orphan.wait(timeout=10) == -signal.SIGTERM
    assert get(home, run_id).status == "done"
    assert f"stopping pid {orphan.pid}" in (run_dir / "worker.log").read_text()


# --------------------------------------------------------------------------- real train subprocesses


def test_a_bad_key_in_the_spec_fails_the_run_naming_it_and_starts_nothing(home):
    """A spec the store holds but this version cannot read (edited by hand, or written by a newer version): the claim
    fails the run with one line naming the key and the way out; no stage starts."""
    spec = runspec.train_specs(TrainConfig(method="dpo", base_model="tiny-random", dataset="mini:train"))[0]
    (run_id,) = add(home, spec)
    stored = spec.to_json()
    stored["train"]["bogus_flag"] = 1
    with sqlite3.connect(home / STORE_FILE) as con:
        con.execute("UPDATE runs SET spec = ? WHERE id = ?", (json.dumps(stored), run_id))
    work(home)
    with sqlite3.connect(home / STORE_FILE) as con:
        status, exit_code, run_dir, error = con.execute(
            "SELECT status, exit_code, run_dir, error FROM runs WHERE id = ?", (run_id,)).fetchone()
    assert (status, exit_code, run_dir) == ("failed", None, None)
    assert "unknown key 'bogus_flag'" in error and f"innerdpo queue rm {run_id}" in error


def test_nan_in_a_real_train_fails_the_run_with_the_loss_error(home, tiny_model_path):
    config = TrainConfig(method="ipo", base_model="tiny-random", dataset="mini:in_domain", max_steps=6,
                         learning_rate=1e30, max_grad_norm=1e30, beta=0.01, warmup_ratio=0.0)
    (run_id,) = add(home, *runspec.train_specs(config, evaluation=runspec.eval_spec("mini", 4)))
    work(home, stale_after_s=10.0)
    run = get(home, run_id)
    assert (run.status, run.exit_code) == ("failed", 1)
    assert run.error.startswith("train exited with code 1: loss became")
    assert run.results == {}
    assert rundir.read_status(Path(run.run_dir) / "checkpoint")["state"] == "failed"


# --------------------------------------------------------------------------- a store that refuses the last write


def test_a_refused_final_write_is_retried_and_the_run_still_ends_done(home, fake_stage, monkeypatch):
    """A full disk (or a lock held too long) while recording the run's end: the worker tries again, and the
    run is done once the store takes the write, instead of the worker dying and the run staying `running`."""
    monkeypatch.setattr(queue_worker, "RETRY_DELAYS_S", (0.01, 0.01, 0.01))
    (run_id,) = add(home, fake_spec())
    refused = []
    real_complete = Store.complete   # the write that ends a run done: results and status in one transaction

    def flaky_complete(self, *args, **kwargs):
        if len(refused) < 2:
            refused.append(1)
            raise UserError(f"store {self.path}: the disk is full; free space and retry (nothing was written)")
        return real_complete(self, *args, **kwargs)

    monkeypatch.setattr(Store, "complete", flaky_complete)
    said = []
    worker = queue_worker.Worker(home, None, options(), threading.Event(), say=said.append)
    worker.loop()
    assert get(home, run_id).status == "done" and len(refused) == 2
    assert sum("cannot record that it ended done" in line and "disk is full" in line for line in said) == 2


def test_a_store_that_keeps_refusing_stops_the_worker_with_that_line(home, fake_stage, monkeypatch):
    monkeypatch.setattr(queue_worker, "RETRY_DELAYS_S", (0.01,))
    add(home, fake_spec())

    def full(self, *args, **kwargs):
        raise UserError(f"store {self.path}: the disk is full; free space and retry (nothing was written)")

    monkeypatch.setattr(Store, "complete", full)
    with pytest.raises(UserError, match="disk is full"):
        work(home)


def test_a_run_held_by_a_dead_worker_on_this_host_is_requeued_without_waiting(home):
    """The worker that held it exited (a store it could not write, a kill): its process is gone, so the next
    worker on the host re-queues the run at once rather than after --stale-after seconds of silence. A run
    whose worker still runs is left alone."""
    dead_id, alive_id = add(home, fake_spec(0), fake_spec(1))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "innerdpo worker"])
    try:
        with Store(home) as store:
            store.claim_next(f"{socket.gethostname()}:{dead.pid}:any")
            store.claim_next(f"{socket.gethostname()}:{alive.pid}:any")
        # until a worker requeues it, the listing says the run's worker is gone (it cannot say so in the store)
        shown = invoke("queue", "ls", "--home", home).output
        rows = [re.split(r"\s{2,}", line.strip())[:2] for line in shown.splitlines()
                if re.match(r"\s*\d+\s", line)]
        assert rows == [[str(dead_id), "worker gone"], [str(alive_id), "running"]], shown
        said = []
        worker = queue_worker.Worker(home, None, options(stale_after_s=3600.0, once=False), threading.Event(),
                                     say=said.append)
        worker.store = Store(home)
        try:
            worker._requeue_stale()
        finally:
            worker.store.close()
        assert (get(home, dead_id).status, get(home, alive_id).status) == ("queued", "running")
        assert said == [f"run {dead_id}: its worker {socket.gethostname()}:{dead.pid}:any is no longer running on "
                        f"this host; now queued"]
    finally:
        alive.kill()
        alive.wait()
