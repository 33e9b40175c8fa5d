"""Workers on many nodes sharing one PostgreSQL store: `innerdpo worker` processes on two "hosts" (each in its own UTS
namespace with its own host name: `unshare --uts`, root), then submitit's local executor standing in for SLURM.

Every worker is the real CLI (`python -c DRIVER ... worker`) with one swap: the stage subprocess is NOOP_STAGE
(tests/cluster_jobs.py), an eval stage of a few milliseconds that writes eval.json and holds a lock on the run
directory, so a run two workers ever ran at once leaves a mark in HOME/runs/overlaps. The server is the session's
throw-away PostgreSQL (tests/pgserver.py)."""

from __future__ import annotations

import functools
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cluster_jobs import DRIVER, noop_stage_job, write_stage
from typer.testing import CliRunner

from innerdpo_bench.cli.main import app
from innerdpo_bench.queue import launch
from innerdpo_bench.store import Store

pytestmark = pytest.mark.slow
HOSTS = ("node-a", "node-b")
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def namespaces():
    """Skip where a process cannot have a host name of its own (not root, or no user namespaces)."""
    probe = subprocess.run(["unshare", "--uts", "sh", "-c", "hostname node-a && hostname"], capture_output=True,
                           text=True)
    if probe.returncode != 0 or probe.stdout.strip() != "node-a":
        pytest.skip(f"cannot give a process its own host name here (unshare --uts: {probe.stderr.strip()})")


def noop_runs(count: int) -> list[dict]:
    return [{"name": f"noop-{index}", "eval": {}} for index in range(count)]


def expected_acc(run_id: int) -> float:
    return float(f"0.{run_id}")   # what NOOP_STAGE writes for run `run_id`


class Cluster:
    """Worker processes on named hosts, each with its own log file, against one workspace."""

    def __init__(self, home: Path, script: Path, password: str, stale_after: float, noop_s: float) -> None:
        self.home, self.script, self.stale_after = home, script, stale_after
        self.env = {**os.environ, "PGPASSWORD": password, "PYTHONUNBUFFERED": "1", "NOOP_S": str(noop_s)}
        self.env.pop("INNERDPO_STORE", None)
        self.workers: list[tuple[str, subprocess.Popen, Path]] = []

    def start(self, host: str) -> subprocess.Popen:
        log = self.home.parent / f"worker-{len(self.workers)}-{host}.log"
        command = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', host,
                   sys.executable, "-c", DRIVER, str(self.script), "worker", "--home", str(self.home), "--devices",
                   "cpu", "--poll", "0.1", "--once", "--stale-after", str(self.stale_after)]
        with open(log, "w") as out:
            proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=self.env)
        self.workers.append((host, proc, log))
        return proc

    def by_pid(self, pid: int) -> tuple[str, subprocess.Popen, Path] | None:
        return next((worker for worker in self.workers if worker[1].pid == pid), None)

    def wait(self, timeout: float = 240) -> list[str]:
        """Wait for every worker to exit; their logs."""
        deadline = time.monotonic() + timeout
        for _, proc, _ in self.workers:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        return [log.read_text() for _, _, log in self.workers]

    def kill_all(self) -> None:
        for _, proc, _ in self.workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def wait_for(predicate, timeout: float = 120, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def queue_runs(home: Path, url: str, count: int) -> list[int]:
    """`count` eval runs, each allowed two automatic retries (the default is one): on a loaded machine a worker
    starved past the 3 s --stale-after loses its claim too, and a run may meet that and a SIGKILL."""
    with Store(home, url=url) as store:   # binds the workspace: the workers find the store from --home alone
        return store.add_runs(noop_runs(count), kind="eval", retries=2)


def check_every_run_done_once(home: Path, url: str, run_ids: list[int]) -> dict:
    """The properties both halves share; the runs by id."""
    with Store(home, url=url) as store:
        runs = {run.id: run for run in store.list_runs()}
    assert sorted(runs) == run_ids
    assert {run.status for run in runs.values()} == {"done"}, {run.id: run.error for run in runs.values() if run.error}
    for run in runs.values():
        assert run.results["in_domain"]["acc"] == expected_acc(run.id)
        log = (Path(run.run_dir) / "worker.log").read_text()
        assert log.count(" done\n") <= 1 and log.count("attempt") >= 1, log   # never finished twice
    assert not (home / "runs" / "overlaps").exists(), (home / "runs" / "overlaps").read_text()
    return runs


def test_eight_workers_on_two_hosts_run_200_queued_runs_exactly_once(namespaces, pg_server, tmp_path):
    home, url = tmp_path / "home", pg_server.new_database()
    run_ids = queue_runs(home, url, 200)
    cluster = Cluster(home, write_stage(tmp_path), pg_server.password, stale_after=60, noop_s=0.02)
    try:
        for index in range(8):
            cluster.start(HOSTS[index % 2])
        logs = cluster.wait()
    finally:
        cluster.kill_all()
    assert [proc.returncode for _, proc, _ in cluster.workers] == [0] * 8, logs
    runs = check_every_run_done_once(home, url, run_ids)
    assert {(run.attempts, run.claims) for run in runs.values()} == {(1, 1)}   # no claim was ever taken twice
    for run in runs.values():
        log = (Path(run.run_dir) / "worker.log").read_text()
        assert (log.count("claimed by"), log.count(" done\n")) == (1, 1), log
    processed = [int(re.search(r"worker done: (\d+) run", log).group(1)) for log in logs]
    by_host = {host: sum(1 for run in runs.values() if run.worker.startswith(host + ":")) for host in HOSTS}
    print(f"\nruns per worker {processed}; per host {by_host}")
    assert sum(processed) == 200 and all(by_host.values())


def test_random_sigkills_and_a_server_restart_still_finish_every_run_once(namespaces, pg_server, tmp_path):
    """Four workers SIGKILLed mid-run at random (each replaced on its host) and the server restarted once: every run
    ends done with its result recorded once; the killed workers' runs are re-run by the others."""
    home, url = tmp_path / "home", pg_server.new_database()
    run_ids = queue_runs(home, url, 200)
    cluster = Cluster(home, write_stage(tmp_path), pg_server.password, stale_after=3, noop_s=0.1)
    rng = random.Random(31)
    killed, restarted = [], False
    try:
        for index in range(8):
            cluster.start(HOSTS[index % 2])
        with Store(home, url=url) as watcher:   # reconnects across the restart too
            for threshold in (30, 60, 100, 130, 160):
                wait_for(lambda: watcher.counts()["done"] >= threshold, what=f"{threshold} runs done")
                if threshold == 100 and not restarted:
                    # a worker still starting would meet the restart at its first connect, which is one line and
                    # exit 2 by design (a wrong URL fails at once): restart once every live worker has claimed a run
                    wait_for(lambda: all(" attempt " in log.read_text() for _, proc, log in cluster.workers
                                         if proc.poll() is None), what="every worker's first claim")
                    pg_server.restart()
                    restarted = True
                    continue
                holders = [run.worker for run in watcher.list_runs("running")]
                victims = [cluster.by_pid(int(name.split(":")[1])) for name in holders]
                victims = [victim for victim in victims if victim is not None and victim[1].poll() is None]
                if not victims:
                    continue
                host, proc, _ = rng.choice(victims)
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                killed.append(proc.pid)
                cluster.start(host)
            wait_for(lambda: watcher.counts()["done"] == 200, timeout=180, what="every run done")
        logs = cluster.wait()
    finally:
        cluster.kill_all()
    assert restarted and len(killed) >= 3, killed
    survivors = [proc.returncode for _, proc, _ in cluster.workers if proc.pid not in killed]
    assert survivors == [0] * len(survivors), logs
    runs = check_every_run_done_once(home, url, run_ids)
    rerun = [run.id for run in runs.values() if run.claims > 1]
    print(f"\nkilled {len(killed)} workers; {len(rerun)} run(s) claimed again: {rerun}")
    assert rerun   # a killed worker's run was taken over, not lost


def test_a_worker_sigkilled_on_one_host_is_requeued_by_a_worker_on_another_after_the_timeout(
        namespaces, pg_server, tmp_path):
    """node-b cannot see node-a's processes: it waits for node-a's heartbeats to go stale (not for a pid check, which
    is only for a worker on its own host), then takes the run over and finishes it."""
    home, url = tmp_path / "home", pg_server.new_database()
    (run_id,) = queue_runs(home, url, 1)
    (home / "runs").mkdir(parents=True)
    hold = home / "runs" / f"{run_id}.hold"
    hold.touch()                                   # the first attempt's stage waits until this goes
    cluster = Cluster(home, write_stage(tmp_path), pg_server.password, stale_after=2, noop_s=0.01)
    try:
        first = cluster.start("node-a")
        with Store(home, url=url) as store:
            run_dir = Path(wait_for(lambda: store.get_run(run_id).run_dir, what="node-a's claim"))
            stage_pid = int(wait_for(lambda: (run_dir / "eval.pid").exists() and (run_dir / "eval.pid").read_text(),
                                     what="the eval stage"))
            first.send_signal(signal.SIGKILL)
            first.wait()
            hold.unlink()
            wait_for(lambda: not Path(f"/proc/{stage_pid}").exists(), what="the stage to die with its worker")
            held = store.get_run(run_id)
            assert (held.status, held.worker) == ("running", f"node-a:{first.pid}:cpu")
            second = cluster.start("node-b")
            assert second.wait(timeout=120) == 0, (home.parent / "worker-1-node-b.log").read_text()
            run = store.get_run(run_id)
    finally:
        cluster.kill_all()
    assert (run.status, run.attempts, run.claims) == ("done", 2, 2)
    assert run.worker == f"node-b:{second.pid}:cpu" and run.results["in_domain"]["acc"] == expected_acc(run_id)
    log = (run_dir / "worker.log").read_text()
    assert "its worker stopped heartbeating for over 2s; now queued" in log
    assert "no longer running on this host" not in log


def test_three_submitit_jobs_drain_one_postgres_queue(pg_server, tmp_path, monkeypatch):
    """submitit's local executor in place of SLURM: `innerdpo worker --submitit --jobs 3` with a PostgreSQL store;
    each job is a process of its own that finds the store from --home and the password in $PGPASSWORD."""
    pytest.importorskip("submitit")
    home, url = tmp_path / "home", pg_server.new_database()
    run_ids = queue_runs(home, url, 12)
    script = write_stage(tmp_path)
    monkeypatch.setenv("PGPASSWORD", pg_server.password)
    monkeypatch.setenv("NOOP_S", "0.4")            # long enough for every job to start before the queue is empty
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    monkeypatch.setattr(launch, "submitit_job", functools.partial(noop_stage_job, script=str(script)))
    result = CliRunner().invoke(app, ["worker", "--submitit", "--jobs", "3", "--cluster", "local", "--wait", "--home",
                                      str(home), "--poll", "0.1"])
    assert result.exit_code == 0, result.output
    processed = [int(n) for n in re.findall(r"job \S+: (\d+) run\(s\) processed", result.output)]
    with Store(home, url=url) as store:
        runs = store.list_runs()
    print(f"\nruns per job {processed}")
    assert len(processed) == 3 and sum(processed) == 12 and sum(1 for n in processed if n) >= 2
    assert [run.id for run in runs] == run_ids and {run.status for run in runs} == {"done"}
    assert len({run.worker for run in runs}) == sum(1 for n in processed if n)   # one worker (process) per job
