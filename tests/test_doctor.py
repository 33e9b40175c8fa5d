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
from test_stats import pattern, store_run
from test_tui_broken import corrupt_page
from typer.testing import CliRunner

from innerdpo_bench import doctor
from innerdpo_bench.cli.main import app
from innerdpo_bench.evaluation.suites import SHIFTS
from innerdpo_bench.store import STORE_FILE, Store

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
FAULTS = {
    "temp file of a killed write": (lambda ck, cache: _old_temp(ck / "eval.json.a1b2c3d4"),
                                    "left by a write that never finished", True),
    "half-saved adapter": (lambda ck, cache: (ck / "adapter.tmp").mkdir() or ck / "adapter.tmp",
                           "an adapter whose save never finished", True),
    "rows file missing": (lambda ck, cache: (ck / "eval_rows.jsonl").unlink() or ck / "eval_rows.jsonl",
                          "is missing", False),
    "rows file changed": (lambda ck, cache: open(ck / "eval_rows.jsonl", "a").write("{}\n") and ck / "eval_rows.jsonl",
                          "does not match the rows_sha256", False),
    "eval.json cut short": (lambda ck, cache: (ck / "eval.json").write_text('{"shifts": ') and ck / "eval.json",
                            "is not valid JSON", False),
    "status not complete": (lambda ck, cache: (ck / "status.json").write_text('{"state": "failed"}') and ck,
                            "says 'failed', not 'complete'", False),
    "adapter truncated": (lambda ck, cache: _truncate(ck / "adapter" / "adapter_model.safetensors"),
                          "truncated?", False),
    "adapter config missing": (lambda ck, cache: (ck / "adapter" / "adapter_config.json").unlink()
                               or ck / "adapter" / "adapter_config.json", "is missing or not JSON", False),
    "run directory deleted": (lambda ck, cache: shutil.rmtree(ck.parent) or ck.parent, "is missing", False),
    "evaluation cache entry clobbered": (lambda ck, cache: cache_entry(cache, "x\n", "0" * 64),
                                         "does not match the rows_sha256", True),
    "score cache cut short": (lambda ck, cache: _score_cache(cache), "1 of 3 lines are not score records", True),
    "scored under the old rule": (lambda ck, cache: _old_rule(ck / "eval.json"), "scored under an older rule", False),
    "half-built model": (lambda ck, cache: (cache / "tiny-random-v1-s0").mkdir() or cache / "tiny-random-v1-s0",
                         "has no config.json", True),
}


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
    if not repairable and fault not in ("status not complete", "adapter truncated", "adapter config missing",
                                        "run directory deleted"):
        assert f"fix: rebuild them: innerdpo eval {checkpoint} --suite mini" in result.output
    repaired = doctor_run(home, "--repair")
    assert repaired.exit_code == (0 if repairable else 1), repaired.output
    after = doctor_run(home)
    assert after.exit_code == (0 if repairable else 1), after.output
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
