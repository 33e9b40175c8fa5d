"""Output that is not a terminal (CliRunner, a pipe, a CI log): long commands print plain progress lines, and
tables print every value in full, never cut to 80 columns with `…`."""

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from innerdpo_bench import progress
from innerdpo_bench.cli.main import app
from innerdpo_bench.evaluation.suites import SHIFTS
from innerdpo_bench.store import Store

from helpers.runs import pattern, store_run, write_run
from helpers.worker import add, fake_spec

runner = CliRunner()
LONG = "hs-ether-InnerDPO-sweep-of-align-methods-with-a-long-descriptive-name-lr3e-4-alpha0.25-layers-4-to-12"
LINE = re.compile(r"^\[\d+(s|m\d\ds|h\d\dm)\] ")   # the elapsed-time prefix of a progress line


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def progress_lines(output: str) -> list[str]:
    return [line.rstrip("…") for line in output.splitlines() if LINE.match(line)]


# --------------------------------------------------------------------------- progress lines


def test_progress_lines_print_each_stage_and_every_tenth():
    said, now = [], [0.0]
    lines = progress.ProgressLines(said.append, clock=lambda: now[0])
    for step in range(0, 101):
        now[0] = step * 1.5
        lines.update("training dpo", step, 100)
    assert [line.split("] ")[1] for line in said] == [f"training dpo {k * 10}/100 ({k * 10}%)" for k in range(11)]
    assert said[-1].startswith("[2m30s] ")
    lines.update("evaluating")
    lines.update("evaluating")   # same stage, no count: nothing new
    lines.update("training ipo", 7, 30, "loss 0.6931")   # a new stage prints at once, wherever it starts
    assert [line.split("] ")[1] for line in said[11:]] == ["evaluating", "training ipo 7/30 (23%) loss 0.6931"]
    assert not lines.update("training ipo", 8, 30)   # 8/30 crosses no new tenth (9/30 does)
    assert lines.update("training ipo", 9, 30)
    assert [progress.format_elapsed(s) for s in (0, 59, 61, 3600 + 5 * 60)] == ["0s", "59s", "1m01s", "1h05m"]


def test_last_step_reads_the_last_complete_record(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    assert progress.last_step(metrics) is None
    metrics.write_text(json.dumps({"step": 3, "loss": 0.7}) + "\n" + json.dumps({"step": 4}) + '\n{"step": 5, "lo')
    assert progress.last_step(metrics) == 4


def test_train_prints_a_line_every_tenth_of_its_steps(tmp_path, tiny_model_path):
    result = invoke("train", "dpo", "--base-model", "tiny-random", "--dataset", "mini:train", "--max-rows", 16,
                    "--max-steps", 10, "--batch-size", 2, "--effective-batch", 2, "--output-dir", tmp_path / "run")
    assert result.exit_code == 0, result.output
    lines = progress_lines(result.output)
    assert [line.split("] ", 1)[1].split(" loss")[0] for line in lines] == [
        f"training dpo data=mini:train rows=16 {k}/10 ({k * 10}%)" for k in range(11)]
    assert "loss " in lines[-1] and " acc " in lines[-1]


def test_eval_prints_request_progress_and_its_whole_table(trained_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    result = invoke("eval", run, "--suite", "mini", "--limit", 8, "--device", "cpu", "--no-cache")
    assert result.exit_code == 0, result.output
    lines = progress_lines(result.output)
    for stage in ("scoring with the base model", "scoring with the run"):
        passes = [line for line in lines if f"] {stage} " in line]
        assert passes and passes[-1].endswith("(100%)"), lines   # 64 requests: 2 per row, 8 rows, 4 shifts
        assert all(re.search(r" \d+/64 \(\d+%\)$", line) for line in passes), passes
    report = json.loads((run / "eval.json").read_text())
    assert "…" not in result.stdout   # the table (stderr's status lines end in "…")
    for shift in SHIFTS:
        metrics = report["shifts"][shift]
        assert f"{metrics['acc']:.3f}±{metrics['acc_stderr']:.3f}" in result.stdout


def test_the_worker_says_each_stage_of_a_run(home, fake_stage):  # noqa: F811
    add(home, fake_spec())
    with Store(home):
        pass
    import threading

    from innerdpo_bench.queue import worker as queue_worker

    said = []
    queue_worker.Worker(home, None, queue_worker.WorkerOptions(poll_s=0.05, once=True), threading.Event(),
                        say=said.append).loop()
    stages = [line.split("] ", 1)[1] for line in said if LINE.match(line)]
    # the spec holds the whole config (max_steps 500 by default); the fake stage logs no step
    assert stages == ["run 1 (dpo): training 0/500 (0%)", "run 1 (dpo): evaluating"], said


# --------------------------------------------------------------------------- tables in full


@pytest.fixture
def long_names(tmp_path):
    """A store with a base row and two runs whose method name is far wider than 80 columns."""
    home = tmp_path / "home"
    base = {s: pattern(13, 6) for s in SHIFTS}
    with Store(home) as store:
        ids = [store_run(store, home, {s: pattern(13, right) for s, right in zip(SHIFTS, (7, 8, 9, 11))},
                         method=LONG, base_correct=base, seed=1),
               store_run(store, home, {s: pattern(13, right) for s, right in zip(SHIFTS, (5, 6, 4, 3))},
                         method=LONG.replace("ether", "supr"), base_correct=base, seed=2)]
    return home, ids


def assert_in_full(output: str, *needles: str) -> None:
    assert "…" not in output, output
    for needle in needles:
        assert needle in output, (needle, output)


def test_runs_and_queue_ls_print_long_names_and_every_accuracy(long_names):
    home, ids = long_names
    result = invoke("runs", "--home", home)
    assert result.exit_code == 0, result.output
    assert_in_full(result.output, LONG, LONG.replace("ether", "supr"), "0.538", "0.615", "0.692", "0.846", "0.231")
    with Store(home) as store:
        store.add_run({"name": LONG + "-queued", "train": {"method": "dpo", "seed": 3}, "eval": {}})
    result = invoke("queue", "ls", "--home", home, "--all")
    assert result.exit_code == 0, result.output
    assert_in_full(result.output, LONG + "-queued", LONG.replace("ether", "supr"))


def test_compare_and_transfer_print_every_number(long_names):
    home, (a, b) = long_names
    result = invoke("compare", a, b, "--home", home)
    assert result.exit_code == 0, result.output
    assert_in_full(result.output, "0.538", "0.385", "McNemar")
    result = invoke("transfer", a, "--home", home)
    assert result.exit_code == 0, result.output
    assert_in_full(result.output, "difficulty_scaling", "moral_transfer")


def test_gate_prints_its_whole_table(tmp_path):
    baseline = write_run(tmp_path / "baseline", {s: pattern(20, 12) for s in SHIFTS}, method="dpo")
    candidate = write_run(tmp_path / "candidate", {s: pattern(20, 11) for s in SHIFTS}, method=LONG)
    result = invoke("gate", candidate, "--baseline", baseline, "--min", "all=0.1")
    assert result.exit_code == 0, result.output
    assert_in_full(result.output, "0.550", "0.600", "difficulty_scaling", "within noise")


# --------------------------------------------------------------------------- plot's default place


def test_plot_writes_into_the_workspace_never_the_current_directory(long_names, tmp_path, monkeypatch):
    home, (a, _) = long_names
    monkeypatch.chdir(tmp_path)
    result = invoke("plot", "--home", home)
    assert result.exit_code == 0, result.output
    target = home / "plots" / "shifts-acc.png"
    assert target.is_file() and f"plot: {target}" in result.output
    assert not list(tmp_path.glob("*.png"))
    bare = invoke("plot", home / "runs" / f"{a}-{LONG}" / "checkpoint", "--home", tmp_path / "none")
    assert bare.exit_code == 2 and "give --out FILE" in bare.output and not list(tmp_path.glob("*.png"))


def test_models_path_prints_only_a_builtin_base_directory(tiny_model_path, tmp_path):
    result = runner.invoke(app, ["models", "path", "tiny-random"])
    assert result.exit_code == 0 and result.stdout == f"{tiny_model_path}\n", result.output
    assert (Path(result.stdout.strip()) / "config.json").is_file()
    result = runner.invoke(app, ["models", "path", str(tmp_path)])
    assert result.exit_code == 2 and "not a built-in base model (tiny-random, smollm2-135m)" in result.output
