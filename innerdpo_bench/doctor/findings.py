"""What `innerdpo doctor` reports: a `Finding` (the problem, naming the file; what fixes it; the safe repair), and
the leftover files of killed writes, which every part of the workspace can hold."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from innerdpo_bench import rundir

LEFTOVER_AGE_S = 600.0   # a cache's temporary file younger than this may belong to a write in progress


@dataclass(frozen=True)
class Finding:
    """One thing wrong: `problem` names the file; `fix` is what the user runs (when `repair` cannot); `repair`
    is the safe repair and `repair_text` says what it does."""

    problem: str
    fix: str | None = None
    repair: Callable[[], None] | None = None
    repair_text: str | None = None


def leftover_files(directory: Path) -> list[Path]:
    """What a killed write left in `directory` (not recursive): `rundir.leftover_files` (temporary files of atomic
    writes whose writer is gone, and rows files no eval.json names)."""
    return rundir.leftover_files(directory)


def old(path: Path, now: float) -> bool:
    try:
        return now - path.stat().st_mtime >= LEFTOVER_AGE_S
    except OSError:
        return False


def remove(path: Path) -> Callable[[], None]:
    return lambda: shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def leftovers(directory: Path, now: float | None = None) -> list[Finding]:
    """`leftover_files` of `directory` (only those older than LEFTOVER_AGE_S when `now` is given) as findings."""
    found = [path for path in leftover_files(directory) if now is None or old(path, now)]
    return [Finding(f"leftover {path}: left by a write that never finished (no reader uses it)", None,
                    remove(path), "delete it") for path in found]
