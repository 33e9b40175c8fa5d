"""Start queue workers: one loop per local device in this process (`serve`), or as submitit jobs (SLURM or local)."""

from __future__ import annotations

import dataclasses
import os
import threading

from innerdpo_bench.errors import UserError
from innerdpo_bench.queue.worker import Budget, Say, Worker, WorkerOptions
from innerdpo_bench.store import Store, resolve_home


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
          say: Say = lambda message: None, store_url: str | None = None) -> int:
    """Run one Worker loop per device, each on its own thread with its own store connection, until all end;
    the number of runs processed. The caller sets `stop` (from a signal handler) to shut down. A store error
    in one loop stops them all and is re-raised here. `store_url` is --store (default: the workspace's store)."""
    options.validate()
    Store(home, url=store_url).close()  # a corrupt, newer or unreachable store: one clear error before any thread
    budget = Budget(options.max_runs)
    errors: list[BaseException] = []
    workers = [Worker(home, device, options, stop, say, budget, store_url) for device in devices]

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


def submitit_job(home: str, options: WorkerOptions, devices: list[str] | None = None) -> int:
    """What one submitit job runs: a worker over the GPUs its allocation shows (CUDA_VISIBLE_DEVICES), until
    the queue is drained; the number of runs it processed. Its lines go to the job's stdout log."""
    return serve(home, devices or default_devices(), dataclasses.replace(options, once=True), threading.Event(),
                 say=lambda message: print(message, flush=True))


def submit_workers(home: str | os.PathLike | None, options: WorkerOptions, jobs: int = 1, cluster: str | None = None,
                   gpus_per_job: int | None = None, timeout_min: int = 24 * 60, partition: str | None = None,
                   devices: list[str] | None = None, store_url: str | None = None) -> list:
    """Start `jobs` workers through submitit (`innerdpo worker --submitit`); their submitit Job objects.

    `cluster` None lets submitit's AutoExecutor choose: SLURM where `sbatch` exists, else local subprocesses
    that outlive this process ("local"; "debug" runs in this process, for tests). `gpus_per_job` defaults to
    1 on SLURM and to no GPU locally. Each job runs `submitit_job`; its log is HOME/submitit/<job id>_0_log.out.
    A job killed by SLURM (preemption, time limit) takes its subprocesses with it and its run is re-queued
    when it goes stale, as with any killed worker.

    The jobs find the store from HOME, which `store_url` (--store) binds first: a store every node reaches
    (PostgreSQL) when they run on other nodes. They are never handed a password (submitit writes a job's
    arguments to HOME/submitit/): they read $PGPASSWORD, which they inherit, or ~/.pgpass.
    """
    try:
        import submitit
    except ImportError:
        raise UserError("--submitit needs the optional dependency submitit: pip install 'innerdpo-bench[slurm]'") from None
    options.validate()
    if jobs < 1:
        raise UserError(f"--jobs must be at least 1, got {jobs}")
    home = resolve_home(home)
    with Store(home, url=store_url) as store:  # a bad store fails here, not in every job
        if store.url.masked != store.url.text and store_url:
            raise UserError(f"--submitit: the jobs cannot be given the password in --store {store.url.masked} (it "
                            "would be written to HOME/submitit/); drop it from the URL and put it in ~/.pgpass or "
                            "$PGPASSWORD, which the jobs read")
    executor = submitit.AutoExecutor(folder=home / "submitit", cluster=cluster)
    if gpus_per_job is None and executor.cluster == "slurm":
        gpus_per_job = 1
    executor.update_parameters(name="innerdpo-worker", timeout_min=timeout_min, gpus_per_node=gpus_per_job,
                               slurm_partition=partition)
    return [executor.submit(submitit_job, str(home), options, devices) for _ in range(jobs)]
