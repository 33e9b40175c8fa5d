"""Process control for the worker's stage subprocesses: start each in its own group, stop a group, read why one failed."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def _die_with_worker() -> None:
    """preexec_fn (Linux): SIGTERM this child when the worker thread that started it dies, even by SIGKILL."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def start(command: list[str], log: IO[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    """`command` in a new session (its own process group), stdout and stderr appended to `log`; on Linux it
    dies with the thread that started it (PR_SET_PDEATHSIG)."""
    return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                            env=env, start_new_session=True,
                            preexec_fn=_die_with_worker if _LIBC is not None else None)


def signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def terminate(proc: subprocess.Popen, grace_s: float) -> int:
    """SIGTERM the subprocess's group, SIGKILL it after `grace_s`; the exit code."""
    signal_group(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        signal_group(proc.pid, signal.SIGKILL)
        return proc.wait()


def cmdline(pid: int) -> str | None:
    """The process's command line (Linux /proc), or None if it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return raw.replace(b"\0", b" ").decode(errors="replace") or None


def innerdpo_alive(pid: int) -> bool:
    """Whether `pid` is still an innerdpo process (Linux /proc; elsewhere assumed alive, so only staleness
    requeues). A pid reused by an unrelated program counts as gone."""
    if not sys.platform.startswith("linux"):
        return True
    command = cmdline(pid)
    return command is not None and "innerdpo" in command


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


def stop_group(pid: int, grace_s: float) -> None:
    """SIGTERM the group of a process this worker did not start, then SIGKILL, each waiting up to `grace_s`."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        signal_group(pid, signum)
        deadline = time.monotonic() + grace_s
        while cmdline(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if cmdline(pid) is None:
            return


def describe_exit(stage: str, code: int) -> str:
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
        return f"{stage} was killed by {name}" + (" (out of memory?)" if code == -signal.SIGKILL else "")
    return f"{stage} exited with code {code}"


def error_line(log_text: str) -> str:
    """The line of a subprocess log that says what went wrong: our `error: ...` line, typer's boxed usage
    error, else the last line (a traceback's exception). Box-drawing characters are stripped."""
    lines = [line.strip(" \t│╭╮╰╯─") for line in log_text.splitlines()]
    lines = [line for line in lines if line]
    for index in range(len(lines) - 1, -1, -1):
        if lines[index].lower().startswith("error:"):
            return lines[index][len("error:"):].strip()
        if lines[index] == "Error" and index + 1 < len(lines):
            return lines[index + 1]
    return lines[-1][:500] if lines else ""
