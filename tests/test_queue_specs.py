"""Queued runs' specs and the worker's stage commands: one spec per seed, seeds, devices, error lines."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from innerdpo_bench import rundir
from innerdpo_bench.config import TrainConfig
from innerdpo_bench.errors import UserError
from innerdpo_bench.queue import launch, process, runspec
from innerdpo_bench.queue import worker as queue_worker
from innerdpo_bench.store import Store

from helpers.worker import add, get


# --------------------------------------------------------------------------- specs and commands


def test_train_specs_one_per_seed_canonical_and_validated(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text('{"hidden_size": 64, "num_hidden_layers": 4}')
    specs = runspec.train_specs(TrainConfig(method="HS-NONE-innerdpo", base_model="model", alpha=1.0, seed=7),
                                seeds=[1, 2], evaluation=runspec.eval_spec("mini", 8))
    assert [spec.train.seed for spec in specs] == [1, 2]
    assert {spec.name for spec in specs} == {"hs-none-InnerDPO α=1"}
    assert specs[0].train.method == "hs-none-InnerDPO"
    assert specs[0].train.base_model == str(tmp_path / "model")  # the worker runs elsewhere
    stored = specs[0].to_json()
    assert "output_dir" not in stored["train"] and stored["eval"] == {"suite": "mini", "limit": 8}
    assert [spec.train.seed for spec in runspec.train_specs(TrainConfig(method="dpo", seed=7))] == [7]
    with pytest.raises(UserError, match="unknown method 'dpx'"):
        runspec.train_specs(TrainConfig(method="dpx"))
    with pytest.raises(UserError, match="suite"):
        runspec.eval_spec(suite="nope")
    with pytest.raises(UserError, match="no config.json"):  # checked at queue time, not by the worker
        runspec.train_specs(TrainConfig(method="dpo", base_model=str(tmp_path)))
    assert runspec.base_spec("tiny-random", "mini", 4).to_json() == {
        "name": "none", "eval": {"checkpoint": "tiny-random", "suite": "mini", "limit": 4}}


@pytest.mark.parametrize("text, expected", [("1,2,3", [1, 2, 3]), ("5", [5]), (None, None)])
def test_parse_seeds(text, expected):
    assert runspec.parse_seeds(text) == expected


@pytest.mark.parametrize("text, message", [("1,x", "comma-separated integers"), (",", "empty"), ("1,1", "repeats")])
def test_parse_seeds_rejects(text, message):
    with pytest.raises(UserError, match=message):
        runspec.parse_seeds(text)


def test_stage_commands_train_from_the_stored_config_and_pass_eval_flags(home):
    spec = {"name": "dpo", "train": {"method": "dpo", "seed": 3, "max_rows": None, "filter_sinks": False,
                                     "norm_before_pool": True, "learning_rate": 1e-05},
            "eval": {"suite": "mini", "limit": 8}}
    (train_id,) = add(home, spec)
    (base_id,) = add(home, {"name": "none", "eval": {"checkpoint": "tiny-random", "suite": None, "limit": 4}},
                     kind="eval")
    with Store(home) as store:
        store.claim_next("w"), store.claim_next("w")
    run, base = get(home, train_id), get(home, base_id)
    run_dir = Path("/r")
    python = [sys.executable, "-m", "innerdpo_bench"]
    assert queue_worker.stage_command(run, "train", run_dir) == [
        *python, "train", "--config", "/r/train_spec.json", "--output-dir", "/r/checkpoint", "--quiet"]
    # evaluation writes into this claim's staging folder; the worker publishes it (RUN/checkpoint/eval.json, RUN/eval.json)
    assert queue_worker.stage_command(run, "eval", run_dir) == [*python, "eval", "/r/checkpoint", "--suite", "mini",
                                                         "--limit", "8", "--output", "/r/eval.attempt-1/eval.json"]
    assert queue_worker.stage_command(base, "eval", run_dir) == [*python, "eval", "tiny-random", "--limit", "4",
                                                          "--output", "/r/eval.attempt-1/eval.json"]
    assert rundir.default_run_dir(home, run) == home / "runs" / f"{train_id}-dpo-s3"
    assert rundir.default_run_dir(home, base) == home / "runs" / f"{base_id}-none-tiny-random"


@pytest.mark.parametrize("log, line", [
    ("noise\nerror: unknown method 'dpx'. Did you mean 'dpo'?\n", "unknown method 'dpx'. Did you mean 'dpo'?"),
    ("Usage: x\n╭─ Error ────╮\n│ No such option: --bogus    │\n╰────────────╯\n", "No such option: --bogus"),
    ("Traceback (most recent call last):\n  File x\nRuntimeError: CUDA out of memory\n", "RuntimeError: CUDA out of memory"),
    ("", ""),
])
def test_error_line_finds_the_reason(log, line):
    assert process.error_line(log) == line


@pytest.mark.parametrize("text, devices", [("0,1", ["0", "1"]), ("cpu", ["cpu"]), (" 3 ", ["3"])])
def test_parse_devices(text, devices):
    assert launch.parse_devices(text) == devices


@pytest.mark.parametrize("text", ["gpu0", "0,0", ""])
def test_parse_devices_rejects(text):
    with pytest.raises(UserError, match="--devices"):
        launch.parse_devices(text)


def test_default_devices_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert launch.default_devices() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert launch.default_devices() == ["cpu"]
