"""`innerdpo gate` (floors, drops that count only when significant, JUnit / Markdown / JSON reports), the
whole-evaluation cache behind `gate` and `eval`, seeded row sampling, and the example CI workflow.

Real evaluations use the tiny-random `trained_run` on the mini suite; drop statistics use rows files built in
tmp_path (helpers.runs) so the numbers are controlled."""

import hashlib
import json
import re
import shutil
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from innerdpo_bench.cli.main import app
from innerdpo_bench.data.mini import load_mini
from innerdpo_bench.errors import UserError
from innerdpo_bench.evaluation import cache as evalcache
from innerdpo_bench.evaluation import evaluate as evaluation
from innerdpo_bench.evaluation import suites
from innerdpo_bench.evaluation.checkpoint import resolve_checkpoint
from innerdpo_bench.evaluation.suites import SHIFTS
from innerdpo_bench.results import gate as gating
from innerdpo_bench.results import stats

from helpers.runs import pattern, rows_file_of, write_run

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "examples" / "ci" / "github-workflow.yml"


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def gate_json(*args, code: int = 0) -> dict:
    result = invoke("gate", *args, "--json")
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """A cache with no evaluations and no scores (the session's tiny-random stays where the run config points)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("INNERDPO_CACHE", str(cache))
    return cache


# --------------------------------------------------------------------------- a real adapter


def test_loose_floors_pass_and_impossible_ones_fail(trained_run, tmp_path):
    args = [trained_run, "--suite", "mini", "--limit", 16, "--device", "cpu", "--output", tmp_path / "eval.json"]
    loose = gate_json(*args, "--min", "all=0.01")
    assert loose["passed"] is True and [c["name"] for c in loose["checks"]] == [f"{s}.min" for s in SHIFTS]
    assert all(c["status"] == "pass" and c["n"] == 16 and c["value"] >= 0.01 for c in loose["checks"])
    report = json.loads((tmp_path / "eval.json").read_text())
    assert [c["value"] for c in loose["checks"]] == [report["shifts"][s]["acc"] for s in SHIFTS]

    strict = gate_json(*args, "--min", "all=0.99", "--junit", tmp_path / "gate.xml", code=1)
    assert strict["passed"] is False and strict["summary"] == {"checks": 4, "failed": 4, "within_noise": 0}
    assert all(c["status"] == "fail" and c["value"] < 0.99 for c in strict["checks"])
    suite = ET.parse(tmp_path / "gate.xml").getroot().find("testsuite")
    assert [case.get("name") for case in suite.iter("testcase")] == [f"{s}.min" for s in SHIFTS]
    assert all(case.find("failure") is not None for case in suite.iter("testcase"))

    human = invoke("gate", *args, "--min", "all=0.99")
    assert human.exit_code == 1 and "gate failed" in human.output and "in_domain.min" in human.output


def test_a_checkpoint_gated_against_itself_drops_nothing(trained_run, tmp_path):
    own = tmp_path / "own.json"
    args = [trained_run, "--suite", "mini", "--limit", 16, "--device", "cpu"]
    assert invoke("gate", *args, "--output", own, "--min", "all=0").exit_code == 0
    same = gate_json(*args, "--output", tmp_path / "again.json", "--baseline", own, "--max-drop", "all=0")
    drops = [c for c in same["checks"] if c["kind"] == "max_drop"]
    assert same["passed"] is True and [c["shift"] for c in drops] == list(SHIFTS)
    for check in drops:
        assert (check["delta"], check["drop"], check["p"], check["b"], check["c"]) == (0.0, -0.0, 1.0, 0, 0)
        assert check["lo"] == -check["hi"] == pytest.approx(-(1 - 0.05 ** (1 / 16)))  # exact bound, no discordance
        assert check["value"] == check["baseline"] and check["n"] == 16 and check["status"] == "pass"


# --------------------------------------------------------------------------- drops on controlled rows


# shift → (rows, baseline right, checkpoint right): rows 0..right−1 are right, so every discordant row has the
# baseline right and the checkpoint wrong (b = drop · N, c = 0), except orthogonal, which improves.
DROPS = {
    "in_domain": (100, 100, 80),           # drop 0.20, b=20: p = 2/2^20, significant: fail
    "difficulty_scaling": (20, 12, 10),    # drop 0.10, b=2: p = 0.5: within noise
    "moral_transfer": (100, 50, 49),       # drop 0.01 ≤ 0.02: pass
    "orthogonal": (20, 10, 12),            # a gain: pass
}
EXPECTED = {  # shift → (status, drop, b, c, p)
    "in_domain": ("fail", 0.20, 20, 0, 2 / 2**20),
    "difficulty_scaling": ("within noise", 0.10, 2, 0, 0.5),
    "moral_transfer": ("pass", 0.01, 1, 0, 1.0),
    "orthogonal": ("pass", -0.10, 0, 2, 0.5),
}


@pytest.fixture
def synthetic(tmp_path):
    """(checkpoint eval.json, baseline eval.json) with the DROPS rows."""
    baseline = write_run(tmp_path / "baseline", {s: pattern(n, a) for s, (n, a, _) in DROPS.items()}, method="dpo")
    candidate = write_run(tmp_path / "candidate", {s: pattern(n, b) for s, (n, _, b) in DROPS.items()},
                          method="hs-ether-InnerDPO")
    return candidate, baseline


def test_value_table_covers_every_shift():
    assert set(DROPS) == set(EXPECTED) == set(SHIFTS)


def test_a_significant_drop_fails_and_a_noisy_one_is_within_noise(synthetic):
    candidate, baseline = synthetic
    verdict = gate_json(candidate, "--baseline", baseline, "--max-drop", "all=0.02", code=1)
    by_shift = {c["shift"]: c for c in verdict["checks"]}
    for shift, (status, drop, b, c, p) in EXPECTED.items():
        check = by_shift[shift]
        assert (check["status"], check["b"], check["c"]) == (status, b, c), shift
        assert check["drop"] == pytest.approx(drop, abs=1e-12) and check["p"] == stats.mcnemar_exact(b, c) == p
        assert check["lo"] <= check["delta"] <= check["hi"]
    # the intervals agree: in_domain's excludes 0; difficulty_scaling's reaches it (every discordant row is a
    # loss, so no resample gains, and 0 is its upper end)
    assert by_shift["in_domain"]["hi"] < 0 and by_shift["difficulty_scaling"]["hi"] == 0.0
    assert verdict["summary"] == {"checks": 4, "failed": 1, "within_noise": 1}

    noisy_only = gate_json(candidate, "--baseline", baseline, "--max-drop", "difficulty_scaling=0.02")
    assert noisy_only["passed"] is True and [(c["name"], c["status"]) for c in noisy_only["checks"]] == [
        ("difficulty_scaling.max_drop", "within noise")]
    # a looser α makes the same drop significant
    strict = gate_json(candidate, "--baseline", baseline, "--max-drop", "difficulty_scaling=0.02", "--alpha", "0.5",
                       code=1)
    assert strict["checks"][0]["status"] == "fail"


def test_baseline_without_max_drop_fails_any_significant_drop(synthetic):
    candidate, baseline = synthetic
    verdict = gate_json(candidate, "--baseline", baseline, code=1)
    assert {c["name"]: c["status"] for c in verdict["checks"]} == {
        "in_domain.max_drop": "fail", "difficulty_scaling.max_drop": "within noise",
        "moral_transfer.max_drop": "within noise", "orthogonal.max_drop": "pass"}


def test_junit_has_one_case_per_shift_and_check(synthetic, tmp_path):
    candidate, baseline = synthetic
    report = tmp_path / "out" / "gate.xml"
    result = invoke("gate", candidate, "--baseline", baseline, "--min", "all=0.5", "--max-drop", "all=0.02",
                    "--junit", report)
    assert result.exit_code == 1, result.output
    root = ET.parse(report).getroot()
    assert root.tag == "testsuites" and len(root.findall("testsuite")) == 1
    suite = root.find("testsuite")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert list(cases) == [f"{s}.{kind}" for s in SHIFTS for kind in ("min", "max_drop")]
    failed = {name for name, case in cases.items() if case.find("failure") is not None}
    assert failed == {"in_domain.max_drop", "moral_transfer.min"}  # moral_transfer: 49/100 < 0.5
    assert (suite.get("tests"), suite.get("failures"), root.get("failures")) == ("8", "2", "2")
    assert "within noise" in cases["difficulty_scaling.max_drop"].find("system-out").text
    assert "p=1.9" in cases["in_domain.max_drop"].find("failure").get("message")
    properties = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert properties["baseline"] == str(baseline) and properties["metric"] == "acc"


def test_markdown_goes_to_the_file_and_is_appended_to_the_step_summary(synthetic, tmp_path, monkeypatch):
    candidate, baseline = synthetic
    summary = tmp_path / "step_summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    args = [candidate, "--baseline", baseline, "--max-drop", "all=0.02", "--min", "in_domain=0.6"]
    assert invoke("gate", *args, "--markdown", tmp_path / "gate.md").exit_code == 1
    assert invoke("gate", *args).exit_code == 1
    text = summary.read_text()
    assert text.startswith("earlier step\n") and text.count("### innerdpo gate ❌ failed") == 2
    table = (tmp_path / "gate.md").read_text()
    assert table in text
    assert "| shift | value | baseline | delta | 95% CI | p | check | result |" in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and "shift" not in line]
    assert len(rows) == 5
    assert rows[0] == "| in_domain | 0.800 | - | - | - | - | ≥ 0.600 | ✅ pass |"
    assert rows[1].startswith("| in_domain | 0.800 | 1.000 | -0.200 | [") and "| 1.91e-06 | drop ≤ 0.020 | ❌ fail |" in rows[1]
    assert "| 0.5000 | drop ≤ 0.020 | ⚠️ within noise |" in rows[2]


@pytest.mark.parametrize("args, message", [
    (["--min", "in_domain0.6"], "expected SHIFT=VALUE"),
    (["--min", "in_domian=0.6"], "Did you mean 'in_domain'?"),
    (["--min", "all=1.5"], "between 0 and 1"),
    (["--min", "all=high"], "'high' is not a number"),
    (["--min", "all=0.5", "--min", "all=0.6"], "names all twice"),
    (["--max-drop", "all=0.02"], "--max-drop needs --baseline"),
    ([], "nothing to check"),
    (["--baseline", "no/such/eval.json"], "no such file"),
    (["--min", "all=0.5", "--limit", "8"], "is an evaluation already: --limit"),
    (["--min", "all=0.5", "--sample-seed", "3"], "add --sample random"),
    (["--min", "all=0.5", "--metric", "accuracy"], "unknown --metric 'accuracy'"),
    (["--min", "all=0.5", "--alpha", "0"], "--alpha must be between 0 and 1"),
])
def test_usage_errors_exit_2_with_one_line(args, message, synthetic):
    candidate, _ = synthetic
    result = invoke("gate", candidate, *args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.output


def test_a_bad_flag_is_caught_before_any_model_is_loaded(trained_run):
    result = invoke("gate", trained_run, "--suite", "mini", "--limit", 4, "--min", "orthogonal=2")
    assert result.exit_code == 2 and "loading" not in result.output, result.output


def test_a_named_shift_the_baseline_lacks_is_a_usage_error(tmp_path):
    candidate = write_run(tmp_path / "c", {s: pattern(10, 5) for s in SHIFTS})
    baseline = write_run(tmp_path / "b", {"in_domain": pattern(10, 5)})
    result = invoke("gate", candidate, "--baseline", baseline, "--max-drop", "orthogonal=0.1")
    assert result.exit_code == 2 and "has no orthogonal rows" in result.output
    # with `all`, the shifts the baseline lacks are noted and left out
    verdict = gate_json(candidate, "--baseline", baseline, "--max-drop", "all=0.1")
    assert [c["name"] for c in verdict["checks"]] == ["in_domain.max_drop"]
    assert any("baseline has no orthogonal rows" in note for note in verdict["notes"])


def test_threshold_parsing_value_table():
    assert gating.parse_thresholds(["all=0.5", " in_domain = 0.6 "], "--min") == {"all": 0.5, "in_domain": 0.6}
    assert gating.per_shift({"all": 0.5, "in_domain": 0.6}, list(SHIFTS), "--min", "x") == {
        "in_domain": 0.6, "difficulty_scaling": 0.5, "moral_transfer": 0.5, "orthogonal": 0.5}
    assert gating.per_shift({"orthogonal": 0.1}, list(SHIFTS), "--max-drop", "x") == {"orthogonal": 0.1}
    with pytest.raises(UserError, match="has no moral_transfer rows"):
        gating.per_shift({"moral_transfer": 0.5}, ["in_domain", "orthogonal"], "--min", "math run")


@pytest.mark.parametrize("drop, max_drop, p, alpha, status", [
    (0.03, 0.02, 0.01, 0.05, "fail"),
    (0.03, 0.02, 0.05, 0.05, "fail"),           # p = α rejects
    (0.03, 0.02, 0.06, 0.05, "within noise"),
    (0.02, 0.02, 0.0, 0.05, "pass"),            # exactly the allowed drop
    (-0.10, 0.0, 0.0, 0.05, "pass"),            # a significant gain
])
def test_drop_status(drop, max_drop, p, alpha, status):
    assert gating.drop_status(drop, max_drop, p, alpha) == status


# --------------------------------------------------------------------------- the example workflow


def test_example_workflow_is_valid_yaml_and_its_commands_exist():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    assert (workflow.get("on") or workflow.get(True)) and set(workflow["jobs"]) == {"gate", "lm-eval"}
    steps = [step for job in workflow["jobs"].values() for step in job["steps"]]
    texts = [step["run"].replace("\\\n", " ") for step in steps if "run" in step]  # shell scripts, lines joined
    commands = {m for text in texts for m in re.findall(r"(?<![\w/-])innerdpo ([a-z][a-z-]*)", text)}
    assert {"gate", "tasks-path"} <= commands
    for command in commands:
        assert invoke(command, "--help").exit_code == 0, command

    click_app = typer.main.get_command(app)
    gate_options = {opt for param in click_app.commands["gate"].params for opt in getattr(param, "opts", [])}
    gate_lines = [line for text in texts for line in text.splitlines() if "innerdpo gate" in line]
    matrix_args = [entry["args"] for entry in workflow["jobs"]["gate"]["strategy"]["matrix"]["include"]]
    used = {flag for text in gate_lines + matrix_args for flag in re.findall(r"(?<![\w-])--[a-z][a-z-]*", text)}
    assert used and used <= gate_options, used - gate_options
    assert any(step.get("uses", "").startswith("actions/upload-artifact@") for step in steps)
    assert any("download.pytorch.org/whl/cpu" in step.get("run", "") for step in steps)
    cached = " ".join(str(step.get("with", {}).get("path")) for step in steps if "actions/cache@" in step.get("uses", ""))
    assert "~/.cache/innerdpo-bench" in cached and "~/.cache/huggingface" in cached
    lm_eval = next(text for text in texts if "lm_eval --model hf" in text)
    assert "--include_path \"$(innerdpo tasks-path)\"" in lm_eval and "--tasks innerdpo_shifts" in lm_eval


# --------------------------------------------------------------------------- the evaluation cache


def test_a_second_identical_gate_hits_the_cache_without_loading_a_model(trained_run, tmp_path, fresh_cache):
    """The second gate answers from the cache and loads no model. Its times are printed, not asserted (a timed
    assertion fails on a busy machine; the speed-up is what the states below guarantee)."""
    args = [trained_run, "--suite", "mini", "--limit", 16, "--device", "cpu", "--min", "all=0.01"]
    started = time.perf_counter()
    first = invoke("gate", *args, "--output", tmp_path / "first.json")
    cold = time.perf_counter() - started
    started = time.perf_counter()
    second = invoke("gate", *args, "--output", tmp_path / "second.json")
    warm = time.perf_counter() - started
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    a, b = (json.loads((tmp_path / name).read_text()) for name in ("first.json", "second.json"))
    assert a["cache"]["hit"] is False and a["score_cache"]["model"]["misses"] > 0  # the first really scored
    assert "using cached evaluation" not in first.output and "scoring" in first.output
    assert b["cache"]["hit"] is True and b["cache"]["key"] == a["cache"]["key"]
    assert f"using cached evaluation {a['cache']['key']}" in second.output and "loading" not in second.output
    print(f"\ngate on tiny-random, mini, 16 rows: first {cold:.2f}s, cached {warm:.3f}s ({cold / warm:.0f}x)")


def test_eval_twice_uses_the_cache_and_no_cache_recomputes(trained_run, tmp_path, fresh_cache):
    args = ["eval", trained_run, "--suite", "mini", "--limit", 6, "--device", "cpu"]
    first = invoke(*args, "--output", tmp_path / "a.json")
    second = invoke(*args, "--output", tmp_path / "b.json")
    fresh = invoke(*args, "--no-cache", "--output", tmp_path / "c.json")
    assert first.exit_code == second.exit_code == fresh.exit_code == 0, first.output + second.output + fresh.output
    a, b, c = (json.loads((tmp_path / f"{name}.json").read_text()) for name in "abc")
    assert "using cached evaluation" not in first.output and a["cache"]["hit"] is False
    assert f"using cached evaluation {a['cache']['key']}" in second.output and b["cache"]["hit"] is True
    assert b["shifts"] == a["shifts"] and b["base"] == a["base"] and b["coherence"] == a["coherence"]
    assert rows_file_of(tmp_path / "b.json").read_text() == rows_file_of(tmp_path / "a.json").read_text()
    assert b["rows_file"].startswith("b_rows-") and b["cache"]["computed_at"] == a["timestamp"]
    assert "using cached evaluation" not in fresh.output and c["cache"]["hit"] is False and not c["score_cache"]
    assert c["shifts"] == a["shifts"] and c["cache"]["key"] == a["cache"]["key"]
    entry = fresh_cache / "evals" / a["cache"]["key"]
    assert {p.name for p in entry.iterdir()} == {"eval.json", "rows.jsonl", "key.json"}


def test_cache_key_follows_content_not_paths(trained_run, tmp_path):
    def key(checkpoint, **changes):
        options = {"label": "mini", "data_dir": None, "rows_cap": 16, "sample": "first", "sample_seed": None,
                   "apply_chat_template": None, "dtype": "float32"} | changes
        return evalcache.eval_cache_key(resolve_checkpoint(str(checkpoint)), **options)[0]

    copy = tmp_path / "copy"
    shutil.copytree(trained_run, copy)
    assert key(copy) == key(trained_run)                      # the same adapter bytes elsewhere
    assert key(copy / "adapter") == key(trained_run)          # the adapter directory itself
    for changed in ({"rows_cap": 17}, {"sample": "random", "sample_seed": 0}, {"apply_chat_template": False},
                    {"dtype": "bfloat16"}, {"label": "alpaca_easy"}):
        assert key(trained_run, **changed) != key(trained_run), changed
    weights = copy / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes() + b" ")
    assert key(copy) != key(trained_run)


def test_a_corrupt_cache_entry_is_a_miss(tmp_path, monkeypatch):
    monkeypatch.setenv("INNERDPO_CACHE", str(tmp_path))
    rows = '{"shift": "in_domain"}\n'
    report = {"cache": {"hit": False, "key": "k", "rows_sha256": hashlib.sha256(rows.encode()).hexdigest()}}
    evalcache._write_cached("k", {}, report, rows)
    assert evalcache._read_cached("k") == (report, rows)
    (evalcache.eval_cache_dir("k") / "rows.jsonl").write_text(rows + rows)
    assert evalcache._read_cached("k") is None


# --------------------------------------------------------------------------- seeded random rows


def test_random_rows_are_seeded_nested_and_in_dataset_order():
    every = load_mini("in_domain")
    picked = suites.load_shift("in_domain", suite="mini", rows=10, sample="random", sample_seed=3)
    again = suites.load_shift("in_domain", suite="mini", rows="10", sample="random", sample_seed="3")
    other = suites.load_shift("in_domain", suite="mini", rows=10, sample="random", sample_seed=4)
    more = suites.load_shift("in_domain", suite="mini", rows=20, sample="random", sample_seed=3)
    assert picked == again and picked != other and picked != every[:10]
    positions = [every.index(row) for row in picked]
    assert positions == sorted(positions) and all(row in more for row in picked)
    assert suites.load_shift("in_domain", suite="mini", rows=10_000, sample="random", sample_seed=3) == every
    assert suites.load_shift("in_domain", suite="mini", rows=10) == every[:10]   # first N stays the default
    assert suites.sample_indices(10, 3, 0) == suites.sample_indices(10, 3, 0) and len(suites.sample_indices(10, 3, 0)) == 3
    with pytest.raises(UserError, match="unknown sample 'shuffled'"):
        suites.load_shift("in_domain", suite="mini", rows=10, sample="shuffled")
    with pytest.raises(UserError, match="sample seed must be a non-negative integer"):
        suites.load_shift("in_domain", suite="mini", rows=10, sample="random", sample_seed=-1)


def test_lm_eval_metadata_picks_the_same_random_rows(tiny_model_path):
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(suites.tasks_dir()), include_defaults=False,
                          metadata={"suite": "mini", "rows": 7, "sample": "random", "sample_seed": 5,
                                    "tokenizer": tiny_model_path})
    task = manager.load(["innerdpo_orthogonal"])["tasks"]["innerdpo_orthogonal"]
    assert list(task.eval_docs) == suites.load_shift("orthogonal", suite="mini", rows=7, sample="random",
                                                     sample_seed=5)


def test_gate_with_random_rows_scores_exactly_those_rows(trained_run, tmp_path):
    out = tmp_path / "random.json"
    verdict = gate_json(trained_run, "--suite", "mini", "--limit", 6, "--sample", "random", "--sample-seed", 11,
                        "--device", "cpu", "--output", out, "--min", "all=0")
    assert (verdict["sample"], verdict["sample_seed"], verdict["limit"]) == ("random", 11, 6)
    report = json.loads(out.read_text())
    assert report["provenance"]["in_domain"]["sample"] == "random"
    rows = [json.loads(line) for line in rows_file_of(out).read_text().splitlines()]
    for shift in SHIFTS:
        expected = suites.load_shift(shift, suite="mini", rows=6, sample="random", sample_seed=11)
        assert [r["row_id"] for r in rows if r["shift"] == shift] == [evaluation.row_id(doc) for doc in expected]
