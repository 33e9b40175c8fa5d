"""What a user does to the queue and its runs (`queue edit`, `cancel`, `retry`, `rm`, `move`, the dashboard's keys):
`Store`'s methods for them, each a compare-and-set in one transaction, as every store write is."""

from __future__ import annotations

import json
from collections.abc import Iterable

from innerdpo_bench.errors import UserError
from innerdpo_bench.store.database import NOT_LANDED


class UserEdits:
    """Mixed into `Store` (`store/__init__.py`): it provides `_db`, `_clock` and `_status_of`."""

    def annotate(self, run_id: int, *, name: str | None = None, tags: Iterable[str] | None = None,
                 note: str | None = None) -> None:
        """Set a run's name, tags (replacing them) and note, whatever its status; None leaves a field as it is."""
        labels = None if tags is None else json.dumps(list(dict.fromkeys(tags)))

        def write(con) -> None:
            self._status_of(con, run_id, lock=True)
            for column, value in (("name", name), ("tags", labels), ("note", note)):
                if value is not None:
                    con.execute(f"UPDATE runs SET {column} = ? WHERE id = ?", (value, run_id))

        self._db.write(write)   # idempotent: a rerun after a lost commit writes the same values

    def cancel(self, run_id: int) -> str:
        """Cancel a run. A queued run becomes 'cancelled' at once (returns "cancelled"); a running run
        gets cancel_requested, its worker stops it at the next heartbeat (returns "cancelling")."""
        now = self._clock()

        def cancel(con) -> str:
            status = self._status_of(con, run_id, lock=True)
            if status == "queued":
                con.execute("UPDATE runs SET status = 'cancelled', finished_at = ? WHERE id = ?", (now, run_id))
                return "cancelled"
            if status == "running":
                con.execute("UPDATE runs SET cancel_requested = 1 WHERE id = ?", (run_id,))
                return "cancelling"
            raise UserError(f"run {run_id} is already {status}")

        def landed(con):
            row = con.execute("SELECT status, finished_at FROM runs WHERE id = ?", (run_id,)).fetchone()
            return "cancelled" if row is not None and tuple(row) == ("cancelled", now) else NOT_LANDED

        return self._db.write(cancel, landed)

    def retry(self, run_id: int) -> None:
        """Queue a failed or cancelled run again, at its old priority, as if new: worker, times, exit
        code, error, attempts, cancel flag, results and provenance are cleared. run_dir is kept."""

        def requeue(con) -> None:
            status = self._status_of(con, run_id, lock=True)
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

        self._db.write(requeue)

    def remove(self, run_id: int) -> None:
        """Delete a run that is not running, with its results and provenance. Its run dir is left on disk."""

        def delete(con) -> None:
            if self._status_of(con, run_id, lock=True) == "running":
                raise UserError(f"run {run_id} is running; cancel it first")
            con.execute("DELETE FROM runs WHERE id = ?", (run_id,))  # results, provenance: ON DELETE CASCADE

        self._db.write(delete)

    def move(self, run_id: int, *, before: int | None = None, to_front: bool = False) -> None:
        """Reorder the queue: put queued run `run_id` first (`to_front`) or just ahead of queued run `before`.

        The queued runs' priorities are permuted among themselves, so every priority stays an
        original run id: no ties, no float bisection, and newly queued runs still go last.
        """
        if to_front == (before is not None):
            raise ValueError("move() needs exactly one of before=<run id> or to_front=True")
        if before == run_id:
            raise UserError(f"cannot move run {run_id} before itself")

        def permute(con) -> None:
            for queued_id in (run_id, before) if before is not None else (run_id,):
                status = self._status_of(con, queued_id, lock=True)
                if status != "queued":
                    raise UserError(f"run {queued_id} is {status}; only queued runs can be reordered")
            queue = con.execute("SELECT id, priority FROM runs WHERE status = 'queued' ORDER BY priority, id"
                                + self._db.row_lock).fetchall()
            old_order = [queued_id for queued_id, _ in queue]
            new_order = [queued_id for queued_id in old_order if queued_id != run_id]
            new_order.insert(0 if to_front else new_order.index(before), run_id)
            con.executemany(
                "UPDATE runs SET priority = ? WHERE id = ?",
                [(priority, new) for (old, priority), new in zip(queue, new_order) if new != old],
            )

        self._db.write(permute)
