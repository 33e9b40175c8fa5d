"""Rows longer than the model's context, the same in `innerdpo eval` (fast path) and the harness path (stock lm-eval
HFLM on the same tasks): lm-eval's rule (keep the continuation, cut the context from the left; a continuation that
alone does not fit is skipped), counted per shift in eval.json's provenance and per row (`truncated`).

Fast: tiny-random with its window shrunk to 96 positions in config.json (RoPE does not care; lm-eval reads the
window from there), so a few real GENIES rows are cut or skipped. Slow: the full `genies:alpaca_easy` suite on
tiny-random's own 1,024 positions, through `innerdpo eval` and the plain `lm_eval` CLI: every row scored or counted.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from innerdpo_bench.evaluation import suites
from innerdpo_bench.evaluation.evaluate import evaluate, task_name
from innerdpo_bench.evaluation.suites import SHIFTS

SUITE = "genies:alpaca_easy"


def fast_path(model_path: str, limit: int, out: Path):
    result = evaluate(model_path, suite=SUITE, limit=limit, batch_size=8, device="cpu", output=str(out),
                      use_cache=False)
    rows = {(r["shift"], r["doc_id"]): r for r in map(json.loads, result.rows_path.read_text().splitlines())}
    return result.report, rows


def in_process_harness(model_path: str, limit: int) -> tuple[dict, dict]:
    """Stock HFLM on the same tasks: ({shift: length_report}, {(shift, doc id): row scores and decision})."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(suites.tasks_dir()), include_defaults=False,
                          metadata={"suite": SUITE, "rows": limit, "pretrained": model_path})
    tasks = manager.load([task_name(s) for s in SHIFTS])["tasks"]
    # logits_cache=False, as tasks/README.md says: lm-eval's cache misreads requests that share tokens split elsewhere
    results = simple_evaluate(model="hf", model_args=f"pretrained={model_path},dtype=float32,logits_cache=False",
                              device="cpu",
                              tasks=list(tasks.values()), log_samples=True, batch_size=8)
    rows = {}
    for shift in SHIFTS:
        task = tasks[task_name(shift)]
        for sample in results["samples"][task_name(shift)]:
            rows[(shift, sample["doc_id"])] = {**task.row_scores(sample["doc"], sample["filtered_resps"]),
                                               "correct": bool(sample["acc"])}
    return {s: tasks[task_name(s)].length_report for s in SHIFTS}, rows


@pytest.fixture(scope="module")
def short_window_model(tiny_model_path, tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("short-window") / "model"
    shutil.copytree(tiny_model_path, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 96}))
    return str(model_dir)


def test_long_rows_are_cut_or_skipped_alike_in_both_paths(short_window_model, tmp_path):
    limit = 4
    report, fast = fast_path(short_window_model, limit, tmp_path / "eval.json")
    reports, harness = in_process_harness(short_window_model, limit)
    counted = {s: (report["provenance"][s]["truncated"], report["provenance"][s]["skipped"]) for s in SHIFTS}
    assert counted == {s: (reports[s]["truncated"], reports[s]["skipped"]) for s in SHIFTS}
    assert sum(t for t, _ in counted.values()) > 0 and sum(k for _, k in counted.values()) > 0, counted
    for shift in SHIFTS:
        prov = report["provenance"][shift]
        assert prov["max_length"] == 96
        assert report["shifts"][shift]["n"] + prov["skipped"] == limit   # every row scored or skipped
        assert sum(r["truncated"] for k, r in fast.items() if k[0] == shift) == prov["truncated"]
    assert fast.keys() == harness.keys()
    for key, row in fast.items():
        other = harness[key]
        assert (row["n_chosen"], row["n_rejected"], row["truncated"], row["correct"]) == (
            other["n_chosen"], other["n_rejected"], other["truncated"], other["correct"]), key
        assert row["logp_chosen"] == pytest.approx(other["logp_chosen"], abs=1e-4, rel=1e-6), key


def test_the_fast_model_refuses_a_continuation_longer_than_its_window(short_window_model):
    from innerdpo_bench.evaluation.fastlm import FastHFLM
    from innerdpo_bench.models import load_causal_lm, load_tokenizer

    lm = FastHFLM(pretrained=load_causal_lm(short_window_model), tokenizer=load_tokenizer(short_window_model),
                  batch_size=2)
    request = (("context", "x"), [1, 2, 3], list(range(4, 4 + 97)))
    with pytest.raises(ValueError, match="a continuation of 97 tokens does not fit the model's 96 positions"):
        lm._loglikelihood_tokens([request])


@pytest.mark.slow
def test_the_full_suite_on_tiny_random_is_scored_or_counted_alike_in_both_paths(tiny_model_path, tmp_path):
    """The issue's case: `innerdpo eval tiny-random --suite genies:alpaca_easy` over all rows used to crash
    (IndexError in fastlm). Now every row is scored, or counted as skipped (a Chinese medical completion longer
    than 1,024 tokens); `innerdpo eval` and plain `lm_eval` agree on every count and every row's decision."""
    limit = 750   # every row: 750, 750, 704 and 100 pairs
    report, fast = fast_path("tiny-random", limit, tmp_path / "eval.json")
    out = tmp_path / "lm_eval"
    command = [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args",
               f"pretrained={tiny_model_path},dtype=float32,logits_cache=False", "--device", "cpu", "--include_path",
               str(suites.tasks_dir()), "--tasks", "innerdpo_shifts", "--metadata",
               json.dumps({"suite": SUITE, "rows": limit}), "--batch_size", "16", "--output_path", str(out),
               "--log_samples"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=1800, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (results_file,) = out.rglob("results_*.json")
    results = json.loads(results_file.read_text())
    pairs = {s: len(suites.load_shift(s, suite=SUITE, rows=limit)) for s in SHIFTS}
    assert pairs == {"in_domain": 750, "difficulty_scaling": 750, "moral_transfer": 704, "orthogonal": 100}
    for shift in SHIFTS:
        prov, n = report["provenance"][shift], report["shifts"][shift]["n"]
        assert n + prov["skipped"] == pairs[shift], shift
        cli = results["results"][task_name(shift)]
        assert cli["sample_len"] == n
        samples = [json.loads(line) for line in next(out.rglob(f"samples_{task_name(shift)}_*.jsonl")).open()]
        assert sum(float(s["truncated"]) for s in samples) == prov["truncated"]
        assert {s["doc_id"]: bool(float(s["acc"])) for s in samples} == {
            doc_id: row["correct"] for (s, doc_id), row in fast.items() if s == shift}
    assert (report["provenance"]["orthogonal"]["skipped"], report["provenance"]["orthogonal"]["truncated"]) == (16, 3)
    assert all(report["provenance"][s]["skipped"] == 0 for s in SHIFTS if s != "orthogonal")
