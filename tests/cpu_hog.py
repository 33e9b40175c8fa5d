"""Run a command while every core is kept busy: `python tests/cpu_hog.py [--seconds S] [--repeat N] -- CMD ...`.

The stress check of `make test-stress`: the dashboard, worker and end-to-end tests must pass when the machine is
loaded (they wait for the state they assert, never for time). One spinning process per core (or `--hogs`),
each of which exits by itself after `--seconds`, so nothing outlives a killed run; the command runs `--repeat`
times and the exit code is the first failing run's (0 when all pass). Not a test module (no `test_` prefix).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import subprocess
import sys
import time


def _spin(deadline: float) -> None:
    x = 0
    while time.monotonic() < deadline:
        x = (x * 1103515245 + 12345) % 2**31


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1800.0, help="hard limit on the hogs' lifetime")
    parser.add_argument("--hogs", type=int, default=os.cpu_count() or 2, help="spinning processes (default: cores)")
    parser.add_argument("--repeat", type=int, default=1, help="run the command this many times")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give a command after --")
    deadline = time.monotonic() + args.seconds
    hogs = [multiprocessing.Process(target=_spin, args=(deadline,), daemon=True) for _ in range(args.hogs)]
    for hog in hogs:
        hog.start()
    code = 0
    try:
        for attempt in range(1, args.repeat + 1):
            started = time.monotonic()
            result = subprocess.run(command)
            print(f"stress run {attempt}/{args.repeat}: exit {result.returncode} in {time.monotonic() - started:.0f}s "
                  f"with {args.hogs} busy core(s)", flush=True)
            code = code or result.returncode
    finally:
        for hog in hogs:
            hog.terminate()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
