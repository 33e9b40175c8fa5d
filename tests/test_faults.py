"""Fault probes of issue 23 that were tracebacks: a 300-character path component, a truncated adapter, a store row
whose spec is not JSON, duplicate dataset rows, and a run cancelled after its evaluation wrote its files."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from innerdpo_bench.store import STORE_FILE, Store

from helpers.cli import invoke, one_error_line
from helpers.runs import pattern, store_run, write_run

LONG = "a" * 300
TOO_LONG = "a path component of 300 characters"


# --------------------------------------------------------------------------- ENAMETOOLONG


@pytest.mark.parametrize("command, says", [
    (["runs", "--home", "{long}"], TOO_LONG),
    (["queue", "ls", "--home", "{long}"], TOO_LONG),
    (["queue", "add", "dpo", "--base-model", "tiny-random", "--home", "{long}"], TOO_LONG),
    (["compare", "{long}", "{long}"], TOO_LONG),
    (["eval", "{long}"], TOO_LONG),
    (["eval", "tiny-random", "--suite", "mini", "--limit", "1", "--output", "{long}/eval.json"], "--output: " + TOO_LONG),
])
def test_a_300_character_path_component_is_one_line(tmp_path, command, says):
    long_path = str(tmp_path / LONG)
    one_error_line(invoke(*[part.replace("{long}", long_path) for part in command]), says, long_path)


def test_a_300_character_output_dir_for_train_is_one_line(tmp_path, tiny_model_path):
    long_path = str(tmp_path / LONG)
    one_error_line(invoke("train", "dpo", "--base-model", "tiny-random", "--dataset", "mini:train", "--max-steps", 1,
                          "--output-dir", long_path), TOO_LONG)


# --------------------------------------------------------------------------- a truncated adapter


def truncated_copy(trained_run: Path, where: Path) -> Path:
    run = where / "run"
    shutil.copytree(trained_run, run)
    weights = run / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    return run


def test_a_truncated_adapter_is_one_line_for_eval(tmp_path, trained_run):
    run = truncated_copy(Path(trained_run), tmp_path)
    one_error_line(invoke("eval", run, "--suite", "mini", "--limit", 2, "--device", "cpu"),
                   f"{run / 'adapter' / 'adapter_model.safetensors'} is not a valid safetensors file",
                   "train the run again")


def test_a_truncated_adapter_fails_a_queued_eval_with_that_line(tmp_path, trained_run):
    run = truncated_copy(Path(trained_run), tmp_path)
    home = tmp_path / "home"
    with Store(home) as store:
        run_id = store.add_run({"name": "trunc", "eval": {"checkpoint": str(run), "suite": "mini", "limit": 2}},
                               kind="eval")
    result = subprocess.run([sys.executable, "-m", "innerdpo_bench", "worker", "--home", str(home), "--once",
                             "--devices", "cpu", "--poll", "0.1"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    with Store(home) as store:
        failed = store.get_run(run_id)
    assert failed.status == "failed" and "is not a valid safetensors file" in failed.error, failed.error
    assert "Traceback" not in failed.error


# --------------------------------------------------------------------------- a store spec that is not JSON


@pytest.mark.parametrize("spec, why", [("{", "is not valid JSON"), ("[1, 2]", "is a JSON list, not an object")])
def test_a_store_spec_that_is_not_json_is_one_line_and_is_failed_at_claim(tmp_path, spec, why):
    home = tmp_path / "home"
    with Store(home) as store:
        bad, good = store.add_runs([{"name": "dpo"}, {"name": "ipo"}])
    con = sqlite3.connect(home / STORE_FILE)
    con.execute("UPDATE runs SET spec = ? WHERE id = ?", (spec, bad))
    con.commit()
    con.close()
    for command in (["runs"], ["queue", "ls"]):
        one_error_line(invoke(*command, "--home", home), f"run {bad}'s spec in the store {why}",
                       f"innerdpo queue rm {bad}")
    with Store(home) as store:
        claimed = store.claim_next("w")
        assert claimed.id == good                  # the bad run is failed with why, never handed to a worker
    con = sqlite3.connect(home / STORE_FILE)
    status, error = con.execute("SELECT status, error FROM runs WHERE id = ?", (bad,)).fetchone()
    con.close()
    assert status == "failed" and why in error
    assert invoke("queue", "rm", bad, "--home", home).exit_code == 0
    assert invoke("runs", "--home", home).exit_code == 0


# --------------------------------------------------------------------------- duplicate rows


def test_duplicate_rows_are_counted_in_the_training_log(tmp_path, tiny_model_path):
    from innerdpo_bench.data.pairs import load_pairs

    rows = load_pairs("mini:train", limit=8)
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows + rows[:3] + rows[:2]))
    out = tmp_path / "run"
    result = invoke("train", "dpo", "--base-model", "tiny-random", "--dataset", data, "--max-steps", 1,
                    "--batch-size", 2, "--effective-batch", 2, "--output-dir", out)
    assert result.exit_code == 0, result.output
    lines = [line for line in (out / "train.log").read_text().splitlines() if "duplicate rows" in line]
    assert len(lines) == 1 and lines[0].endswith(f"5 duplicate rows in {data}"), lines


# --------------------------------------------------------------------------- cancelled after evaluation


def test_a_run_cancelled_after_evaluation_wrote_its_files_has_no_results_anywhere(tmp_path):
    """The cancel landed while eval was finishing: eval.json and rows are on disk, the run is `cancelled`; every
    reader ignores them (the choice documented in `locate._eval_path_of_run`)."""
    home = tmp_path / "home"
    with Store(home) as store:
        good = store_run(store, home, {"in_domain": pattern(8, 5)}, method="dpo")
        cancelled = store.add_run({"name": "ipo", "train": {"method": "ipo", "seed": 0, "dataset": "mini:train",
                                                             "base_model": "tiny-random"}})
        store.claim_next("w")
        run_dir = home / "runs" / f"{cancelled}-ipo"
        write_run(run_dir / "checkpoint", {"in_domain": pattern(8, 8)}, method="ipo")
        store.set_run_dir(cancelled, run_dir)
        store.cancel(cancelled)
        assert store.finish(cancelled, "w", "cancelled", error="cancelled while running")
    for command in (["rescore", cancelled], ["compare", good, cancelled]):
        one_error_line(invoke(*command, "--home", home), f"run {cancelled} is cancelled: it has no results")
    result = invoke("runs", "--metric", "reward_acc", "--format", "csv", "--home", home)
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("ipo") or f",{cancelled}," in line)
    assert "1.0" not in row                       # the cancelled run's rows (all correct) are not read
