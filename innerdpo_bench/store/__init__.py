"""The run store: one SQLite file (`HOME/store.sqlite`), the only state shared by the CLI, queue workers and TUI.

This package is the only place with SQL: `Store` here, the schema and its migrations in `schema.py`, the
`Run` snapshot it returns in `run.py`, what SQLite's failures mean in `failures.py`.

Rules, after optuna's RDB storage: every state change is a compare-and-set inside one transaction;
claims take SQLite's write lock first with `BEGIN IMMEDIATE` (SQLite has no SELECT … FOR UPDATE, and a
plain read-then-write double-claims); workers heartbeat and `requeue_stale` returns the silent to the
queue. WAL mode lets readers (the TUI) read while a worker writes. Local disks only: SQLite locking
is unreliable over NFS. One `Store` per process (and per thread): each opens its own connection.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from innerdpo_bench.errors import UserError, unknown_choice
from innerdpo_bench.store.failures import sqlite_errors
from innerdpo_bench.store.integrity import CorruptStore, quick_check
from innerdpo_bench.store.run import (DEFAULT_HOME, HOME_ENV, RUN_COLUMNS, STORE_FILE, Run, resolve_home,
                                      run_from_row, spec_problem)
from innerdpo_bench.store.schema import FINISHED, KINDS, MIGRATIONS, SCHEMA_VERSION, STATUSES, version_problem

__all__ = ["CorruptStore", "DEFAULT_HOME", "FINISHED", "HOME_ENV", "KINDS", "MIGRATIONS", "SCHEMA_VERSION",
           "STATUSES", "STORE_FILE", "Run", "Store", "resolve_home"]


class Store:
    """The run store under `home` (see `resolve_home`); created, and migrated, on open.

    Use as a context manager or call `close()`. Not shareable across threads or processes: open one
    per process. `busy_timeout_s` is how long a write waits for another process's write lock before
    a UserError; `clock` returns unix seconds (tests pass a fake one).

    `create=False` refuses a home without a store (a mistyped --home) instead of making one. `readonly=True`
    (implies create=False) opens the file read-only (`mode=ro`, journal mode untouched, no migration), for
    commands that only read: they then work on a read-only directory or medium too; a store older than this
    package's schema must be opened once read-write to migrate it.
    """

    def __init__(
        self,
        home: str | os.PathLike | None = None,
        *,
        busy_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        create: bool = True,
        readonly: bool = False,
    ) -> None:
        self.home = resolve_home(home)
        self.path = self.home / STORE_FILE
        self.busy_timeout_s = busy_timeout_s
        self.readonly = readonly
        self._clock = clock
        if (readonly or not create) and not self.path.is_file():
            raise UserError(f"no store at {self.path}: check --home (or $INNERDPO_HOME), or queue a run first "
                            "(innerdpo queue add ...) to create the workspace")
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"cannot create store directory {self.home} ({e.strerror}); use another --home") from e
        self._con = self._connect()
        try:
            with self._errors():
                if not readonly and self._con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    self._con.execute("PRAGMA journal_mode = WAL")
                # In WAL mode NORMAL cannot corrupt the file; a power cut may lose the last commits.
                self._con.execute("PRAGMA synchronous = NORMAL")
                self._con.execute("PRAGMA foreign_keys = ON")
                quick_check(self._con, self.path)   # a corrupt page: CorruptStore now, not an empty table later
            self._migrate()
        except BaseException:
            self._con.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        """isolation_level=None: the driver never opens transactions behind our back; _transaction does. Read-only:
        `mode=ro`, falling back to `immutable=1` where the directory cannot hold WAL's shared-memory file
        (read-only media), which reads a consistent file as long as nothing writes it meanwhile."""
        with self._errors():
            if not self.readonly:
                return sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None)
            uri = self.path.absolute().as_uri()
            con = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=self.busy_timeout_s, isolation_level=None)
            try:
                con.execute("SELECT count(*) FROM sqlite_master").fetchone()
                return con
            except sqlite3.OperationalError:
                con.close()
            return sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=self.busy_timeout_s, isolation_level=None)

    def close(self) -> None:
        """Close this process's connection; the file stays."""
        self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.home)!r})"

    # --- plumbing ---------------------------------------------------------------------------------

    def _errors(self) -> AbstractContextManager[None]:
        return sqlite_errors(self.path, self.busy_timeout_s)

    @contextmanager
    def _transaction(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """One transaction: IMMEDIATE takes the write lock up front (every write goes through here);
        DEFERRED gives reads one consistent snapshot. Rolls back on any exception."""
        with self._errors():
            self._con.execute(f"BEGIN {mode}")
            try:
                yield self._con
                self._con.execute("COMMIT")
            except BaseException:
                if self._con.in_transaction:
                    self._con.execute("ROLLBACK")
                raise

    def _migrate(self) -> None:
        """Apply the migrations this file lacks, one transaction each; refuse a newer schema."""
        with self._errors():
            version = self._con.execute("PRAGMA user_version").fetchone()[0]
        problem = version_problem(self.path, version, self.readonly)
        if problem:
            raise UserError(problem)
        for target in range(version + 1, SCHEMA_VERSION + 1):
            with self._transaction() as con:
                if con.execute("PRAGMA user_version").fetchone()[0] >= target:
                    continue  # another process migrated while we waited for the lock
                for statement in MIGRATIONS[target - 1]:
                    con.execute(statement)
                con.execute(f"PRAGMA user_version = {target}")

    @staticmethod
    def _status_of(con: sqlite3.Connection, run_id: int) -> str:
        row = con.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise UserError(f"no run with id {run_id}")
        return row[0]

    # --- queue ------------------------------------------------------------------------------------

    def add_run(self, spec: dict[str, Any], kind: str = "train_eval", name: str | None = None, **notes: Any) -> int:
        """Queue one run and return its id. `name` defaults to spec["name"], else spec["method"]."""
        return self.add_runs([spec], kind=kind, name=name, **notes)[0]

    def add_runs(self, specs: Iterable[dict[str, Any]], kind: str = "train_eval", name: str | list[str] | None = None,
                 tags: Iterable[str] = (), note: str = "") -> list[int]:
        """Queue several runs in one transaction (a sweep is queued whole or not at all); their ids, in order.
        Priorities start as ids (FIFO until `move`). `name`: one for all, or one per spec."""
        if kind not in KINDS:
            raise unknown_choice("run kind", kind, KINDS)
        now, ids, labels = self._clock(), [], json.dumps(list(dict.fromkeys(tags)))
        with self._transaction() as con:
            for index, spec in enumerate(specs):
                given = name[index] if isinstance(name, list) else name
                display_name = given or spec.get("name") or spec.get("method") or "run"
                cursor = con.execute(
                    "INSERT INTO runs (name, kind, spec, status, priority, created_at, tags, note) "
                    "VALUES (?, ?, ?, 'queued', 0, ?, ?, ?)",
                    (str(display_name), kind, json.dumps(spec, sort_keys=True), now, labels, note),
                )
                con.execute("UPDATE runs SET priority = id WHERE id = ?", (cursor.lastrowid,))
                ids.append(cursor.lastrowid)
        return ids

    def annotate(self, run_id: int, *, name: str | None = None, tags: Iterable[str] | None = None,
                 note: str | None = None) -> None:
        """Set a run's name, tags (replacing them) and note, whatever its status; None leaves a field as it is."""
        with self._transaction() as con:
            self._status_of(con, run_id)
            labels = None if tags is None else json.dumps(list(dict.fromkeys(tags)))
            for column, value in (("name", name), ("tags", labels), ("note", note)):
                if value is not None:
                    con.execute(f"UPDATE runs SET {column} = ? WHERE id = ?", (value, run_id))

    def claim_next(self, worker: str) -> Run | None:
        """Move the queued run with the lowest (priority, id) to running, held by `worker`; None if none.

        BEGIN IMMEDIATE takes the write lock before the read, so no two workers can take the same run.
        """
        now = self._clock()
        with self._transaction() as con:
            while True:
                rows = con.execute(
                    f"""UPDATE runs SET status = 'running', worker = ?, started_at = ?, heartbeat_at = ?,
                                        attempts = attempts + 1, claims = claims + 1
                        WHERE id = (SELECT id FROM runs WHERE status = 'queued' ORDER BY priority, id LIMIT 1)
                        RETURNING {RUN_COLUMNS}""",
                    (worker, now, now),
                ).fetchall()  # fetch all: a RETURNING statement must finish before COMMIT
                problem = spec_problem(rows[0][0], rows[0][3]) if rows else None
                if problem is None:
                    break
                # a spec no worker can read (edited by hand, a bad disk): failed with why, never handed out
                con.execute("UPDATE runs SET status = 'failed', finished_at = ?, error = ? WHERE id = ?",
                            (now, problem, rows[0][0]))
        return run_from_row(rows[0], {}) if rows else None

    def heartbeat(self, run_id: int, worker: str) -> bool:
        """Record that `worker` is alive on `run_id`. True: keep going. False: stop.

        False means the run is no longer this worker's (requeued as stale, finished, removed) or a
        cancel was requested; `get_run(run_id).cancel_requested` tells the two apart. The heartbeat
        is recorded even when a cancel is pending, so a worker that is shutting down is not requeued.
        """
        with self._transaction() as con:
            rows = con.execute(
                """UPDATE runs SET heartbeat_at = ? WHERE id = ? AND status = 'running' AND worker = ?
                   RETURNING cancel_requested""",
                (self._clock(), run_id, worker),
            ).fetchall()
        return bool(rows) and not rows[0][0]

    def set_run_dir(self, run_id: int, path: str | os.PathLike) -> None:
        """Remember where the run's artefacts (adapter, logs, eval.json) live."""
        with self._transaction() as con:
            self._status_of(con, run_id)
            con.execute("UPDATE runs SET run_dir = ? WHERE id = ?", (str(path), run_id))

    def finish(
        self, run_id: int, worker: str, status: str, exit_code: int | None = None, error: str | None = None
    ) -> bool:
        """Move a run that `worker` holds to done, failed or cancelled. False if it no longer holds it
        (the run was requeued and perhaps claimed by another worker, or removed): nothing is changed."""
        if status not in FINISHED:
            raise ValueError(f"finish() needs one of {sorted(FINISHED)}, not {status!r}")
        with self._transaction() as con:
            cursor = con.execute(
                """UPDATE runs SET status = ?, finished_at = ?, exit_code = ?, error = ?
                   WHERE id = ? AND status = 'running' AND worker = ?""",
                (status, self._clock(), exit_code, error, run_id, worker),
            )
        return cursor.rowcount == 1

    def release(self, run_id: int, worker: str) -> bool:
        """Give a run that `worker` holds back to the queue at its old priority (the worker is shutting
        down and stopped the run): a graceful stop is no failed attempt, so the claim's attempt is given back
        (`claims` keeps it). False, changing nothing, if `worker` no longer holds it or a cancel is pending
        (then the worker should `finish` it as cancelled)."""
        with self._transaction() as con:
            cursor = con.execute(
                """UPDATE runs SET status = 'queued', worker = NULL, started_at = NULL, heartbeat_at = NULL,
                                   attempts = max(attempts - 1, 0)
                   WHERE id = ? AND status = 'running' AND worker = ? AND cancel_requested = 0""",
                (run_id, worker),
            )
        return cursor.rowcount == 1

    def cancel(self, run_id: int) -> str:
        """Cancel a run. A queued run becomes 'cancelled' at once (returns "cancelled"); a running run
        gets cancel_requested, its worker stops it at the next heartbeat (returns "cancelling")."""
        with self._transaction() as con:
            status = self._status_of(con, run_id)
            if status == "queued":
                con.execute(
                    "UPDATE runs SET status = 'cancelled', finished_at = ? WHERE id = ?", (self._clock(), run_id)
                )
                return "cancelled"
            if status == "running":
                con.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?", (run_id,))
                return "cancelling"
            raise UserError(f"run {run_id} is already {status}")

    def retry(self, run_id: int) -> None:
        """Queue a failed or cancelled run again, at its old priority, as if new: worker, times, exit
        code, error, attempts, cancel flag, results and provenance are cleared. run_dir is kept."""
        with self._transaction() as con:
            status = self._status_of(con, run_id)
            if status not in ("failed", "cancelled"):
                raise UserError(f"run {run_id} is {status}; only failed or cancelled runs can be retried")
            con.execute(
                """UPDATE runs SET status = 'queued', worker = NULL, started_at = NULL, finished_at = NULL,
                                   heartbeat_at = NULL, attempts = 0, exit_code = NULL, error = NULL,
                                   cancel_requested = 0
                   WHERE id = ?""",
                (run_id,),
            )
            con.execute("DELETE FROM results WHERE run_id = ?", (run_id,))
            con.execute("DELETE FROM provenance WHERE run_id = ?", (run_id,))

    def remove(self, run_id: int) -> None:
        """Delete a run that is not running, with its results and provenance. Its run dir is left on disk."""
        with self._transaction() as con:
            if self._status_of(con, run_id) == "running":
                raise UserError(f"run {run_id} is running; cancel it first")
            con.execute("DELETE FROM runs WHERE id = ?", (run_id,))  # results, provenance: ON DELETE CASCADE

    def move(self, run_id: int, *, before: int | None = None, to_front: bool = False) -> None:
        """Reorder the queue: put queued run `run_id` first (`to_front`) or just ahead of queued run `before`.

        The queued runs' priorities are permuted among themselves, so every priority stays an
        original run id: no ties, no float bisection, and newly queued runs still go last.
        """
        if to_front == (before is not None):
            raise ValueError("move() needs exactly one of before=<run id> or to_front=True")
        if before == run_id:
            raise UserError(f"cannot move run {run_id} before itself")
        with self._transaction() as con:
            for queued_id in (run_id, before) if before is not None else (run_id,):
                status = self._status_of(con, queued_id)
                if status != "queued":
                    raise UserError(f"run {queued_id} is {status}; only queued runs can be reordered")
            queue = con.execute("SELECT id, priority FROM runs WHERE status = 'queued' ORDER BY priority, id").fetchall()
            old_order = [queued_id for queued_id, _ in queue]
            new_order = [queued_id for queued_id in old_order if queued_id != run_id]
            new_order.insert(0 if to_front else new_order.index(before), run_id)
            con.executemany(
                "UPDATE runs SET priority = ? WHERE id = ?",
                [(priority, new) for (old, priority), new in zip(queue, new_order) if new != old],
            )

    def requeue_stale(self, timeout_s: float, max_attempts: int = 3, dead_workers: Iterable[str] = ()) -> list[int]:
        """Deal with running runs whose worker has not heartbeaten for `timeout_s`, or is one of `dead_workers`
        (known to be gone: no need to wait for the silence); the ids touched.

        Such a run goes back to the queue if it has had fewer than `max_attempts` attempts, else it
        fails with "worker stopped heartbeating (attempt N)"; one with a pending cancel is cancelled.
        Its old worker's later heartbeat and finish return False. One IMMEDIATE transaction.
        """
        now = self._clock()
        dead = list(dead_workers)
        stale = f"status = 'running' AND (heartbeat_at < ? OR worker IN ({', '.join('?' * len(dead))}))"
        with self._transaction() as con:
            cancelled = con.execute(
                f"""UPDATE runs SET status = 'cancelled', finished_at = ?,
                                    error = 'worker stopped heartbeating while cancelling'
                    WHERE {stale} AND cancel_requested = 1 RETURNING id""",
                (now, now - timeout_s, *dead),
            ).fetchall()
            requeued = con.execute(
                f"""UPDATE runs SET status = 'queued', worker = NULL, started_at = NULL, heartbeat_at = NULL
                    WHERE {stale} AND attempts < ? RETURNING id""",
                (now - timeout_s, *dead, max_attempts),
            ).fetchall()
            failed = con.execute(
                f"""UPDATE runs SET status = 'failed', finished_at = ?,
                                    error = 'worker stopped heartbeating (attempt ' || attempts || ')'
                    WHERE {stale} RETURNING id""",
                (now, now - timeout_s, *dead),
            ).fetchall()
        return sorted(run_id for (run_id,) in cancelled + requeued + failed)

    # --- results ----------------------------------------------------------------------------------

    def record_results(
        self,
        run_id: int,
        results: dict[str, dict[str, float]],
        provenance: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Upsert {shift: {metric: value}} and {shift: provenance} for a run, in one transaction.

        Metrics and shifts not named are left as they were; NaN round-trips (stored as NULL).
        """
        metric_rows = [
            (run_id, shift, metric, float(value))
            for shift, metrics in results.items()
            for metric, value in metrics.items()
        ]
        provenance_rows = [
            (run_id, shift, json.dumps(data, sort_keys=True)) for shift, data in (provenance or {}).items()
        ]
        with self._transaction() as con:
            self._status_of(con, run_id)
            con.executemany(
                """INSERT INTO results (run_id, shift, metric, value) VALUES (?, ?, ?, ?)
                   ON CONFLICT (run_id, shift, metric) DO UPDATE SET value = excluded.value""",
                metric_rows,
            )
            con.executemany(
                """INSERT INTO provenance (run_id, shift, data) VALUES (?, ?, ?)
                   ON CONFLICT (run_id, shift) DO UPDATE SET data = excluded.data""",
                provenance_rows,
            )

    def get_provenance(self, run_id: int) -> dict[str, dict[str, Any]]:
        """{shift: provenance} for a run (empty if none recorded)."""
        with self._transaction("DEFERRED") as con:
            self._status_of(con, run_id)
            rows = con.execute("SELECT shift, data FROM provenance WHERE run_id = ? ORDER BY shift", (run_id,))
            return {shift: json.loads(data) for shift, data in rows}

    def all_provenance(self) -> dict[int, dict[str, dict[str, Any]]]:
        """{run_id: {shift: provenance}} for every run with any, in one query (`runs --json` over 10,000 runs)."""
        with self._transaction("DEFERRED") as con:
            rows = con.execute("SELECT run_id, shift, data FROM provenance ORDER BY run_id, shift").fetchall()
        provenance: dict[int, dict[str, dict[str, Any]]] = {}
        for run_id, shift, data in rows:
            provenance.setdefault(run_id, {})[shift] = json.loads(data)
        return provenance

    # --- reading ----------------------------------------------------------------------------------

    def get_run(self, run_id: int) -> Run:
        """One run with its results; UserError if there is none with that id."""
        for run in self._select_runs("id = ?", (run_id,)):
            return run
        raise UserError(f"no run with id {run_id}")

    def list_runs(self, status: str | Iterable[str] | None = None) -> list[Run]:
        """All runs (or those with the given status or statuses) by id, with results attached.

        Two queries in one read snapshot: the runs, then all their results at once (not one per run)."""
        if status is None:
            return self._select_runs(None, ())
        wanted = [status] if isinstance(status, str) else list(status)
        for name in wanted:
            if name not in STATUSES:
                raise unknown_choice("run status", name, STATUSES)
        return self._select_runs(f"status IN ({', '.join('?' * len(wanted))})", tuple(wanted))

    def _select_runs(self, where: str | None, params: tuple) -> list[Run]:
        run_filter = f"WHERE {where}" if where else ""
        result_filter = f"WHERE run_id IN (SELECT id FROM runs {run_filter})" if where else ""
        with self._transaction("DEFERRED") as con:
            run_rows = con.execute(f"SELECT {RUN_COLUMNS} FROM runs {run_filter} ORDER BY id", params).fetchall()
            result_rows = con.execute(
                f"SELECT run_id, shift, metric, value FROM results {result_filter} ORDER BY run_id, shift, metric",
                params,
            ).fetchall()
        # Rows come sorted by (run_id, shift): start a new dict only when either changes. This loop is
        # most of list_runs' Python time (10,000 runs x 24 metrics = 240,000 rows).
        results: dict[int, dict[str, dict[str, float]]] = {}
        run_key = shift_key = None
        for run_id, shift, metric, value in result_rows:
            if run_id != run_key:
                run_key, shift_key, run_results = run_id, None, results.setdefault(run_id, {})
            if shift != shift_key:
                shift_key, metrics = shift, run_results.setdefault(shift, {})
            metrics[metric] = math.nan if value is None else value
        return [run_from_row(row, results.get(row[0], {})) for row in run_rows]

    def counts(self) -> dict[str, int]:
        """Number of runs per status, every status present (0 when none)."""
        with self._transaction("DEFERRED") as con:
            rows = con.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall()
        return {status: 0 for status in STATUSES} | dict(rows)
