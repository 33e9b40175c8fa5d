"""One connection to a store's database, whichever backend: transactions that outlive a server restart, and the
schema checked and migrated on open. `Store` (the SQL of each operation) sits on top; the dialects below
(`sqlite.py`, `postgres.py`) connect, begin and commit, lock, and read the schema version.

A server's dropped connection (a restart) is answered by reconnecting with bounded backoff and running the
transaction again; where the lost commit may have landed, the operation's `landed` check asks the database first,
so a claim, a result or a run's end is recorded once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from innerdpo_bench.errors import UserError
from innerdpo_bench.store import schema
from innerdpo_bench.store.integrity import EmptyStore, run_dir_count
from innerdpo_bench.store.location import StoreURL
from innerdpo_bench.store.postgres import ConnectionLost
from innerdpo_bench.store.sqlite import SQLiteBackend

T = TypeVar("T")
RECONNECT_S = 60.0             # how long a lost server is waited for before a UserError
NOT_LANDED = object()          # what a `landed` check returns when the lost commit did not happen


def open_backend(url: StoreURL, **options):
    """The dialect behind `url`: SQLite's file, or a PostgreSQL server (psycopg imported only then)."""
    if url.backend == "sqlite":
        return SQLiteBackend(url, **options)
    from innerdpo_bench.store.postgres import PostgresBackend

    return PostgresBackend(url, **options)


class Database:
    """The store's database behind `url`, open and at this package's schema (`create=False`: never created;
    `readonly`: never written, nor migrated; `migrate=False`: written, never migrated). `where` names it in messages
    (the file, or the URL, password masked);
    `row_lock` and `claim_lock` are the dialect's suffixes for a SELECT whose rows a write transaction changes."""

    def __init__(self, url: StoreURL, *, busy_timeout_s: float, create: bool, readonly: bool,
                 reconnect_s: float = RECONNECT_S, migrate: bool = True) -> None:
        self.dialect = open_backend(url, busy_timeout_s=busy_timeout_s, create=create and not readonly,
                                    readonly=readonly)
        self.backend, self.where = self.dialect.backend, self.dialect.where
        self.row_lock, self.claim_lock, self.clock = self.dialect.row_lock, self.dialect.claim_lock, self.dialect.clock
        self.readonly, self.reconnect_s = readonly, reconnect_s
        try:
            self._migrate(create and not readonly, migrate and not readonly)
        except BaseException:
            self.close()
            raise

    @property
    def con(self):
        """The dialect's connection outside any transaction (tests inspect or damage the store through it)."""
        return self.dialect.con

    def close(self) -> None:
        self.dialect.close()

    def write(self, body: Callable[[Any], T], landed: Callable[[Any], Any] | None = None) -> T:
        """`body(con)` in one write transaction (see `_attempt`)."""
        return self._attempt(True, body, landed)

    def read(self, body: Callable[[Any], T]) -> T:
        """`body(con)` in one read snapshot."""
        return self._attempt(False, body, None)

    def _attempt(self, write: bool, body: Callable[[Any], T], landed: Callable[[Any], Any] | None) -> T:
        """A lost server connection: reconnect with backoff (0.25 s doubling to 8 s, `reconnect_s` in all) and run
        `body` again; a lost deadlock or serialisation race: run it again at once. When the lost commit may have
        landed, `landed(con)` says first: its value, or NOT_LANDED."""
        deadline = time.monotonic() + self.reconnect_s
        delay, uncertain = 0.25, False
        while True:
            try:
                with self.dialect.transaction(write) as con:
                    if uncertain and landed is not None:
                        value = landed(con)
                        if value is not NOT_LANDED:
                            return value
                    return body(con)
            except ConnectionLost as lost:
                uncertain = uncertain or lost.during_commit
                if not lost.reconnect:
                    time.sleep(random.uniform(0, 0.05))
                    continue
                while True:
                    if time.monotonic() + delay > deadline:
                        raise UserError(f"store {self.where}: lost the connection to the server and could not get it "
                                        f"back within {self.reconnect_s:g}s ({lost}); is the server running?") from None
                    time.sleep(delay)
                    delay = min(delay * 2, 8.0)
                    try:
                        self.dialect.reconnect()
                        break
                    except ConnectionLost as still:
                        lost = still

    def _migrate(self, create: bool, migrate: bool) -> None:
        """Apply the migrations this database lacks, one transaction each (`migrate=False`: refuse an older schema
        instead); refuse a newer schema, a database of someone else's (tables, and none of ours), or, unless
        `create`, a database without a store (an empty SQLite file: `EmptyStore`), before writing anything."""
        migrations = schema.MIGRATIONS if self.backend == "sqlite" else schema.POSTGRES_MIGRATIONS
        version, tables = self.read(lambda con: (self.dialect.version(con), self.dialect.tables(con)))
        problem = schema.foreign_problem(self.where, tables) if version == 0 else None
        if problem is None and version == 0 and not create:
            if self.backend == "sqlite":   # a file with no table: never made into an empty store by a reader
                path = self.dialect.path
                raise EmptyStore(path, "an SQLite file without a table", run_dir_count(path.parent))
            problem = (f"no store at {self.where}: the database holds no innerdpo store yet; queue a run first "
                       "(innerdpo queue add ... --store URL) to create it")
        problem = problem or schema.version_problem(self.where, version, migrate)
        if problem:
            raise UserError(problem)
        for target in range(version + 1, schema.SCHEMA_VERSION + 1):

            def step(con, target=target) -> None:
                self.dialect.lock_schema(con)
                current = self.dialect.version(con)
                if current >= target:
                    return  # another process migrated while we waited for the lock
                if current == 0 and (foreign := schema.foreign_problem(self.where, self.dialect.tables(con))):
                    raise UserError(foreign)
                for statement in migrations[target - 1]:
                    con.execute(statement)
                self.dialect.set_version(con, target)

            self.write(step)
