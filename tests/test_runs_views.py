"""`innerdpo runs --columns / --group-by / --baseline` on a store of done runs with per-row records: config
columns, grouping by any keys, group baselines tested as `compare --group-seeds`, honest marks and exports."""

from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from innerdpo_bench.cli.main import app
from innerdpo_bench.evaluation.suites import SHIFTS
from innerdpo_bench.store import Store

from helpers.runs import pattern, write_run

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    return result.output


def add_done(store, home, right: int | list[bool], seed: int, method: str = "hs-none-InnerDPO", **train) -> int:
    """A done run of `method` with `train` options, right on the first `right` of 40 rows of every shift (or
    on the rows a list of verdicts says)."""
    from innerdpo_bench.config import TrainConfig
    from innerdpo_bench.config.naming import display_name

    train = {"method": method, "seed": seed, "base_model": "tiny-random", "dataset": "mini:train",
             "align_method": "para_signed", "alpha": 0.25, "learning_rate": 1e-5, **train}
    run_id = store.add_run({"name": display_name(TrainConfig(**train)), "train": train,
                            "eval": {"suite": "mini", "limit": None}, "sweep": "sw1"})
    assert store.claim_next("test").id == run_id
    run_dir = home / "runs" / str(run_id)
    eval_path = write_run(run_dir / "checkpoint", {s: pattern(40, right) if isinstance(right, int) else right for s in SHIFTS}, method=method, seed=seed)
    store.set_run_dir(run_id, run_dir)
    report = json.loads(eval_path.read_text())
    store.record_results(run_id, report["shifts"], report["provenance"])
    assert store.finish(run_id, "test", "done")
    return run_id


@pytest.fixture
def home(tmp_path):
    home = tmp_path / "home"
    with Store(home) as store:
        mixed = [10 <= i < 33 for i in range(40)]                                     # 23 right, not a prefix
        add_done(store, home, mixed, 1, method="dpo")                                 # 1
        add_done(store, home, mixed[1:] + [True], 2, method="dpo")                    # 2: 24 right
        add_done(store, home, 20, 1, alpha=0.1)                                       # 3
        add_done(store, home, 22, 2, alpha=0.1)                                       # 4
        add_done(store, home, 36, 1, alpha=0.1, align_method="logodds")               # 5
        add_done(store, home, 34, 2, alpha=0.1, align_method="logodds")               # 6
        add_done(store, home, 30, 1, alpha=1.0, align_method="logodds")               # 7
        store.add_run({"name": "hs-none-InnerDPO align=logodds α=1 data=mini:train", "train": {   # 8: still queued
            "method": "hs-none-InnerDPO", "seed": 2, "align_method": "logodds", "alpha": 1.0, "base_model":
            "tiny-random", "dataset": "mini:train", "learning_rate": 1e-5}, "eval": {"suite": "mini", "limit": None}})
    return home


def rows_of(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_columns_show_config_keys_only_where_the_method_has_them_for_that_call_only(home):
    out = rows_of(invoke("runs", "--columns", "name,align_method,alpha,learning_rate,sweep,in_domain", "--format",
                         "csv", "--home", home))
    assert list(out[0]) == ["name", "align_method", "alpha", "learning_rate", "sweep", "in_domain"]
    assert (out[0]["align_method"], out[0]["alpha"], out[0]["learning_rate"]) == ("", "", "0.0")  # dpo: no α
    assert (out[4]["name"], out[4]["align_method"], out[4]["alpha"]) == (
        "hs-none-InnerDPO align=logodds α=0.1 data=mini:train", "logodds", "0.1")
    assert out[2]["sweep"] == "sw1" and out[2]["in_domain"] == "0.5"
    again = rows_of(invoke("runs", "--format", "csv", "--home", home))  # a script's header never changes
    assert "difficulty_scaling" in again[0] and "align_method" not in again[0]
    invoke("runs", "--columns", "name,alpha", "--filter", "method:hs-none-InnerDPO", "--save-view", "alphas",
           "--home", home)
    saved = rows_of(invoke("runs", "--view", "alphas", "--format", "csv", "--home", home))
    assert list(saved[0]) == ["name", "alpha"] and len(saved) == 6   # the view's columns and filter
    bad = runner.invoke(app, ["runs", "--columns", "name,alpah", "--home", str(home)])
    assert bad.exit_code == 2 and "unknown --columns column 'alpah'. Did you mean 'alpha'" in bad.output
    bad = runner.invoke(app, ["runs", "--view", "alhpas", "--home", str(home)])
    assert bad.exit_code == 2 and "Did you mean 'alphas'" in bad.output


def test_a_filter_on_a_config_key_matches_only_runs_that_have_it(home):
    out = rows_of(invoke("runs", "--filter", "align_method:para_signed", "--format", "csv", "--home", home))
    assert [row["id"] for row in out] == ["3", "4"]


def test_group_by_keys_gives_mean_std_n_and_marks_incomplete_groups(home):
    text = invoke("runs", "--group-by", "align_method,alpha", "--format", "markdown", "--home", home)
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| name | align_method | alpha | in_domain |") and lines[0].endswith("| n |")
    body = {line.split(" | ")[0][2:]: line for line in lines[1:]}
    data = " data=mini:train"
    assert set(body) == {"dpo" + data, "hs-none-InnerDPO α=0.1" + data, "hs-none-InnerDPO align=logodds α=0.1" + data,
                         "hs-none-InnerDPO align=logodds α=1" + data}
    assert "| 0.587 ± 0.018 |" in body["dpo" + data] and body["dpo" + data].endswith("| 1,2 | 2 |")
    assert "| 0.750 (1/2) |" in body["hs-none-InnerDPO align=logodds α=1" + data]  # seed 2 still queued
    by_align = rows_of(invoke("runs", "--group-by", "align_method", "--columns", "name,align_method,alpha,n",
                              "--format", "csv", "--home", home))
    assert [(row["align_method"], row["alpha"], row["n"]) for row in by_align] == [
        ("", "", "2"), ("para_signed", "0.1", "2"), ("logodds", "0.1, 1", "4")]


def test_a_group_baseline_is_tested_like_compare_group_seeds_and_its_row_shows_its_values(home):
    data = json.loads(invoke("runs", "--group-by", "align_method,alpha", "--baseline", 3, "--format", "json",
                             "--home", home))
    baseline = next(item for item in data if item["is_baseline"])
    assert baseline["row"]["in_domain"] == 0.525 and baseline["in_domain_significant"] is None
    logodds = next(item for item in data if item["row"]["id"] == [5, 6])
    compared = json.loads(invoke("compare", 3, 5, "--group-seeds", "--json", "--home", home))
    shift = next(s for s in compared["shifts"] if s["shift"] == "in_domain")
    assert logodds["row"]["in_domain"] == round(shift["delta"], 4) == 0.35
    assert (logodds["in_domain_lo"], logodds["in_domain_hi"]) == (round(shift["lo"], 4), round(shift["hi"], 4))
    assert logodds["in_domain_significant"] is shift["significant"] is True
    dpo = next(item for item in data if item["row"]["id"] == [1, 2])
    assert dpo["in_domain_significant"] is False and dpo["row"]["in_domain"] == 0.0625
    markdown = invoke("runs", "--group-by", "align_method,alpha", "--baseline", 3, "--format", "markdown",
                      "--home", home)
    assert "| hs-none-InnerDPO α=0.1 data=mini:train (baseline) | para_signed | 0.1 | 0.525 ± 0.035 |" in markdown
    assert "| +0.062 ± 0.018 (ns) |" in markdown and "| +0.350 ± 0.035 |" in markdown
    assert "| +0.225 (1/2) |" in markdown      # seed 2 still queued: marked, tested on the seed that is done
    assert "Δ acc against the group of run 3 (runs 3, 4, pooled)" in markdown and "paired bootstrap" in markdown


def test_exports_carry_intervals_and_significance_rounded(home):
    out = rows_of(invoke("runs", "--baseline", 1, "--format", "csv", "--home", home))
    assert {"in_domain_lo", "in_domain_hi", "in_domain_significant", "is_baseline"} <= set(out[0])
    assert out[0]["is_baseline"] == "True" and out[0]["Δin_domain"] == "0.575"  # the baseline's own value
    assert out[4]["Δin_domain"] == "0.325" and out[4]["in_domain_significant"] == "True"
    assert all(len(value.split(".")[-1]) <= 4 for row in out for key, value in row.items()
               if key.endswith(("_lo", "_hi")) and value)


def test_markdown_captions_name_the_metric(home):
    transfer = invoke("runs", "--metric", "transfer", "--format", "markdown", "--home", home)
    assert "Normalised transfer per preference shift" in transfer and "Accuracy per preference" not in transfer
    assert "Accuracy per preference shift" in invoke("runs", "--format", "markdown", "--home", home)
