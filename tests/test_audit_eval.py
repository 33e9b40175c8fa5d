"""The label-orientation audit on a real model: rows whose `chosen` is plainly wrong are flagged below chance in
eval.json and `innerdpo eval`'s output; the mini suite on the same base model is not."""

import json

import pytest
from typer.testing import CliRunner

from innerdpo_bench.cli.main import app
from innerdpo_bench.evaluation.evaluate import evaluate
from innerdpo_bench.evaluation.suites import SHIFTS

from helpers.evaluation import OBVIOUS

pytestmark = pytest.mark.slow

# the obvious facts test_smollm2 checks SmolLM2 gets right, and a few more
FACTS = [*OBVIOUS, *(
    ("What is the capital of Japan?", "The capital of Japan is Tokyo.", "The capital of Japan is Madrid."),
    ("What do cows drink?", "Cows drink water.", "Cows drink petrol."),
    ("Which animal barks?", "A dog barks.", "A fish barks."),
    ("How many days are in a week?", "A week has seven days.", "A week has nineteen days."),
    ("What is ice made of?", "Ice is frozen water.", "Ice is frozen bread."),
)]


def swapped_rows() -> list[dict]:
    """Every pair with chosen and rejected swapped: chosen is the wrong answer, plus simple sums."""
    rows = [{"prompt": p, "chosen": wrong, "rejected": right} for p, right, wrong in FACTS]
    for a in range(1, 5):
        for b in range(2, 7):
            rows.append({"prompt": f"What is {a} + {b}?", "chosen": f"{a} + {b} = {a + b + 10}.",
                         "rejected": f"{a} + {b} = {a + b}."})
    return rows


def test_plainly_wrong_chosen_texts_are_flagged_and_the_mini_suite_is_not(tmp_path):
    data = tmp_path / "swapped"
    data.mkdir()
    rows = swapped_rows()
    for shift in SHIFTS:
        (data / f"{shift}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = CliRunner().invoke(app, ["eval", "smollm2-135m", "--data-dir", str(data), "--device", "cpu",
                                      "--output", str(tmp_path / "swapped.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "swapped.json").read_text())
    for shift in SHIFTS:
        metrics = report["shifts"][shift]
        assert metrics["below_chance"] is True and metrics["chance_p"] < 0.01, (shift, metrics)
        assert metrics["acc"] < 0.3
    assert "below chance" in result.output and "check the dataset's orientation" in result.output

    mini = evaluate("smollm2-135m", suite="mini", limit=40, device="cpu", output=str(tmp_path / "mini.json"))
    assert not any(m["below_chance"] for m in mini.report["shifts"].values()), mini.report["shifts"]
