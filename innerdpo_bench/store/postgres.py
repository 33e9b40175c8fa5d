"""The PostgreSQL side of the store's dialect seam: a server every node of a cluster reaches (psycopg 3, the
optional extra `innerdpo-bench[postgres]`).

The store's SQL is written once, with `?` placeholders; `Session` hands it to psycopg as `%s`. Write transactions
run at READ COMMITTED and lock what they read before they change it (`row_lock`: SELECT … FOR UPDATE); a claim takes
the first queued run that no other transaction holds (`claim_lock`: FOR UPDATE SKIP LOCKED), so workers never wait
on each other and never take the same run. Read transactions are REPEATABLE READ READ ONLY: one snapshot for the
runs and their results. The schema version is the one row of `innerdpo_schema`; migrations serialise on an advisory
lock. Waiting for a row lock longer than the busy timeout is the "locked" error SQLite gives.

A dropped connection (a server restart) raises `ConnectionLost`, which `Store` answers by reconnecting with bounded
backoff and running the transaction again; `during_commit` says whether the commit may have landed (then the Store
asks the database before doing it twice). Every other failure a user can act on is one line naming the URL, its
password masked (`connect_problem`, `DESCRIBED`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from innerdpo_bench.errors import UserError
from innerdpo_bench.store.location import StoreURL

SCHEMA_LOCK = 0x1DB0_5C4E   # pg_advisory_xact_lock key of migrations: one migrating process at a time
CONNECT_TIMEOUT_S = 10
INSTALL_HINT = "pip install 'innerdpo-bench[postgres]'"

# SQLSTATEs of a connection that is gone or going: the transaction did not happen; reconnect and run it again.
LOST = {"57P01", "57P02", "57P03", "08000", "08003", "08006", "08001", "08004"}
# The transaction lost a race and was rolled back: run it again at once.
RACE = {"40001", "40P01"}
# SQLSTATE → what it means for the user, inside a transaction.
DESCRIBED = {
    "55P03": "locked: a row stayed locked past the busy timeout (a worker, or a stuck session); retry, or stop it",
    "25006": "the store was opened read-only; commands that only read still work",
    "53100": "the server's disk is full; free space and retry (nothing was written)",
    "42501": "the user lacks a permission on the store's tables; ask the database's owner",
    "42P01": "a table of the store is missing (dropped by hand?); restore it or use a new database",
}


class ConnectionLost(Exception):
    """The server went away mid-transaction (or the transaction lost a deadlock): it did not commit, unless
    `during_commit`, when nobody can know. `reconnect` False: the connection is fine, just run it again."""

    def __init__(self, detail: str, during_commit: bool = False, reconnect: bool = True) -> None:
        super().__init__(detail)
        self.during_commit, self.reconnect = during_commit, reconnect


def _driver():
    try:
        import psycopg
    except ImportError:
        return None
    return psycopg


@functools.lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    """The store's `?` placeholders as psycopg's `%s` (the store's SQL has no literal ? or %)."""
    return sql.replace("%", "%%").replace("?", "%s")


class Session:
    """The part of sqlite3's Connection the store calls (execute, executemany), on a psycopg connection."""

    def __init__(self, con) -> None:
        self.con = con

    def execute(self, sql: str, params: tuple | list = ()):
        return self.con.execute(to_pyformat(sql), tuple(params))

    def executemany(self, sql: str, rows):
        cursor = self.con.cursor()
        cursor.executemany(to_pyformat(sql), list(rows))
        return cursor


class PostgresBackend:
    """One autocommit psycopg connection (transactions are spelled out, as on SQLite). The server's clock, measured
    once at connect, times heartbeats, so that hosts whose clocks disagree still agree on who went silent."""

    backend = "postgresql"
    row_lock = " FOR UPDATE"
    claim_lock = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: StoreURL, *, busy_timeout_s: float, create: bool, readonly: bool) -> None:
        self.url = url
        self.where = url.masked
        self.busy_timeout_s = busy_timeout_s
        self.readonly = readonly
        self.psycopg = _driver()
        if self.psycopg is None:
            raise UserError(f"store {self.where} needs the PostgreSQL driver psycopg, which is not installed: "
                            f"{INSTALL_HINT}")
        self.session = self._connect(first=True)
        self.offset_s = self._clock_offset()

    # --- the connection ---------------------------------------------------------------------------

    def _connect(self, first: bool = False) -> Session:
        """A new connection; a UserError naming the URL when the first one fails, ConnectionLost for a reconnect."""
        psycopg = self.psycopg
        try:
            con = psycopg.connect(self.url.text, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                                  application_name="innerdpo",
                                  options=f"-c lock_timeout={max(1, round(self.busy_timeout_s * 1000))}")
        except psycopg.Error as err:
            if not first:
                raise ConnectionLost(_first_line(err)) from err
            raise UserError(f"store {self.where}: {connect_problem(err)} ({self._mask(_first_line(err))})") from None
        return Session(con)

    def reconnect(self) -> None:
        """Drop the old connection, open a new one (ConnectionLost while the server is still away)."""
        try:
            self.session.con.close()
        except self.psycopg.Error:
            pass
        self.session = self._connect()

    def close(self) -> None:
        self.session.con.close()

    def _clock_offset(self) -> float:
        before = time.time()
        (server,) = self.session.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()
        return float(server) - (before + time.time()) / 2

    def clock(self) -> float:
        """Unix seconds by the server's clock."""
        return time.time() + self.offset_s

    @property
    def con(self):
        return self.session

    # --- transactions -----------------------------------------------------------------------------

    @contextmanager
    def transaction(self, write: bool) -> Iterator[Session]:
        """READ COMMITTED for a write (each write locks what it reads), one REPEATABLE READ snapshot for a read;
        READ ONLY throughout when the store was opened so. Rolls back on any exception; a dropped connection
        is ConnectionLost, a failure a user can act on one line."""
        psycopg = self.psycopg
        if self.readonly:
            begin = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
        else:
            begin = "BEGIN" if write else "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
        committing = False
        try:
            self.session.con.execute(begin)
            yield self.session
            committing = True
            self.session.con.execute("COMMIT")
        except psycopg.Error as err:
            self._rollback()
            raise self._translate(err, committing) from err
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        con = self.session.con
        if con.closed or con.broken:
            return
        try:
            con.execute("ROLLBACK")
        except self.psycopg.Error:
            pass

    def _translate(self, err: Exception, committing: bool) -> Exception:
        """The exception to raise for a driver error: ConnectionLost, a one-line UserError, or the error itself (a
        bug in our SQL)."""
        con = self.session.con
        state = getattr(err, "sqlstate", None)
        if con.closed or con.broken or state in LOST or isinstance(err, self.psycopg.OperationalError) and state is None:
            return ConnectionLost(_first_line(err), during_commit=committing)
        if state in RACE:
            return ConnectionLost(_first_line(err), reconnect=False)
        if state in DESCRIBED:
            return UserError(f"store {self.where}: {DESCRIBED[state]} (PostgreSQL: {_first_line(err)})")
        return err

    def _mask(self, text: str) -> str:
        """`text` with the URL's password, should a driver message ever quote it, replaced by ***."""
        password = _password(self.url)
        return text.replace(password, "***") if password else text

    # --- schema -----------------------------------------------------------------------------------

    @staticmethod
    def version(con: Session) -> int:
        if con.execute("SELECT to_regclass('innerdpo_schema')").fetchone()[0] is None:
            return 0
        row = con.execute("SELECT max(version) FROM innerdpo_schema").fetchone()
        return int(row[0] or 0)

    @staticmethod
    def set_version(con: Session, version: int) -> None:
        con.execute("CREATE TABLE IF NOT EXISTS innerdpo_schema (version INTEGER NOT NULL)")
        con.execute("DELETE FROM innerdpo_schema")
        con.execute("INSERT INTO innerdpo_schema (version) VALUES (?)", (int(version),))

    @staticmethod
    def lock_schema(con: Session) -> None:
        """Wait for any other process's migration to commit (DDL is transactional: it is all there, or none)."""
        con.execute("SELECT pg_advisory_xact_lock(?)", (SCHEMA_LOCK,))

    @staticmethod
    def tables(con: Session) -> list[str]:
        return [name for (name,) in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
            "ORDER BY table_name")]

    @staticmethod
    def last_id(con: Session) -> int:
        """The highest run id the identity sequence handed out (removed runs' ids included)."""
        sequence = con.execute("SELECT pg_get_serial_sequence('runs', 'id')").fetchone()[0]
        last, called = con.execute(f"SELECT last_value, is_called FROM {sequence}").fetchone()
        return int(last) if called else 0

    @staticmethod
    def set_last_id(con: Session, last_id: int) -> None:
        """Make the next run id `last_id + 1` (store copy keeps removed runs' ids unused)."""
        if last_id > 0:
            con.execute("SELECT setval(pg_get_serial_sequence('runs', 'id'), ?, true)", (int(last_id),))


def connect_problem(err: Any) -> str:
    """What a failed connection means for the user, from libpq's message and SQLSTATE."""
    state = getattr(err, "sqlstate", None)
    message = str(err).lower()
    if state in ("28P01", "28000") or "password" in message:
        return ("the server refused the login: check the user and the password (the URL, $PGPASSWORD or "
                "~/.pgpass; the workspace never keeps a password)")
    if state == "3D000" or ("database" in message and "does not exist" in message):
        return "the database does not exist; create it first (createdb -h HOST -p PORT -U USER DATABASE)"
    if state == "57P03" or "starting up" in message or "shutting down" in message:
        return "the server is starting up or shutting down; retry in a moment"
    if state == "53300" or "too many" in message:
        return "the server has no free connection (max_connections); stop some clients or raise it"
    if "invalid" in message and ("uri" in message or "option" in message or "dsn" in message):
        return "the URL is malformed (postgresql://USER@HOST:PORT/DATABASE)"
    return "cannot reach the server (is it running? check the host and the port)"


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _password(url: StoreURL) -> str | None:
    from urllib.parse import parse_qsl, unquote, urlsplit

    parts = urlsplit(url.text)
    query = dict(parse_qsl(parts.query))
    return unquote(parts.password) if parts.password else query.get("password")
