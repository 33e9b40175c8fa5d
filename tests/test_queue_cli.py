"""The `queue` and `worker` commands: add, ls, move, cancel, retry, rm; one-line errors, a bad store."""

from __future__ import annotations

import json
import sqlite3

import pytest

from innerdpo_bench.cli import app as cli_app
from innerdpo_bench.store import STORE_FILE, Store

from helpers.cli import invoke
from helpers.worker import add, fake_spec


# --------------------------------------------------------------------------- the queue CLI


def test_queue_commands(home):
    added = invoke("queue", "add", "hs-none-innerdpo", "--base-model", "tiny-random", "--alpha", "1", "--seeds",
                   "1,2,3", "--suite", "mini", "--limit", "8", "--home", home)
    assert added.exit_code == 0, added.output
    assert "queued run 1: hs-none-InnerDPO α=1 seed 1" in added.output
    assert invoke("queue", "add-base", "tiny-random", "--limit", "4", "--home", home).exit_code == 0
    listed = json.loads(invoke("queue", "ls", "--json", "--home", home).output)
    assert [(run["id"], run["seed"], run["method"], run["kind"]) for run in listed] == [
        (1, 1, "hs-none-InnerDPO", "train_eval"), (2, 2, "hs-none-InnerDPO", "train_eval"),
        (3, 3, "hs-none-InnerDPO", "train_eval"), (4, None, "none", "eval")]
    assert listed[0]["spec"]["train"]["alpha"] == 1.0 and listed[3]["spec"]["eval"]["limit"] == 4
    assert invoke("queue", "move", 4, "--to-front", "--home", home).exit_code == 0
    assert invoke("queue", "move", 3, "--before", 1, "--home", home).exit_code == 0
    order = [run["id"] for run in json.loads(invoke("queue", "ls", "--json", "--home", home).output)]
    assert order == [4, 3, 1, 2]
    assert "run 2 cancelled" in invoke("queue", "cancel", 2, "--home", home).output
    assert "run 2 queued again" in invoke("queue", "retry", 2, "--home", home).output
    with Store(home) as store:
        store.claim_next("w")  # run 4, the head
    assert "cancel requested" in invoke("queue", "cancel", 4, "--home", home).output
    table_text = invoke("queue", "ls", "--home", home).output
    assert "cancelling" in table_text and "3 queued, 1 running" in table_text
    removed = invoke("queue", "rm", 1, "--home", home)
    assert removed.exit_code == 0 and "run 1 removed" in removed.output
    assert [run["id"] for run in json.loads(invoke("queue", "ls", "--json", "--home", home).output)] == [4, 3, 2]


@pytest.mark.parametrize("args, message", [
    (["queue", "add", "dpx"], "unknown method 'dpx'. Did you mean 'dpo'?"),
    (["queue", "add", "dpo", "--seeds", "1,a"], "--seeds takes comma-separated integers"),
    (["queue", "add", "dpo", "--suite", "alpaca_eazy"], "alpaca_eazy"),
    (["queue", "add", "dpo", "--max-steps", "0"], "--max-steps must be in [1, 10000000], got 0"),
    (["queue", "add", "dpo", "--limit", "0"], "--limit must be at least 1, got 0"),
    (["queue", "cancel", "99"], "no run with id 99"),
    (["queue", "retry", "1"], "run 1 is running; only failed or cancelled runs can be retried"),
    (["queue", "move", "1"], "exactly one of --before RUN_ID or --to-front"),
    (["queue", "move", "1", "--before", "1"], "cannot move run 1 before itself"),
    (["queue", "rm", "2"], "run 2 is running; cancel it first"),
    (["worker", "--devices", "gpu0"], "--devices takes GPU indices"),
    (["worker", "--poll", "0"], "--poll must be positive"),
    (["worker", "--max-runs", "0"], "--max-runs must be at least 1"),
])
def test_queue_and_worker_bad_input_is_one_line_and_exit_2(home, args, message):
    add(home, fake_spec(), fake_spec())
    with Store(home) as store:
        store.claim_next("w")
        store.claim_next("w")
    result = invoke(*args, "--home", home)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_a_corrupt_store_is_one_line_for_every_command(home):
    home.mkdir()
    (home / STORE_FILE).write_bytes(b"not a database at all\n" * 100)
    for args in (["queue", "ls"], ["queue", "add", "dpo"], ["worker", "--once", "--devices", "cpu"], ["runs"]):
        result = invoke(*args, "--home", home)
        assert result.exit_code == 2, (args, result.output)
        assert "is not a valid SQLite database" in result.output and "Traceback" not in result.output
        assert len(result.output.strip().splitlines()) == 1, result.output
    assert (home / STORE_FILE).read_bytes().startswith(b"not a database")  # left as it was


def test_a_locked_store_is_one_line_and_changes_nothing(home, monkeypatch):
    add(home, fake_spec())
    monkeypatch.setattr(cli_app, "STORE_BUSY_TIMEOUT_S", 0.2)
    holder = sqlite3.connect(home / STORE_FILE, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = invoke("queue", "add", "dpo", "--home", home)
        assert result.exit_code == 2 and "is locked" in result.output, result.output
        assert "Traceback" not in result.output
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with Store(home) as store:
        assert [run.id for run in store.list_runs()] == [1]
