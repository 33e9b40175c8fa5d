"""The run store, the only state shared by the CLI, queue workers and TUI: `HOME/store.sqlite` by default (SQLite,
one machine), or a PostgreSQL server every node of a cluster reaches (`--store`, `location.py`).

This package is the only place with SQL: `Store` here, written once for both backends, with a worker's claim-fenced
writes in `held.py` and what users do to the queue (annotate, cancel, retry, remove, move) in `edits.py`; the dialect
seam in `sqlite.py` and `postgres.py`; reconnecting and migrating in `database.py`; the schema in `schema.py`; the
`Run` snapshot in `run.py`; the writes only `doctor --repair` makes in `repair.py`.

Rules, after optuna's RDB storage: every state change is a compare-and-set inside one transaction; a claim locks
the run it takes before changing it (SQLite: `BEGIN IMMEDIATE`, the whole file; PostgreSQL: `FOR UPDATE SKIP
LOCKED`, the row), as a plain read-then-write double-claims; workers heartbeat and `requeue_stale` returns the silent
to the queue. Each operation is a function of the open transaction (`_db.write(body, landed)`): after a server's
restart it runs again, and `landed` first asks whether the lost commit happened, so nothing is recorded twice.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from typing import Any

from innerdpo_bench.config.spec import RunSpec
from innerdpo_bench.errors import UserError, unknown_choice
from innerdpo_bench.store.database import NOT_LANDED, RECONNECT_S, Database
from innerdpo_bench.store.edits import UserEdits
from innerdpo_bench.store.held import MAX_RETRIES, HeldRuns, result_rows, upsert_results
from innerdpo_bench.store.integrity import CorruptStore, EmptyStore
from innerdpo_bench.store.location import STORE_ENV, choose_url, parse_url, remember
from innerdpo_bench.store.run import (DEFAULT_HOME, HOME_ENV, RUN_COLUMNS, STORE_FILE, Requeue, Run, resolve_home,
                                      results_by_run, run_from_row, spec_json)
from innerdpo_bench.store.schema import FINISHED, KINDS, MIGRATIONS, POSTGRES_MIGRATIONS, SCHEMA_VERSION, STATUSES

__all__ = ["CorruptStore", "DEFAULT_HOME", "EmptyStore", "FINISHED", "HOME_ENV", "KINDS", "MAX_RETRIES", "MIGRATIONS",
           "POSTGRES_MIGRATIONS", "SCHEMA_VERSION", "STATUSES", "STORE_ENV", "STORE_FILE", "Requeue", "Run", "Store",
           "resolve_home"]


class Store(HeldRuns, UserEdits):
    """The run store of the workspace `home` (see `resolve_home`); created, and migrated, on open.

    `url` is `--store` (else $INNERDPO_STORE, else the store the workspace remembers, else HOME/store.sqlite;
    `location.choose_url`); a workspace's first non-default store is remembered once it opened. `bind=False` opens
    `url` as given, whatever the workspace uses (`store copy`'s destination).

    Use as a context manager or call `close()`. Not shareable across threads or processes: open one per process.
    `busy_timeout_s` is how long a write waits for another's lock before a UserError; `clock` returns unix seconds
    (default: this machine's for SQLite, the server's for PostgreSQL; tests pass a fake one). `reconnect_s` bounds
    the wait for a server that went away.

    `create=False` refuses a home without a store (a mistyped --home), or an empty store file (`EmptyStore`), instead
    of making one. `readonly=True` (implies create=False) opens the store read-only (no migration), for commands that
    only read: they then work on a read-only directory or medium too; a store older than this package's schema must
    be opened once read-write to migrate it. `migrate=False` writes but never migrates (the dashboard's intents).
    """

    def __init__(self, home: str | os.PathLike | None = None, *, url: str | None = None, bind: bool = True,
                 busy_timeout_s: float = 30.0, clock: Callable[[], float] | None = None, create: bool = True,
                 readonly: bool = False, reconnect_s: float = RECONNECT_S, migrate: bool = True) -> None:
        self.home = resolve_home(home)
        if bind:
            self.url, bound_now = choose_url(self.home, url)
        else:
            self.url, bound_now = parse_url(url or ""), False
        self.busy_timeout_s = busy_timeout_s
        self.readonly = readonly
        self._db = Database(self.url, busy_timeout_s=busy_timeout_s, create=create, readonly=readonly,
                            reconnect_s=reconnect_s, migrate=migrate)
        self.backend = self._db.backend      # "sqlite" | "postgresql"
        self.where = self._db.where          # what messages name: the file, or the URL with its password masked
        self.path = self.url.path            # the SQLite file; None on a server
        self._clock = clock or self._db.clock
        if bound_now and create and not readonly:
            try:
                self.home.mkdir(parents=True, exist_ok=True)
                remember(self.home, self.url)
            except OSError as e:
                self.close()
                raise UserError(f"cannot record the store in {self.home} ({e.strerror}); use another --home") from e

    def close(self) -> None:
        """Close this process's connection; the store stays."""
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.home)!r}, url={self.url.masked!r})"

    @property
    def _con(self):
        """The connection outside any transaction, taking `?` SQL on both backends (tests reach behind the API)."""
        return self._db.con

    def _status_of(self, con, run_id: int, lock: bool = False) -> str:
        """The run's status; `lock` holds its row until the transaction ends (a server's row lock; SQLite's
        IMMEDIATE transaction already holds the file)."""
        row = con.execute(f"SELECT status FROM runs WHERE id = ?{self._db.row_lock if lock else ''}",
                          (run_id,)).fetchone() if 0 < run_id < 2**63 else None   # past a BIGINT: no such run
        if row is None:
            raise UserError(f"no run with id {run_id}")
        return row[0]

    # --- queue ------------------------------------------------------------------------------------

    def add_run(self, spec: RunSpec | dict[str, Any], kind: str = "train_eval", name: str | None = None,
                **options: Any) -> int:
        """Queue one run and return its id. `name` defaults to the spec's name; `options`: tags, note, retries."""
        return self.add_runs([spec], kind=kind, name=name, **options)[0]

    def add_runs(self, specs: Iterable[RunSpec | dict[str, Any]], kind: str = "train_eval",
                 name: str | list[str] | None = None, tags: Iterable[str] = (), note: str = "",
                 retries: int = 1) -> list[int]:
        """Queue several runs in one transaction (a sweep is queued whole or not at all); their ids, in order. A spec
        is a `RunSpec`, or its JSON form (read as a stored one would be: `RunSpec.from_json`). `name`: one for all,
        or one per spec (default: the spec's); `tags` and `note` the user's, for every run.

        Each run's priority starts as its id, so the queue is FIFO until `move` reorders it. `retries`: how many
        times each is queued again by itself after a cluster-like failure (`held.HeldRuns.retry_or_fail`).
        """
        if kind not in KINDS:
            raise unknown_choice("run kind", kind, KINDS)
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
            raise UserError(f"--retries must be a whole number from 0 to {MAX_RETRIES}, got {retries!r}")
        now, labels = self._clock(), json.dumps(list(dict.fromkeys(tags)))
        texts = [spec_json(spec) for spec in specs]
        names = [(name[index] if isinstance(name, list) else name) or json.loads(text)["name"]
                 for index, text in enumerate(texts)]
        rows = [(str(given), kind, text, now, labels, note, retries) for given, text in zip(names, texts)]

        def insert(con) -> list[int]:
            ids = []
            for row in rows:
                (run_id,) = con.execute("INSERT INTO runs (name, kind, spec, status, priority, created_at, tags, note, "
                                        "retries) VALUES (?, ?, ?, 'queued', 0, ?, ?, ?, ?) RETURNING id",
                                        row).fetchone()
                ids.append(run_id)
            con.executemany("UPDATE runs SET priority = id WHERE id = ?", [(run_id,) for run_id in ids])
            return ids

        def landed(con):  # runs are stamped with this call's `now`: all of them there means the lost commit landed
            ids = [run_id for (run_id,) in con.execute("SELECT id FROM runs WHERE created_at = ? AND kind = ? "
                                                       "ORDER BY id", (now, kind))]
            return ids if len(ids) == len(rows) else NOT_LANDED

        return self._db.write(insert, landed) if rows else []

    # --- results ----------------------------------------------------------------------------------

    def record_results(self, run_id: int, results: dict[str, dict[str, float]],
                       provenance: dict[str, dict[str, Any]] | None = None) -> None:
        """Upsert {shift: {metric: value}} and {shift: provenance} for a run, in one transaction (a worker ends the
        run it holds with `complete` instead, which checks its claim).

        Metrics and shifts not named are left as they were; NaN round-trips (stored as NULL on both backends).
        """
        metric_rows, provenance_rows = result_rows(run_id, results, provenance)

        def upsert(con) -> None:
            self._status_of(con, run_id, lock=True)
            upsert_results(con, metric_rows, provenance_rows)

        self._db.write(upsert)

    def get_provenance(self, run_id: int) -> dict[str, dict[str, Any]]:
        """{shift: provenance} for a run (empty if none recorded)."""

        def read(con) -> dict[str, dict[str, Any]]:
            self._status_of(con, run_id)
            rows = con.execute("SELECT shift, data FROM provenance WHERE run_id = ? ORDER BY shift", (run_id,))
            return {shift: json.loads(data) for shift, data in rows}

        return self._db.read(read)

    def all_provenance(self) -> dict[int, dict[str, dict[str, Any]]]:
        """{run_id: {shift: provenance}} for every run with any, in one query (`runs --json` over 10,000 runs)."""
        rows = self._db.read(lambda con: con.execute(
            "SELECT run_id, shift, data FROM provenance ORDER BY run_id, shift").fetchall())
        provenance: dict[int, dict[str, dict[str, Any]]] = {}
        for run_id, shift, data in rows:
            provenance.setdefault(run_id, {})[shift] = json.loads(data)
        return provenance

    # --- reading ----------------------------------------------------------------------------------

    def get_run(self, run_id: int) -> Run:
        """One run with its results; UserError if there is none with that id."""
        runs = self._select_runs("id = ?", (run_id,)) if 0 < run_id < 2**63 else []   # past a BIGINT: no such run
        if not runs:
            raise UserError(f"no run with id {run_id}")
        return runs[0]

    def list_runs(self, status: str | Iterable[str] | None = None) -> list[Run]:
        """All runs (or those with the given status or statuses) by id, with results attached.

        Two queries in one read snapshot: the runs, then all their results at once (not one per run).
        """
        if status is None:
            return self._select_runs(None, ())
        wanted = [status] if isinstance(status, str) else list(status)
        for name in wanted:
            if name not in STATUSES:
                raise unknown_choice("run status", name, STATUSES)
        return self._select_runs(f"status IN ({', '.join('?' * len(wanted))})", tuple(wanted))

    def _select_runs(self, where: str | None, params: tuple) -> list[Run]:
        run_filter = f"WHERE {where}" if where else ""
        of_runs = f"WHERE run_id IN (SELECT id FROM runs {run_filter})" if where else ""

        def read(con) -> tuple[list, list, list]:
            run_rows = con.execute(f"SELECT {RUN_COLUMNS} FROM runs {run_filter} ORDER BY id", params).fetchall()
            result_rows = con.execute(
                f"SELECT run_id, shift, metric, value FROM results {of_runs} ORDER BY run_id, shift, metric", params,
            ).fetchall()
            requeue_rows = con.execute(f"SELECT run_id, claim, worker, requeued_at, reason FROM requeues {of_runs} "
                                       "ORDER BY run_id, claim", params).fetchall()
            return run_rows, result_rows, requeue_rows

        run_rows, result_rows, requeue_rows = self._db.read(read)
        results = results_by_run(result_rows)
        requeues: dict[int, list[Requeue]] = {}
        for run_id, *requeue in requeue_rows:
            requeues.setdefault(run_id, []).append(Requeue(*requeue))
        return [run_from_row(row, results.get(row[0], {}), tuple(requeues.get(row[0], ()))) for row in run_rows]

    def counts(self) -> dict[str, int]:
        """Number of runs per status, every status present (0 when none)."""
        rows = self._db.read(lambda con: con.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())
        return {status: 0 for status in STATUSES} | dict(rows)
