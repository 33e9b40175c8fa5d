"""Who holds a run and in what order runs are taken: worker names (`host:pid:device`), whether a holder's process
is still alive on this host, the note a running row shows, its earlier attempts, and the queue's order. Read by
the worker, `queue ls` and the dashboard; no SQL here (that is `store/__init__.py`)."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterable
from pathlib import Path

from innerdpo_bench.store.run import Run


def cmdline(pid: int) -> str | None:
    """The process's command line (Linux /proc), or None if it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace") or None


def innerdpo_alive(pid: int) -> bool:
    """Whether `pid` is still an innerdpo process (Linux /proc; elsewhere assumed alive, so only staleness
    requeues). A pid reused by an unrelated program counts as gone. A submitit job's worker runs as
    `python -m submitit.core._submit HOME/submitit`, whose command line need not name innerdpo."""
    if not sys.platform.startswith("linux"):
        return True
    command = cmdline(pid)
    return command is not None and ("innerdpo" in command or "submitit.core._submit" in command)


def worker_gone(worker: str | None, host: str | None = None) -> bool:
    """Whether `worker` (a store worker name, `host:pid:device`) ran on this host (`host`, default this machine's
    name) and its process is gone: a run it holds will be requeued by the next worker without waiting for its
    heartbeat to go stale. False when that cannot be known (another host, not Linux, no worker)."""
    name, _, rest = (worker or "").partition(":")
    pid = rest.partition(":")[0]
    if name != (host or socket.gethostname()) or not pid.isdigit() or int(pid) == os.getpid():
        return False
    return not innerdpo_alive(int(pid))


def running_note(run) -> str | None:
    """What a running run's status leaves out: "cancelling" (a cancel is pending) or "worker gone" (its worker's
    process on this host has exited, e.g. when the store could not record the run's end; the next worker
    requeues it at once); None otherwise."""
    if run.status != "running":
        return None
    if run.cancel_requested:
        return "cancelling"
    return "worker gone" if worker_gone(run.worker) else None


def earlier_attempts(run: Run) -> str:
    """Each attempt of `run` that ended with it back in the queue, and why ("1: train was killed by SIGKILL (out of
    memory?); retried (1 of --retries 1)"), oldest first; "" when none. The attempt that ended the run is its status
    and error. What `queue ls` and the dashboard's queue show beside the attempt count."""
    return "; ".join(f"{requeue.claim}: {requeue.reason}" for requeue in run.requeues)


def queue_order(runs: Iterable[Run]) -> list[Run]:
    """Running (oldest first), then queued in claim order, then finished runs by id."""
    runs = list(runs)
    running = sorted((run for run in runs if run.status == "running"), key=lambda run: (run.started_at or 0, run.id))
    queued = sorted((run for run in runs if run.status == "queued"), key=lambda run: (run.priority, run.id))
    rest = [run for run in runs if run.status not in ("running", "queued")]
    return running + queued + rest
