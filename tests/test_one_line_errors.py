"""The tracebacks of issue 33's probe, each now one line naming the flag, file or id, with exit code 2 (1 for a full
disk), and nothing written or queued: flag bounds, a file that is not parquet, an --output-dir that is a file, a run
id past SQLite's integers, an unfinished run directory (the hint names --resume), and a full disk while training
writes its `failed` status."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from innerdpo_bench import rundir
from innerdpo_bench.cli.main import app
from innerdpo_bench.store import Store

from helpers.store import tmpfs

runner = CliRunner()
TRAIN = ["train", "dpo", "--base-model", "tiny-random", "--dataset", "mini:train", "--max-steps", "1"]
QUEUE = ["queue", "add", "dpo", "--base-model", "tiny-random", "--dataset", "mini:train"]
HUGE = str(10**20)   # past SQLite's 64-bit integers


def one_error_line(result, code: int, *words: str) -> str:
    """The command's only output line, after checking the exit code, no traceback and `words` in it."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == code and "Traceback" not in result.output, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert all(word in lines[0] for word in words), lines[0]
    return lines[0]


@pytest.mark.parametrize("flags, words", [
    (["--lora-dropout", "1.5"], ["--lora-dropout", "1.5"]),
    (["--lora-dropout", "nan"], ["--lora-dropout", "nan"]),
    (["--seed", "-1"], ["--seed", "-1"]),
    (["--seed", str(2**64)], ["--seed", str(2**64)]),
])
def test_out_of_range_flags_are_refused_by_train_and_queue_add(tmp_path, flags, words):
    out = tmp_path / "run"
    one_error_line(runner.invoke(app, [*TRAIN, *flags, "--output-dir", str(out)]), 2, *words)
    assert not out.exists()
    home = tmp_path / "home"
    one_error_line(runner.invoke(app, [*QUEUE, *flags, "--home", str(home)]), 2, *words)
    if (home / "store.sqlite").exists():
        with Store(home, readonly=True, create=False) as store:
            assert store.list_runs() == []


def test_the_edges_of_the_seed_range_are_accepted():
    from innerdpo_bench.config import TrainConfig

    for seed in (0, 2**32 - 1):
        TrainConfig(method="dpo", base_model="tiny-random", dataset="mini:train", seed=seed).validate()


@pytest.mark.parametrize("content", [b"garbage", b"PAR1 not really PAR1", b""])
def test_a_dataset_that_is_not_parquet_names_the_file(tmp_path, tiny_model_path, content):
    data = tmp_path / "x.parquet"
    data.write_bytes(content)
    one_error_line(runner.invoke(app, [*TRAIN[:4], "--dataset", str(data), "--max-steps", "1", "--output-dir",
                                       str(tmp_path / "run")]), 2, str(data), "not a readable parquet file")


def test_an_output_dir_that_is_a_file_is_named(tmp_path):
    existing = tmp_path / "afile"
    existing.write_text("mine")
    for target in (existing, existing / "below"):
        one_error_line(runner.invoke(app, [*TRAIN, "--output-dir", str(target)]), 2, "--output-dir", str(existing))
    assert existing.read_text() == "mine"


@pytest.mark.parametrize("state, hint", [("interrupted", "--resume"), ("failed", "--resume"),
                                         ("complete", "choose another --output-dir")])
def test_a_run_directory_that_holds_a_run_says_what_to_do(tmp_path, state, hint):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / rundir.STATUS).write_text(json.dumps({"state": state}))
    line = one_error_line(runner.invoke(app, [*TRAIN, "--output-dir", str(run_dir)]), 2, str(run_dir), hint)
    assert ("--resume" in line) == (state != "complete")


@pytest.mark.parametrize("command", [["queue", "rm", HUGE], ["queue", "cancel", HUGE], ["queue", "retry", HUGE],
                                     ["queue", "log", HUGE], ["queue", "move", HUGE, "--to-front"],
                                     ["queue", "move", "1", "--before", HUGE], ["rescore", HUGE]])
def test_a_run_id_past_sqlites_integers_is_no_run(tmp_path, command):
    home = tmp_path / "home"
    with Store(home) as store:
        store.add_run({"name": "dpo", "train": {}, "eval": {}})
    one_error_line(runner.invoke(app, [*command, "--home", str(home)]), 2, f"no run with id {HUGE}")
    with Store(home, readonly=True, create=False) as store:
        assert [run.status for run in store.list_runs()] == ["queued"]


# --------------------------------------------------------------------------- a full disk (a real tmpfs: root, Linux)


def _fill(disk: Path) -> None:
    """Write a file until the filesystem refuses: nothing more fits."""
    with open(disk / "filler", "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass


def test_on_a_full_disk_the_failed_status_is_written_in_place(tmp_path):
    """status.json already exists (training writes `running` first): its block takes the `failed` record when no
    temporary file can be written; with no status.json at all the OSError is raised for the caller to report."""
    with tmpfs(tmp_path / f"full-{uuid.uuid4().hex[:6]}", "64k") as disk:
        run_dir = disk / "run"
        run_dir.mkdir()
        rundir.write_status(run_dir, "running", started="then")
        (disk / "empty").mkdir()
        _fill(disk)
        with pytest.raises(OSError):
            rundir.atomic_write_text(disk / "probe.json", "{}")   # the disk is full indeed
        rundir.write_status(run_dir, "failed", error="No space left on device")
        assert rundir.read_status(run_dir) | {"updated": None} == {
            "state": "failed", "error": "No space left on device", "started": "then", "updated": None}
        with pytest.raises(OSError):
            rundir.write_status(disk / "empty", "failed", error="x")


@pytest.mark.slow
def test_training_on_a_full_disk_fails_in_one_line_and_marks_the_run_failed(tmp_path, tiny_model_path):
    """`innerdpo train` (in process) whose --output-dir is a 512 KiB tmpfs: the adapter (about 1 MB) cannot be saved; the
    command says so in one line, exit 1, and the run's status.json ends `failed` with the reason; train.log holds
    no traceback."""
    with tmpfs(tmp_path / f"full-{uuid.uuid4().hex[:6]}", "512k") as disk:
        run_dir = disk / "run"
        done = runner.invoke(app, [*TRAIN, "--max-rows", "8", "--batch-size", "2", "--effective-batch", "2", "--quiet",
                                   "--output-dir", str(run_dir)])
        one_error_line(done, 1, "the disk is full", "No space left on device")
        status = rundir.read_status(run_dir)
        assert status["state"] == "failed" and "No space left on device" in status["error"]
        assert "Traceback" not in (run_dir / rundir.TRAIN_LOG).read_text()


@pytest.mark.parametrize("args, words", [
    (["train", "dpo", "--bogus"], ["train: No such option: --bogus", "train -h for help"]),
    (["queue", "add", "dpo", "--max-steps", "1e20"], ["queue add: Invalid value for '--max-steps'"]),
    (["eval"], ["eval: Missing argument"]),
    (["bogus"], ["No such command 'bogus'"]),
])
def test_a_usage_error_from_the_real_entry_point_is_one_line(tmp_path, args, words):
    """Through `python -m innerdpo_bench` (the installed `innerdpo`'s `main`), not typer's test runner: the usage
    errors typer would draw as a box are one line naming the command (as invoked: `python -m innerdpo_bench ...`
    here), exit 2."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "innerdpo_bench", *args, "--home", str(tmp_path / "home")]
                          if args[0] == "queue" else [sys.executable, "-m", "innerdpo_bench", *args],
                          capture_output=True, text=True, timeout=120)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stdout + proc.stderr
    assert all(word in lines[0] for word in words), lines[0]
    assert not (tmp_path / "home").exists()
