"""The label-orientation audit: exact binomial p-values against 0.5 and the below-chance verdict.

(The end-to-end check, plainly wrong chosen texts scored by SmolLM2 and marked below chance in eval.json,
comes with the evaluation wiring.)"""

from fractions import Fraction
from math import comb

import pytest

from innerdpo_bench.evaluation import audit


def minlike_p(correct: int, n: int) -> float:
    """The two-sided exact test by its definition: the probability of every outcome no more likely than k."""
    mass = [Fraction(comb(n, i), 2 ** n) for i in range(n + 1)]
    return float(sum(m for m in mass if m <= mass[correct]))


@pytest.mark.parametrize("correct, n, p_value", [
    (0, 10, 2 / 1024), (10, 10, 2 / 1024), (5, 10, 1.0), (4, 10, 0.75390625), (1, 1, 1.0), (0, 1, 1.0),
    (3, 20, 2 * (1 + 20 + 190 + 1140) / 2 ** 20), (27, 100, 4.69241261264223e-06),
])
def test_binomial_p_value_table(correct, n, p_value):
    assert audit.binomial_p_value(correct, n) == pytest.approx(p_value, rel=1e-12)


def test_binomial_p_value_is_the_exact_test_by_definition():
    for n in range(1, 41):
        for correct in range(n + 1):
            assert audit.binomial_p_value(correct, n) == pytest.approx(minlike_p(correct, n), rel=1e-12), (correct, n)
            assert audit.binomial_p_value(correct, n) == audit.binomial_p_value(n - correct, n)


@pytest.mark.parametrize("correct, n, below", [
    (27, 100, True),     # the seed's base model on the hub's ETHICS justice: far below chance
    (45, 100, False),    # below 0.5 but within noise (p ≈ 0.37)
    (73, 100, False),    # far from chance, above it: not an orientation problem
    (50, 100, False),    # exactly chance
    (0, 6, False),       # every row wrong, but six rows cannot reach p < 0.01 (p = 1/32)
    (0, 8, True),        # p = 1/128
    (188, 400, False), (170, 400, True),
])
def test_below_chance_verdict(correct, n, below):
    result = audit.audit_shift(correct, n)
    assert result.below_chance is below
    assert result.acc == correct / n and result.p_value == audit.binomial_p_value(correct, n)


def test_audit_of_eval_json_shifts_and_the_warning_line():
    shifts = {"in_domain": {"acc": 0.8, "n": 40}, "moral_transfer": {"acc": 0.27, "n": 100},
              "orthogonal": {"acc": 0.45, "n": 40}}
    audits = audit.audit_shifts(shifts)
    assert {s: a.below_chance for s, a in audits.items()} == {"in_domain": False, "moral_transfer": True,
                                                              "orthogonal": False}
    assert audits["moral_transfer"].to_dict() == {"correct": 27, "n": 100, "acc": 0.27,
                                                  "p_value": audit.binomial_p_value(27, 100), "below_chance": True}
    (line,) = audit.warnings(audits)
    assert line.startswith("moral_transfer: accuracy 0.270 (n=100) is below chance (exact binomial p = 4.7e-06)")
    assert "check the dataset's orientation" in line
    assert audit.audit_counts({"x": (27, 100)})["x"] == audits["moral_transfer"]


@pytest.mark.parametrize("call", [lambda: audit.binomial_p_value(3, 2), lambda: audit.binomial_p_value(0, 0),
                                  lambda: audit.correct_count(0.333, 10)])
def test_impossible_counts_are_refused(call):
    with pytest.raises(ValueError):
        call()


def test_a_flagged_shift_ends_the_runs_caption_and_is_marked_in_the_dashboard(tmp_path):
    from typer.testing import CliRunner

    from innerdpo_bench.cli.main import app
    from innerdpo_bench.results import table
    from innerdpo_bench.store import Store
    from innerdpo_bench.tui.view import ViewTable, cell_text

    with Store(tmp_path) as store:
        run_id = store.add_run({"name": "none", "eval": {"checkpoint": "tiny-random"}}, kind="eval")
        store.claim_next("w")
        store.record_results(run_id, {"in_domain": {"acc": 0.7, "n": 40, "below_chance": False, "chance_p": 0.02},
                                      "moral_transfer": {"acc": 0.27, "n": 40, "below_chance": True,
                                                         "chance_p": 6e-4}})
        store.finish(run_id, "w", "done", 0)
        run = store.get_run(run_id)
    result = CliRunner().invoke(app, ["runs", "--home", str(tmp_path), "--format", "markdown"])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("⚠")]
    assert notes == [f"⚠ run {run_id} (none), moral_transfer: acc 0.270 is below chance (exact binomial p = 0.0006); "
                     f"{audit.WARNING}."]
    row = table.make_table([run]).rows[0]
    view = ViewTable([row])
    assert cell_text(row, "moral_transfer", view).plain.endswith("⚠")
    assert not cell_text(row, "in_domain", view).plain.endswith("⚠")
