"""What SQLite's failures mean for a user: one line naming the store and the cause, for every error a user can act on."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from innerdpo_bench.errors import UserError
from innerdpo_bench.store.integrity import CorruptStore

_CORRUPT = ("not a database", "malformed", "file is encrypted")   # raised as integrity.CorruptStore
# SQLite's message (lower case) → what it means for the user. Checked in order; the first match wins.
_CAUSES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("database or disk is full", "disk is full"), "the disk is full; free space and retry (nothing was written)"),
    (("disk i/o error",), "a disk I/O error (failing or full disk, or the file was removed); check the disk and "
                          "retry"),
    (("readonly database", "read-only", "attempt to write a readonly"),
     "the store is read-only (file or directory permissions, or read-only media); commands that only read "
     "still work"),
    (_CORRUPT, "it is not a valid SQLite database"),
    (("unable to open",), "it cannot be opened; check the path and its permissions"),
)


def describe_sqlite_error(error: sqlite3.Error) -> str | None:
    """What an SQLite error means for the user (`_CAUSES`), or None for one that is a bug (bad SQL)."""
    message = str(error).lower()
    return next((cause for needles, cause in _CAUSES if any(needle in message for needle in needles)), None)


def _read_only(path: Path) -> bool:
    """Whether the store's file (or, before it exists, its directory) cannot be written: SQLite then reports only
    "unable to open", which hides the cause."""
    target = path if path.exists() else path.parent
    return target.exists() and not os.access(target, os.W_OK)


@contextmanager
def sqlite_errors(path: Path, busy_timeout_s: float) -> Iterator[None]:
    """Turn every SQLite failure a user can act on into a one-line UserError naming the store and the cause;
    re-raise the rest (bugs)."""
    try:
        yield
    except sqlite3.Error as e:
        message = str(e)
        if isinstance(e, sqlite3.OperationalError) and ("locked" in message or "busy" in message):
            raise UserError(
                f"store {path} is locked: another process held it for more than the {busy_timeout_s:g}s busy "
                "timeout (a worker, the TUI, or a stuck process); retry, or stop that process"
            ) from e
        cause = describe_sqlite_error(e)
        if cause is not None and "unable to open" in message.lower() and _read_only(path):
            cause = describe_sqlite_error(sqlite3.OperationalError("read-only"))
        if cause is None:
            raise
        if any(needle in message.lower() for needle in _CORRUPT):
            raise CorruptStore(path, f"{cause}; SQLite: {message}") from e
        raise UserError(f"store {path}: {cause} (SQLite: {message})") from e
