"""The worker with fake stages: a run trained and evaluated; cancel, stop, lost claim, failed stage, races."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from innerdpo_bench import rundir
from innerdpo_bench.config import TrainConfig
from innerdpo_bench.errors import UserError
from innerdpo_bench.queue import launch
from innerdpo_bench.queue import worker as queue_worker
from innerdpo_bench.store import Store

from helpers.worker import (
    FAKE_STAGE,
    add,
    alive,
    fake_command,
    fake_spec,
    get,
    options,
    pid_of,
    run_dir_of,
    start_worker,
    work,
)

SHIFTS = ("in_domain", "difficulty_scaling", "moral_transfer", "orthogonal")


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


# --------------------------------------------------------------------------- device loops and submitit jobs


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
