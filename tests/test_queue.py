"""The queue and its worker: specs and commands, the `queue` CLI, and every fault (cancel, shutdown, a lost claim,
a killed worker, a leftover subprocess, a deleted run directory, a full disk, a bad flag, NaN, racing workers,
a corrupt or locked store).

Most worker tests swap the train/eval subprocesses for FAKE_STAGE, a 20-line script that writes what the real
ones write (status.json, eval.json) and sleeps as told, so they take seconds; the bad-flag and NaN tests run
the real `innerdpo train`, and tests/test_worker_e2e.py runs everything real.
"""

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
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from innerdpo_bench import rundir
from innerdpo_bench.cli import app as cli_app
from innerdpo_bench.cli.main import app
from innerdpo_bench.config import TrainConfig
from innerdpo_bench.errors import UserError
from innerdpo_bench.queue import launch, process, runspec
from innerdpo_bench.queue import worker as queue_worker
from innerdpo_bench.rundir import RunPaths
from innerdpo_bench.store import STORE_FILE, Store

SHIFTS = ("in_domain", "difficulty_scaling", "moral_transfer", "orthogonal")
runner = CliRunner()

# argv: stage, run_dir, kind, spec JSON, where eval writes eval.json (this claim's staging folder,
# `RunPaths.staged_eval`, as the real eval's --output). spec["fake"][stage] = {"sleep": s, "exit": code, "error": text, "once": bool}:
# with "once", only the stage's first run for this run id sleeps or fails (the marker lives beside the run dir,
# so it survives the run dir's deletion). While HOME/runs/<stage>.hold (or <stage>.hold.eval.attempt-N: claim N's
# only; <run dir name>.<stage>.hold: one run's only) exists, the stage waits before it ends: a test decides when.
FAKE_STAGE = r'''
import json, os, signal, sys, time
from pathlib import Path
stage, run_dir, kind, spec, out = sys.argv[1], Path(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4]), Path(sys.argv[5])
fake = spec.get("fake", {}).get(stage, {})
marker = run_dir.parent / f"{run_dir.name}.{stage}.ran"
if fake.get("once") and marker.exists():
    fake = {}
marker.touch()
checkpoint = run_dir / "checkpoint"
(run_dir / f"{stage}.pid").write_text(str(os.getpid()))
def status(state, **extra):
    (checkpoint / "status.json").write_text(json.dumps({"state": state, **extra}))
def on_term(signum, frame):
    if stage == "train":
        status("interrupted", error="interrupted before the run finished")
    sys.exit(130)
signal.signal(signal.SIGTERM, on_term)
print(f"{stage} started", flush=True)
if stage == "train":
    if checkpoint.exists() and any(checkpoint.iterdir()):
        print(f"error: output directory {checkpoint} is not empty"); sys.exit(2)
    checkpoint.mkdir(parents=True, exist_ok=True)
    status("running")
else:
    out.parent.mkdir(parents=True, exist_ok=True)   # as the real eval: the output's folder is made before any work
time.sleep(fake.get("sleep", 0))
holds = [run_dir.parent / name for name in (f"{stage}.hold", f"{stage}.hold.{out.parent.name}",
                                             f"{run_dir.name}.{stage}.hold")]
while any(hold.exists() for hold in holds):   # a test holds the stage here: any run's, claim N's, or one run's
    time.sleep(0.02)
if fake.get("exit"):
    if stage == "train":
        status("failed", error=fake.get("error", "boom"))
    print("error:", fake.get("error", "boom"), flush=True)
    sys.exit(fake["exit"])
if stage == "train":
    status("complete")
else:
    seed = spec.get("train", {}).get("seed", 0)
    shifts = {s: {"acc": 0.5 + 0.1 * i + 0.01 * seed, "acc_stderr": 0.1, "n": 8} for i, s in enumerate(
        ["in_domain", "difficulty_scaling", "moral_transfer", "orthogonal"])}
    out.write_text(json.dumps({"shifts": shifts, "coherence": {"nll_ratio": 1.0 + seed / 100, "nll_diff": None},
                               "provenance": {s: {"dataset": "mini:" + s, "N": 8} for s in shifts}}))
print(f"{stage} finished", flush=True)
'''

# Runs the real CLI with the fake stages: python -c DRIVER FAKE_SCRIPT worker --home ...
DRIVER = r'''
import json, sys
from innerdpo_bench.queue import worker
script = sys.argv[1]
from innerdpo_bench.rundir import RunPaths
worker.stage_command = lambda run, stage, run_dir, resume_train=False: [
    sys.executable, script, stage, str(run_dir), run.kind, json.dumps(run.spec.to_json()),
    str(RunPaths(run_dir, run.kind).staged_eval(run.claims))]
from innerdpo_bench.cli.main import app
app(sys.argv[2:], prog_name="innerdpo")
'''


@pytest.fixture
def fake_stage(tmp_path, monkeypatch):
    """Swap the train/eval subprocesses for FAKE_STAGE in this process; the script's path."""
    script = tmp_path / "fake_stage.py"
    script.write_text(FAKE_STAGE)
    monkeypatch.setattr(queue_worker, "stage_command", lambda run, stage, run_dir, resume_train=False:
                        fake_command(script, run, stage, run_dir))
    return script


def fake_command(script, run, stage, run_dir) -> list[str]:
    """The argv of FAKE_STAGE (or a variant of it at `script`) for one stage of `run`."""
    return [sys.executable, str(script), stage, str(run_dir), run.kind, json.dumps(run.spec.to_json()),
            str(RunPaths(run_dir, run.kind).staged_eval(run.claims))]


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def fake_spec(seed=0, train=None, evaluation=None):
    fake = {"train": train or {}, "eval": evaluation or {}}
    return {"name": "dpo", "train": {"method": "dpo", "seed": seed}, "eval": {"suite": "mini", "limit": 8}, "fake": fake}


def add(home, *specs, kind="train_eval"):
    with Store(home) as store:
        return store.add_runs(list(specs), kind=kind)


def get(home, run_id):
    with Store(home) as store:
        return store.get_run(run_id)


def options(**overrides):
    values = {"poll_s": 0.05, "stale_after_s": 2.0, "grace_s": 3.0, "once": True} | overrides
    return queue_worker.WorkerOptions(**values)


def work(home, stop=None, **overrides):
    """One Worker loop, in this thread, until the queue is drained; the Worker."""
    worker = queue_worker.Worker(home, None, options(**overrides), stop or threading.Event())
    worker.loop()
    return worker


def start_worker(home, **overrides):
    """A Worker loop on a thread; (worker, thread, stop)."""
    stop = threading.Event()
    worker = queue_worker.Worker(home, None, options(**overrides), stop)
    thread = threading.Thread(target=worker.loop, daemon=True)
    thread.start()
    return worker, thread, stop


def wait_for(predicate, timeout=30.0, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def run_dir_of(home, run_id) -> Path:
    return Path(get(home, run_id).run_dir)


def pid_of(home, run_id, stage="train") -> int:
    """The pid of the run's fake `stage` subprocess, once it has started."""
    wait_for(lambda: get(home, run_id).run_dir is not None, what="the run to be claimed")
    path = run_dir_of(home, run_id) / f"{stage}.pid"
    wait_for(lambda: path.exists() and path.read_text(), what=f"{stage}.pid")
    return int(path.read_text())


# --------------------------------------------------------------------------- specs and commands


def test_train_specs_one_per_seed_canonical_and_validated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text('{"hidden_size": 64, "num_hidden_layers": 4}')
    specs = runspec.train_specs(TrainConfig(method="HS-NONE-innerdpo", base_model="model", alpha=1.0, seed=7),
                                seeds=[1, 2], evaluation=runspec.eval_spec("mini", 8))
    assert [spec.train.seed for spec in specs] == [1, 2]
    assert {spec.name for spec in specs} == {"hs-none-InnerDPO α=1"}
    assert specs[0].train.method == "hs-none-InnerDPO"
    assert specs[0].train.base_model == str(tmp_path / "model")  # the worker runs elsewhere
    stored = specs[0].to_json()
    assert "output_dir" not in stored["train"] and stored["eval"] == {"suite": "mini", "limit": 8}
    assert [spec.train.seed for spec in runspec.train_specs(TrainConfig(method="dpo", seed=7))] == [7]
    with pytest.raises(UserError, match="unknown method 'dpx'"):
        runspec.train_specs(TrainConfig(method="dpx"))
    with pytest.raises(UserError, match="suite"):
        runspec.eval_spec(suite="nope")
    with pytest.raises(UserError, match="no config.json"):  # checked at queue time, not by the worker
        runspec.train_specs(TrainConfig(method="dpo", base_model=str(tmp_path)))
    assert runspec.base_spec("tiny-random", "mini", 4).to_json() == {
        "name": "none", "eval": {"checkpoint": "tiny-random", "suite": "mini", "limit": 4}}


@pytest.mark.parametrize("text, expected", [("1,2,3", [1, 2, 3]), ("5", [5]), (None, None)])
def test_parse_seeds(text, expected):
    assert runspec.parse_seeds(text) == expected


@pytest.mark.parametrize("text, message", [("1,x", "comma-separated integers"), (",", "empty"), ("1,1", "repeats")])
def test_parse_seeds_rejects(text, message):
    with pytest.raises(UserError, match=message):
        runspec.parse_seeds(text)


def test_stage_commands_train_from_the_stored_config_and_pass_eval_flags(home):
    spec = {"name": "dpo", "train": {"method": "dpo", "seed": 3, "max_rows": None, "filter_sinks": False,
                                     "norm_before_pool": True, "learning_rate": 1e-05},
            "eval": {"suite": "mini", "limit": 8}}
    (train_id,) = add(home, spec)
    (base_id,) = add(home, {"name": "none", "eval": {"checkpoint": "tiny-random", "suite": None, "limit": 4}},
                     kind="eval")
    with Store(home) as store:
        store.claim_next("w"), store.claim_next("w")
    run, base = get(home, train_id), get(home, base_id)
    run_dir = Path("/r")
    python = [sys.executable, "-m", "innerdpo_bench"]
    assert queue_worker.stage_command(run, "train", run_dir) == [
        *python, "train", "--config", "/r/train_spec.json", "--output-dir", "/r/checkpoint", "--quiet"]
    # evaluation writes into this claim's staging folder; the worker publishes it (RUN/checkpoint/eval.json, RUN/eval.json)
    assert queue_worker.stage_command(run, "eval", run_dir) == [*python, "eval", "/r/checkpoint", "--suite", "mini",
                                                         "--limit", "8", "--output", "/r/eval.attempt-1/eval.json"]
    assert queue_worker.stage_command(base, "eval", run_dir) == [*python, "eval", "tiny-random", "--limit", "4",
                                                          "--output", "/r/eval.attempt-1/eval.json"]
    assert rundir.default_run_dir(home, run) == home / "runs" / f"{train_id}-dpo-s3"
    assert rundir.default_run_dir(home, base) == home / "runs" / f"{base_id}-none-tiny-random"


@pytest.mark.parametrize("log, line", [
    ("noise\nerror: unknown method 'dpx'. Did you mean 'dpo'?\n", "unknown method 'dpx'. Did you mean 'dpo'?"),
    ("Usage: x\n╭─ Error ────╮\n│ No such option: --bogus    │\n╰────────────╯\n", "No such option: --bogus"),
    ("Traceback (most recent call last):\n  File x\nRuntimeError: CUDA out of memory\n", "RuntimeError: CUDA out of memory"),
    ("", ""),
])
def test_error_line_finds_the_reason(log, line):
    assert process.error_line(log) == line


@pytest.mark.parametrize("text, devices", [("0,1", ["0", "1"]), ("cpu", ["cpu"]), (" 3 ", ["3"])])
def test_parse_devices(text, devices):
    assert launch.parse_devices(text) == devices


@pytest.mark.parametrize("text", ["gpu0", "0,0", ""])
def test_parse_devices_rejects(text):
    with pytest.raises(UserError, match="--devices"):
        launch.parse_devices(text)


def test_default_devices_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert launch.default_devices() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert launch.default_devices() == ["cpu"]


# --------------------------------------------------------------------------- the worker, with fake stages


def test_a_run_trains_evaluates_and_records_results_and_logs(home, fake_stage):
    (run_id,) = add(home, fake_spec(seed=2))
    (base_id,) = add(home, {"name": "none", "eval": {"checkpoint": "tiny-random"}}, kind="eval")
    assert work(home).processed == 2
    run = get(home, run_id)
    assert (run.status, run.attempts, run.exit_code, run.error) == ("done", 1, 0, None)
    assert run.results["in_domain"]["acc"] == pytest.approx(0.52)
    assert run.results["orthogonal"]["acc"] == pytest.approx(0.82)
    assert run.results["coherence"]["nll_ratio"] == pytest.approx(1.02)
    assert set(run.results) == {*SHIFTS, "coherence"}
    with Store(home) as store:
        assert store.get_provenance(run_id)["moral_transfer"] == {"dataset": "mini:moral_transfer", "N": 8}
    run_dir = Path(run.run_dir)
    assert run_dir == home / "runs" / f"{run_id}-dpo-s2"
    assert "train finished" in (run_dir / "train.log").read_text()
    assert "eval finished" in (run_dir / "eval.log").read_text()
    worker_log = (run_dir / "worker.log").read_text()
    assert "attempt 1 claimed" in worker_log and "attempt 1 done" in worker_log
    assert rundir.read_status(run_dir / "checkpoint")["state"] == "complete"
    written = TrainConfig.from_file(run_dir / "train_spec.json")  # train's --config: the spec's whole config
    assert written == TrainConfig.from_mapping(fake_spec(seed=2)["train"], "the spec")
    base = get(home, base_id)
    assert base.status == "done" and (Path(base.run_dir) / "eval.json").is_file()


def test_cancel_stops_the_running_subprocess_group(home, fake_stage):
    (run_id,) = add(home, fake_spec(train={"sleep": 60}))
    worker, thread, _ = start_worker(home, stale_after_s=1.0)
    pid = pid_of(home, run_id)
    with Store(home) as store:
        assert store.cancel(run_id) == "cancelling"
    thread.join(15)
    assert not thread.is_alive()
    run = get(home, run_id)
    assert (run.status, run.error, run.exit_code) == ("cancelled", "cancelled while running", 130)
    assert not alive(pid)
    assert rundir.read_status(Path(run.run_dir) / "checkpoint")["state"] == "interrupted"


def test_worker_stop_hands_the_run_back_and_the_next_attempt_keeps_the_old_checkpoint(home, fake_stage):
    (run_id,) = add(home, fake_spec(train={"sleep": 60, "once": True}))
    worker, thread, stop = start_worker(home)
    pid = pid_of(home, run_id)
    stop.set()
    thread.join(30)
    assert not thread.is_alive()  # the fake training sleeps 60 s: a shutdown does not wait for it
    assert not alive(pid)
    run = get(home, run_id)
    assert (run.status, run.attempts, run.claims, run.worker) == ("queued", 0, 1, None)  # a stop is no attempt
    run_dir = Path(run.run_dir)
    assert "run returned to the queue" in (run_dir / "worker.log").read_text()
    work(home)
    run = get(home, run_id)
    assert (run.status, run.attempts, run.claims) == ("done", 1, 2)
    assert rundir.read_status(run_dir / "checkpoint.attempt-1")["state"] == "interrupted"
    assert rundir.read_status(run_dir / "checkpoint")["state"] == "complete"
    assert (run_dir / "train.log").read_text().count("attempt") == 2


def test_a_lost_claim_stops_the_subprocess_and_leaves_the_run_to_its_new_owner(home, fake_stage):
    (run_id,) = add(home, fake_spec(train={"sleep": 60}))
    worker, thread, _ = start_worker(home, stale_after_s=1.0, once=False, max_runs=1)
    pid = pid_of(home, run_id)
    with Store(home) as store:
        time.sleep(0.05)
        assert store.requeue_stale(timeout_s=0) == [run_id]  # as if the worker had been silent
    thread.join(15)
    assert not thread.is_alive() and not alive(pid)
    run = get(home, run_id)
    assert (run.status, run.worker, run.finished_at) == ("queued", None, None)  # not finished by the old worker
    assert "no longer held" in (Path(run.run_dir) / "worker.log").read_text()


def test_a_stage_that_fails_records_its_error_line_and_retry_reuses_a_complete_checkpoint(home, fake_stage):
    (run_id,) = add(home, fake_spec(evaluation={"exit": 3, "error": "suite mini has no rows", "once": True}))
    work(home)
    run = get(home, run_id)
    assert (run.status, run.exit_code) == ("failed", 3)
    assert run.error == "eval exited with code 3: suite mini has no rows"
    assert run.results == {}
    with Store(home) as store:
        store.retry(run_id)
    work(home)
    run = get(home, run_id)
    assert (run.status, run.attempts) == ("done", 1)
    run_dir = Path(run.run_dir)
    assert (run_dir / "train.log").read_text().count("train started") == 1  # trained once, evaluated twice
    assert (run_dir / "eval.log").read_text().count("eval started") == 2
    assert "complete from an earlier attempt" in (run_dir / "worker.log").read_text()


def test_train_failure_prefers_status_json_error(home, fake_stage):
    (run_id,) = add(home, fake_spec(train={"exit": 1, "error": "loss became nan at step 2"}))
    work(home)
    run = get(home, run_id)
    assert (run.status, run.exit_code, run.error) == ("failed", 1, "train exited with code 1: loss became nan at step 2")


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


def test_three_workers_racing_process_every_run_exactly_once(home, fake_stage):
    run_ids = add(home, *[fake_spec(seed=seed) for seed in range(12)])
    workers = [queue_worker.Worker(home, None, options(), threading.Event()) for _ in range(3)]
    threads = [threading.Thread(target=worker.loop) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert sum(worker.processed for worker in workers) == 12
    assert sum(1 for worker in workers if worker.processed) >= 2  # really contended
    for run_id in run_ids:
        run = get(home, run_id)
        assert (run.status, run.attempts) == ("done", 1)
        assert (Path(run.run_dir) / "worker.log").read_text().count("claimed") == 1


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


# --------------------------------------------------------------------------- the worker CLI as a process


def worker_process(script, home, *args):
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(script), "worker", "--home", str(home), "--poll", "0.1",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


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


def test_two_device_loops_each_set_cuda_visible_devices(home, tmp_path, monkeypatch):
    script = tmp_path / "env_stage.py"
    script.write_text(FAKE_STAGE.replace('print(f"{stage} started", flush=True)',
                                         'print("CUDA_VISIBLE_DEVICES=" + os.environ["CUDA_VISIBLE_DEVICES"], flush=True)'))
    monkeypatch.setattr(queue_worker, "stage_command", lambda run, stage, run_dir, resume_train=False:
                        fake_command(script, run, stage, run_dir))
    run_ids = add(home, *[fake_spec(seed=seed, train={"sleep": 0.5}) for seed in range(4)])
    assert launch.serve(home, ["0", "1"], options(), threading.Event()) == 4
    seen = {(run_dir_of(home, run_id) / "train.log").read_text().split("CUDA_VISIBLE_DEVICES=")[1].split()[0]
            for run_id in run_ids}
    assert seen == {"0", "1"}
    assert {get(home, run_id).worker.rsplit(":", 1)[1] for run_id in run_ids} == {"0", "1"}


def test_submitit_jobs_run_workers_that_drain_the_queue(home, fake_stage):
    pytest.importorskip("submitit")
    run_ids = add(home, *[fake_spec(seed=seed) for seed in range(3)])
    jobs = launch.submit_workers(home, options(once=False), jobs=2, cluster="debug")  # debug: in this process
    assert sum(job.result() for job in jobs) == 3  # a job's worker drains the queue even without --once
    assert {get(home, run_id).status for run_id in run_ids} == {"done"}
    with pytest.raises(UserError, match="--jobs must be at least 1"):
        launch.submit_workers(home, options(), jobs=0, cluster="debug")


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


# --------------------------------------------------------------------------- the queue CLI


def invoke(*args):
    return runner.invoke(app, [str(arg) for arg in args])


def test_queue_commands(home):
    added = invoke("queue", "add", "hs-none-innerdpo", "--base-model", "tiny-random", "--alpha", "1", "--seeds",
                   "1,2,3", "--suite", "mini", "--limit", "8", "--home", home)
    assert added.exit_code == 0, added.output
    assert "queued run 1: hs-none-InnerDPO α=1 seed 1" in added.output
    assert invoke("queue", "add-base", "tiny-random", "--limit", "4", "--home", home).exit_code == 0
    listed = json.loads(invoke("queue", "ls", "--json", "--home", home).output)
    assert [(run["id"], run["seed"], run["method"], run["kind"]) for run in listed] == [
        (1, 1, "hs-none-InnerDPO", "train_eval"), (2, 2, "hs-none-InnerDPO", "train_eval"),
        (3, 3, "hs-none-InnerDPO", "train_eval"), (4, None, "none", "eval")]
    assert listed[0]["spec"]["train"]["alpha"] == 1.0 and listed[3]["spec"]["eval"]["limit"] == 4
    assert invoke("queue", "move", 4, "--to-front", "--home", home).exit_code == 0
    assert invoke("queue", "move", 3, "--before", 1, "--home", home).exit_code == 0
    order = [run["id"] for run in json.loads(invoke("queue", "ls", "--json", "--home", home).output)]
    assert order == [4, 3, 1, 2]
    assert "run 2 cancelled" in invoke("queue", "cancel", 2, "--home", home).output
    assert "run 2 queued again" in invoke("queue", "retry", 2, "--home", home).output
    with Store(home) as store:
        store.claim_next("w")  # run 4, the head
    assert "cancel requested" in invoke("queue", "cancel", 4, "--home", home).output
    table_text = invoke("queue", "ls", "--home", home).output
    assert "cancelling" in table_text and "3 queued, 1 running" in table_text
    removed = invoke("queue", "rm", 1, "--home", home)
    assert removed.exit_code == 0 and "run 1 removed" in removed.output
    assert [run["id"] for run in json.loads(invoke("queue", "ls", "--json", "--home", home).output)] == [4, 3, 2]


@pytest.mark.parametrize("args, message", [
    (["queue", "add", "dpx"], "unknown method 'dpx'. Did you mean 'dpo'?"),
    (["queue", "add", "dpo", "--seeds", "1,a"], "--seeds takes comma-separated integers"),
    (["queue", "add", "dpo", "--suite", "alpaca_eazy"], "alpaca_eazy"),
    (["queue", "add", "dpo", "--max-steps", "0"], "--max-steps must be in [1, 10000000], got 0"),
    (["queue", "add", "dpo", "--limit", "0"], "--limit must be at least 1, got 0"),
    (["queue", "cancel", "99"], "no run with id 99"),
    (["queue", "retry", "1"], "run 1 is running; only failed or cancelled runs can be retried"),
    (["queue", "move", "1"], "exactly one of --before RUN_ID or --to-front"),
    (["queue", "move", "1", "--before", "1"], "cannot move run 1 before itself"),
    (["queue", "rm", "2"], "run 2 is running; cancel it first"),
    (["worker", "--devices", "gpu0"], "--devices takes GPU indices"),
    (["worker", "--poll", "0"], "--poll must be positive"),
    (["worker", "--max-runs", "0"], "--max-runs must be at least 1"),
])
def test_queue_and_worker_bad_input_is_one_line_and_exit_2(home, args, message):
    add(home, fake_spec(), fake_spec())
    with Store(home) as store:
        store.claim_next("w")
        store.claim_next("w")
    result = invoke(*args, "--home", home)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_a_corrupt_store_is_one_line_for_every_command(home):
    home.mkdir()
    (home / STORE_FILE).write_bytes(b"not a database at all\n" * 100)
    for args in (["queue", "ls"], ["queue", "add", "dpo"], ["worker", "--once", "--devices", "cpu"], ["runs"]):
        result = invoke(*args, "--home", home)
        assert result.exit_code == 2, (args, result.output)
        assert "is not a valid SQLite database" in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    assert (home / STORE_FILE).read_bytes().startswith(b"not a database")  # left as it was


def test_a_locked_store_is_one_line_and_changes_nothing(home, monkeypatch):
    add(home, fake_spec())
    monkeypatch.setattr(cli_app, "STORE_BUSY_TIMEOUT_S", 0.2)
    holder = sqlite3.connect(home / STORE_FILE, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = invoke("queue", "add", "dpo", "--home", home)
        assert result.exit_code == 2 and "is locked" in result.output, result.output
        assert "Traceback" not in result.output
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with Store(home) as store:
        assert [run.id for run in store.list_runs()] == [1]


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
