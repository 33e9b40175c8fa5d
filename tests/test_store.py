"""The run store's contract, one suite run against both backends (the `store_url` fixture: the workspace's own SQLite
file, then a new database on the session's PostgreSQL server): migrations, transitions as compare-and-set, a
multi-process claim race, user-facing errors, and a lost commit that must not be done twice. A few tests are of one
backend's own machinery (SQLite's WAL file and its lock; the two schemas' equality)."""

from __future__ import annotations

import json
import math
import random
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from innerdpo_bench.errors import UserError
from innerdpo_bench.store import SCHEMA_VERSION, STORE_FILE, Store, resolve_home, schema

from helpers.store import lose_the_next_commit

SHIFTS = ("in_domain", "difficulty_scaling", "moral_transfer", "orthogonal")
METRICS = ("acc", "acc_stderr", "acc_sum", "logratio", "n", "nll_ratio")


@pytest.fixture
def open_store(tmp_path, store_url):
    """Open (again) the store under test: Store(HOME, url=the backend's URL, **options)."""
    return lambda **options: Store(tmp_path / "home", url=store_url, **options)


@pytest.fixture
def store(open_store, clock):
    with open_store(clock=clock) as opened:
        yield opened


def driver_errors() -> tuple[type[Exception], ...]:
    """The drivers' own exception types: what a bug in our SQL raises (never dressed up as a UserError)."""
    try:
        import psycopg
    except ImportError:
        return (sqlite3.Error,)
    return (sqlite3.Error, psycopg.Error)


def set_version(store: Store, version: int) -> None:
    """Write a schema version behind the Store's back, through its own dialect (PRAGMA user_version or
    innerdpo_schema)."""
    store._db.write(lambda con: store._db.dialect.set_version(con, version))


def columns(store: Store, table: str) -> list[str]:
    if store.backend == "sqlite":
        return [row[1] for row in store._con.execute(f"PRAGMA table_info({table})")]
    return [name for (name,) in store._con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position", (table,))]


def raw(path: Path) -> sqlite3.Connection:
    """A plain connection, for inspecting or damaging the file behind the Store's back."""
    return sqlite3.connect(path, isolation_level=None)


def claim_order(store: Store, worker: str = "w") -> list[int]:
    order = []
    while (run := store.claim_next(worker)) is not None:
        order.append(run.id)
    return order


# --- opening and migrations ---------------------------------------------------------------------


def test_resolve_home_prefers_argument_then_env_then_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("INNERDPO_HOME", raising=False)
    assert resolve_home(None) == tmp_path / "innerdpo"
    monkeypatch.setenv("INNERDPO_HOME", str(tmp_path / "from-env"))
    assert resolve_home(None) == tmp_path / "from-env"
    assert resolve_home(tmp_path / "given") == tmp_path / "given"
    assert resolve_home("relative") == tmp_path / "relative"


def test_open_creates_wal_store_at_current_schema_and_reopens_without_loss(tmp_path):
    home = tmp_path / "a" / "b"
    with Store(home) as store:
        run_id = store.add_run({"name": "dpo"})
    path = home / STORE_FILE
    con = raw(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == len(schema.MIGRATIONS)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "results", "provenance"} <= tables
    con.close()
    with Store(home) as store:
        assert [run.id for run in store.list_runs()] == [run_id]


def test_open_refuses_a_store_from_a_newer_version_and_writes_nothing(open_store):
    with open_store() as store:
        store.add_run({"name": "dpo"})
        set_version(store, SCHEMA_VERSION + 1)
        where = store.where
    with pytest.raises(UserError, match="newer") as caught:
        open_store()
    assert where in str(caught.value) and "nothing was written" in str(caught.value)


def test_a_database_that_is_not_ours_is_refused_and_left_as_it_was(tmp_path, store_url):
    """A database holding someone else's tables: migrating would mix ours into it."""
    if store_url is None:
        (tmp_path / "home").mkdir()
        con = raw(tmp_path / "home" / STORE_FILE)
        con.execute("CREATE TABLE invoices (id INTEGER, total REAL)")
        con.close()
    else:
        import psycopg

        with psycopg.connect(store_url, autocommit=True) as con:
            con.execute("CREATE TABLE invoices (id INTEGER, total REAL)")
    with pytest.raises(UserError, match="is not an innerdpo store: it holds other tables \\(invoices\\)"):
        Store(tmp_path / "home", url=store_url)
    with pytest.raises(UserError, match="not an innerdpo store"):
        Store(tmp_path / "home", url=store_url, readonly=True)
    if store_url is None:
        con = raw(tmp_path / "home" / STORE_FILE)
        tables = [name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert (tables, con.execute("PRAGMA user_version").fetchone()[0]) == (["invoices"], 0)
    else:
        with psycopg.connect(store_url) as con:
            tables = [name for (name,) in con.execute("SELECT table_name FROM information_schema.tables "
                                                      "WHERE table_schema = 'public'")]
        assert tables == ["invoices"]
    assert not (tmp_path / "home" / "store.url").exists()


def test_a_new_migration_upgrades_an_old_store_and_a_failing_one_changes_nothing(open_store, monkeypatch):
    with open_store() as store:
        run_id = store.add_run({"name": "ipo"})
        name = "MIGRATIONS" if store.backend == "sqlite" else "POSTGRES_MIGRATIONS"
    shipped = getattr(schema, name)
    good = (*shipped, ("ALTER TABLE runs ADD COLUMN future_column TEXT",))
    bad = (*shipped, ("CREATE TABLE half_done (x INTEGER)", "THIS IS NOT SQL"))

    monkeypatch.setattr(schema, name, list(bad))
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(bad))
    with pytest.raises(driver_errors()):
        open_store()
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(shipped))   # to open it as it is and look
    with open_store() as store:
        assert store._db.read(store._db.dialect.version) == len(shipped)
        assert "half_done" not in store._db.read(store._db.dialect.tables)

    monkeypatch.setattr(schema, name, list(good))
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(good))
    with open_store() as store:
        assert store.get_run(run_id).spec.name == "ipo"
        assert store._db.read(store._db.dialect.version) == len(good)
        assert columns(store, "runs")[-1] == "future_column"


def test_both_backends_build_the_same_tables_and_columns_at_every_version(tmp_path, pg_url):
    with Store(tmp_path / "sqlite") as on_sqlite, Store(tmp_path / "pg", url=pg_url) as on_postgres:
        for table in ("runs", "results", "provenance", "requeues"):
            assert columns(on_sqlite, table) == columns(on_postgres, table), table
        assert sorted(on_sqlite._db.read(on_sqlite._db.dialect.tables)) == ["provenance", "requeues", "results", "runs"]
        assert sorted(on_postgres._db.read(on_postgres._db.dialect.tables)) == [
            "innerdpo_schema", "provenance", "requeues", "results", "runs"]
    assert len(schema.MIGRATIONS) == len(schema.POSTGRES_MIGRATIONS) == SCHEMA_VERSION


def test_a_file_that_is_not_sqlite_is_a_user_error_naming_it(tmp_path):
    (tmp_path / STORE_FILE).write_bytes(b"definitely not a database\n" * 200)
    with pytest.raises(UserError, match="not a valid SQLite database") as caught:
        Store(tmp_path)
    assert str(tmp_path / STORE_FILE) in str(caught.value)
    assert "--home" in str(caught.value)


def test_a_store_locked_past_the_busy_timeout_is_a_user_error(open_store, store_url, tmp_path):
    """Another process holds the lock a write needs (SQLite: the file; PostgreSQL: the run's row): reading goes on,
    the write waits the busy timeout and gives one line naming the store."""
    with open_store() as store:
        run_id = store.add_run({"name": "dpo"})
        where = store.where
    if store_url is None:
        holder = raw(tmp_path / "home" / STORE_FILE)
        holder.execute("BEGIN EXCLUSIVE")
    else:
        import psycopg

        holder = psycopg.connect(store_url, autocommit=True)
        holder.execute("BEGIN")
        holder.execute("SELECT id FROM runs WHERE id = %s FOR UPDATE", (run_id,))
    try:
        with open_store(busy_timeout_s=0.1) as store:  # WAL, MVCC: opening and reading still work
            assert store.counts()["queued"] == 1
            with pytest.raises(UserError, match="locked") as caught:
                store.cancel(run_id)
            assert where in str(caught.value)
            assert "another process" in str(caught.value) or "stuck session" in str(caught.value)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with open_store(busy_timeout_s=0.1) as store:
        assert store.cancel(run_id) == "cancelled"


# --- adding, claiming, reordering ---------------------------------------------------------------


def test_add_run_names_parses_spec_and_checks_kind(store, clock):
    by_method = store.add_run({"train": {"method": "dpo", "seed": 3}, "other": None})
    by_name = store.add_run({"name": "dpo-seed4", "train": {"method": "dpo"}}, kind="eval")
    explicit = store.add_run({"name": "dpo"}, name="mine")
    runs = {run.id: run for run in store.list_runs()}
    assert [runs[i].name for i in (by_method, by_name, explicit)] == ["dpo", "dpo-seed4", "mine"]
    assert (runs[by_method].spec.train.seed, runs[by_method].spec.extra) == (3, {"other": None})
    assert runs[by_name].kind == "eval"
    assert (runs[by_method].status, runs[by_method].priority, runs[by_method].created_at) == ("queued", 1.0, clock.now)
    assert (runs[by_method].attempts, runs[by_method].cancel_requested, runs[by_method].results) == (0, False, {})
    with pytest.raises(UserError, match="Did you mean 'eval'"):
        store.add_run({"name": "dpo"}, kind="evl")


def test_claim_takes_lowest_priority_first_and_marks_the_run(store, clock):
    ids = store.add_runs([{"name": m} for m in ("a", "b", "c", "d", "e")])
    assert ids == [1, 2, 3, 4, 5]
    store.move(4, to_front=True)
    store.move(5, before=2)
    clock.advance(7)
    first = store.claim_next("gpu0")
    assert (first.id, first.status, first.worker, first.attempts) == (4, "running", "gpu0", 1)
    assert first.started_at == first.heartbeat_at == clock.now
    assert store.get_run(4).worker == "gpu0"
    assert claim_order(store) == [1, 5, 2, 3]
    assert store.claim_next("gpu0") is None


def test_move_matches_a_list_model_and_new_runs_still_go_last(store):
    queue = store.add_runs([{"name": "dpo", "seed": seed} for seed in range(30)])
    model = list(queue)
    rng = random.Random(0)
    for _ in range(300):
        run_id = rng.choice(model)
        if rng.random() < 0.3:
            store.move(run_id, to_front=True)
            model.remove(run_id)
            model.insert(0, run_id)
        else:
            before = rng.choice([other for other in model if other != run_id])
            store.move(run_id, before=before)
            model.remove(run_id)
            model.insert(model.index(before), run_id)
    newest = store.add_run({"name": "ipo"})
    assert claim_order(store) == model + [newest]


def test_move_refuses_runs_that_are_not_queued(store):
    running, queued = store.add_runs([{"name": "a"}, {"name": "b"}])
    store.claim_next("w")
    with pytest.raises(UserError, match="run 1 is running"):
        store.move(running, to_front=True)
    with pytest.raises(UserError, match="run 1 is running"):
        store.move(queued, before=running)
    with pytest.raises(UserError, match="before itself"):
        store.move(queued, before=queued)
    with pytest.raises(UserError, match="no run with id 99"):
        store.move(99, to_front=True)


_CLAIM_WORKER = """
import json, pathlib, sys, time
from innerdpo_bench.store import Store
home, worker, url = sys.argv[1], sys.argv[2], sys.argv[3] or None
with Store(home, url=url) as store:
    pathlib.Path(home, worker + ".ready").touch()
    deadline = time.time() + 60
    while not pathlib.Path(home, "go").exists() and time.time() < deadline:
        time.sleep(0.001)
    claimed = []
    while (run := store.claim_next(worker)) is not None:
        claimed.append(run.id)
        time.sleep(0.002)  # a sliver of "work", so that the four workers interleave
print(json.dumps(claimed))
"""


def test_four_processes_racing_claim_every_run_exactly_once(open_store, store_url, tmp_path):
    home = tmp_path / "home"
    with open_store() as store:
        run_ids = store.add_runs([{"name": "dpo", "seed": seed} for seed in range(200)])
    workers = [f"worker{i}" for i in range(4)]
    procs = [
        subprocess.Popen([sys.executable, "-c", _CLAIM_WORKER, str(home), worker, store_url or ""],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for worker in workers
    ]
    deadline = time.time() + 60
    while not all((home / f"{worker}.ready").exists() for worker in workers) and time.time() < deadline:
        time.sleep(0.01)
    (home / "go").touch()  # release all four at once
    claimed_by: dict[str, list[int]] = {}
    for worker, proc in zip(workers, procs):
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        claimed_by[worker] = json.loads(stdout)
    every_claim = [run_id for claims in claimed_by.values() for run_id in claims]
    print(f"claims per worker: {[len(claims) for claims in claimed_by.values()]}")
    assert sum(1 for claims in claimed_by.values() if claims) >= 2  # the race really was contended
    assert len(every_claim) == 200
    assert set(every_claim) == set(run_ids)
    with open_store() as store:
        runs = {run.id: run for run in store.list_runs()}
    assert {run.status for run in runs.values()} == {"running"}
    assert {run.attempts for run in runs.values()} == {1}  # a double claim would have made it 2
    assert all(runs[run_id].worker == worker for worker, claims in claimed_by.items() for run_id in claims)


# --- heartbeats, finishing, requeueing ----------------------------------------------------------


def test_a_stale_worker_cannot_heartbeat_or_finish_a_run_another_worker_took(store, clock):
    run_id = store.add_run({"name": "dpo"})
    store.claim_next("old")
    assert store.heartbeat(run_id, "old") is True
    assert store.heartbeat(run_id, "intruder") is False
    assert store.finish(run_id, "intruder", "done") is False
    clock.advance(61)
    assert store.requeue_stale(timeout_s=60) == [run_id]
    assert store.get_run(run_id).status == "queued"
    taken = store.claim_next("new")
    assert (taken.id, taken.attempts) == (run_id, 2)
    assert store.heartbeat(run_id, "old") is False
    assert store.finish(run_id, "old", "failed", exit_code=1, error="late") is False
    clock.advance(5)
    assert store.finish(run_id, "new", "done", exit_code=0) is True
    run = store.get_run(run_id)
    assert (run.status, run.worker, run.exit_code, run.error, run.finished_at) == ("done", "new", 0, None, clock.now)
    assert store.finish(run_id, "new", "failed") is False  # finished runs are never modified
    assert store.heartbeat(run_id, "new") is False
    with pytest.raises(ValueError, match="queued"):
        store.finish(run_id, "new", "queued")


def test_requeue_stale_spares_live_workers_and_fails_after_max_attempts(store, clock):
    flaky, healthy = store.add_runs([{"name": "flaky"}, {"name": "healthy"}])
    store.claim_next("w1")
    store.claim_next("w2")
    clock.advance(40)
    assert store.heartbeat(healthy, "w2")
    clock.advance(30)  # flaky is 70 s silent, healthy 30 s
    assert store.requeue_stale(timeout_s=60, max_attempts=2) == [flaky]
    assert store.get_run(flaky).worker is None
    assert store.claim_next("w3").id == flaky
    clock.advance(61)
    assert store.heartbeat(healthy, "w2")
    assert store.requeue_stale(timeout_s=60, max_attempts=2) == [flaky]
    run = store.get_run(flaky)
    assert (run.status, run.attempts, run.error) == ("failed", 2, "worker stopped heartbeating (attempt 2)")
    assert run.finished_at == clock.now
    assert store.get_run(healthy).status == "running"
    assert store.requeue_stale(timeout_s=60) == []


# --- cancel, retry, remove ----------------------------------------------------------------------


def test_cancel_is_immediate_when_queued_and_requested_when_running(store, clock):
    queued, running = store.add_runs([{"name": "a"}, {"name": "b"}])
    store.move(running, to_front=True)
    store.claim_next("w")
    assert store.cancel(queued) == "cancelled"
    assert store.get_run(queued).status == "cancelled"
    assert store.cancel(running) == "cancelling"
    run = store.get_run(running)
    assert (run.status, run.cancel_requested) == ("running", True)
    clock.advance(9)
    assert store.heartbeat(running, "w") is False  # the worker's signal to stop...
    assert store.get_run(running).heartbeat_at == clock.now  # ...yet it counts, so it is not requeued
    assert store.finish(running, "w", "cancelled", exit_code=-15) is True
    assert store.get_run(running).status == "cancelled"
    with pytest.raises(UserError, match=f"run {queued} is already cancelled"):
        store.cancel(queued)
    with pytest.raises(UserError, match="no run with id 42"):
        store.cancel(42)


def test_a_silent_worker_with_a_pending_cancel_ends_cancelled_not_requeued(store, clock):
    run_id = store.add_run({"name": "dpo"})
    store.claim_next("w")
    store.cancel(run_id)
    clock.advance(100)
    assert store.requeue_stale(timeout_s=60) == [run_id]
    assert store.get_run(run_id).status == "cancelled"
    assert store.claim_next("w2") is None


def test_retry_requeues_a_failed_run_as_new(store):
    run_id = store.add_run({"name": "dpo"})
    store.claim_next("w")
    store.set_run_dir(run_id, "/runs/1")
    store.record_results(run_id, {"in_domain": {"acc": 0.5}}, {"in_domain": {"split": "test"}})
    store.finish(run_id, "w", "failed", exit_code=1, error="NaN loss")
    store.retry(run_id)
    run = store.get_run(run_id)
    assert (run.status, run.worker, run.exit_code, run.error, run.attempts) == ("queued", None, None, None, 0)
    assert (run.started_at, run.finished_at, run.results, run.run_dir) == (None, None, {}, "/runs/1")
    assert store.get_provenance(run_id) == {}
    assert store.claim_next("w2").id == run_id
    with pytest.raises(UserError, match="is running; only failed or cancelled"):
        store.retry(run_id)


def test_remove_refuses_a_running_run_and_deletes_results_and_never_reuses_the_id(store):
    running, finished = store.add_runs([{"name": "a"}, {"name": "b"}])
    store.claim_next("w")
    with pytest.raises(UserError, match=f"run {running} is running"):
        store.remove(running)
    store.claim_next("w")
    store.record_results(finished, {"in_domain": {"acc": 1.0}}, {"in_domain": {"n": 1}})
    store.finish(finished, "w", "done")
    store.remove(finished)
    assert [run.id for run in store.list_runs()] == [running]
    with pytest.raises(UserError, match=f"no run with id {finished}"):
        store.get_run(finished)
    with pytest.raises(UserError, match=f"no run with id {finished}"):
        store.get_provenance(finished)
    assert store.add_run({"name": "c"}) == finished + 1  # run dirs are named by id


# --- results ------------------------------------------------------------------------------------


def test_record_results_upserts_and_list_runs_attaches_and_filters(store):
    done, other = store.add_runs([{"name": "dpo"}, {"name": "ipo"}])
    store.record_results(
        done,
        {"in_domain": {"acc": 0.5, "n": 100}, "orthogonal": {"acc_stderr": math.nan}},
        {"in_domain": {"dataset": "mini", "N": 100}},
    )
    store.record_results(
        done, {"in_domain": {"acc": 0.625}, "coherence": {"nll_ratio": 1.25}}, {"in_domain": {"dataset": "mini", "N": 99}}
    )
    store.claim_next("w")
    store.finish(done, "w", "done")
    results = store.get_run(done).results
    assert {shift: metrics for shift, metrics in results.items() if shift != "orthogonal"} == {
        "in_domain": {"acc": 0.625, "n": 100.0},
        "coherence": {"nll_ratio": 1.25},
    }
    assert math.isnan(results["orthogonal"]["acc_stderr"])
    assert store.get_provenance(done) == {"in_domain": {"N": 99, "dataset": "mini"}}
    assert [run.id for run in store.list_runs("done")] == [done]
    assert [(run.id, run.results) for run in store.list_runs(["queued", "failed"])] == [(other, {})]
    assert [run.id for run in store.list_runs()] == [done, other]
    with pytest.raises(UserError, match="Did you mean 'queued'"):
        store.list_runs("queud")
    with pytest.raises(UserError, match="no run with id 7"):
        store.record_results(7, {"in_domain": {"acc": 1.0}})


def test_counts_cover_every_status(store):
    a, b, c = store.add_runs([{"name": "x"}] * 3)
    store.claim_next("w")
    store.cancel(c)
    assert store.counts() == {"queued": 1, "running": 1, "done": 0, "failed": 0, "cancelled": 1}


def test_list_runs_of_ten_thousand_runs_with_results(tmp_path):
    with Store(tmp_path) as store:
        started = time.perf_counter()
        run_ids = store.add_runs([{"name": "dpo", "seed": seed} for seed in range(10_000)])
        for run_id in run_ids:
            store.record_results(
                run_id, {shift: {metric: run_id + 0.5 for metric in METRICS} for shift in SHIFTS}
            )
        filled_s = time.perf_counter() - started
        started = time.perf_counter()
        runs = store.list_runs()
        listed_s = time.perf_counter() - started
    size = sum(path.stat().st_size for path in tmp_path.glob(STORE_FILE + "*"))
    print(f"\n10,000 runs x {len(SHIFTS)} shifts x {len(METRICS)} metrics: filled in {filled_s:.2f}s, "
          f"list_runs {listed_s * 1000:.0f} ms, store {size / 1e6:.1f} MB")
    assert len(runs) == 10_000
    assert sum(len(metrics) for run in runs for metrics in run.results.values()) == 10_000 * 24
    assert runs[-1].results["orthogonal"]["nll_ratio"] == run_ids[-1] + 0.5


def test_release_requeues_only_a_run_its_worker_holds_and_gives_the_attempt_back(store, clock):
    """A graceful stop is no failed attempt: `attempts` goes back, `claims` (worker.log's numbering) does not."""
    run_id, later = store.add_runs([{"name": "dpo"}, {"name": "ipo"}])
    store.claim_next("w1")
    assert store.release(run_id, "intruder") is False
    assert store.release(run_id, "w1") is True
    run = store.get_run(run_id)
    assert (run.status, run.worker, run.started_at, run.heartbeat_at, run.attempts, run.claims) == (
        "queued", None, None, None, 0, 1)
    taken = store.claim_next("w2")
    assert (taken.id, taken.attempts, taken.claims) == (run_id, 1, 2)  # its old priority: still ahead of `later`
    assert store.heartbeat(run_id, "w1") is False
    assert store.release(run_id, "w1") is False
    store.cancel(run_id)
    assert store.release(run_id, "w2") is False  # a pending cancel is finished as cancelled, not requeued
    assert store.get_run(run_id).status == "running"


def test_all_provenance_matches_get_provenance_per_run(store):
    first, second, empty = store.add_runs([{"name": "dpo"}] * 3)
    store.record_results(first, {"in_domain": {"acc": 1.0}}, {"in_domain": {"dataset": "a"}, "orthogonal": {"N": 8}})
    store.record_results(second, {"in_domain": {"acc": 0.5}}, {"in_domain": {"dataset": "b"}})
    assert store.all_provenance() == {run_id: store.get_provenance(run_id) for run_id in (first, second)}
    assert store.get_provenance(empty) == {}


# --- a lost connection: reconnect, and never do a lost commit twice -----------------------------


def test_a_commit_lost_with_the_connection_is_recorded_once(store, clock, monkeypatch):
    """After a lost commit each write asks whether it landed before doing it again: one claim, not two runs held by
    a worker that knows of one; one finish that reports True; queued runs not queued twice."""
    fired = lose_the_next_commit(store, monkeypatch)
    assert store.add_runs([{"name": "a"}, {"name": "b"}]) == [1, 2] and fired
    assert [run.id for run in store.list_runs()] == [1, 2]

    fired = lose_the_next_commit(store, monkeypatch)
    claimed = store.claim_next("w")
    assert fired and (claimed.id, claimed.attempts, claimed.claims) == (1, 1, 1)
    assert store.get_run(2).status == "queued"      # the retry did not take a second run

    fired = lose_the_next_commit(store, monkeypatch)
    clock.advance(3)
    assert store.finish(1, "w", "done", exit_code=0) is True and fired
    assert (store.get_run(1).status, store.get_run(1).finished_at) == ("done", clock.now)

    fired = lose_the_next_commit(store, monkeypatch)
    assert store.cancel(2) == "cancelled" and fired
    store.retry(2)
    store.claim_next("w2")
    fired = lose_the_next_commit(store, monkeypatch)
    assert store.release(2, "w2") is True and fired
    assert (store.get_run(2).status, store.get_run(2).attempts, store.get_run(2).claims) == ("queued", 0, 1)


def test_a_server_restart_between_calls_is_survived(pg_server, pg_url, tmp_path):
    with Store(tmp_path / "home", url=pg_url) as store:
        run_id = store.add_run({"name": "dpo"})
        store.claim_next("w")
        before = store._db.dialect.session
        pg_server.restart()                             # every connection cut, the server back
        assert store.heartbeat(run_id, "w") is True
        assert store._db.dialect.session is not before  # it reconnected
        start_again = pg_server.pause()                 # down: the next write waits for it
        outcome: list[bool] = []
        writer = threading.Thread(target=lambda: outcome.append(store.finish(run_id, "w", "done")))
        writer.start()
        start_again()
        writer.join(60)
        assert outcome == [True] and store.get_run(run_id).status == "done"


def test_a_server_that_stays_away_is_one_line_after_the_bounded_wait(pg_server, pg_url, tmp_path):
    with Store(tmp_path / "home", url=pg_url, reconnect_s=1.0) as store:
        store.add_run({"name": "dpo"})
        start_again = pg_server.pause()
        try:
            with pytest.raises(UserError, match="could not get it back within 1s") as caught:
                store.counts()
        finally:
            start_again()
        message = str(caught.value)
        assert "\n" not in message and pg_server.password not in message
        assert f"innerdpo:***@127.0.0.1:{pg_server.port}/" in message
        assert store.counts()["queued"] == 1            # and it works again once the server is back
