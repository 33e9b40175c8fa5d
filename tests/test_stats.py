"""stats.py and scoring.py against hand values, and the results layer (loading, matching, comparison, transfer,
provenance, table cells) on rows files built in tmp_path."""

import hashlib
import json
import math

import numpy as np
import pytest

from innerdpo_bench.errors import UserError
from innerdpo_bench.evaluation import scoring
from innerdpo_bench.evaluation.suites import SHIFTS
from innerdpo_bench.results import cells, compare, locate, stats
from innerdpo_bench.results import provenance as run_provenance
from innerdpo_bench.results import transfer as run_transfer
from innerdpo_bench.store import Store

from helpers.runs import RULE, pattern, row, row_id, store_run, write_run


# --------------------------------------------------------------------------- bootstrap, McNemar, Holm


def test_no_discordant_rows_give_the_exact_rule_of_three_bound():
    """0 discordant rows of n: [−u, u] with u the one-sided Clopper–Pearson limit, 1 − 0.05^(1/n) ≈ 3/n."""
    lo, hi = stats.no_discordance_interval(100)
    assert hi == -lo == pytest.approx(1 - 0.05 ** 0.01) and 2.9 / 100 < hi < 3.1 / 100
    assert stats.no_discordance_interval(1) == pytest.approx((-0.95, 0.95))
    # the limit is exact: with discordance rate u, seeing 0 of n discordant rows has probability 1 − level
    assert (1 - hi) ** 100 == pytest.approx(0.05)
    with pytest.raises(ValueError):
        stats.no_discordance_interval(0)


def test_identical_runs_give_zero_delta_and_p_one():
    correct = np.array([True, False, True, True, False] * 20)
    assert stats.paired_bootstrap(correct, correct, resamples=10_000, seed=0) == (0.0, 0.0, 0.0)
    assert stats.discordant(correct, correct) == (0, 0)
    assert stats.mcnemar_exact(0, 0) == 1.0


@pytest.mark.parametrize("b, c, p", [
    (10, 2, 2 * (1 + 12 + 66) / 4096),      # 0.038574…: the brief's hand value 0.0386
    (2, 10, 2 * (1 + 12 + 66) / 4096),      # two-sided: symmetric
    (5, 0, 2 / 32),
    (1, 0, 1.0),                            # 2 · P(X ≤ 0) = 2 · ½ = 1
    (3, 3, 1.0),                            # capped at 1
])
def test_mcnemar_exact_hand_values(b, c, p):
    assert stats.mcnemar_exact(b, c) == pytest.approx(p, abs=1e-12)


def test_mcnemar_b10_c2_is_0_0386():
    assert abs(stats.mcnemar_exact(10, 2) - 0.0386) < 1e-4


def test_mcnemar_large_counts_do_not_underflow():
    p = stats.mcnemar_exact(5200, 4800)   # z ≈ 4: p ≈ 6.4e-5 by the normal approximation
    assert 5e-5 < p < 8e-5


def test_holm_hand_example():
    # sorted 0.005, 0.01, 0.03, 0.04 → ×4, ×3, ×2, ×1 = 0.02, 0.03, 0.06, 0.04 → running max 0.02, 0.03, 0.06, 0.06
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, None, 0.6]) == [1.0, None, 1.0]
    assert stats.holm([0.2, None, 0.01]) == [0.2, None, 0.02]


def test_paired_bootstrap_all_better_is_exact():
    a, b = np.zeros(50, bool), np.ones(50, bool)
    assert stats.paired_bootstrap(a, b) == (1.0, 1.0, 1.0)


def test_paired_bootstrap_matches_index_resampling():
    """The multinomial shortcut has the distribution of resampling row indices: same quantiles within
    two steps of 1/n on a fixed example."""
    rng = np.random.default_rng(7)
    n = 200
    a = rng.random(n) < 0.6
    b = rng.random(n) < 0.7
    delta, lo, hi = stats.paired_bootstrap(a, b, resamples=20_000, seed=1)
    index = rng.integers(0, n, size=(20_000, n))
    naive = (b[index].astype(float) - a[index]).mean(axis=1)
    assert delta == pytest.approx(b.mean() - a.mean())
    assert lo == pytest.approx(np.quantile(naive, 0.025), abs=2 / n)
    assert hi == pytest.approx(np.quantile(naive, 0.975), abs=2 / n)
    assert stats.paired_bootstrap(a, b, resamples=20_000, seed=1) == (delta, lo, hi)  # fixed seed: reproducible


def test_bootstrap_interval_of_one_accuracy():
    assert stats.bootstrap_interval([True] * 30) == (1.0, 1.0, 1.0)
    acc, lo, hi = stats.bootstrap_interval(pattern(400, 240), resamples=10_000)
    se = math.sqrt(0.6 * 0.4 / 400)
    assert acc == 0.6
    assert (lo, hi) == (pytest.approx(0.6 - 1.96 * se, abs=0.006), pytest.approx(0.6 + 1.96 * se, abs=0.006))


# --------------------------------------------------------------------------- scoring rules

# Three rows: (logp_c, logp_r, base_c, base_r, n_c, n_r)
THREE_ROWS = np.array([
    (-10.0, -12.0, -9.0, -13.0, 2, 4),     # reward c −1, r +1        per token −0.5, +0.25
    (-20.0, -18.0, -24.0, -19.0, 10, 2),   # reward c +4, r +1        per token +0.4, +0.5
    (-6.0, -9.0, -5.0, -4.0, 1, 2),        # reward c −1, r −5        per token −1.0, −2.5
])


def test_implicit_reward_correct_hand_values():
    lc, lr, bc, br, nc, nr = THREE_ROWS.T
    assert scoring.implicit_reward_correct(lc, lr, bc, br, nc, nr, agg="sum").tolist() == [False, True, True]
    assert scoring.implicit_reward_correct(lc, lr, bc, br, nc, nr, agg="mean").tolist() == [False, False, True]
    # reference-free, for contrast: per token −5 vs −3, −2 vs −9, −6 vs −4.5; summed −10 > −12, −20 < −18, −6 > −9
    assert scoring.logprob_correct(lc, lr, nc, nr, agg="mean").tolist() == [False, True, False]
    assert scoring.logprob_correct(lc, lr, nc, nr, agg="sum").tolist() == [True, False, True]


def test_ties_are_wrong_and_base_model_reward_is_never_right():
    logp = np.array([-5.0, -7.0])
    assert not scoring.logprob_correct(logp[:1], logp[:1], [3], [3]).any()
    assert not scoring.implicit_reward_correct(logp, logp, logp, logp, [1, 1], [1, 1]).any()


def test_rows_metrics_on_the_three_row_fixture(tmp_path):
    records = [{"shift": "in_domain", "doc_id": i, "row_id": f"{i:016x}", "logp_chosen": lc, "logp_rejected": lr,
                "base_logp_chosen": bc, "base_logp_rejected": br, "n_chosen": int(nc), "n_rejected": int(nr),
                "correct": bool(lc / nc > lr / nr)} for i, (lc, lr, bc, br, nc, nr) in enumerate(THREE_ROWS)]
    (tmp_path / "x_rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "x.json").write_text(json.dumps({"adapter": "a", "base_model": "m", "shifts": {}}))
    shift = locate.load_run(tmp_path / "x.json").shifts["in_domain"]
    assert shift.score("reward_sum").tolist() == [False, True, True]
    assert shift.score("reward_mean").tolist() == [False, False, True]
    assert shift.score("mean").tolist() == shift.correct.tolist() == [False, True, False]
    assert shift.score("sum").tolist() == [True, False, True]
    assert shift.base_score("mean").tolist() == [False, True, False]  # −4.5 < −3.25, −2.4 > −9.5, −5 < −2


# --------------------------------------------------------------------------- transfer


def test_normalised_transfer_hand_values():
    acc = {"in_domain": 0.9, "difficulty_scaling": 0.8, "moral_transfer": 0.5, "orthogonal": 0.6}
    base = {"in_domain": 0.8, "difficulty_scaling": 0.75, "moral_transfer": 0.55, "orthogonal": 0.6}
    transfer = stats.normalised_transfer(acc, base)
    assert transfer == pytest.approx({"in_domain": 1.0, "difficulty_scaling": 0.5, "moral_transfer": -0.5,
                                      "orthogonal": 0.0})


def test_normalised_transfer_zero_in_domain_gain_is_undefined():
    acc = {"in_domain": 0.8, "difficulty_scaling": 0.9}
    assert stats.normalised_transfer(acc, {"in_domain": 0.8, "difficulty_scaling": 0.7}) == {
        "in_domain": None, "difficulty_scaling": None}
    assert stats.normalised_transfer({"in_domain": 0.9, "orthogonal": None}, {"in_domain": 0.8})["orthogonal"] is None


def test_differential_elicitation_hand_values():
    assert stats.differential_elicitation(0.8, 0.75, 0.85) == pytest.approx(0.5)
    assert stats.differential_elicitation(0.7, 0.75, 0.85) == pytest.approx(-0.5)
    assert stats.differential_elicitation(0.8, 0.75, 0.75) is None      # the target gained nothing: undefined
    assert stats.differential_elicitation(0.8, None, 0.9) is None


# --------------------------------------------------------------------------- loading and matching


def test_load_run_by_directory_checkpoint_and_eval_json(tmp_path):
    eval_path = write_run(tmp_path / "run" / "checkpoint", {"in_domain": pattern(4, 3), "orthogonal": pattern(4, 1)})
    for ref in (tmp_path / "run", tmp_path / "run" / "checkpoint", eval_path,
                eval_path.with_name("eval_rows.jsonl")):
        loaded = locate.load_run(ref)
        assert loaded.eval_path == eval_path and list(loaded.shifts) == ["in_domain", "orthogonal"]
    shift = loaded.shifts["in_domain"]
    assert shift.correct.tolist() == [True, True, True, False] and len(shift) == 4
    assert shift.n_chosen.dtype == np.int64 and not shift.logp_chosen.flags.writeable


@pytest.mark.parametrize("case, message", [
    ("no_rows", "has no per-row records"),
    ("no_eval", "has no eval.json"),
    ("bad_field", "line 1 lacks 'n_chosen'"),
    ("nothing", "is not a store run id, a run directory or an eval.json"),
    ("no_store", "no store at"),
])
def test_load_run_errors(case, message, tmp_path):
    eval_path = write_run(tmp_path / "run", {"in_domain": pattern(3, 1)})
    ref = tmp_path / "run"
    if case == "no_rows":
        (tmp_path / "run" / "eval_rows.jsonl").unlink()
    elif case == "no_eval":
        eval_path.unlink()
    elif case == "bad_field":
        rows_path = tmp_path / "run" / "eval_rows.jsonl"
        first, *rest = rows_path.read_text().splitlines()
        record = json.loads(first)
        del record["n_chosen"]
        rows_path.write_text("\n".join([json.dumps(record), *rest]) + "\n")
    elif case == "nothing":
        ref = tmp_path / "no-such-run"
    elif case == "no_store":
        ref = "12"
    with pytest.raises(UserError, match=message):
        locate.load_run(ref, home=str(tmp_path / "nohome"))
    assert not (tmp_path / "nohome").exists()  # looking a run id up never creates a store


def test_duplicate_pairs_are_matched_in_order(tmp_path):
    records = [row("in_domain", 0, True), row("in_domain", 0, False), row("in_domain", 1, True)]
    (tmp_path / "e_rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (tmp_path / "e.json").write_text(json.dumps({"adapter": None}))
    keys = locate.load_run(tmp_path / "e.json").shifts["in_domain"].keys.tolist()
    assert keys == [row_id("in_domain", 0), row_id("in_domain", 0) + "#1", row_id("in_domain", 1)]


def test_rows_are_matched_by_row_id_not_position(tmp_path):
    """B scored rows 2..9 in reverse order; A scored rows 0..7: six shared rows, paired by id."""
    a = locate.load_run(write_run(tmp_path / "a", {"in_domain": pattern(8, 8)}))
    b_dir = tmp_path / "b"
    write_run(b_dir, {"in_domain": [False] * 8}, row_offset=2)
    lines = (b_dir / "eval_rows.jsonl").read_text().splitlines()[::-1]
    (b_dir / "eval_rows.jsonl").write_text("\n".join(lines) + "\n")
    b = locate.load_run(b_dir)
    index_a, index_b = compare.align([a.shifts["in_domain"], b.shifts["in_domain"]])
    assert (a.shifts["in_domain"].keys[index_a] == b.shifts["in_domain"].keys[index_b]).all() and len(index_a) == 6
    (result,) = compare.compare_runs([a], [b])
    assert (result.n, result.n_a, result.n_b, result.acc_a, result.acc_b) == (6, 8, 8, 1.0, 0.0)
    assert (result.b, result.c, result.delta) == (6, 0, -1.0)


def test_compare_runs_hand_counts_and_holm(tmp_path):
    # in_domain: A right on rows 0-11, B on rows 0-1 and 12-21 → b = 10 (rows 2-11), c = 10 (rows 12-21)
    a_correct = {"in_domain": pattern(24, 12), "orthogonal": pattern(24, 12)}
    b_correct = {"in_domain": [i < 2 or 12 <= i < 22 for i in range(24)], "orthogonal": pattern(24, 12)}
    a = locate.load_run(write_run(tmp_path / "a", a_correct))
    b = locate.load_run(write_run(tmp_path / "b", b_correct, method="ipo"))
    in_domain, orthogonal = compare.compare_runs([a], [b], resamples=2000)
    assert (in_domain.b, in_domain.c) == (10, 10) and in_domain.p == 1.0
    assert in_domain.acc_a == 0.5 and in_domain.acc_b == 0.5 and in_domain.delta == 0.0
    assert (orthogonal.b, orthogonal.c, orthogonal.p, orthogonal.interval) == (0, 0, 1.0, "exact")
    assert (orthogonal.lo, orthogonal.hi) == stats.no_discordance_interval(orthogonal.n)
    assert in_domain.p_holm == 1.0 and not orthogonal.significant
    b_better = locate.load_run(write_run(tmp_path / "c", {"in_domain": [i >= 10 for i in range(24)],
                                                           "orthogonal": pattern(24, 14)}, method="ipo"))
    # in_domain: A right on 0-11, B on 10-23 → b = 10 (0-9), c = 12 (12-23); orthogonal: b = 0, c = 2
    in_domain, orthogonal = compare.compare_runs([a], [b_better], resamples=2000)
    assert (in_domain.b, in_domain.c, orthogonal.b, orthogonal.c) == (10, 12, 0, 2)
    p_in, p_orth = stats.mcnemar_exact(10, 12), stats.mcnemar_exact(0, 2)
    assert (in_domain.p, orthogonal.p) == (p_in, p_orth)
    assert [in_domain.p_holm, orthogonal.p_holm] == stats.holm([p_in, p_orth])
    assert in_domain.delta == pytest.approx(2 / 24)


def test_compare_shift_errors(tmp_path):
    a = locate.load_run(write_run(tmp_path / "a", {"in_domain": pattern(4, 2)}))
    b = locate.load_run(write_run(tmp_path / "b", {"in_domain": pattern(4, 2)}, row_offset=100))
    with pytest.raises(UserError, match="share no in_domain rows: they were scored on different data"):
        compare.compare_runs([a], [b])
    with pytest.raises(UserError, match="unknown shift 'in_domian'. Did you mean 'in_domain'"):
        compare.compare_runs([a], [a], shifts=["in_domian"])
    with pytest.raises(UserError, match="has no orthogonal rows"):
        compare.compare_runs([a], [a], shifts=["orthogonal"])
    base = locate.load_run(write_run(tmp_path / "base", {"in_domain": pattern(4, 2)}, adapter=False))
    with pytest.raises(UserError, match="is a base model"):
        compare.compare_runs([base], [a], metric="reward_sum")


def test_pooled_seed_comparison(tmp_path):
    """Two seeds each: per-row seed means, per-seed accuracies, seed mean ± std."""
    a = [locate.load_run(write_run(tmp_path / f"a{s}", {"in_domain": pattern(10, right)}, seed=s))
         for s, right in ((1, 4), (2, 6))]
    b = [locate.load_run(write_run(tmp_path / f"b{s}", {"in_domain": pattern(10, right)}, seed=s, method="ipo"))
         for s, right in ((1, 8), (2, 8))]
    (result,) = compare.compare_runs(a, b, resamples=1000)
    assert result.seeds_a == ((1, 0.4), (2, 0.6)) and result.seeds_b == ((1, 0.8), (2, 0.8))
    assert result.acc_a == pytest.approx(0.5) and result.acc_b == pytest.approx(0.8)
    # seed means per row: A = 1,1,1,1,.5,.5,0,0,0,0; B = 1×8, 0, 0 → B higher on rows 4-7, never lower
    assert (result.b, result.c) == (0, 4) and result.p == stats.mcnemar_exact(0, 4)
    mean, std = result.seed_spread("a")
    assert mean == pytest.approx(0.5) and std == pytest.approx(math.sqrt(0.02))
    assert result.seed_spread("b") == (pytest.approx(0.8), pytest.approx(0.0))


# --------------------------------------------------------------------------- provenance


def test_provenance_fields(tmp_path):
    recorded = {s: {"dataset": "wassname/genies_preferences", "config": f"{s}_cfg", "split": "test",
                    "revision": "abc123" if s == "orthogonal" else None, "rows": 5, "scoring_rule": RULE}
                for s in SHIFTS}
    eval_path = write_run(tmp_path / "run", {s: pattern(5, 3) for s in SHIFTS}, report={"provenance": recorded})
    loaded = locate.load_run(eval_path)
    prov = run_provenance.provenance(loaded)
    weights = (tmp_path / "run" / "adapter" / "adapter_model.safetensors").read_bytes()
    for shift in SHIFTS:
        entry = prov[shift]
        assert {"dataset", "config", "split", "revision", "n", "scoring_rule", "base_model", "adapter_sha256",
                "versions"} <= set(entry)
        assert (entry["dataset"], entry["config"], entry["split"], entry["n"]) == (
            "wassname/genies_preferences", f"{shift}_cfg", "test", 5)
        assert entry["adapter_sha256"] == hashlib.sha256(weights).hexdigest()
        assert entry["base_model"] == "tiny-random" and entry["scoring_rule"] == RULE
        assert entry["versions"]["lm_eval"] == "0.4.13" and entry["versions"]["innerdpo_bench"] == "0.1.0"
    assert prov["orthogonal"]["data"] == "wassname/genies_preferences:orthogonal_cfg#test@abc123"
    assert prov["in_domain"]["revision"] is None
    base = locate.load_run(write_run(tmp_path / "base", {"in_domain": pattern(2, 1)}, adapter=False))
    assert run_provenance.provenance(base)["in_domain"]["adapter_sha256"] is None
    recorded = locate.load_run(write_run(tmp_path / "r", {"in_domain": [True]}, report={"adapter_sha256": "f" * 64}))
    assert run_provenance.adapter_checksum(recorded) == "f" * 64


def test_provenance_caption_lists_each_shift(tmp_path):
    home = tmp_path / "home"
    with Store(home) as store:
        first = store_run(store, home, {s: pattern(16, 9) for s in SHIFTS})
        second = store_run(store, home, {s: pattern(16, 9) for s in SHIFTS}, seed=1)
        runs = store.list_runs()
        provenance = store.all_provenance()
    caption = cells.provenance_caption(runs, provenance)
    assert caption.startswith("Table 1: Accuracy per preference shift") and "made up of:" in caption
    assert "of 2 runs on base model tiny-random (lm_eval 0.4.13, innerdpo_bench 0.1.0)" in caption
    for shift in SHIFTS:
        assert f"- {shift}: mini:{shift}, N=16\n" in caption
    assert f"Scoring rule: {RULE}" in caption
    # a shift scored on different data in different runs names each source with its runs
    other = locate.load_run(write_run(tmp_path / "other", {"in_domain": pattern(8, 4)},
                                        report={"provenance": {"in_domain": {"dataset": "my/data", "config": "c",
                                                                             "split": "test", "rows": 8}}}))
    mixed = cells.provenance_caption([*runs, other], provenance, title="Table 2")
    assert (f"- in_domain: mini:in_domain, N=16 (runs {first}, {second}); my/data:c#test, N=8 (run {other.ident})"
            in mixed)
    assert mixed.startswith("Table 2:")
    # rows longer than the model's context are counted beside N (evaluate's `truncated` and `skipped`)
    long = locate.load_run(write_run(tmp_path / "long", {"orthogonal": pattern(7, 4)},
                                       report={"provenance": {"orthogonal": {"dataset": "medical", "config": "reward",
                                                                             "split": "test", "rows": 7,
                                                                             "truncated": 2, "skipped": 1}}}))
    assert ("- orthogonal: medical:reward#test, N=7 (2 prompts cut, 1 skipped: longer than the model's context)"
            in cells.provenance_caption([long], {}))


# --------------------------------------------------------------------------- store: transfer, table hooks


def test_transfer_with_a_run_trained_on_the_shift(tmp_path):
    home = tmp_path / "home"
    base_right = {s: pattern(20, 10) for s in SHIFTS}          # base acc 0.5 everywhere
    with Store(home) as store:
        run_id = store_run(store, home, {"in_domain": pattern(20, 16), "difficulty_scaling": pattern(20, 12),
                                         "moral_transfer": pattern(20, 10), "orthogonal": pattern(20, 8)},
                           base_correct=base_right)
        # two runs trained on difficulty_scaling's own data: the better one (0.9) is the target
        store_run(store, home, {s: pattern(20, 14) for s in SHIFTS}, dataset="mini:difficulty_scaling",
                  base_correct=base_right, method="ipo")
        best = store_run(store, home, {s: pattern(20, 18) for s in SHIFTS}, dataset="mini:difficulty_scaling",
                         base_correct=base_right, method="ipo", seed=1)
    rows = locate.load_run(str(run_id), home=str(home))
    report = {entry.shift: entry for entry in run_transfer.transfer_report(rows, "mean",
                                                                           locate.target_candidates(rows, str(home)))}
    assert report["in_domain"].gain == pytest.approx(0.3) and report["in_domain"].transfer == pytest.approx(1.0)
    assert report["difficulty_scaling"].transfer == pytest.approx(0.1 / 0.3)
    assert report["moral_transfer"].transfer == pytest.approx(0.0)
    assert report["orthogonal"].transfer == pytest.approx(-0.1 / 0.3)
    target = report["difficulty_scaling"]
    assert target.target_run == f"run {best}" and target.target_acc == pytest.approx(0.9) and target.target_n == 20
    assert target.differential_elicitation == pytest.approx((0.6 - 0.5) / (0.9 - 0.5))
    assert report["in_domain"].differential_elicitation is None  # nobody trained on mini:in_domain


def test_metric_columns_and_baseline_deltas(tmp_path):
    home = tmp_path / "home"
    with Store(home) as store:
        base_id = store_run(store, home, {s: pattern(40, 20) for s in SHIFTS}, kind="eval", method="none")
        good_id = store_run(store, home, {s: pattern(40, 36) for s in SHIFTS}, base_correct={
            s: pattern(40, 20) for s in SHIFTS})
        same_id = store_run(store, home, {s: pattern(40, 20) for s in SHIFTS}, seed=1)
        queued_id = store.add_run({"name": "dpo", "train": {"method": "dpo", "seed": 5}})
        runs = {run.id: run for run in store.list_runs()}
    assert cells.metric_columns(runs[good_id]) == {s: 0.9 for s in SHIFTS}
    assert cells.metric_columns(runs[good_id], "transfer") == pytest.approx({s: 1.0 for s in SHIFTS})
    # good run: reward(chosen) = −10 − (−11) = 1; reward(rejected) = 0 (rows 0-19), −2 (rows 20-35), +2 (rows 36-39)
    assert cells.metric_columns(runs[good_id], "reward_acc") == {s: 0.9 for s in SHIFTS}
    assert cells.metric_columns(runs[good_id], "reward_acc_sum") == {s: 0.9 for s in SHIFTS}
    assert cells.metric_columns(runs[base_id], "reward_acc") == {s: None for s in SHIFTS}
    assert cells.metric_columns(runs[queued_id], "transfer") == {s: None for s in SHIFTS}
    with pytest.raises(UserError, match="unknown metric"):
        cells.metric_columns(runs[good_id], "accuracy")
    deltas = cells.baseline_deltas(runs[good_id], runs[base_id])
    assert all(deltas[s].delta == pytest.approx(0.4) and deltas[s].significant for s in SHIFTS)
    same = cells.baseline_deltas(runs[same_id], runs[base_id])
    assert all(same[s].delta == 0.0 and not same[s].significant for s in SHIFTS)
    pooled = cells.baseline_deltas([runs[good_id], runs[same_id]], runs[base_id])
    assert pooled["in_domain"].delta == pytest.approx(0.2)
    assert cells.baseline_deltas(runs[queued_id], runs[base_id]) == {s: None for s in SHIFTS}
