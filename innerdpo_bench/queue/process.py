"""Process control for the worker's stage subprocesses: start each in its own group, stop a group, read why one failed."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from innerdpo_bench.store import claims

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


def stop_group(pid: int, grace_s: float) -> None:
    """SIGTERM the group of a process this worker did not start, then SIGKILL, each waiting up to `grace_s`."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        signal_group(pid, signum)
        deadline = time.monotonic() + grace_s
        while claims.cmdline(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if claims.cmdline(pid) is None:
            return


def killed(code: int) -> bool:
    """Whether a stage's exit code says it was killed from outside, the way a cluster fails (the kernel's
    out-of-memory SIGKILL, a scheduler's SIGTERM, a lost session's SIGHUP): a signal (a negative code), or the
    128 + N a shell or our own SIGTERM handler (`train`: 130) exits with. Not an error the stage reported itself
    (1: a failure such as a NaN loss, 2: a bad flag or file), which happens again when run again."""
    return code < 0 or (code > 128 and code - 128 in signal.valid_signals())


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
