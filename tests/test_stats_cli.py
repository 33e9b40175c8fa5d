"""`innerdpo rescore`, `compare`, `transfer`, `plot`: one real evaluated tiny-random run, the rest on rows files
built in tmp_path (helpers.runs)."""

import json
import shutil
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from innerdpo_bench.cli.main import app
from innerdpo_bench.evaluation.suites import SHIFTS
from innerdpo_bench.results import stats
from innerdpo_bench.store import Store

from helpers.runs import pattern, store_run, write_run

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def wide_console(monkeypatch):
    """Rich tables at 160 columns (a pipe gets 80, and wraps headers)."""
    from innerdpo_bench.cli.app import console

    monkeypatch.setattr(console, "width", 160)


def ok_json(*args):
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


# --------------------------------------------------------------------------- a real run


def test_rescore_equals_the_harness_on_a_real_run(trained_run, tmp_path, wide_console):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    result = invoke("eval", run, "--suite", "mini", "--limit", 16, "--device", "cpu")
    assert result.exit_code == 0, result.output
    report = json.loads((run / "eval.json").read_text())
    for metric, key in (("mean", "acc"), ("sum", "acc_sum")):
        rescored = ok_json("rescore", run, "--metric", metric)
        assert rescored["match"] is True and rescored["harness_metric"] == key
        for shift in SHIFTS:
            entry = rescored["shifts"][shift]
            assert entry["n"] == 16 and entry["acc"] == report["shifts"][shift][key] == entry["harness"]
            assert entry["base_acc"] == report["base"]["shifts"][shift][key]
            assert 0.0 <= entry["reward_acc"] <= 1.0 and 0.0 <= entry["reward_acc_sum"] <= 1.0
    prov = rescored["provenance"]["in_domain"]
    import hashlib

    weights = (run / "adapter" / "adapter_model.safetensors").read_bytes()
    assert prov["adapter_sha256"] == hashlib.sha256(weights).hexdigest()
    assert (prov["data"], prov["n"], prov["base_model"]) == ("mini:in_domain", 16, "tiny-random")
    assert prov["versions"]["lm_eval"] and prov["versions"]["innerdpo_bench"]
    same = ok_json("compare", run, run / "eval.json")
    for s in same["shifts"]:  # no discordant row: an exact bound, not a zero-width bootstrap interval
        upper = 1 - 0.05 ** (1 / s["n"])
        assert (s["delta"], s["p"], s["p_holm"], s["interval"]) == (0.0, 1.0, 1.0, "exact")
        assert (s["lo"], s["hi"]) == pytest.approx((-upper, upper))
    table = invoke("rescore", run)
    assert table.exit_code == 0 and "adapter sha256" in table.output and "NO" not in table.output


def test_rescore_reports_a_mismatch_with_exit_1(tmp_path):
    eval_path = write_run(tmp_path / "run", {"in_domain": pattern(4, 3)})
    report = json.loads(eval_path.read_text())
    report["shifts"]["in_domain"]["acc"] = 0.5
    eval_path.write_text(json.dumps(report))
    result = invoke("rescore", tmp_path / "run")
    assert result.exit_code == 1 and "rescored acc differs" in result.output


# --------------------------------------------------------------------------- compare


def test_compare_json_on_synthetic_runs(tmp_path, wide_console):
    write_run(tmp_path / "a", {"in_domain": pattern(24, 12), "orthogonal": pattern(24, 12)})
    write_run(tmp_path / "b", {"in_domain": [i >= 10 for i in range(24)], "orthogonal": pattern(24, 14)}, method="ipo")
    data = ok_json("compare", tmp_path / "a", tmp_path / "b", "--resamples", 5000, "--seed", 3)
    in_domain, orthogonal = data["shifts"]
    assert (data["metric"], data["resamples"], data["seed"]) == ("acc", 5000, 3)  # the public name of the default
    assert (in_domain["b"], in_domain["c"], orthogonal["b"], orthogonal["c"]) == (10, 12, 0, 2)
    assert in_domain["acc_a"] == 0.5 and in_domain["acc_b"] == pytest.approx(14 / 24)
    assert in_domain["p"] == stats.mcnemar_exact(10, 12)
    assert [in_domain["p_holm"], orthogonal["p_holm"]] == stats.holm([in_domain["p"], orthogonal["p"]])
    delta, lo, hi = stats.paired_bootstrap(np.array(pattern(24, 14)), np.array(pattern(24, 12)), 5000, 3)
    assert (orthogonal["delta"], orthogonal["lo"], orthogonal["hi"]) != (delta, lo, hi)  # B − A, not A − B
    delta, lo, hi = stats.paired_bootstrap(np.array(pattern(24, 12)), np.array(pattern(24, 14)), 5000, 3)
    assert (orthogonal["delta"], orthogonal["lo"], orthogonal["hi"]) == (delta, lo, hi)
    only = ok_json("compare", tmp_path / "a", tmp_path / "b", "--shift", "orthogonal")
    assert [s["shift"] for s in only["shifts"]] == ["orthogonal"] and only["shifts"][0]["p_holm"] == orthogonal["p"]
    pretty = invoke("compare", tmp_path / "a", tmp_path / "b")
    assert pretty.exit_code == 0 and "p McNemar" in pretty.output and "orthogonal" in pretty.output


def test_compare_group_seeds_pools_store_runs(tmp_path, wide_console):
    home = tmp_path / "home"
    with Store(home) as store:
        a1 = store_run(store, home, {"in_domain": pattern(10, 4)}, seed=1)
        store_run(store, home, {"in_domain": pattern(10, 6)}, seed=2)
        b1 = store_run(store, home, {"in_domain": pattern(10, 8)}, seed=1, method="ipo")
        store_run(store, home, {"in_domain": pattern(10, 8)}, seed=2, method="ipo")
    data = ok_json("compare", a1, b1, "--group-seeds", "--home", home)
    (shift,) = data["shifts"]
    assert [s["seed"] for s in shift["seeds_a"]] == [1, 2] and [s["acc"] for s in shift["seeds_a"]] == [0.4, 0.6]
    assert shift["seed_mean_a"] == pytest.approx(0.5) and shift["seed_std_a"] == pytest.approx(0.02 ** 0.5)
    assert shift["acc_b"] == pytest.approx(0.8) and (shift["b"], shift["c"]) == (0, 4)
    assert data["a"]["runs"] == [f"run {a1}", f"run {a1 + 1}"]
    single = ok_json("compare", a1, b1, "--home", home)
    assert single["shifts"][0]["acc_a"] == 0.4 and single["shifts"][0]["seeds_a"] == [{"seed": 1, "acc": 0.4}]
    pretty = invoke("compare", a1, b1, "--group-seeds", "--home", home)
    assert pretty.exit_code == 0 and "0.500 ± 0.141 (2)" in pretty.output


def test_compare_10000_rows_per_shift_timing(tmp_path, capsys):
    """Measured, not asserted: compare on two runs of 10,000 rows per shift (4 shifts), 10,000 resamples."""
    rng = np.random.default_rng(0)
    for name, rate in (("a", 0.6), ("b", 0.62)):
        write_run(tmp_path / name, {s: (rng.random(10_000) < rate).tolist() for s in SHIFTS}, method=name)
    timings = []
    for attempt in ("cold", "cached"):
        started = time.perf_counter()
        result = invoke("compare", tmp_path / "a", tmp_path / "b", "--json")
        timings.append((attempt, time.perf_counter() - started))
        assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)["shifts"]) == 4
    from innerdpo_bench.results import compare, locate

    a, b = locate.load_run(tmp_path / "a"), locate.load_run(tmp_path / "b")
    started = time.perf_counter()
    compare.compare_runs([a], [b])
    stats_only = time.perf_counter() - started
    with capsys.disabled():
        print("\ncompare, 10,000 rows x 4 shifts, 10,000 resamples: "
              + ", ".join(f"{name} {seconds:.3f}s" for name, seconds in timings)
              + f"; statistics alone {stats_only * 1000:.1f} ms")


# --------------------------------------------------------------------------- transfer


def test_transfer_command(tmp_path, monkeypatch):
    monkeypatch.setenv("INNERDPO_HOME", str(tmp_path / "no-default-store"))
    home = tmp_path / "home"
    base_right = {s: pattern(20, 10) for s in SHIFTS}
    with Store(home) as store:
        run_id = store_run(store, home, {s: pattern(20, right) for s, right in zip(SHIFTS, (16, 12, 10, 8))},
                           base_correct=base_right)
        target = store_run(store, home, {s: pattern(20, 18) for s in SHIFTS}, dataset="mini:orthogonal",
                           base_correct=base_right, method="ipo")
    data = ok_json("transfer", run_id, "--home", home)
    by_shift = {entry["shift"]: entry for entry in data["shifts"]}
    assert by_shift["difficulty_scaling"]["transfer"] == pytest.approx(1 / 3)
    assert by_shift["orthogonal"]["target_run"] == f"run {target}"
    assert by_shift["orthogonal"]["differential_elicitation"] == pytest.approx((0.4 - 0.5) / (0.9 - 0.5))
    # a run directory without a store: normalised transfer only
    plain = ok_json("transfer", tmp_path / "home" / "runs" / f"{run_id}-dpo")
    assert all(entry["differential_elicitation"] is None for entry in plain["shifts"])
    zero = write_run(tmp_path / "flat", {"in_domain": pattern(4, 2), "orthogonal": pattern(4, 3)},
                     base_correct={"in_domain": pattern(4, 2), "orthogonal": pattern(4, 2)})
    assert [entry["transfer"] for entry in ok_json("transfer", zero)["shifts"]] == [None, None]
    help_text = invoke("transfer", "--help").output
    assert "gain(s) / gain(in_domain)" in help_text and "differential elicitation" in help_text


# --------------------------------------------------------------------------- plot


def test_plot_png_has_the_requested_pixel_size(tmp_path):
    from PIL import Image

    write_run(tmp_path / "a", {s: pattern(30, 20) for s in SHIFTS})
    write_run(tmp_path / "b", {s: pattern(30, 25) for s in SHIFTS}, method="ipo")
    out = tmp_path / "fig" / "shifts.png"
    result = invoke("plot", tmp_path / "a", tmp_path / "b", "--out", out, "--width-in", 6, "--height-in", 3,
                    "--dpi", 100)
    assert result.exit_code == 0, result.output
    with Image.open(out) as image:
        assert image.size == (600, 300)
        assert len(set(image.convert("RGB").getdata())) > 3  # something was drawn
    out = tmp_path / "default.png"
    assert invoke("plot", tmp_path / "a", "--out", out).exit_code == 0
    with Image.open(out) as image:
        assert image.size == (1200, 675)   # 8 x 4.5 in at 150 dpi


def test_plot_svg_and_store_seed_groups(tmp_path):
    home = tmp_path / "home"
    with Store(home) as store:
        for seed, right in ((1, 20), (2, 24)):
            store_run(store, home, {s: pattern(30, right) for s in SHIFTS}, seed=seed)
        store_run(store, home, {s: pattern(30, 15) for s in SHIFTS}, kind="eval", method="none")
        store.add_run({"name": "dpo", "train": {"method": "dpo", "seed": 9}})  # queued: not plotted
    out = tmp_path / "shifts.svg"
    result = invoke("plot", "--home", home, "--group-seeds", "--out", out, "--width-in", 5, "--height-in", 2.5)
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert 'width="360pt"' in text and 'height="180pt"' in text   # 5 x 2.5 in at 72 pt/in
    assert "2 series" in result.output   # dpo (2 seeds) and none


def test_plot_bars_group_seeds_by_mean_and_std(tmp_path):
    from innerdpo_bench.results import locate, plotdata

    runs = [locate.load_run(write_run(tmp_path / f"s{seed}", {"in_domain": pattern(10, right)}, seed=seed))
            for seed, right in ((1, 4), (2, 6))]
    (bar,) = plotdata.bar_series(runs, group_seeds=True)
    assert (bar.value, bar.n_runs) == (pytest.approx(0.5), 2)
    assert (bar.lo, bar.hi) == (pytest.approx(0.5 - 0.02 ** 0.5), pytest.approx(0.5 + 0.02 ** 0.5))
    first, second = plotdata.bar_series(runs, resamples=2000)
    assert first.value == 0.4 and first.lo < 0.4 < first.hi and first.label != second.label


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("case, message", [
    ("unknown_run_id", "no run with id 99"),
    ("run_without_rows", "has no per-row records"),
    ("shift_typo", "unknown shift 'orthogonl'. Did you mean 'orthogonal'?"),
    ("no_overlap", "share no in_domain rows: they were scored on different data"),
    ("bad_suffix", "--out plot.jpg: the suffix must be one of .png, .svg, .pdf"),
    ("bad_metric", "unknown --metric 'reward'"),
    ("no_store", "no store at"),
    ("group_seeds_dir", "--group-seeds finds a run's other seeds in the store"),
    ("queued_run", "has no results yet (status queued)"),
])
def test_bad_input_is_one_line_and_exit_2(case, message, tmp_path):
    home = tmp_path / "home"
    with Store(home) as store:
        run_id = store_run(store, home, {"in_domain": pattern(4, 2)})
        queued = store.add_run({"name": "dpo", "train": {"method": "dpo", "seed": 3}})
    a = tmp_path / "a"
    write_run(a, {"in_domain": pattern(4, 2)})
    args = {
        "unknown_run_id": ["compare", 99, run_id, "--home", home],
        "run_without_rows": ["rescore", tmp_path / "norows"],
        "shift_typo": ["compare", a, run_id, "--shift", "orthogonl", "--home", home],
        "no_overlap": ["compare", a, tmp_path / "far"],
        "bad_suffix": ["plot", a, "--out", "plot.jpg"],
        "bad_metric": ["compare", a, a, "--metric", "reward"],
        "no_store": ["plot", "--home", tmp_path / "nowhere"],
        "group_seeds_dir": ["compare", a, a, "--group-seeds"],
        "queued_run": ["transfer", queued, "--home", home],
    }[case]
    if case == "run_without_rows":
        write_run(tmp_path / "norows", {"in_domain": [True]})
        (tmp_path / "norows" / "eval_rows.jsonl").unlink()
    if case == "no_overlap":
        write_run(tmp_path / "far", {"in_domain": pattern(4, 2)}, row_offset=50)
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output
    assert not (tmp_path / "nowhere").exists()
