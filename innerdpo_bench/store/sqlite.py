"""The SQLite side of the store's dialect seam: one file (HOME/store.sqlite by default), the embedded default.

Writes take SQLite's write lock first with `BEGIN IMMEDIATE` (SQLite has no SELECT … FOR UPDATE, and a plain
read-then-write double-claims, so `row_lock` and `claim_lock` are empty: the whole file is the lock). WAL mode lets
readers (the TUI) read while a worker writes. Local disks only: SQLite locking is unreliable over NFS, which is why
a cluster uses PostgreSQL (`postgres.py`). The schema version is `PRAGMA user_version`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from innerdpo_bench.errors import UserError
from innerdpo_bench.store.failures import sqlite_errors
from innerdpo_bench.store.integrity import EmptyStore, quick_check, run_dir_count
from innerdpo_bench.store.location import StoreURL
from innerdpo_bench.store.run import no_store_problem


class SQLiteBackend:
    """One connection to the store's file; `create=False` refuses a missing file (a mistyped --home). `readonly`
    opens it `mode=ro` (journal mode untouched), for commands that only read: they then work on a read-only
    directory or medium too."""

    backend = "sqlite"
    row_lock = ""      # appended to a read that a write transaction's update depends on
    claim_lock = ""    # appended to claim_next's choice of run
    clock = staticmethod(time.time)

    def __init__(self, url: StoreURL, *, busy_timeout_s: float, create: bool, readonly: bool) -> None:
        self.path = url.path
        self.where = str(self.path)
        self.busy_timeout_s = busy_timeout_s
        self.readonly, self.create = readonly, create and not readonly
        if ((readonly or not create) and not self.path.is_file()) or self.path.parent.is_file():
            raise UserError(no_store_problem(self.path.parent, self.path))
        self._refuse_empty(create and not readonly)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create store directory {self.path.parent} ({e.strerror}); use another --home") from e
        self.con = self._connect()
        try:
            with self.errors():
                quick_check(self.con, self.path)   # a corrupt page: CorruptStore now, not an empty table later
        except BaseException:
            self.con.close()
            raise

    def _refuse_empty(self, create: bool) -> None:
        """EmptyStore for a 0-byte file (cut short, truncated), before anything opens it: even switching it to WAL
        would write a header. A command that creates a store may start afresh on one, unless run directories lie
        beside it (then the store lost them: `innerdpo doctor --repair` rebuilds it from them)."""
        try:
            empty = self.path.stat().st_size == 0
        except OSError:
            return   # missing (created below), or unreadable: connecting says why
        runs = run_dir_count(self.path.parent) if empty else 0
        if empty and (not create or runs):
            raise EmptyStore(self.path, "0 bytes: cut short or truncated", runs)

    def _connect(self) -> sqlite3.Connection:
        """isolation_level=None: the driver never opens transactions behind our back; `transaction` does. Read-only:
        `mode=ro`, falling back to `immutable=1` where the directory cannot hold WAL's shared-memory file
        (read-only media), which reads a consistent file as long as nothing writes it meanwhile."""
        with self.errors():
            if not self.readonly:
                con = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
            else:
                uri = self.path.absolute().as_uri()
                con = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=self.busy_timeout_s, isolation_level=None)
                try:
                    con.execute("SELECT count(*) FROM sqlite_master").fetchone()
                except sqlite3.OperationalError:
                    con.close()
                    con = sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=self.busy_timeout_s,
                                          isolation_level=None)
            try:
                # WAL, but not on a file without a store that this open may not make one of (it writes the header)
                holds_store = self.create or self.version(con) > 0 or self.tables(con)
                if not self.readonly and holds_store and con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    con.execute("PRAGMA journal_mode = WAL")
                # In WAL mode NORMAL cannot corrupt the file; a power cut may lose the last commits.
                con.execute("PRAGMA synchronous = NORMAL")
                con.execute("PRAGMA foreign_keys = ON")
            except BaseException:
                con.close()
                raise
            return con

    def close(self) -> None:
        self.con.close()

    def errors(self) -> AbstractContextManager[None]:
        return sqlite_errors(self.path, self.busy_timeout_s)

    @contextmanager
    def transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction: a write one takes the write lock up front (IMMEDIATE); a read one (DEFERRED) gives one
        consistent snapshot. Rolls back on any exception."""
        with self.errors():
            self.con.execute("BEGIN IMMEDIATE" if write else "BEGIN DEFERRED")
            try:
                yield self.con
                self.con.execute("COMMIT")
            except BaseException:
                if self.con.in_transaction:
                    self.con.execute("ROLLBACK")
                raise

    def reconnect(self) -> None:
        """Open the file again (a file's connection is not lost as a server's is; this keeps the two dialects'
        recovery one path)."""
        self.con.close()
        self.con = self._connect()

    # --- schema -----------------------------------------------------------------------------------

    @staticmethod
    def version(con: sqlite3.Connection) -> int:
        return con.execute("PRAGMA user_version").fetchone()[0]

    @staticmethod
    def set_version(con: sqlite3.Connection, version: int) -> None:
        con.execute(f"PRAGMA user_version = {int(version)}")

    @staticmethod
    def lock_schema(con: sqlite3.Connection) -> None:
        """Nothing to do: the IMMEDIATE transaction a migration runs in already excludes every other writer."""

    @staticmethod
    def tables(con: sqlite3.Connection) -> list[str]:
        return [name for (name,) in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
            "ORDER BY name")]

    @staticmethod
    def last_id(con: sqlite3.Connection) -> int:
        """The highest run id ever handed out (AUTOINCREMENT's counter: removed runs' ids included)."""
        row = con.execute("SELECT seq FROM sqlite_sequence WHERE name = 'runs'").fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def set_last_id(con: sqlite3.Connection, last_id: int) -> None:
        """Make the next run id `last_id + 1` at least (store copy keeps removed runs' ids unused)."""
        if con.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'runs'", (last_id,)).rowcount == 0:
            con.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('runs', ?)", (last_id,))
