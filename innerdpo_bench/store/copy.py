"""`innerdpo store copy`: every run, result, provenance and requeue row of one store into another, empty one (a
workspace that started on a laptop's SQLite moves to the cluster's PostgreSQL), ids and the id counter kept, then read
back and compared row by row."""

from __future__ import annotations

from innerdpo_bench.errors import RunFailed, UserError
from innerdpo_bench.store import Store
from innerdpo_bench.store.run import RUN_COLUMNS

# Each table, its columns, and the order that makes two stores' rows comparable. Runs first: the others refer to them.
TABLES = {
    "runs": (RUN_COLUMNS, "id"),
    "results": ("run_id, shift, metric, value", "run_id, shift, metric"),
    "provenance": ("run_id, shift, data", "run_id, shift"),
    "requeues": ("run_id, claim, worker, requeued_at, reason", "run_id, claim"),
}


def _rows(con) -> dict[str, list[tuple]]:
    return {table: [tuple(row) for row in con.execute(f"SELECT {columns} FROM {table} ORDER BY {order}")]
            for table, (columns, order) in TABLES.items()}


def copy_store(source: Store, destination: Store) -> dict[str, int]:
    """Copy `source` into the empty `destination` in one transaction; {table: rows copied}. UserError, writing
    nothing, when a run is running (its worker would go on writing to the old store) or the destination holds runs;
    RunFailed when the rows read back differ (the transaction has committed: the destination is then not to be
    used)."""
    if source.url.same_store(destination.url):
        raise UserError(f"store copy: {destination.where} is the store being copied")
    running = source.counts()["running"]
    if running:
        raise UserError(f"{running} run(s) are running in {source.where}: stop the workers first (they would go on "
                        "writing to the old store); nothing was copied")
    rows, last_id = source._db.read(lambda con: (_rows(con), source._db.dialect.last_id(con)))

    def insert(con) -> None:
        (held,) = con.execute("SELECT count(*) FROM runs").fetchone()
        if held:
            raise UserError(f"store {destination.where} already holds {held} run(s); copy into an empty database "
                            "(nothing was copied)")
        for table, (columns, _) in TABLES.items():
            marks = ", ".join("?" * len(columns.split(",")))
            con.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows[table])
        highest = max((row[0] for row in rows["runs"]), default=0)
        destination._db.dialect.set_last_id(con, max(last_id, highest))   # a removed run's id is never reused

    destination._db.write(insert)
    copied = destination._db.read(_rows)
    for table in TABLES:
        if copied[table] != rows[table]:
            differing = sum(a != b for a, b in zip(copied[table], rows[table])) + abs(len(copied[table]) -
                                                                                       len(rows[table]))
            raise RunFailed(f"store copy: {differing} row(s) of {table} in {destination.where} differ from "
                            f"{source.where} once written; do not use the copy")
    return {table: len(rows[table]) for table in TABLES}
