"""`innerdpo demo --quick` end to end: six real runs through the queue and the harness, then the table."""

import json

import pytest
from typer.testing import CliRunner

from innerdpo_bench.cli.main import app
from innerdpo_bench.demo import DEMO_METHODS, DemoPlan, demo_specs
from innerdpo_bench.store import Store

pytestmark = pytest.mark.slow
runner = CliRunner()


def test_quick_demo_on_tiny_random(tmp_path, tiny_model_path):
    home = tmp_path / "home"
    result = runner.invoke(app, ["demo", "--base-model", "tiny-random", "--quick", "--suite", "mini", "--home", str(home)])
    assert result.exit_code == 0, result.output
    # true hints: both commands of the last line keep --home; tiny-random is built already, so no "first time"
    assert f"innerdpo tui --home {home}; compare runs with innerdpo runs --home {home}." in result.output
    assert "preparing base model tiny-random\n" in result.output and "first time" not in result.output
    names = ["none", *DEMO_METHODS]
    for name in names:
        assert f"| {name} |" in result.output
    with Store(home) as store:
        runs = store.list_runs()
    assert [r.name for r in runs] == names and all(r.status == "done" for r in runs)
    assert all(set(r.results) >= {"in_domain", "difficulty_scaling", "moral_transfer", "orthogonal"} for r in runs)

    # every number in the table came from the harness's eval.json
    table = json.loads(runner.invoke(app, ["runs", "--home", str(home), "--json"]).output)
    shifts = {"in_domain", "difficulty_scaling", "moral_transfer", "orthogonal"}
    assert len(table) == 6 and all(set(r["results"]) - {"coherence", "samples"} == shifts for r in table)
    assert all("samples" in r["results"] for r in table[1:])    # the demo asks the adapters for samples

    # the base row is the baseline and shows its own values; the caption names the data and the baseline
    markdown = runner.invoke(app, ["runs", "--home", str(home), "--format", "markdown", "--baseline", "1"]).output
    assert "| none (baseline) | " in markdown and "Shift cells: Δ acc against run 1 (none)" in markdown
    assert "- moral_transfer: mini:moral_transfer, N=8" in markdown

    # doctor recomputes every recorded number of the six runs (samples, transforms included): no false alarm
    checked = runner.invoke(app, ["doctor", "--home", str(home)])
    assert checked.exit_code == 0 and "healthy" in checked.output, checked.output

    # a second demo reuses the finished runs instead of training again
    again = runner.invoke(app, ["demo", "--base-model", "tiny-random", "--quick", "--suite", "mini", "--home", str(home)])
    assert again.exit_code == 0
    with Store(home) as store:
        assert len(store.list_runs()) == 6


def test_quick_demo_on_real_genies_rows(tmp_path, tiny_model_path):
    home = tmp_path / "home"
    result = runner.invoke(app, ["demo", "--base-model", "tiny-random", "--quick", "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert "genies:alpaca_easy suite (trained on genies:alpaca_easy#train)" in result.output
    with Store(home) as store:
        runs = store.list_runs()
    assert [r.name for r in runs] == ["none", *DEMO_METHODS] and all(r.status == "done" for r in runs)
    assert {r.spec.train.dataset for r in runs[1:]} == {"genies:alpaca_easy#train"}
    markdown = runner.invoke(app, ["runs", "--home", str(home), "--format", "markdown"]).output
    for line in ("- in_domain: genies:alpaca_easy#test, N=8", "- difficulty_scaling: genies:alpaca_hard#test, N=8",
                 "- moral_transfer: ethics:justice#test_hard, N=8", "- orthogonal: medical:reward#test, N=7 (1 skipped: longer than the model's context)"):
        assert line in markdown


def test_default_plan_covers_six_rows():
    plan = DemoPlan.for_model("smollm2-135m", quick=False)
    specs = demo_specs(plan)
    assert [s.name for s in specs] == ["none", *DEMO_METHODS]
    assert all((s.eval.suite, s.eval.limit) == ("genies:alpaca_easy", 20) for s in specs)
    assert {(s.train.dataset, s.train.max_steps, s.train.max_length) for s in specs[1:]} == {
        ("genies:alpaca_easy#train", 20, 256)}
    assert all(s.eval.suite == "mini" for s in demo_specs(DemoPlan.for_model("smollm2-135m", False, "mini")))
    assert {s.train.dataset for s in demo_specs(DemoPlan.for_model("tiny-random", True, "mini"))[1:]} == {
        "mini:train"}
