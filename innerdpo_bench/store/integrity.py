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


class CorruptStore(UserError):
    """The store file fails its integrity check, or SQLite found it malformed: nothing read from it can be trusted.
    `path` is the file; the message names it and the way out (`recovery_hint`)."""

    def __init__(self, path: Path, detail: str) -> None:
        self.path, self.detail = Path(path), detail
        super().__init__(f"store {path} fails its integrity check ({detail}); {recovery_hint(path)}")


def recovery_hint(path: Path) -> str:
    """How to get a working store back: SQLite's `.recover` copies every readable row into a new file; the
    broken one is kept beside it. `innerdpo doctor` says the same and checks the run directories."""
    path = Path(path)
    recovered = path.with_name(path.stem + ".recovered" + path.suffix)
    broken = path.with_name(path.name + ".broken")
    return (f"recover what is readable with: sqlite3 {path} .recover | sqlite3 {recovered} && "
            f"mv {path} {broken} && mv {recovered} {path} (innerdpo doctor checks the rest)")


def quick_check(con: sqlite3.Connection, path: Path) -> None:
    """CorruptStore unless `PRAGMA quick_check` says ok. A file so damaged that the pragma itself fails raises
    sqlite3.DatabaseError, which `failures.sqlite_errors` turns into a CorruptStore too."""
    problems = [row[0] for row in con.execute("PRAGMA quick_check(3)").fetchall()]
    if problems != ["ok"]:
        raise CorruptStore(path, "; ".join(str(problem) for problem in problems))
