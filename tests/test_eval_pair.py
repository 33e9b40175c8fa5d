"""eval.json and its rows file as one unit (`rundir.write_eval_pair`, checked by `rowsfile.load_evaluation`), the
leftovers a killed write leaves (`rundir.leftover_files`), and result files validated on read: every results
command and the TUI say one line about a bad file instead of a traceback."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from innerdpo_bench import files, rundir
from innerdpo_bench.errors import UserError
from innerdpo_bench.results.rowsfile import load_evaluation
from innerdpo_bench.store import Store

from helpers.cli import invoke, one_error_line
from helpers.runs import pattern, store_run, write_run

runner = CliRunner()
CLI = [sys.executable, "-m", "innerdpo_bench"]


def rows_text(n: int, value: float = -10.0) -> str:
    return "".join(json.dumps({"shift": "in_domain", "row_id": f"r{i}", "logp_chosen": value, "logp_rejected": -12.0,
                               "n_chosen": 10, "n_rejected": 10, "base_logp_chosen": -11.0,
                               "base_logp_rejected": -12.0, "correct": True}) + "\n" for i in range(n))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# --------------------------------------------------------------------------- the pair as one unit


def test_rows_files_are_named_by_content_and_the_old_pair_is_replaced_whole(tmp_path):
    eval_path = tmp_path / "eval.json"
    first = rundir.write_eval_pair(eval_path, {"limit": 2}, rows_text(2))
    assert first.name.startswith("eval_rows-") and rundir.eval_path_for_rows(first) == eval_path
    second = rundir.write_eval_pair(eval_path, {"limit": 3}, rows_text(3))
    assert second != first and not first.exists()          # the earlier pair's rows are gone with it
    report, rows_path, shifts = load_evaluation(eval_path)
    assert (report["limit"], rows_path, len(shifts["in_domain"])) == (3, second, 3)
    assert report["rows_sha256"] == files.sha256_file(second)
    assert rundir.leftover_files(tmp_path) == []


def test_killed_between_the_two_writes_the_old_pair_is_still_read_and_the_next_write_cleans_up(tmp_path):
    eval_path = tmp_path / "eval.json"
    rundir.write_eval_pair(eval_path, {"limit": 2}, rows_text(2))
    # what a kill after the rows and before eval.json leaves: the new rows under their own name, a temp file
    import hashlib

    orphan = rundir.rows_path_for(eval_path, hashlib.sha256(rows_text(3).encode()).hexdigest())
    files.atomic_write_text(orphan, rows_text(3))
    temp = tmp_path / f"eval.json.{dead_pid()}.abcd1234.tmp"
    legacy = tmp_path / "eval.json.k2j3h4g5"             # mkstemp's name before the pid was in it
    live = tmp_path / f"status.json.{os.getpid()}.abcd1234.tmp"  # a writer that is still running
    for path in (temp, legacy, live):
        path.write_text("{half")
    report, _, shifts = load_evaluation(eval_path)
    assert report["limit"] == 2 and len(shifts["in_domain"]) == 2
    assert rundir.leftover_files(tmp_path) == sorted([orphan, temp, legacy])
    rundir.write_eval_pair(eval_path, {"limit": 4}, rows_text(4))
    assert rundir.leftover_files(tmp_path) == [] and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["eval.json", json.loads(eval_path.read_text())["rows_file"], live.name])


def test_a_users_own_rows_named_file_is_listed_but_never_deleted_by_another_pairs_write(tmp_path):
    mine = tmp_path / "data_rows.jsonl"
    mine.write_text("{}\n")
    rundir.write_eval_pair(tmp_path / "eval-x.json", {}, rows_text(1))
    assert mine.exists() and rundir.leftover_files(tmp_path) == [mine]


def test_a_mismatched_pair_is_one_line_naming_the_file_and_the_command(tmp_path):
    eval_path = write_run(tmp_path / "a", {"in_domain": pattern(4, 2)})
    report = json.loads(eval_path.read_text())
    rows_path = eval_path.with_name(report["rows_file"])
    report["rows_sha256"] = files.sha256_file(rows_path)
    eval_path.write_text(json.dumps(report))
    one = write_run(tmp_path / "b", {"in_domain": pattern(4, 3)})
    assert invoke("compare", eval_path, one).exit_code == 0
    rows_path.write_text(rows_path.read_text().replace('"correct": false', '"correct": true'))  # the new rows
    for command in (["compare", eval_path, one], ["rescore", eval_path]):
        one_error_line(invoke(*command), f"{rows_path} does not match {eval_path}",
                       f"innerdpo eval CHECKPOINT --suite mini --limit 4 --output {eval_path}")


# --------------------------------------------------------------------------- typed-bad result files


def spoil_rows(eval_path: Path, how: str) -> str:
    """Make the rows file of `eval_path` bad in one way; the phrase the error must contain."""
    rows_path = eval_path.with_name(json.loads(eval_path.read_text())["rows_file"])
    first, *rest = rows_path.read_text().splitlines()
    record = json.loads(first)
    if how == "string_logp":
        record["logp_chosen"] = "-10.0"
        phrase = "line 1: 'logp_chosen' must be a number, not a string"
    elif how == "missing_key":
        del record["base_logp_rejected"]
        phrase = "line 1 lacks 'base_logp_rejected'"
    elif how == "bool_count":
        record["n_chosen"] = True
        phrase = "line 1: 'n_chosen' must be an integer, not a boolean"
    else:
        rows_path.write_bytes(b"\xff\xfe\x00binary")
        return "is not UTF-8 text"
    rows_path.write_text("\n".join([json.dumps(record), *rest]) + "\n")
    return phrase


@pytest.mark.parametrize("how", ["string_logp", "missing_key", "bool_count", "binary"])
def test_a_bad_rows_line_never_tracebacks_in_any_results_command(tmp_path, how):
    home = tmp_path / "home"
    with Store(home) as store:
        good = store_run(store, home, {"in_domain": pattern(8, 5)}, method="dpo")
        bad = store_run(store, home, {"in_domain": pattern(8, 6)}, method="ipo")
        eval_path = Path(store.get_run(bad).run_dir) / "checkpoint" / "eval.json"
    phrase = spoil_rows(eval_path, how)
    rebuild = f"--output {eval_path}"
    for command in (["rescore", bad], ["compare", good, bad]):
        one_error_line(invoke(*command, "--home", home), phrase, rebuild)
    for command in (["runs", "--baseline", good], ["runs", "--baseline", bad], ["runs", "--metric", "reward_acc"]):
        result = invoke(*command, "--home", home)
        assert result.exit_code == 0 and result.exception is None, result.output
        warning = [line for line in result.output.splitlines() if line.startswith(f"run {bad} unreadable:")]
        assert len(warning) == 1 and phrase in warning[0] and rebuild in warning[0], result.output


@pytest.mark.parametrize("content, phrase", [
    (b"\x00\x01\xff", "is not UTF-8 text"),
    (b"{not json", "is not valid JSON"),
    (b'{"state": 3}', "'state' must be a string, not a number"),
    (b"[1]", "holds a list, not a JSON object"),
])
def test_a_bad_status_json_is_one_line_for_eval_and_never_complete(tmp_path, trained_run, content, phrase):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "status.json").write_bytes(content)
    assert rundir.read_status(run)["state"] == "unreadable"
    one_error_line(invoke("eval", run, "--suite", "mini", "--limit", 2), f"{run / 'status.json'}", phrase,
                   "train the run again")


@pytest.mark.parametrize("content, phrase", [
    (b"\xff\xfe", "is not UTF-8 text"),
    (b'{"method": "dpo", "seed": "one"}', "'seed' must be an integer or null, not a string"),
])
def test_a_bad_config_json_is_one_line_for_compare_and_eval(tmp_path, content, phrase):
    eval_path = write_run(tmp_path / "a", {"in_domain": pattern(4, 2)})
    (tmp_path / "a" / "config.json").write_bytes(content)
    (tmp_path / "a" / "status.json").write_text('{"state": "complete"}')
    one_error_line(invoke("compare", eval_path, eval_path), f"{tmp_path / 'a' / 'config.json'}", phrase,
                   "train the run again")


# --------------------------------------------------------------------------- SIGKILL at random moments


def consistent_pair(eval_path: Path) -> tuple[int, int]:
    """(limit eval.json records, rows per shift) after checking the pair is whole and matches."""
    report, rows_path, shifts = load_evaluation(eval_path)
    assert report["rows_sha256"] == files.sha256_file(rows_path)
    counts = {len(rows) for rows in shifts.values()}
    assert len(counts) == 1, counts
    return report["limit"], counts.pop()


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_the_old_pair_or_the_new_never_a_mix(tmp_path, tiny_model_path):
    """10 tries: `innerdpo eval` (tiny-random, mini suite) over an existing pair with another --limit, killed
    after a random delay within one eval's duration; the directory then holds the old pair or the new one,
    readable and matching, and a fresh output holds a whole pair or none; `innerdpo doctor` reports every leftover
    a kill leaves (the directory is a finished eval-only run of a workspace)."""
    from innerdpo_bench import doctor

    out = tmp_path / "out"
    home = tmp_path / "home"
    with Store(home) as store:
        run_id = store.add_run({"name": "none", "eval": {"checkpoint": "tiny-random", "suite": "mini"}}, kind="eval")
        store.claim_next("test")
        store.set_run_dir(run_id, out)
        store.finish(run_id, "test", "done", 0)
    leftovers_seen = 0
    args = [*CLI, "eval", "tiny-random", "--suite", "mini", "--device", "cpu", "--no-cache"]
    started = time.monotonic()
    subprocess.run([*args, "--limit", "2", "--output", str(out / "eval.json")], check=True, capture_output=True,
                   timeout=300)
    duration = time.monotonic() - started
    assert consistent_pair(out / "eval.json") == (2, 2)
    rng = random.Random(23)
    seen = set()
    for attempt in range(10):
        fresh = tmp_path / f"fresh-{attempt}" / "eval.json"
        victims = [subprocess.Popen([*args, "--limit", "3", "--output", str(path)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL) for path in (out / "eval.json", fresh)]
        time.sleep(rng.uniform(0, duration * 1.2))
        for victim in victims:
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=30)
        limit, rows = consistent_pair(out / "eval.json")
        assert limit == rows and limit in (2, 3)
        left = rundir.leftover_files(out)
        problems = [finding.problem for finding in doctor.diagnose(home, tmp_path / "cache")[0]]
        assert all(any(str(path) in problem for problem in problems) for path in left), (left, problems)
        leftovers_seen += len(left)
        seen.add(limit)
        if fresh.exists():
            assert consistent_pair(fresh) == (3, 3)
        else:
            with pytest.raises(UserError):
                load_evaluation(fresh)
        if limit == 3:  # start each try from the old pair again
            subprocess.run([*args, "--limit", "2", "--output", str(out / "eval.json")], check=True,
                           capture_output=True, timeout=300)
    # leftovers of a killed write go with the next write
    subprocess.run([*args, "--limit", "2", "--output", str(out / "eval.json")], check=True, capture_output=True,
                   timeout=300)
    assert rundir.leftover_files(out) == []
    print(f"\n10 kills: limits seen {sorted(seen)}, {leftovers_seen} leftovers, each reported by doctor")
