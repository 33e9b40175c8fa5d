"""What a worker does with a run it holds, every step fenced by its claim: take it, heartbeat, name its directory, end
it (done with its results, failed, retried, handed back), and what other workers do with a silent one (requeue).

A claim is (run, worker, claim number): `runs.claims` counts every claim of a run and never goes back, so it is the
attempt token of that claim. Every write of a holder is one compare-and-set on all three, on both backends: a worker
that was frozen past `--stale-after` (its run requeued and claimed again, perhaps by a worker of the same name: hosts
of one name, a reused pid) finds its token stale and writes nothing. `complete` also runs the holder's `publish`
(moving its eval.json into the run directory) inside that transaction, after the check and while the run's row is
locked, so a file is published only under a claim that holds. `Store` (store/__init__.py) takes these operations in;
they are a file of their own because they are one topic, fencing, and the store's one module would be too long.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from typing import Any

from innerdpo_bench.store.database import NOT_LANDED
from innerdpo_bench.store.run import RUN_COLUMNS, Run, run_from_row, spec_problem
from innerdpo_bench.store.schema import FINISHED

MAX_RETRIES = 100   # `queue add --retries` at most: more is a loop, not a retry


def result_rows(run_id: int, results: dict[str, dict[str, float]],
                provenance: dict[str, dict[str, Any]] | None) -> tuple[list[tuple], list[tuple]]:
    """The (run_id, shift, metric, value) and (run_id, shift, data) rows of {shift: {metric: value}} and
    {shift: provenance}; NaN is NULL on both backends."""
    metric_rows = [(run_id, shift, metric, None if math.isnan(float(value)) else float(value))
                   for shift, metrics in results.items() for metric, value in metrics.items()]
    provenance_rows = [(run_id, shift, json.dumps(data, sort_keys=True)) for shift, data in (provenance or {}).items()]
    return metric_rows, provenance_rows


def upsert_results(con, metric_rows: list[tuple], provenance_rows: list[tuple]) -> None:
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


def _held(run_id: int, worker: str, claim: int | None) -> tuple[str, tuple]:
    """The WHERE clause (and its parameters) of a run that `worker` holds, by claim `claim` when given."""
    if claim is None:
        return "id = ? AND status = 'running' AND worker = ?", (run_id, worker)
    return "id = ? AND status = 'running' AND worker = ? AND claims = ?", (run_id, worker, claim)


class HeldRuns:
    """The claim-fenced operations of `Store` (it inherits them; they use its `_db` and `_clock`)."""

    def claim_next(self, worker: str) -> Run | None:
        """Move the queued run with the lowest (priority, id) to running, held by `worker`; None if none. The Run's
        `claims` is this claim's token: pass it as `claim` to every later write of this attempt.

        The choice locks the run before it changes (`claim_lock`), so no two workers can take the same run.
        """
        now = self._clock()

        def claim(con) -> Run | None:
            while True:
                rows = con.execute(
                    f"""UPDATE runs SET status = 'running', worker = ?, started_at = ?, heartbeat_at = ?,
                                        attempts = attempts + 1, claims = claims + 1
                        WHERE id = (SELECT id FROM runs WHERE status = 'queued' ORDER BY priority, id
                                    LIMIT 1{self._db.claim_lock}) AND status = 'queued'
                        RETURNING {RUN_COLUMNS}""",
                    (worker, now, now),
                ).fetchall()  # fetch all: a RETURNING statement must finish before COMMIT
                problem = spec_problem(rows[0][0], rows[0][3]) if rows else None
                if problem is None:
                    return run_from_row(rows[0], {}) if rows else None
                # a spec no worker can read (edited by hand, a bad disk): failed with why, never handed out
                con.execute("UPDATE runs SET status = 'failed', finished_at = ?, error = ? WHERE id = ?",
                            (now, problem, rows[0][0]))

        def landed(con):
            row = con.execute(f"SELECT {RUN_COLUMNS} FROM runs WHERE status = 'running' AND worker = ? AND "
                              "started_at = ?", (worker, now)).fetchone()
            return run_from_row(row, {}) if row else NOT_LANDED

        return self._db.write(claim, landed)

    def heartbeat(self, run_id: int, worker: str, claim: int | None = None) -> bool:
        """Record that `worker` is alive on `run_id` (by claim `claim`). True: keep going. False: stop.

        False means the run is no longer this claim's (requeued as stale, claimed again, finished, removed) or a
        cancel was requested; `get_run(run_id).cancel_requested` tells the two apart. The heartbeat is recorded even
        when a cancel is pending, so a worker that is shutting down is not requeued.
        """
        now = self._clock()
        where, params = _held(run_id, worker, claim)

        def beat(con) -> bool:
            rows = con.execute(f"UPDATE runs SET heartbeat_at = ? WHERE {where} RETURNING cancel_requested",
                               (now, *params)).fetchall()
            return bool(rows) and not rows[0][0]

        return self._db.write(beat)

    def set_run_dir(self, run_id: int, path: str | os.PathLike, worker: str | None = None,
                    claim: int | None = None) -> bool:
        """Remember where the run's artefacts (adapter, logs, eval.json) live. With `worker` (and `claim`): only
        while that claim holds the run; False, changing nothing, once it does not."""

        def update(con) -> bool:
            if worker is None:
                self._status_of(con, run_id, lock=True)
                con.execute("UPDATE runs SET run_dir = ? WHERE id = ?", (str(path), run_id))
                return True
            where, params = _held(run_id, worker, claim)
            return con.execute(f"UPDATE runs SET run_dir = ? WHERE {where}", (str(path), *params)).rowcount == 1

        return self._db.write(update)

    def finish(self, run_id: int, worker: str, status: str, exit_code: int | None = None,
               error: str | None = None, *, claim: int | None = None) -> bool:
        """Move a run that `worker` holds (by claim `claim`) to done, failed or cancelled. False if it no longer
        holds it (the run was requeued and perhaps claimed again, or removed): nothing is changed."""
        if status not in FINISHED:
            raise ValueError(f"finish() needs one of {sorted(FINISHED)}, not {status!r}")
        now = self._clock()
        where, params = _held(run_id, worker, claim)

        def end(con) -> bool:
            cursor = con.execute(f"UPDATE runs SET status = ?, finished_at = ?, exit_code = ?, error = ? WHERE {where}",
                                 (status, now, exit_code, error, *params))
            return cursor.rowcount == 1

        def landed(con):
            row = con.execute("SELECT status, worker, finished_at FROM runs WHERE id = ?", (run_id,)).fetchone()
            return True if row is not None and tuple(row) == (status, worker, now) else NOT_LANDED

        return self._db.write(end, landed)

    def complete(self, run_id: int, worker: str, claim: int, results: dict[str, dict[str, float]],
                 provenance: dict[str, dict[str, Any]] | None = None,
                 publish: Callable[[], None] = lambda: None) -> bool:
        """End a held run done with its results, in one transaction: check the claim (the run's row locked), then
        `publish()` (the worker moves its eval.json into the run directory; it must do nothing the second time, should
        a lost connection run this again), upsert {shift: {metric: value}} and {shift: provenance}, and finish.
        False, calling nothing and changing nothing, when the claim no longer holds."""
        now = self._clock()
        where, params = _held(run_id, worker, claim)
        metric_rows, provenance_rows = result_rows(run_id, results, provenance)

        def end(con) -> bool:
            if con.execute(f"SELECT id FROM runs WHERE {where}{self._db.row_lock}", params).fetchone() is None:
                return False
            publish()
            upsert_results(con, metric_rows, provenance_rows)
            con.execute("UPDATE runs SET status = 'done', finished_at = ?, exit_code = 0, error = NULL WHERE id = ?",
                        (now, run_id))
            return True

        def landed(con):
            row = con.execute("SELECT status, worker, finished_at FROM runs WHERE id = ?", (run_id,)).fetchone()
            return True if row is not None and tuple(row) == ("done", worker, now) else NOT_LANDED

        return self._db.write(end, landed)

    def retry_or_fail(self, run_id: int, worker: str, claim: int, reason: str, exit_code: int | None = None,
                      max_attempts: int = 3) -> str | None:
        """End a held attempt that failed the way a cluster fails (a stage killed by a signal: out of memory, a
        scheduler): back in the queue at its old priority, `reason` recorded in `requeues`, while the run has had at
        most `retries` failed attempts and fewer than `max_attempts` (the worker's cap); else failed with `reason`;
        cancelled when a cancel is pending. "queued", "failed" or "cancelled"; None, changing nothing, when the claim
        no longer holds."""
        now = self._clock()
        where, params = _held(run_id, worker, claim)

        def end(con) -> str | None:
            row = con.execute(f"SELECT attempts, retries, cancel_requested FROM runs WHERE {where}{self._db.row_lock}",
                              params).fetchone()
            if row is None:
                return None
            attempts, retries, cancel_requested = row
            if cancel_requested:
                con.execute("UPDATE runs SET status = 'cancelled', finished_at = ?, exit_code = ?, error = ? "
                            "WHERE id = ?", (now, exit_code, f"cancelled while running ({reason})", run_id))
                return "cancelled"
            if attempts <= retries and attempts < max_attempts:
                con.execute("INSERT INTO requeues (run_id, claim, worker, requeued_at, reason) VALUES (?, ?, ?, ?, ?)",
                            (run_id, claim, worker, now, f"{reason}; retried ({attempts} of --retries {retries})"))
                con.execute("UPDATE runs SET status = 'queued', worker = NULL, started_at = NULL, heartbeat_at = NULL "
                            "WHERE id = ?", (run_id,))
                return "queued"
            spent = (f"--retries {retries} used up" if attempts > retries else
                     f"the worker's --max-attempts {max_attempts} reached")
            con.execute("UPDATE runs SET status = 'failed', finished_at = ?, exit_code = ?, error = ? WHERE id = ?",
                        (now, exit_code, f"{reason} (attempt {claim}; not retried: {spent})", run_id))
            return "failed"

        def landed(con):
            row = con.execute("SELECT status, finished_at FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is not None and row[0] in ("failed", "cancelled") and row[1] == now:
                return row[0]
            requeued = con.execute("SELECT requeued_at FROM requeues WHERE run_id = ? AND claim = ?",
                                   (run_id, claim)).fetchone()
            return "queued" if requeued is not None and requeued[0] == now else NOT_LANDED

        return self._db.write(end, landed)

    def release(self, run_id: int, worker: str, claim: int | None = None) -> bool:
        """Give a run that `worker` holds (by claim `claim`) back to the queue at its old priority (the worker is
        shutting down and stopped the run): a graceful stop is no failed attempt, so the claim's attempt is given back
        (`claims` keeps it, and `requeues` says why). False, changing nothing, if `worker` no longer holds it or a
        cancel is pending (then the worker should `finish` it as cancelled)."""
        now = self._clock()
        where, params = _held(run_id, worker, claim)

        def give_back(con) -> bool:
            rows = con.execute(
                f"""UPDATE runs SET status = 'queued', worker = NULL, started_at = NULL, heartbeat_at = NULL,
                                    attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END
                    WHERE {where} AND cancel_requested = 0 RETURNING claims""",
                params,
            ).fetchall()
            if rows:
                con.execute("INSERT INTO requeues (run_id, claim, worker, requeued_at, reason) VALUES (?, ?, ?, ?, ?)",
                            (run_id, rows[0][0], worker, now, "its worker shut down (not counted)"))
            return bool(rows)

        def landed(con):
            row = con.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            return True if row is not None and row[0] == "queued" else NOT_LANDED

        return self._db.write(give_back, landed)

    def requeue_stale(self, timeout_s: float, max_attempts: int = 3, dead_workers: Iterable[str] = ()) -> list[int]:
        """Deal with running runs whose worker has not heartbeaten for `timeout_s`, or is one of `dead_workers`
        (known to be gone: no need to wait for the silence); the ids touched.

        Such a run goes back to the queue (a lost node is a cluster-like failure) while it has had at most `retries`
        failed attempts and fewer than `max_attempts`, the reason recorded in `requeues`; else it fails with "worker
        stopped heartbeating (attempt N)"; one with a pending cancel is cancelled. Its old worker's later writes
        return False (its claim is stale). One write transaction; the candidates are locked before they change.
        """
        now = self._clock()
        dead = list(dead_workers)
        gone = f" OR worker IN ({', '.join('?' * len(dead))})" if dead else ""
        stale = f"status = 'running' AND (heartbeat_at < ?{gone})"

        def requeue(con) -> list[int]:
            cancelled = con.execute(
                f"""UPDATE runs SET status = 'cancelled', finished_at = ?,
                                    error = 'worker stopped heartbeating while cancelling'
                    WHERE {stale} AND cancel_requested = 1 RETURNING id""",
                (now, now - timeout_s, *dead),
            ).fetchall()
            candidates = con.execute(f"SELECT id, claims, worker, attempts, retries FROM runs WHERE {stale}"
                                     f"{self._db.row_lock}", (now - timeout_s, *dead)).fetchall()
            back = [row for row in candidates if row[3] <= row[4] and row[3] < max_attempts]
            failed = [row for row in candidates if row not in back]
            con.executemany(
                "INSERT INTO requeues (run_id, claim, worker, requeued_at, reason) VALUES (?, ?, ?, ?, ?)",
                [(run_id, claim, worker, now, f"its worker {worker} " + (
                    "was gone from its host" if worker in dead else f"stopped heartbeating for over {timeout_s:g}s"))
                 for run_id, claim, worker, _, _ in back])
            con.executemany("UPDATE runs SET status = 'queued', worker = NULL, started_at = NULL, heartbeat_at = NULL "
                            "WHERE id = ?", [(row[0],) for row in back])
            con.executemany("UPDATE runs SET status = 'failed', finished_at = ?, error = ? WHERE id = ?",
                            [(now, f"worker stopped heartbeating (attempt {row[3]})", row[0]) for row in failed])
            return sorted([run_id for (run_id,) in cancelled] + [row[0] for row in candidates])

        return self._db.write(requeue)
