"""--report-to: TensorBoard event files in the run directory with the loss scalar and the resolved config, eval
results pushed beside them, and one clear line for an unknown or uninstalled tracker."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from innerdpo_bench.config import TrainConfig
from innerdpo_bench.config.trackers import parse_report_to
from innerdpo_bench.errors import UserError
from innerdpo_bench.train.trackers import TENSORBOARD_DIR, push_eval, require_installed

CLI = [sys.executable, "-m", "innerdpo_bench"]


def scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found: dict[str, list] = {}
    for events in sorted(folder.glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            found.setdefault(tag, []).extend((e.step, e.value) for e in accumulator.Scalars(tag))
        for tag in accumulator.Tags()["tensors"]:  # add_text lands here
            found.setdefault(tag, [])
    return found


def test_tensorboard_event_files_hold_the_loss_and_the_resolved_config(tmp_path, tiny_model_path):
    pytest.importorskip("tensorboard")
    from innerdpo_bench.train.trainer import train

    run_dir = train(TrainConfig(method="dpo", base_model="tiny-random", dataset="mini:train", max_rows=8, max_steps=3,
                                batch_size=2, effective_batch=2, logging_steps=1, report_to="tensorboard",
                                output_dir=str(tmp_path / "run")), progress=False)
    found = scalars(run_dir / TENSORBOARD_DIR)
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [(row["step"], row["loss"]) for row in metrics if "loss" in row]
    assert [step for step, _ in found["train/loss"]] == [1, 2, 3]
    assert [value for _, value in found["train/loss"]] == pytest.approx([value for _, value in losses], abs=1e-6)
    assert "innerdpo/config/text_summary" in found

    report = {"display_name": "dpo", "shifts": {"in_domain": {"acc": 0.75, "n": 4, "below_chance": False}},
              "aggregate": {"acc": 0.75, "n": 4}}
    lines = push_eval(["tensorboard"], report, run_dir, step=3)
    assert lines == [f"tensorboard: 4 scalars in {run_dir / TENSORBOARD_DIR}"]
    found = scalars(run_dir / TENSORBOARD_DIR)
    assert found["eval/in_domain/acc"] == [(3, 0.75)]
    assert found["eval/aggregate/n"] == [(3, 4.0)]


@pytest.mark.parametrize(("text", "expected"), [
    ("none", []), ("", []), ("tensorboard", ["tensorboard"]), ("tensorboard, wandb,tensorboard", ["tensorboard", "wandb"])])
def test_parse_report_to(text, expected):
    assert parse_report_to(text) == expected


def test_an_uninstalled_tracker_names_the_extra():
    import importlib.util

    missing = next((name for name in ("mlflow", "wandb") if importlib.util.find_spec(name) is None), None)
    if missing is None:
        pytest.skip("wandb and mlflow are both installed")
    with pytest.raises(UserError, match=rf"--report-to {missing}: {missing} is not installed; "
                                        rf"pip install 'innerdpo-bench\[{missing}\]'"):
        require_installed([missing])


@pytest.mark.parametrize("command", [["train", "dpo", "--base-model", "tiny-random"], ["eval", "tiny-random"]])
def test_an_unknown_tracker_is_one_line_and_exit_2(tmp_path, command):
    result = subprocess.run([*CLI, *command, "--report-to", "tensorbord"], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "unknown tracker 'tensorbord'" in lines[0] and "tensorboard" in lines[0]
