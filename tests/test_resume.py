"""Checkpoints and resume, everything real: a tiny-random training stopped by the preemption drill
(INNERDPO_STOP_AT_STEP) after a checkpoint, SIGKILLed, resumed, and compared with an uninterrupted run of the same
seed (adapter and transform weights, metrics.jsonl); broken checkpoints fall back; the worker resumes a re-claimed
run."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from innerdpo_bench import rundir, runstate
from innerdpo_bench.config import TrainConfig, auto_save_steps
from innerdpo_bench.train import resume
from innerdpo_bench.train.trainer import train

CLI = [sys.executable, "-m", "innerdpo_bench"]
# 12 rows, 2 pairs per forward, 4 per step: 3 steps per epoch, 2 micro-batches per step.
OPTIONS = dict(base_model="tiny-random", dataset="mini:train", max_rows=12, batch_size=2, effective_batch=4,
               logging_steps=1, learning_rate=5e-3, seed=3, max_steps=8)
TIMING = ("time", "elapsed_s")


def flags(options: dict) -> list[str]:
    return [arg for name, value in options.items() for arg in (rundir_flag(name), str(value))]


def rundir_flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def stopped(pid: int) -> bool:
    """Whether the process is stopped (SIGSTOP: state T) or gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("T", "t", "Z")
    except OSError:
        return True


def train_until_stopped(method: str, run_dir: Path, stop_at: int, **options) -> None:
    """`innerdpo train` in a subprocess that stops itself after step `stop_at`'s record; then SIGKILL it."""
    env = {**os.environ, "INNERDPO_STOP_AT_STEP": str(stop_at)}
    proc = subprocess.Popen([*CLI, "train", method, *flags({**OPTIONS, **options}), "--output-dir", str(run_dir),
                             "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        while not stopped(proc.pid):
            try:
                proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
        assert proc.poll() is None, f"train exited ({proc.returncode}) before the drill stopped it:\n{proc.stdout.read()}"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert rundir.read_status(run_dir)["state"] == "running"  # killed: nothing marked it


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / rundir.METRICS).read_text().splitlines()]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    found = {f"adapter.{k}": v for k, v in load_file(str(run_dir / "adapter" / "adapter_model.safetensors")).items()}
    if (run_dir / rundir.TRANSFORMS_WEIGHTS).is_file():
        found.update({f"transform.{k}": v for k, v in load_file(str(run_dir / rundir.TRANSFORMS_WEIGHTS)).items()})
    if (run_dir / rundir.LEARNED_SIGN).is_file():
        found["learned_sign"] = runstate.load_learned_sign(run_dir)[1]
    return found


def assert_same_run(resumed: Path, uninterrupted: Path) -> float:
    """Same weights (1e-6) and the same metrics records step by step; the largest weight difference."""
    a, b = weights(resumed), weights(uninterrupted)
    assert a.keys() == b.keys()
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    assert diff <= 1e-6, diff
    rows_a, rows_b = metrics(resumed), metrics(uninterrupted)
    steps = [row["step"] for row in rows_a if "loss" in row]
    assert steps == list(range(1, OPTIONS["max_steps"] + 1))  # none missing, none twice
    assert [row["step"] for row in rows_b if "loss" in row] == steps
    for row_a, row_b in zip(rows_a[:-1], rows_b[:-1]):
        assert all(isinstance(row_a[key], str) or row_a[key] >= 0 for key in TIMING)
        assert {k: v for k, v in row_a.items() if k not in TIMING} == pytest.approx(
            {k: v for k, v in row_b.items() if k not in TIMING}, abs=1e-6)
    summary = rows_a[-1]
    assert {"train_runtime", "train_samples_per_second", "train_steps_per_second", *TIMING} <= set(summary)
    assert not resume.checkpoints_dir(resumed).exists()  # a complete run keeps no checkpoints
    return diff


# name → (method, options beyond OPTIONS)
VARIANTS = {"dpo": ("dpo", {}), "hs-ether-InnerDPO": ("hs-ether-InnerDPO", {}),
            # the learned signs (and their Adam state) live outside the PEFT layers: saved and restored too
            "learned_sign": ("hs-none-InnerDPO", {"align_method": "learned_sign", "learned_sign_lr": 0.05})}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_model_path):
    """One uninterrupted run per variant, without checkpoints (they change nothing)."""
    root = tmp_path_factory.mktemp("uninterrupted")
    return {name: train(TrainConfig(method=method, output_dir=str(root / name), save_steps=0, **OPTIONS, **extra),
                        progress=False) for name, (method, extra) in VARIANTS.items()}


@pytest.mark.parametrize(("variant", "save_steps"), [
    ("dpo", 3),                 # the checkpoint ends an epoch: the next epoch draws its order afresh
    ("hs-ether-InnerDPO", 4),   # mid-epoch, mid-accumulation: the interrupted epoch's order is replayed
    ("learned_sign", 4),
])
def test_sigkill_after_a_checkpoint_then_resume_equals_the_uninterrupted_run(tmp_path, uninterrupted, variant,
                                                                            save_steps):
    method, extra = VARIANTS[variant]
    run_dir = tmp_path / "run"
    train_until_stopped(method, run_dir, stop_at=save_steps + 1, save_steps=save_steps, **extra)
    assert [step for step, _ in resume.list_checkpoints(run_dir)] == [save_steps]
    assert metrics(run_dir)[-1]["step"] == save_steps + 1  # a record past the checkpoint, to be dropped
    cfg = TrainConfig(method=method, output_dir=str(run_dir), save_steps=save_steps, **OPTIONS, **extra)
    train(cfg, progress=False, resume_run=True)
    assert rundir.read_status(run_dir)["state"] == "complete"
    assert rundir.read_status(run_dir)["resumed_from_step"] == save_steps
    log = (run_dir / rundir.TRAIN_LOG).read_text()
    assert f"resuming from checkpoint-{save_steps}: step {save_steps} of {OPTIONS['max_steps']}" in log
    assert_same_run(run_dir, uninterrupted[variant])
    assert metrics(run_dir)[-1]["resumed_from_step"] == save_steps


@pytest.fixture(scope="module")
def stopped_with_two_checkpoints(tmp_path_factory, tiny_model_path):
    run_dir = tmp_path_factory.mktemp("stopped") / "run"
    train_until_stopped("dpo", run_dir, stop_at=5, save_steps=2, save_total_limit=2)
    assert [step for step, _ in resume.list_checkpoints(run_dir)] == [2, 4]
    return run_dir


def damage(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, stopped_with_two_checkpoints,
                                                                   uninterrupted):
    run_dir = tmp_path / "run"
    shutil.copytree(stopped_with_two_checkpoints, run_dir)
    damage(resume.checkpoints_dir(run_dir) / "checkpoint-4" / "optimizer.pt")
    train(TrainConfig(method="dpo", output_dir=str(run_dir), save_steps=2, save_total_limit=2, **OPTIONS),
          progress=False, resume_run=True)
    log = (run_dir / rundir.TRAIN_LOG).read_text()
    assert "checkpoint-4 is not usable: optimizer.pt differs from what was saved; falling back to checkpoint-2" in log
    assert "resuming from checkpoint-2: step 2 of 8" in log
    assert_same_run(run_dir, uninterrupted["dpo"])


def test_a_half_written_and_a_corrupt_checkpoint_mean_a_fresh_start(tmp_path, stopped_with_two_checkpoints,
                                                                    uninterrupted):
    run_dir = tmp_path / "run"
    shutil.copytree(stopped_with_two_checkpoints, run_dir)
    (resume.checkpoints_dir(run_dir) / "checkpoint-4" / resume.MARKER).unlink()  # as if killed mid-save
    damage(resume.checkpoints_dir(run_dir) / "checkpoint-2" / "adapter_model.safetensors")
    train(TrainConfig(method="dpo", output_dir=str(run_dir), save_steps=2, save_total_limit=2, **OPTIONS),
          progress=False, resume_run=True)
    log = (run_dir / rundir.TRAIN_LOG).read_text()
    assert ("checkpoint-4 is not usable: it has no completion marker (killed while saving?); checkpoint-2 is not "
            "usable: adapter_model.safetensors differs from what was saved; starting from step 0") in log
    assert "resuming from" not in log
    assert_same_run(run_dir, uninterrupted["dpo"])


def test_resume_refuses_other_options_and_a_complete_run_is_left_alone(tmp_path, uninterrupted):
    from innerdpo_bench.errors import UserError

    done = uninterrupted["dpo"]
    before = weights(done)
    assert train(TrainConfig(method="dpo", output_dir=str(done), **OPTIONS), progress=False, resume_run=True) == done
    assert all(torch.equal(before[k], v) for k, v in weights(done).items())
    run_dir = tmp_path / "run"
    shutil.copytree(done, run_dir)
    rundir.write_status(run_dir, "interrupted")
    with pytest.raises(UserError, match=r"other options: max_steps \(8 → 9\)"):
        train(TrainConfig(method="dpo", output_dir=str(run_dir), **{**OPTIONS, "max_steps": 9}), progress=False,
              resume_run=True)


@pytest.mark.parametrize(("max_steps", "logging_steps", "expected"), [
    (500, 10, 50), (40, 10, 10), (20, 10, 10), (8, 2, 2), (8, 10, 1), (3, 1, 1), (1000, 1, 100)])
def test_default_save_steps_is_a_tenth_on_a_logging_step(max_steps, logging_steps, expected):
    assert auto_save_steps(max_steps, logging_steps) == expected


@pytest.mark.slow
def test_the_worker_resumes_a_reclaimed_run_from_its_checkpoint(tmp_path, tiny_model_path):
    """A worker whose training is stopped after its checkpoint at step 4 is SIGKILLed with it; the next worker
    re-claims the run, resumes from step 4 (its logs say so), runs only steps 5-8 and ends with the adapter of an
    uninterrupted run."""
    from innerdpo_bench.store import Store

    home = tmp_path / "home"
    options = {**OPTIONS, "save_steps": 4}
    subprocess.run([*CLI, "queue", "add", "dpo", *flags(options), "--suite", "mini", "--limit", "4", "--home",
                    str(home)], check=True, capture_output=True, timeout=120)
    worker = [*CLI, "worker", "--home", str(home), "--devices", "cpu", "--once", "--poll", "0.2", "--stale-after", "3"]
    first = subprocess.Popen(worker, env={**os.environ, "INNERDPO_STOP_AT_STEP": "6"}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.STDOUT)
    with Store(home) as store:
        (run,) = store.list_runs()
    paths = rundir.RunPaths(home / "runs" / f"{run.id}-{rundir.slug(run)}", run.kind)
    try:
        child = None
        while child is None or not stopped(child):  # the training subprocess, stopped by the drill at step 6
            assert first.poll() is None, "the first worker exited"
            try:
                child = json.loads(paths.child.read_text())["pid"]
            except (OSError, ValueError, KeyError):
                child = None
            first_wait = subprocess.TimeoutExpired
            try:
                first.wait(timeout=0.1)
            except first_wait:
                pass
        assert resume.has_checkpoint(paths.checkpoint.root)
    finally:
        first.kill()
        first.wait(timeout=30)
        if child is not None:
            os.killpg(child, signal.SIGKILL)  # stopped processes ignore the worker's death signal until killed
    second = subprocess.run(worker, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    with Store(home) as store:
        run = store.get_run(run.id)
    assert run.status == "done", (run.error, paths.worker_log.read_text())
    worker_log = paths.worker_log.read_text()
    assert "resuming the unfinished checkpoint/ of an earlier attempt from its training checkpoint (newest at step 4)" \
        in worker_log
    train_log = paths.checkpoint.train_log.read_text()  # both attempts' training logs
    assert "resuming from checkpoint-4: step 4 of 8" in train_log
    resumed_steps = train_log.split("resuming from checkpoint-4")[1]
    assert "step 4 loss" not in resumed_steps and "step 5 loss" in resumed_steps  # only the remaining steps
    reference = train(dataclasses.replace(run.spec.train, output_dir=str(tmp_path / "uninterrupted")),
                      progress=False)
    assert_same_run(paths.checkpoint.root, reference)
