"""`innerdpo worker`: work through the queue here (one loop per device) or as submitit jobs (SLURM, or local)."""

from __future__ import annotations

import signal
import threading

import typer

from innerdpo_bench.cli.app import (app, console, err_console, genies_dir_option, handle_errors, home_option,
                                    open_store, store_option, use_genies_dir)
from innerdpo_bench.store import resolve_home


@app.command("worker")
@handle_errors
def worker_command(
    home: str | None = home_option(),
    store_url: str | None = store_option(),
    devices: str | None = typer.Option(None, "--devices", help="GPU indices, one worker loop each, e.g. 0,1 "
                                       "(sets CUDA_VISIBLE_DEVICES per run); cpu for one CPU loop. Default: every "
                                       "visible GPU, else cpu.", show_default=False),
    once: bool = typer.Option(False, "--once", help="Exit when nothing is queued or running, instead of waiting "
                              "for new runs (a crashed worker's run is picked up once it goes stale)."),
    max_runs: int | None = typer.Option(None, "--max-runs", help="Exit after claiming N runs (all loops together).",
                                        show_default=False),
    poll: float = typer.Option(2.0, "--poll", help="Seconds between looks at an empty queue."),
    stale_after: float = typer.Option(60.0, "--stale-after", help="Seconds without a heartbeat after which a "
                                      "running run is re-queued (use one value for every worker of a home)."),
    max_attempts: int = typer.Option(3, "--max-attempts", help="A cap on every run's attempts that go stale or are "
                                     "killed, over its own queue add --retries: at this many it fails; a graceful "
                                     "stop (SIGTERM, Ctrl-C) does not count."),
    grace: float = typer.Option(10.0, "--grace", help="Seconds between SIGTERM and SIGKILL when stopping a run."),
    submitit: bool = typer.Option(False, "--submitit", help="Start the worker(s) as submitit jobs (SLURM where "
                                  "available, else local processes) instead of here; each drains the queue.",
                                  rich_help_panel="submitit (SLURM)"),
    jobs: int = typer.Option(1, "--jobs", help="Number of submitit jobs, one worker each.",
                             rich_help_panel="submitit (SLURM)"),
    cluster: str | None = typer.Option(None, "--cluster", help="slurm | local | debug (default: slurm where "
                                       "available, else local).", rich_help_panel="submitit (SLURM)",
                                       show_default=False),
    gpus_per_job: int | None = typer.Option(None, "--gpus-per-job", help="GPUs per job (default 1 on SLURM, none "
                                            "locally); the job's worker runs one loop per GPU.",
                                            rich_help_panel="submitit (SLURM)", show_default=False),
    timeout_min: int = typer.Option(24 * 60, "--timeout-min", help="Job time limit in minutes.",
                                    rich_help_panel="submitit (SLURM)"),
    partition: str | None = typer.Option(None, "--partition", help="SLURM partition.",
                                         rich_help_panel="submitit (SLURM)", show_default=False),
    wait: bool = typer.Option(False, "--wait", help="Wait for the jobs to end and report what they did.",
                              rich_help_panel="submitit (SLURM)"),
    genies_dir: str | None = genies_dir_option(),
) -> None:
    """Work through the queue: claim a run, train then evaluate it in subprocesses (logs in its run directory).

    SIGTERM or Ctrl-C stops the worker: the current run's subprocess is stopped (SIGTERM, then SIGKILL after
    --grace) and the run goes back to the queue; the worker exits with code 130. A worker killed outright
    (SIGKILL) takes its subprocess with it (Linux), and its run is re-queued once it is --stale-after silent.
    """
    from innerdpo_bench.queue.launch import parse_devices, serve
    from innerdpo_bench.queue.worker import WorkerOptions

    use_genies_dir(genies_dir)   # the runs' train and eval subprocesses inherit it
    options = WorkerOptions(poll_s=poll, stale_after_s=stale_after, grace_s=grace, max_attempts=max_attempts,
                            once=once, max_runs=max_runs).validate()
    if submitit:
        _submit(home, options, jobs, cluster, gpus_per_job, timeout_min, partition,
                parse_devices(devices) if devices is not None else None, wait, store_url)
        return
    device_list = parse_devices(devices)
    stop = threading.Event()
    signalled: list[int] = []

    def on_signal(signum, frame) -> None:
        if not signalled:
            err_console.print(f"[yellow]{signal.Signals(signum).name}: stopping; the current run goes back to the "
                              "queue[/yellow]")
        signalled.append(signum)
        stop.set()

    with open_store(home, create=True, store=store_url) as opened:  # corrupt, locked, newer, unreachable: one line
        where = opened.where
    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        console.print(f"worker on {', '.join(device_list)}: {resolve_home(home)} (store {where})", soft_wrap=True,
                      markup=False)
        processed = serve(home, device_list, options, stop, say=lambda message: console.print(message, soft_wrap=True,
                                                                                               markup=False),
                          store_url=store_url)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    console.print(f"worker done: {processed} run(s) processed")
    if signalled:
        raise typer.Exit(130)



def _submit(home, options, jobs, cluster, gpus_per_job, timeout_min, partition, devices, wait, store_url) -> None:
    from innerdpo_bench.errors import RunFailed
    from innerdpo_bench.queue.launch import submit_workers

    if cluster is not None and cluster not in ("slurm", "local", "debug"):
        from innerdpo_bench.errors import unknown_choice

        raise unknown_choice("--cluster", cluster, ("slurm", "local", "debug"))
    submitted = submit_workers(home, options, jobs, cluster, gpus_per_job, timeout_min, partition, devices, store_url)
    for job in submitted:
        console.print(f"submitted worker job {job.job_id}: log {job.paths.stdout}", soft_wrap=True, markup=False)
    if not wait:
        return
    failed = []
    for job in submitted:
        try:
            console.print(f"job {job.job_id}: {job.result()} run(s) processed")
        except Exception as err:  # submitit's FailedJobError and friends carry the job's traceback
            failed.append(f"job {job.job_id}: {str(err).strip().splitlines()[-1] if str(err).strip() else err!r}")
    if failed:
        raise RunFailed(f"{len(failed)} worker job(s) failed: {'; '.join(failed)} (logs in the paths above)")
