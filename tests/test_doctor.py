"""`innerdpo doctor`: a healthy fixture workspace, then each fault alone: what it reports, what --repair does, and
the exit code (0 healthy or all repaired, 1 problems left, 2 no store)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from typer.testing import CliRunner

from innerdpo_bench import doctor
from innerdpo_bench.cli.main import app
from innerdpo_bench.evaluation.suites import SHIFTS
from innerdpo_bench.store import STORE_FILE, Store

from helpers.runs import pattern, store_run
from helpers.store import corrupt_page

runner = CliRunner()
OLD = time.time() - 3600   # older than doctor.LEFTOVER_AGE_S


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """(home, checkpoint dir, cache dir): one done run whose files are all sound, an empty cache of our own."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("INNERDPO_CACHE", str(cache))
    home = tmp_path / "home"
    with Store(home) as store:
        run_id = store_run(store, home, {s: pattern(8, 5) for s in SHIFTS})
        checkpoint = Path(store.get_run(run_id).run_dir) / "checkpoint"
    adapter = checkpoint / "adapter"
    (adapter / "adapter_model.safetensors").unlink()
    save_file({"lora_A": np.zeros((2, 4), dtype=np.float32)}, str(adapter / "adapter_model.safetensors"))
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2}))
    (checkpoint / "status.json").write_text(json.dumps({"state": "complete"}))
    report = json.loads((checkpoint / "eval.json").read_text())
    rows = (checkpoint / report["rows_file"]).read_bytes()
    report["cache"] = {"hit": False, "key": "k", "rows_sha256": hashlib.sha256(rows).hexdigest()}
    (checkpoint / "eval.json").write_text(json.dumps(report))
    cache.mkdir()
    return home, checkpoint, cache


def doctor_run(home, *flags):
    return runner.invoke(app, ["doctor", "--home", str(home), *flags])


def cache_entry(cache: Path, rows_text: str, recorded: str) -> Path:
    entry = cache / "evals" / "0123abcd"
    entry.mkdir(parents=True)
    (entry / "rows.jsonl").write_text(rows_text)
    (entry / "eval.json").write_text(json.dumps({"shifts": {}, "cache": {"rows_sha256": recorded}}))
    os.utime(entry, (OLD, OLD))
    return entry


def test_a_sound_workspace_is_healthy(workspace):
    home, _, cache = workspace
    good = "x\n"
    cache_entry(cache, good, hashlib.sha256(good.encode()).hexdigest())
    (cache / "scores").mkdir()
    (cache / "scores" / "a.jsonl").write_text(json.dumps({"k": "1", "ll": -1.0, "greedy": False}) + "\n")
    result = doctor_run(home)
    assert result.exit_code == 0, result.output
    assert "healthy" in result.output and "(1 run(s))" in result.output


def _old_temp(path: Path) -> Path:
    path.write_text('{"half": ')
    os.utime(path, (OLD, OLD))
    return path


# fault name → (make it: (checkpoint, cache) → the path it is about, words of the problem, whether --repair fixes it)
# A run's untrusted files are repaired by queueing the run again (after which doctor skips it: queued runs are
# being worked on); a run whose directory is gone has nothing to repair from.
FAULTS = {
    "temp file of a killed write": (lambda ck, cache: _old_temp(ck / "eval.json.a1b2c3d4"),
                                    "left by a write that never finished", True),
    "half-saved adapter": (lambda ck, cache: (ck / "adapter.tmp").mkdir() or ck / "adapter.tmp",
                           "an adapter whose save never finished", True),
    "rows file missing": (lambda ck, cache: (ck / "eval_rows.jsonl").unlink() or ck / "eval_rows.jsonl",
                          "is missing", True),
    "rows file changed": (lambda ck, cache: open(ck / "eval_rows.jsonl", "a").write("{}\n") and ck / "eval_rows.jsonl",
                          "does not match", True),
    "eval.json cut short": (lambda ck, cache: (ck / "eval.json").write_text('{"shifts": ') and ck / "eval.json",
                            "is not valid JSON", True),
    "status not complete": (lambda ck, cache: (ck / "status.json").write_text('{"state": "failed"}') and ck,
                            "says 'failed', not 'complete'", True),
    "adapter truncated": (lambda ck, cache: _truncate(ck / "adapter" / "adapter_model.safetensors"),
                          "truncated?", True),
    "adapter config missing": (lambda ck, cache: (ck / "adapter" / "adapter_config.json").unlink()
                               or ck / "adapter" / "adapter_config.json", "is missing or not JSON", True),
    "run directory deleted": (lambda ck, cache: shutil.rmtree(ck.parent) or ck.parent, "is missing", False),
    "evaluation cache entry clobbered": (lambda ck, cache: cache_entry(cache, "x\n", "0" * 64),
                                         "does not match the rows_sha256", True),
    "score cache cut short": (lambda ck, cache: _score_cache(cache), "1 of 3 lines are not score records", True),
    "scored under the old rule": (lambda ck, cache: _old_rule(ck / "eval.json"), "scored under an older rule", True),
    "half-built model": (lambda ck, cache: (cache / "tiny-random-v1-s0").mkdir() or cache / "tiny-random-v1-s0",
                         "has no config.json", True),
}
REEVALUATE = ("rows file missing", "rows file changed", "eval.json cut short", "scored under the old rule")
RETRAIN = ("status not complete", "adapter truncated", "adapter config missing")


def _old_rule(eval_json: Path) -> Path:
    """eval.json as an evaluation before scoring rule v2 wrote it (its provenance names the old rule)."""
    report = json.loads(eval_json.read_text())
    for prov in report["provenance"].values():
        prov["scoring_rule"] = ("correct if the mean per-token log-prob of chosen > rejected (strict), continuation "
                                "tokens counted as lm-eval's _encode_pair counts them; acc_sum: summed log-prob, strict >")
    eval_json.write_text(json.dumps(report))
    return eval_json


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) - 8])
    return path


def _score_cache(cache: Path) -> Path:
    path = cache / "scores" / "b.jsonl"
    path.parent.mkdir()
    record = json.dumps({"k": "1", "ll": -1.0, "greedy": False})
    path.write_text(f"{record}\n{record[:10]}\n{record.replace('1', '2')}\n")
    return path


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_fault_is_reported_and_only_the_safe_ones_repaired(workspace, fault):
    home, checkpoint, cache = workspace
    make, words, repairable = FAULTS[fault]
    path = make(checkpoint, cache)
    result = doctor_run(home)
    assert result.exit_code == 1, result.output
    problems = [line for line in result.output.splitlines() if line.startswith("problem:")]
    assert len(problems) == 1 and words in problems[0] and str(path) in problems[0], result.output
    assert ("--repair would" in result.output) == repairable
    if fault in REEVALUATE:
        assert f"fix: rebuild them: innerdpo eval {checkpoint} --suite mini" in result.output
        assert "--repair would queue run 1 again to score its checkpoint anew" in result.output
    if fault in RETRAIN:
        assert "--repair would move checkpoint/ aside (kept) and queue run 1 again" in result.output
    before = {run.id: run.results for run in Store(home, readonly=True, create=False).list_runs()}
    repaired = doctor_run(home, "--repair")
    assert repaired.exit_code == (0 if repairable else 1), repaired.output
    after = doctor_run(home)
    assert after.exit_code == (0 if repairable else 1), after.output
    with Store(home, readonly=True, create=False) as store:
        run = store.get_run(1)
    assert run.results == before[1]   # no repair deletes a result
    assert run.status == ("queued" if fault in REEVALUATE + RETRAIN else "done")
    assert (checkpoint.parent / "checkpoint.attempt-1").is_dir() == (fault in RETRAIN)
    if fault == "score cache cut short":
        assert len((cache / "scores" / "b.jsonl").read_text().splitlines()) == 2


def test_a_corrupt_store_gets_the_recover_command_and_is_never_repaired(workspace):
    home, _, _ = workspace
    corrupt_page(home / STORE_FILE)
    before = (home / STORE_FILE).read_bytes()
    for flags in ((), ("--repair",)):
        result = doctor_run(home, *flags)
        assert result.exit_code == 1, result.output
        assert "fails its integrity check" in result.output and f"sqlite3 {home / STORE_FILE} .recover" in result.output
    assert (home / STORE_FILE).read_bytes() == before


def test_no_store_is_one_line_and_exit_2(tmp_path):
    result = doctor_run(tmp_path / "typo")
    assert result.exit_code == 2 and "no store at" in result.output and not (tmp_path / "typo").exists()


def test_leftover_files_matches_the_temp_names_of_atomic_writes(tmp_path):
    from innerdpo_bench import files

    files.atomic_write_text(tmp_path / "eval.json", "{}")
    for name in ("eval.json.k3j_x9a2", "eval_rows.jsonl.abcdefgh", "notes.txt.abcdefgh", "eval.json"):
        (tmp_path / name).write_text("x")
    assert [p.name for p in doctor.leftover_files(tmp_path)] == ["eval.json.k3j_x9a2", "eval_rows.jsonl.abcdefgh"]


# --------------------------------------------------------------------------- worker.log, read back for an import

LOG = """2026-01-01T10:00:00+00:00 attempt 1 claimed by host:11:cpu (1 of --max-attempts 3 counted: graceful stops are not)
2026-01-01T10:00:01+00:00 train: python -m innerdpo_bench train ...
2026-01-01T10:05:00+00:00 run 7: its worker stopped heartbeating for over 60s; now queued
2026-01-01T10:06:00+00:00 attempt 2 claimed by host:12:cpu (1 of --max-attempts 3 counted: graceful stops are not)
"""
ENDINGS = {   # the last line → (state, error) the import takes from it
    "": ("running", None),
    "2026-01-01T10:09:00+00:00 attempt 2 failed: train exited with code 1: loss became nan\n":
        ("failed", "train exited with code 1: loss became nan"),
    "2026-01-01T10:09:00+00:00 attempt 2 cancelled: cancelled while running\n": ("cancelled", "cancelled while running"),
    "2026-01-01T10:09:00+00:00 worker stopping: attempt 2 stopped, run returned to the queue (not counted)\n":
        ("queued", None),
    "2026-01-01T10:09:00+00:00 run 7: its worker stopped heartbeating for over 60s; now failed (worker stopped "
    "heartbeating (attempt 3))\n": ("failed", "worker stopped heartbeating (attempt 3)"),
    "2026-01-01T10:09:00+00:00 attempt 2 done\n": ("done", None),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_worker_log_gives_the_state_an_orphan_is_imported_in(tmp_path, ending):
    from innerdpo_bench.doctor.orphans import plan_import, read_history

    log = tmp_path / "worker.log"
    log.write_text(LOG + ending)
    history = read_history(log)
    assert (history.state, history.error) == ENDINGS[ending] and history.claims == 2
    assert history.worker == "host:12:cpu" and history.first_seen < history.started_at
    run_dir = tmp_path / "runs" / "7-dpo-s0"   # no eval.json: nothing verified, so worker.log decides
    run_dir.mkdir(parents=True)
    log.rename(run_dir / "worker.log")
    (run_dir / "run.json").write_text(json.dumps({"id": 7, "name": "dpo", "kind": "train_eval", "spec": {"name": "dpo"},
                                                  "priority": 7, "created_at": 1.0}))
    plan = plan_import(run_dir, taken={7})
    assert plan.run_id is None   # id 7 is taken: a new id
    state = ENDINGS[ending][0]
    if state in ("failed", "cancelled", "queued"):
        assert (plan.status, plan.error) == ENDINGS[ending]
    else:   # unfinished, or done with no results to show for it: failed, saying why, for queue retry
        assert plan.status == "failed" and plan.error.startswith("imported by innerdpo doctor: ")
        assert ("its last attempt ended done but" in plan.error) == (state == "done")


def test_queue_rm_marks_the_directory_so_it_is_no_orphan(workspace):
    home, checkpoint, _ = workspace
    assert runner.invoke(app, ["queue", "rm", "1", "--home", str(home)]).exit_code == 0
    assert (checkpoint.parent / "worker.log").read_text().splitlines()[-1].endswith("removed from the store "
                                                                                     "(innerdpo queue rm) (run 1)")
    result = doctor_run(home)
    assert result.exit_code == 0 and "(0 run(s))" in result.output, result.output
