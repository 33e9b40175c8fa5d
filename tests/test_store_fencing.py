"""The store's side of fencing and retries, on both backends (`store_url`): every write of a worker is a compare-and-set
on its claim (run, worker, claim number), so a stale claim writes nothing even under the same worker name; `complete`
publishes and records in one transaction; automatic retries (`retry_or_fail`, `requeue_stale`) stop at the run's
`retries`; the schema's migrations take an older store to the current version, and what must not migrate (readers,
the dashboard's writes) does not."""

from __future__ import annotations

import pytest

from innerdpo_bench.errors import UserError
from innerdpo_bench.store import MAX_RETRIES, SCHEMA_VERSION, Store, schema
from innerdpo_bench.store.run import spec_json

from helpers.store import lose_the_next_commit

NAME = "node-a:4242:0"   # one worker name for both claims: hosts of one name and a reused pid give exactly this
RESULTS = {"in_domain": {"acc": 0.75, "n": 8.0}}


@pytest.fixture
def store(tmp_path, store_url, clock):
    with Store(tmp_path / "home", url=store_url, clock=clock) as opened:
        yield opened


def row(store: Store, run_id: int) -> tuple:
    """Everything a write could change: the run's row, its results and provenance, its requeues."""
    run = store.get_run(run_id)
    return (run.status, run.worker, run.run_dir, run.heartbeat_at, run.finished_at, run.exit_code, run.error,
            run.attempts, run.claims, run.results, store.get_provenance(run_id), run.requeues)


def test_a_stale_claim_writes_nothing_even_under_the_same_worker_name(store, clock):
    run_id = store.add_run({"name": "dpo"})
    first = store.claim_next(NAME)
    clock.advance(61)
    assert store.requeue_stale(timeout_s=60) == [run_id]     # frozen past --stale-after
    second = store.claim_next(NAME)                          # claimed again, by a worker of the same name
    assert (first.claims, second.claims) == (1, 2)
    before = row(store, run_id)
    published = []
    clock.advance(5)
    assert store.heartbeat(run_id, NAME, first.claims) is False
    assert store.set_run_dir(run_id, "/elsewhere", NAME, first.claims) is False
    assert store.finish(run_id, NAME, "failed", 1, "late", claim=first.claims) is False
    assert store.release(run_id, NAME, first.claims) is False
    assert store.retry_or_fail(run_id, NAME, first.claims, "train was killed by SIGKILL") is None
    assert store.complete(run_id, NAME, first.claims, RESULTS, {"in_domain": {"N": 8}},
                          lambda: published.append("eval.json")) is False
    assert published == [] and row(store, run_id) == before  # nothing published, nothing changed
    # the worker name alone could not tell the two claims apart: this heartbeat is the second claim's
    assert store.heartbeat(run_id, NAME) is True
    assert store.complete(run_id, NAME, second.claims, RESULTS, {"in_domain": {"N": 8}},
                          lambda: published.append("eval.json")) is True
    run = store.get_run(run_id)
    assert published == ["eval.json"]
    assert (run.status, run.exit_code, run.results, store.get_provenance(run_id)) == (
        "done", 0, RESULTS, {"in_domain": {"N": 8}})


def test_complete_under_a_lost_commit_publishes_and_records_once(store, clock, monkeypatch):
    run_id = store.add_run({"name": "dpo"})
    claim = store.claim_next("w").claims
    fired = lose_the_next_commit(store, monkeypatch)
    published = []
    assert store.complete(run_id, "w", claim, RESULTS, None, lambda: published.append(1)) is True
    assert fired == ["lost"] and published == [1]           # the landed check answered; the body did not run again
    assert (store.get_run(run_id).status, store.get_run(run_id).results) == ("done", RESULTS)


@pytest.mark.parametrize("retries, max_attempts, outcomes, why", [
    (2, 3, ["queued", "queued", "failed"], "--retries 2 used up"),
    (0, 3, ["failed"], "--retries 0 used up"),
    (5, 2, ["queued", "failed"], "the worker's --max-attempts 2 reached"),
])
def test_retry_or_fail_queues_again_up_to_the_runs_retries(store, clock, retries, max_attempts, outcomes, why):
    run_id, other = store.add_runs([{"name": "dpo"}, {"name": "ipo"}], retries=retries)
    for attempt, outcome in enumerate(outcomes, 1):
        run = store.claim_next("w")
        assert (run.id, run.claims, run.retries) == (run_id, attempt, retries)  # its old priority: ahead of `other`
        clock.advance(10)
        assert store.retry_or_fail(run_id, "w", run.claims, "train was killed by SIGKILL (out of memory?)", -9,
                                   max_attempts) == outcome
    run = store.get_run(run_id)
    assert (run.status, run.exit_code, run.attempts) == ("failed", -9, len(outcomes))
    assert run.error == f"train was killed by SIGKILL (out of memory?) (attempt {len(outcomes)}; not retried: {why})"
    assert [(requeue.claim, requeue.worker, requeue.reason) for requeue in run.requeues] == [
        (claim, "w", f"train was killed by SIGKILL (out of memory?); retried ({claim} of --retries {retries})")
        for claim in range(1, len(outcomes))]
    assert store.get_run(other).requeues == () and store.get_run(other).status == "queued"


def test_a_killed_attempt_with_a_pending_cancel_ends_cancelled_not_retried(store, clock):
    run_id = store.add_run({"name": "dpo"}, retries=3)
    claim = store.claim_next("w").claims
    assert store.cancel(run_id) == "cancelling"
    assert store.retry_or_fail(run_id, "w", claim, "train was killed by SIGKILL", -9) == "cancelled"
    run = store.get_run(run_id)
    assert (run.status, run.requeues) == ("cancelled", ())
    assert run.error == "cancelled while running (train was killed by SIGKILL)"


def test_requeue_stale_stops_at_the_runs_retries_and_says_why(store, clock):
    once, never, gone = store.add_runs([{"name": "a"}], retries=1) + store.add_runs([{"name": "b"}], retries=0) + \
        store.add_runs([{"name": "c"}], retries=1)
    for worker in ("w1", "w2", "w3"):
        store.claim_next(worker)
    clock.advance(61)
    assert store.heartbeat(gone, "w3")
    assert store.requeue_stale(timeout_s=60, dead_workers=["w3"]) == [once, never, gone]
    assert [store.get_run(run_id).status for run_id in (once, never, gone)] == ["queued", "failed", "queued"]
    assert store.get_run(never).error == "worker stopped heartbeating (attempt 1)"
    assert [(r.claim, r.worker, r.reason, r.requeued_at) for r in store.get_run(once).requeues] == [
        (1, "w1", "its worker w1 stopped heartbeating for over 60s", clock.now)]
    assert store.get_run(gone).requeues[0].reason == "its worker w3 was gone from its host"
    store.claim_next("w4")                                    # `once`, claimed again, goes silent again: failed
    clock.advance(61)
    assert once in store.requeue_stale(timeout_s=60)
    assert (store.get_run(once).status, len(store.get_run(once).requeues)) == ("failed", 1)


def test_a_graceful_release_is_recorded_as_not_counted(store):
    run_id = store.add_run({"name": "dpo"})
    claim = store.claim_next("w").claims
    assert store.release(run_id, "w", claim) is True
    assert [(r.claim, r.reason) for r in store.get_run(run_id).requeues] == [(1, "its worker shut down (not counted)")]


@pytest.mark.parametrize("retries", [-1, MAX_RETRIES + 1, 1.5, True, "2"])
def test_retries_out_of_range_are_refused_and_nothing_is_queued(store, retries):
    with pytest.raises(UserError, match=f"--retries must be a whole number from 0 to {MAX_RETRIES}"):
        store.add_runs([{"name": "dpo"}], retries=retries)
    assert store.list_runs() == []


def test_the_current_version_migrates_an_older_store_and_what_must_not_migrate_does_not(tmp_path, store_url, monkeypatch):
    """A store at version 2 (made with the first two migrations): a reader and the dashboard's writes
    (`migrate=False`) refuse it and leave it at 2; the next ordinary open migrates it, keeping every run, each with
    the default single retry and no requeues."""
    name = "MIGRATIONS" if store_url is None else "POSTGRES_MIGRATIONS"
    monkeypatch.setattr(schema, name, getattr(schema, name)[:2])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 2)
    with Store(tmp_path / "home", url=store_url) as old:   # a run as version 2's code inserted it
        (run_id,) = old._con.execute("INSERT INTO runs (name, kind, spec, status, priority, created_at) VALUES "
                                     "('dpo', 'train_eval', ?, 'queued', 1, 0) RETURNING id",
                                     (spec_json({"name": "dpo"}),)).fetchone()
    monkeypatch.undo()
    for options in ({"readonly": True}, {"create": False, "migrate": False}):
        with pytest.raises(UserError, match="schema version 2, older than this innerdpo-bench's"):
            Store(tmp_path / "home", url=store_url, **options)
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 2)    # to look at it as it is: still version 2
    with Store(tmp_path / "home", url=store_url, readonly=True) as store:
        assert store._db.read(store._db.dialect.version) == 2
    monkeypatch.undo()
    with Store(tmp_path / "home", url=store_url) as store:
        assert store._db.read(store._db.dialect.version) == SCHEMA_VERSION == 4
        run = store.get_run(run_id)
        assert (run.name, run.retries, run.requeues) == ("dpo", 1, ())
