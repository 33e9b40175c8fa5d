"""The results table: cell values, seed groups, baseline deltas, sort (missing last), the filter grammar, the text
formats, `innerdpo runs` on a store, and its latency over 10,000 runs."""

from __future__ import annotations

import csv
import io
import json
import math
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from innerdpo_bench.cli.main import app
from innerdpo_bench.config.spec import RunSpec
from innerdpo_bench.errors import UserError
from innerdpo_bench.results import table
from innerdpo_bench.store import STORE_FILE, Run, Store

SHIFTS = ("in_domain", "difficulty_scaling", "moral_transfer", "orthogonal")
runner = CliRunner()


def make_run(run_id, accs=None, *, method="dpo", seed=0, status="done", nll_ratio=None, name=None, alpha=0.25,
             kind="train_eval", sweep=None, **train):
    """A Run as the store returns it; `accs` gives the four shifts' acc in order (None: not scored)."""
    results = {}
    for shift, acc in zip(SHIFTS, accs or ()):
        if acc is not None:
            results[shift] = {"acc": acc, "acc_stderr": 0.1, "n": 8.0}
    if nll_ratio is not None:
        results["coherence"] = {"nll_ratio": nll_ratio}
    if kind == "eval":
        spec = {"name": "none", "eval": {"checkpoint": "tiny-random", "suite": "mini", "limit": 8}}
    else:
        spec = {"name": name or method, "train": {"method": method, "seed": seed, "alpha": alpha,
                                                  "base_model": "tiny-random", **train},
                "eval": {"suite": "mini", "limit": 8}}
        if sweep is not None:
            spec["sweep"] = sweep
    spec = RunSpec.from_json(spec)
    return Run(run_id, spec.name, kind, spec, status, float(run_id), 0.0, None, None, None, None, None, 1, None, None,
               False, results)


RUNS = [
    make_run(1, [0.5, 0.6, 0.7, 0.8], seed=1, nll_ratio=1.01, sweep="s1"),
    make_run(2, [0.7, 0.6, 0.5, 0.4], seed=2, nll_ratio=1.03),
    make_run(3, [0.9, None, 0.3, float("nan")], method="hs-none-InnerDPO", seed=1),
    make_run(4, None, method="ipo", seed=1, status="failed"),
    make_run(5, [0.55, 0.65, 0.45, 0.2], kind="eval", nll_ratio=1.0),
]


# --------------------------------------------------------------------------- values, groups, baseline


def test_run_values_mean_over_scored_shifts_and_nan_is_missing():
    values = table.run_values(RUNS[2])
    assert values["difficulty_scaling"] is None and values["orthogonal"] is None  # absent, NaN
    assert values["mean"] == pytest.approx((0.9 + 0.3) / 2)
    assert values["nll_ratio"] is None
    assert table.run_values(RUNS[3])["mean"] is None
    assert table.run_values(RUNS[0]) == {"name": "dpo", "in_domain": 0.5, "difficulty_scaling": 0.6,
                                         "moral_transfer": 0.7, "orthogonal": 0.8, "mean": pytest.approx(0.65),
                                         "nll_ratio": 1.01, "status": "done", "seed": 1, "id": 1}
    assert (table.method_of(RUNS[4]), table.seed_of(RUNS[4])) == ("none", None)


def test_group_seeds_collapses_only_runs_that_differ_by_seed():
    other_alpha = make_run(6, [0.1, 0.1, 0.1, 0.1], seed=3, alpha=1.0)
    rows = table.build_rows(RUNS[:2] + [RUNS[3], other_alpha, make_run(7, [0.3, 0.8, 0.5, 0.6], seed=3)], True)
    assert [row.values["id"] for row in rows] == [(1, 2, 7), (4,), (6,)]
    dpo = rows[0]
    # in_domain 0.5, 0.7, 0.3: mean 0.5, sample std sqrt((0.04 + 0.04 + 0) / 2) = 0.2
    assert dpo.values["in_domain"] == pytest.approx(0.5) and dpo.std["in_domain"] == pytest.approx(0.2)
    assert dpo.values["seed"] == (1, 2, 3) and dpo.values["n"] == dpo.n == 3
    # nll_ratio present in 2 of 3 runs: mean over those two
    assert dpo.values["nll_ratio"] == pytest.approx(1.02) and dpo.std["nll_ratio"] == pytest.approx(math.sqrt(2e-4))
    assert rows[1].std["in_domain"] is None and rows[1].values["in_domain"] is None
    mixed = table.build_rows([RUNS[0], make_run(8, None, seed=9, status="failed")], True)[0]
    assert mixed.values["status"] == "1 done, 1 failed"
    assert mixed.std["in_domain"] is None  # only one run has a value


def test_baseline_subtracts_the_four_shifts_only():
    rows = table.apply_baseline(table.build_rows(RUNS), RUNS[4])
    first = rows[0].values
    assert [first[shift] for shift in SHIFTS] == pytest.approx([-0.05, -0.05, 0.25, 0.6])
    assert first["mean"] == pytest.approx(0.65) and first["nll_ratio"] == 1.01  # unchanged
    assert rows[2].values["difficulty_scaling"] is None  # missing stays missing
    with pytest.raises(UserError, match="baseline run 4 has no results"):
        table.apply_baseline(rows, RUNS[3])


# --------------------------------------------------------------------------- sort


@pytest.mark.parametrize("column, reverse, expected", [
    ("mean", False, [5, 2, 3, 1, 4]),          # 0.4625 0.55 0.6 0.65, then 4 (no results)
    ("mean", True, [1, 3, 2, 5, 4]),
    ("orthogonal", False, [5, 2, 1, 3, 4]),    # 3 (NaN) and 4 (none) last, in id order
    ("orthogonal", True, [1, 2, 5, 3, 4]),
    ("name", False, [1, 2, 3, 4, 5]),          # dpo dpo hs-none-InnerDPO ipo none (case-insensitive)
    ("seed", True, [2, 1, 3, 4, 5]),           # stable: equal seeds keep id order; base (no seed) last
])
def test_sort_puts_missing_last_in_both_directions(column, reverse, expected):
    rows = table.sort_rows(table.build_rows(RUNS), column, reverse)
    assert [row.values["id"] for row in rows] == expected


def test_sort_by_an_unknown_column_suggests_one():
    with pytest.raises(UserError, match="unknown --sort column 'meen'. Did you mean 'mean'"):
        table.sort_rows(table.build_rows(RUNS), "meen")


# --------------------------------------------------------------------------- filter


@pytest.mark.parametrize("expr, ids", [
    ("", [1, 2, 3, 4, 5]),
    ("method:dpo", [1, 2]),
    ("method:DPO status:done", [1, 2]),
    ("method:none", [5]),
    ("status:failed", [4]),
    ("seed:1", [1, 3, 4]),
    ("seed=2", [2]),
    ("seed!=1", [2]),                 # the base model (5) has no seed: no term on it matches, != included
    ("in_domain>0.6", [2, 3]),
    ("in_domain>=0.55", [2, 3, 5]),
    ("orthogonal<=0.6", [2, 5]),      # NaN (3) and missing (4) never match a comparison
    ("mean<0.5", [5]),
    ("nll_ratio>1.02", [2]),
    ("name~inner", [3]),
    ("name~INNER method:hs-none-innerdpo", [3]),
    ("kind:eval", [5]),
    ("base_model:tiny-random", [1, 2, 3, 4, 5]),
    ("suite:mini", [1, 2, 3, 4, 5]),
    ("alpha:0.25 id>=2", [3]),        # only InnerDPO runs have an α: dpo and ipo rows (2, 4) do not match
    ("alpha!=1", [3]),
    ("sweep:s1", [1]),
    ("'name~hs-none' mean>0", [3]),
])
def test_filter_grammar(expr, ids):
    keep = table.parse_filter(expr, RUNS)
    assert [run.id for run in RUNS if keep(run)] == ids


@pytest.mark.parametrize("expr, message", [
    ("mean>", "bad --filter term 'mean>'"),
    ("dpo", "bad --filter term 'dpo'"),
    ("mean>high", "> needs a number, not 'high'"),
    ("mean>nan", "> needs a finite number, not 'nan'"),
    ("nll_ratio<=inf", "<= needs a finite number, not 'inf'"),
    ("methd:dpo", "unknown --filter field 'methd'. Did you mean 'method'"),
    ("status:finished", "unknown status in --filter 'finished'"),
    ("name~'unclosed", "No closing quotation"),
])
def test_malformed_filters_are_one_clear_user_error(expr, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(">", ">")):
        table.parse_filter(expr, RUNS)


# --------------------------------------------------------------------------- text


def test_markdown_is_a_github_table_with_three_decimals():
    view = table.make_table(RUNS[:3], sort="id")
    assert table.to_markdown(view) == (
        "| name | in_domain | difficulty_scaling | moral_transfer | orthogonal | mean | nll_ratio | status | seed | id |\n"
        "|:---|---:|---:|---:|---:|---:|---:|:---|---:|---:|\n"
        "| dpo | 0.500 | 0.600 | 0.700 | 0.800 | 0.650 | 1.010 | done | 1 | 1 |\n"
        "| dpo | 0.700 | 0.600 | 0.500 | 0.400 | 0.550 | 1.030 | done | 2 | 2 |\n"
        "| hs-none-InnerDPO | 0.900 | - | 0.300 | - | 0.600 | - | done | 1 | 3 |\n"
    )
    grouped = table.make_table(RUNS, filter_expr="method:dpo", group_seeds=True, baseline=5)
    assert table.to_markdown(grouped).splitlines()[2] == (
        "| dpo | +0.050 ± 0.141 | -0.050 ± 0.000 | +0.150 ± 0.141 | +0.400 ± 0.283 | 0.600 ± 0.071 | "
        "1.020 ± 0.014 | done | 1,2 | 1,2 | 2 |")
    assert table.to_markdown(grouped).startswith("| name | Δin_domain |")
    pipe = make_run(9, [0.5] * 4, name="a|b")
    assert "| a\\|b |" in table.to_markdown(table.make_table([pipe]))


def test_csv_rounds_to_four_decimals_and_leaves_missing_cells_empty():
    rows = list(csv.DictReader(io.StringIO(table.to_csv(table.make_table(RUNS, group_seeds=True)))))
    assert [row["id"] for row in rows] == ["1 2", "3", "4", "5"]
    assert rows[0]["in_domain"] == "0.6" and rows[0]["in_domain_std"] == str(round(math.sqrt(0.02), 4))
    assert rows[0]["in_domain_count"] == "2" and rows[2]["in_domain_count"] == "0"
    assert rows[2]["mean"] == "" and rows[2]["in_domain_std"] == ""


def test_json_holds_every_run_with_spec_results_and_provenance_and_no_nan():
    text = table.to_json(table.make_table(RUNS), {1: {"in_domain": {"dataset": "mini:in_domain", "N": 8}}})
    records = json.loads(text)  # strict JSON: NaN would have been written as NaN
    assert "NaN" not in text
    assert [record["id"] for record in records] == [1, 2, 3, 4, 5]
    assert records[0]["spec"]["train"]["method"] == "dpo"
    assert records[0]["results"]["in_domain"]["acc"] == 0.5
    assert records[0]["provenance"] == {"in_domain": {"dataset": "mini:in_domain", "N": 8}}
    assert records[2]["results"]["orthogonal"]["acc"] is None
    assert records[0]["row"]["mean"] == pytest.approx(0.65)
    grouped = json.loads(table.to_json(table.make_table(RUNS, group_seeds=True)))
    assert grouped[0]["n"] == 2 and [run["id"] for run in grouped[0]["runs"]] == [1, 2]


def test_make_table_filters_before_grouping_and_finds_a_filtered_out_baseline():
    view = table.make_table(RUNS, filter_expr="method:dpo", baseline=5, group_seeds=True)
    assert [row.values["id"] for row in view.rows] == [(1, 2)]
    with pytest.raises(UserError, match="no run with id 42 for --baseline"):
        table.make_table(RUNS, baseline=42)


# --------------------------------------------------------------------------- `innerdpo runs`


@pytest.fixture
def home(tmp_path):
    """A store holding RUNS' specs and results (ids 1..5)."""
    with Store(tmp_path) as store:
        for run in RUNS:
            run_id = store.add_run(run.spec, kind=run.kind)
            store.record_results(run_id, run.results, {"in_domain": {"dataset": "mini:in_domain"}})
            store.claim_next("w")
            store.finish(run_id, "w", run.status)
    return tmp_path


def invoke(*args):
    return runner.invoke(app, [str(arg) for arg in args])


def test_runs_command_formats(home):
    markdown = invoke("runs", "--home", home, "--format", "markdown", "--filter", "method:dpo")
    assert markdown.exit_code == 0, markdown.output
    expected_table = table.to_markdown(table.make_table(RUNS, filter_expr="method:dpo"))
    assert markdown.output.startswith(expected_table)
    caption = markdown.output[len(expected_table):]
    assert "made up of:" in caption and "- in_domain: mini:in_domain" in caption  # the provenance caption
    as_json = invoke("runs", "--home", home, "--json", "--sort", "mean")   # a score: the best first
    assert as_json.exit_code == 0
    records = json.loads(as_json.output)
    assert [record["id"] for record in records] == [1, 3, 2, 5, 4]
    worst_first = json.loads(invoke("runs", "--home", home, "--json", "--sort", "mean", "--reverse").output)
    assert [record["id"] for record in worst_first] == [5, 2, 3, 1, 4]   # missing still last
    by_name = json.loads(invoke("runs", "--home", home, "--json", "--sort", "name").output)
    assert [record["id"] for record in by_name] == [1, 2, 3, 4, 5]   # not a score: ascending
    assert records[0]["provenance"]["in_domain"]["dataset"] == "mini:in_domain"
    rich = invoke("runs", "--home", home, "--baseline", "5")
    assert rich.exit_code == 0 and "Δ vs run 5" in rich.output and "-0.050" in rich.output
    csv_text = invoke("runs", "--home", home, "--format", "csv", "--group-seeds")
    assert csv_text.exit_code == 0 and csv_text.output.splitlines()[1].startswith("dpo,0.6")


@pytest.mark.parametrize("args, message", [
    (["--filter", "mean>"], "bad --filter term 'mean>'"),
    (["--filter", "methd:dpo"], "Did you mean 'method'"),
    (["--sort", "speed"], "unknown --sort column 'speed'"),
    (["--format", "xlsx"], "unknown --format 'xlsx'"),
    (["--baseline", "99"], "no run with id 99"),
])
def test_runs_bad_input_is_one_line_and_exit_2(home, args, message):
    result = invoke("runs", "--home", home, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.slow
def test_runs_json_latency_over_ten_thousand_runs(tmp_path):
    """Print (not assert) how long `innerdpo runs --format json` takes over 10,000 runs, and the store size."""
    metrics = ("acc", "acc_stderr", "acc_sum", "acc_sum_stderr", "logratio", "logratio_stderr", "n")
    provenance = {shift: {"dataset": f"wassname/genies_preferences:{shift}", "split": "test", "rows": 500,
                          "scoring_rule": "mean per-token log-prob of chosen > rejected"} for shift in SHIFTS}
    with Store(tmp_path) as store:
        started = time.perf_counter()
        specs = [make_run(0, method=("dpo", "ipo", "hs-none-InnerDPO")[i % 3], seed=i % 5).spec for i in range(10_000)]
        run_ids = store.add_runs(specs)
        for run_id in run_ids:
            results = {shift: {metric: 0.5 + (run_id % 97) / 1000 for metric in metrics} for shift in SHIFTS}
            results["coherence"] = {"nll_ratio": 1.0, "nll_diff": 0.0}
            store.record_results(run_id, results, provenance)
        filled_s = time.perf_counter() - started
        started = time.perf_counter()
        in_process = table.to_json(table.make_table(store.list_runs()), store.all_provenance())
        in_process_s = time.perf_counter() - started
    size = sum(path.stat().st_size for path in tmp_path.glob(STORE_FILE + "*"))
    timings = []
    for _ in range(2):
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "innerdpo_bench", "runs", "--home", str(tmp_path), "--format",
                               "json"], capture_output=True, text=True, timeout=300)
        timings.append(time.perf_counter() - started)
        assert proc.returncode == 0, proc.stderr
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import innerdpo_bench.cli.main"], check=True, timeout=120)
    import_s = time.perf_counter() - started
    records = json.loads(proc.stdout)
    print(f"\n10,000 runs ({len(SHIFTS)} shifts x {len(metrics)} metrics + coherence, provenance per shift): "
          f"filled in {filled_s:.1f}s; store {size / 1e6:.1f} MB; `innerdpo runs --format json` "
          f"{min(timings):.2f}s wall (of which {import_s:.2f}s is starting python and importing the CLI), "
          f"{len(proc.stdout) / 1e6:.1f} MB of JSON; list+table+json in process {in_process_s:.2f}s")
    assert len(records) == 10_000 and len(json.loads(in_process)) == 10_000
    assert records[-1]["results"]["orthogonal"]["acc"] == pytest.approx(0.5 + (10_000 % 97) / 1000)
    assert records[0]["provenance"] == provenance
