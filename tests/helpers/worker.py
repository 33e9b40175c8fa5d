"""The queue's worker with fake stages: FAKE_STAGE, a 20-line script that writes what the real train and eval
subprocesses write (status.json, eval.json) and sleeps, fails or waits as a run's spec tells it, so worker tests take
seconds; DRIVER, the real `innerdpo worker` command with those stages in place of train and eval; and small readers
and waits for runs, workers and processes. tests/test_worker_e2e.py runs everything real."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from innerdpo_bench.queue import worker as queue_worker
from innerdpo_bench.rundir import RunPaths
from innerdpo_bench.store import Store

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


def fake_command(script, run, stage, run_dir) -> list[str]:
    """The argv of FAKE_STAGE (or a variant of it at `script`) for one stage of `run`."""
    return [sys.executable, str(script), stage, str(run_dir), run.kind, json.dumps(run.spec.to_json()),
            str(RunPaths(run_dir, run.kind).staged_eval(run.claims))]


def fake_spec(seed=0, train=None, evaluation=None):
    """A dpo train_eval spec for the fake stages; `train` and `evaluation` are what each stage does (FAKE_STAGE)."""
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


def worker_process(script, home, *args):
    """`innerdpo worker --home HOME --poll 0.1 ARGS` as a process (DRIVER), with the fake stages at `script`."""
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(script), "worker", "--home", str(home), "--poll", "0.1",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
