"""The store's integrity check (`PRAGMA quick_check`, run at every open) and what a user does about a failed one.

A corrupt page otherwise surfaces only when a query happens to read it: the dashboard then showed an empty
table, as if the workspace had no runs. `quick_check` reads every page of the file (milliseconds for a store
of thousands of runs) and verifies the b-trees' structure, though not that indexes match their tables
(`integrity_check` does that, at many times the cost).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from innerdpo_bench.errors import UserError

RUNS = "runs"   # HOME/runs: the run directories (`rundir.RUNS_DIR`; the store does not import rundir)


class CorruptStore(UserError):
    """The store file fails its integrity check, or SQLite found it malformed: nothing read from it can be trusted.
    `path` is the file; the message names it, what is wrong (`problem`, `detail`) and the way out (`fix`), which the
    dashboard's broken-store screen shows too."""

    headline = "The store fails its integrity check"

    def __init__(self, path: Path, detail: str, fix: str | None = None) -> None:
        self.path, self.detail = Path(path), detail
        self.fix = fix or recovery_hint(self.path)
        super().__init__(f"{self.problem}; {self.fix}")

    @property
    def problem(self) -> str:
        return f"store {self.path} fails its integrity check ({self.detail})"


class EmptyStore(CorruptStore):
    """The store file is there but holds no store: 0 bytes (cut short, truncated) or an SQLite file without a table.
    A command that only reads refuses it rather than make an empty schema, which would show an empty workspace while
    `runs/` still holds finished runs."""

    headline = "The store is empty"

    def __init__(self, path: Path, detail: str, run_dirs: int) -> None:
        path = Path(path)
        home = path.parent
        if run_dirs:
            fix = (f"{run_dirs} run director{'y' if run_dirs == 1 else 'ies'} under {home / RUNS} are not in it: "
                   f"innerdpo doctor --home {home} --repair rebuilds the store from them (the empty file is kept "
                   "aside), or restore the file from a backup")
        else:
            fix = f"remove it (rm {path}); the next innerdpo queue add makes a new store"
        super().__init__(path, detail, fix)

    @property
    def problem(self) -> str:
        return f"store {self.path} is empty ({self.detail})"


def run_dir_count(home: Path) -> int:
    """How many run directories HOME/runs holds (what an empty store beside them has lost track of)."""
    try:
        return sum(1 for entry in (Path(home) / RUNS).iterdir() if entry.is_dir())
    except OSError:
        return 0


def recovery_hint(path: Path) -> str:
    """How to get a working store back: SQLite's `.recover` copies every readable row into a new file; the
    broken one is kept beside it. `innerdpo doctor` says the same and checks the run directories."""
    path = Path(path)
    recovered = path.with_name(path.stem + ".recovered" + path.suffix)
    broken = path.with_name(path.name + ".broken")
    return (f"recover what is readable with: sqlite3 {path} .recover | sqlite3 {recovered} && "
            f"mv {path} {broken} && mv {recovered} {path}; or use another --home (innerdpo doctor checks the rest)")


def quick_check(con: sqlite3.Connection, path: Path) -> None:
    """CorruptStore unless `PRAGMA quick_check` says ok. A file so damaged that the pragma itself fails raises
    sqlite3.DatabaseError, which `failures.sqlite_errors` turns into a CorruptStore too."""
    problems = [row[0] for row in con.execute("PRAGMA quick_check(3)").fetchall()]
    if problems != ["ok"]:
        raise CorruptStore(path, "; ".join(str(problem) for problem in problems))
