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
    result = runner.invoke(app, ["demo", "--base-model", "tiny-random", "--quick", "--home", str(home)])
    assert result.exit_code == 0, result.output
    names = ["none", *DEMO_METHODS]
    for name in names:
        assert f"| {name} |" in result.output
    with Store(home) as store:
        runs = store.list_runs()
    assert [r.name for r in runs] == names and all(r.status == "done" for r in runs)
    assert all(set(r.results) >= {"in_domain", "difficulty_scaling", "moral_transfer", "orthogonal"} for r in runs)

    # every number in the table came from the harness's eval.json
    table = json.loads(runner.invoke(app, ["runs", "--home", str(home), "--json"]).output)
    assert len(table) == 6 and all(len([k for k in r["results"] if k != "coherence"]) == 4 for r in table)

    # the base row against itself is a zero delta, marked not significant, and the caption names the data
    markdown = runner.invoke(app, ["runs", "--home", str(home), "--format", "markdown", "--baseline", "1"]).output
    assert "| none | +0.000 (ns) | +0.000 (ns) | +0.000 (ns) | +0.000 (ns) |" in markdown
    assert "- moral_transfer: mini:moral_transfer, N=8" in markdown

    # a second demo reuses the finished runs instead of training again
    again = runner.invoke(app, ["demo", "--base-model", "tiny-random", "--quick", "--home", str(home)])
    assert again.exit_code == 0
    with Store(home) as store:
        assert len(store.list_runs()) == 6


def test_default_plan_covers_six_rows():
    specs = demo_specs(DemoPlan.for_model("smollm2-135m", quick=False))
    assert [s["name"] for s in specs] == ["none", *DEMO_METHODS]
    assert all(s["eval"]["suite"] == "mini" for s in specs)
