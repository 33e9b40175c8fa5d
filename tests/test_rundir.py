"""The run layout (`rundir`: every path of a training run and a queue run, the rows file, the adapter checksum)
and the eval.json schema (`evalreport.read_eval_report`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from innerdpo_bench import files, rundir
from innerdpo_bench.errors import UserError
from innerdpo_bench.evaluation.report import read_eval_report
from innerdpo_bench.rundir import RunPaths, TrainPaths
from innerdpo_bench.store import Store

ROOT = Path("/r")

TRAIN_PATHS = {
    "config": "config.json", "status": "status.json", "adapter": "adapter", "transforms_config": "transforms.json",
    "transforms_weights": "transforms.safetensors", "metrics": "metrics.jsonl", "progress": "progress.json",
    "train_log": "train.log",
    "eval_json": "eval.json",
}
QUEUE_PATHS = {  # kind → property → path under the run directory
    "train_eval": {"worker_log": "worker.log", "train_log": "train.log", "eval_log": "eval.log",
                   "child": "worker.json", "train_spec": "train_spec.json", "eval_json": "checkpoint/eval.json",
                   "record": "run.json"},
    "eval": {"worker_log": "worker.log", "train_log": "train.log", "eval_log": "eval.log", "child": "worker.json",
             "train_spec": "train_spec.json", "eval_json": "eval.json", "record": "run.json"},
}


def properties(cls) -> set[str]:
    return {name for name, value in vars(cls).items() if isinstance(value, property)}


@pytest.mark.parametrize("name, relative", TRAIN_PATHS.items())
def test_train_paths(name, relative):
    assert getattr(TrainPaths(ROOT), name) == ROOT / relative


def test_every_train_path_is_in_the_table():
    assert properties(TrainPaths) == set(TRAIN_PATHS)


@pytest.mark.parametrize("kind, name, relative", [(kind, name, relative) for kind, table in QUEUE_PATHS.items()
                                                  for name, relative in table.items()])
def test_queue_run_paths(kind, name, relative):
    assert getattr(RunPaths(ROOT, kind), name) == ROOT / relative


def test_queue_run_paths_nest_the_training_run_and_name_logs_and_asides():
    paths = RunPaths(ROOT, "train_eval")
    assert properties(RunPaths) == set(QUEUE_PATHS["train_eval"]) | {"checkpoint", "logs"}
    assert paths.checkpoint == TrainPaths(ROOT / "checkpoint")
    assert paths.eval_json == paths.checkpoint.eval_json
    assert paths.logs == {name: ROOT / name for name in ("train.log", "eval.log", "worker.log")}
    assert paths.aside(2) == ROOT / "checkpoint.attempt-2"


def test_paths_of_a_store_run(tmp_path):
    with Store(tmp_path) as store:
        (train_id,) = store.add_runs([{"name": "dpo", "train": {"method": "dpo", "seed": 3}}])
        base_id = store.add_run({"name": "none", "eval": {"checkpoint": "/models/tiny-random"}}, kind="eval")
        run, base = store.get_run(train_id), store.get_run(base_id)
        assert rundir.default_run_dir(tmp_path, run) == tmp_path / "runs" / f"{train_id}-dpo-s3"
        assert rundir.default_run_dir(tmp_path, base) == tmp_path / "runs" / f"{base_id}-none-tiny-random"
        with pytest.raises(ValueError, match="no run directory"):
            RunPaths.of(run)
        store.set_run_dir(train_id, tmp_path / "x")
        assert RunPaths.of(store.get_run(train_id)) == RunPaths(tmp_path / "x", "train_eval")


@pytest.mark.parametrize("eval_name, rows_name", [("eval.json", "eval_rows.jsonl"), ("eval-x.json", "eval-x_rows.jsonl")])
def test_rows_file_name_and_back(eval_name, rows_name):
    assert rundir.rows_path_for(ROOT / eval_name) == ROOT / rows_name
    assert rundir.eval_path_for_rows(ROOT / rows_name) == ROOT / eval_name
    assert rundir.eval_path_for_rows(ROOT / eval_name) is None


def test_adapter_checksum_prefers_safetensors_and_follows_the_file(tmp_path):
    assert rundir.adapter_sha256(None) is None and rundir.adapter_sha256(tmp_path) is None
    (tmp_path / "adapter_model.bin").write_bytes(b"bin")
    assert rundir.adapter_sha256(tmp_path) == hashlib.sha256(b"bin").hexdigest()
    (tmp_path / "adapter_model.safetensors").write_bytes(b"weights")
    assert rundir.adapter_sha256(tmp_path) == hashlib.sha256(b"weights").hexdigest()
    (tmp_path / "adapter_model.safetensors").write_bytes(b"new weights")  # another size: not the cached digest
    assert rundir.adapter_sha256(tmp_path) == hashlib.sha256(b"new weights").hexdigest()


# --------------------------------------------------------------------------- eval.json


REPORT = {"checkpoint": "/r", "kind": "run", "adapter": "/r/adapter", "seed": 3, "limit": 8, "batch_size": "auto",
          "shifts": {"in_domain": {"acc": 0.5, "acc_stderr": None, "n": 8}}, "rows_file": "eval_rows.jsonl",
          "coherence": {"nll": 1.0, "base_nll": 1.0, "nll_ratio": 1.0, "nll_diff": 0.0},
          "provenance": {"in_domain": {"dataset": "innerdpo_bench.data.mini", "split": "in_domain"}},
          "cache": {"hit": False, "key": "k"}, "unknown_key": ["kept", "as", "is"]}


def write(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_read_eval_report_returns_a_valid_report(tmp_path):
    assert read_eval_report(write(tmp_path / "eval.json", REPORT), required=("shifts",)) == REPORT


@pytest.mark.parametrize("change, message", [
    ({"rows_file": 3}, "'rows_file' must be a string, not a number"),
    ({"seed": "3"}, "'seed' must be an integer or null, not a string"),
    ({"seed": True}, "'seed' must be an integer or null, not a boolean"),
    ({"shifts": {"in_domain": {"acc": "high"}}}, "'shifts.in_domain.acc' must be a number or a boolean or null, not a string"),
    ({"shifts": []}, "'shifts' must be an object, not a list"),
    ({"coherence": {"nll_ratio": "1"}}, "'coherence.nll_ratio' must be a number or null, not a string"),
    ({"cache": {"hit": 1}}, "'cache.hit' must be a boolean, not a number"),
    ({"batch_size": 1.5}, "'batch_size' must be an integer or a string, not a number"),
])
def test_read_eval_report_rejects_a_wrong_typed_key_naming_the_file(tmp_path, change, message):
    path = write(tmp_path / "eval.json", {**REPORT, **change})
    with pytest.raises(UserError) as raised:
        read_eval_report(path)
    assert str(raised.value).startswith(f"{path}: {message}")


@pytest.mark.parametrize("content, message", [
    (None, "is missing"), ("{", "is not valid JSON"), ("[1]", "holds a list, not an eval.json object"),
    ('{"kind": "run"}', "has no 'shifts'"),
])
def test_read_eval_report_names_the_file_when_it_cannot_be_read(tmp_path, content, message):
    path = tmp_path / "eval.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=message) as raised:
        read_eval_report(path, required=("shifts",))
    assert str(path) in str(raised.value)


def test_atomic_writes_keep_the_users_umask_not_mkstemps_0600(tmp_path):
    """A file written atomically gets the mode a plain open() gives it (0644 under umask 022)."""
    import os

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    files.atomic_write_text(tmp_path / "atomic.txt", "x")
    mode = lambda p: os.stat(p).st_mode & 0o777  # noqa: E731
    assert mode(tmp_path / "atomic.txt") == mode(plain) == files.FILE_MODE
    assert files.FILE_MODE & 0o044  # group and others can read, as with every other file the user writes


def test_a_trained_run_and_a_built_base_follow_the_umask(trained_run, tiny_model_path):
    """safetensors' save_file writes 0600 and mkdtemp makes 0700; what a run or a model build publishes does not."""
    import os
    import stat

    for root in (Path(trained_run), Path(tiny_model_path)):
        entries = [root, *root.rglob("*")]
        assert any(p.suffix == ".safetensors" for p in entries)
        for path in entries:
            if path.is_symlink():
                continue
            mode = stat.S_IMODE(os.stat(path).st_mode)
            assert mode == (files.DIR_MODE if path.is_dir() else files.FILE_MODE), path
