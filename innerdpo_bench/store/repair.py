"""The store writes that `innerdpo doctor --repair` needs and nothing else does: put a run back into a store that lost
it (`import_run`), and queue a finished run again without deleting its results (`reopen`). SQL, so it lives here."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from innerdpo_bench.errors import UserError
from innerdpo_bench.store.run import spec_json
from innerdpo_bench.store.schema import KINDS, STATUSES

if TYPE_CHECKING:
    from innerdpo_bench.store import Store


def import_run(store: Store, run_id: int | None, *, name: str, kind: str, spec: dict[str, Any], status: str,
               run_dir: str, created_at: float, priority: float | None = None, claims: int = 0,
               error: str | None = None, exit_code: int | None = None,
               results: dict[str, dict[str, float]] | None = None,
               provenance: dict[str, dict[str, Any]] | None = None, worker: str | None = None,
               started_at: float | None = None, finished_at: float | None = None) -> int:
    """Insert a run as a run directory describes it, with its results and provenance, in one transaction; its id.

    `run_id` None takes the next free id; a taken `run_id` is a UserError (the caller then imports under a new
    one). The id counter moves past an explicit id (`set_last_id`), so runs queued later never reuse an imported
    one."""
    if kind not in KINDS or status not in STATUSES:
        raise ValueError(f"import_run: kind {kind!r} / status {status!r}")
    metric_rows = [(shift, metric, None if value != value else float(value))
                   for shift, metrics in (results or {}).items() for metric, value in metrics.items()]
    spec_text = spec_json(spec)
    now = store._clock()

    def insert(con) -> int:
        if run_id is not None and con.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone():
            raise UserError(f"run id {run_id} is taken")
        columns = ("name, kind, spec, status, priority, created_at, started_at, finished_at, worker, run_dir, "
                   "attempts, claims, exit_code, error")
        values = (name, kind, spec_text, status, 0, created_at,
                  *((None, None, None) if status == "queued" else (started_at, finished_at or now, worker)),
                  run_dir, claims, claims, exit_code, error)
        if run_id is not None:
            columns, values = "id, " + columns, (run_id, *values)
        marks = ", ".join("?" * len(values))
        (new_id,) = con.execute(f"INSERT INTO runs ({columns}) VALUES ({marks}) RETURNING id", values).fetchone()
        if run_id is not None:
            store._db.dialect.set_last_id(con, max(run_id, store._db.dialect.last_id(con)))
        con.execute("UPDATE runs SET priority = ? WHERE id = ?", (new_id if priority is None else priority, new_id))
        con.executemany("INSERT INTO results (run_id, shift, metric, value) VALUES (?, ?, ?, ?)",
                        [(new_id, *row) for row in metric_rows])
        con.executemany("INSERT INTO provenance (run_id, shift, data) VALUES (?, ?, ?)",
                        [(new_id, shift, json.dumps(data, sort_keys=True))
                         for shift, data in (provenance or {}).items()])
        return new_id

    return store._db.write(insert)


def reopen(store: Store, run_id: int, expected: str = "done") -> bool:
    """Queue a run that is `expected` (done, failed) again at its old priority, keeping its results and provenance
    until a worker records new ones (`queue retry` deletes them first): the repair for a run whose files can no
    longer be trusted. False, changing nothing, when the run is no longer `expected` (a compare-and-set)."""
    def requeue(con) -> bool:
        cursor = con.execute(
            """UPDATE runs SET status = 'queued', worker = NULL, started_at = NULL, finished_at = NULL,
                               heartbeat_at = NULL, attempts = 0, exit_code = NULL, error = NULL, cancel_requested = 0
               WHERE id = ? AND status = ?""",
            (run_id, expected))
        return cursor.rowcount == 1

    return store._db.write(requeue)
