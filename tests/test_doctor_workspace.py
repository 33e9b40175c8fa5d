"""`innerdpo doctor` on a real workspace: two tiny-random runs (a trained `dpo` run and the base model's `none` row)
queued and worked through by the real CLI once per module, then each corruption of issue 33 alone, put back after
every test. Each one must be named with its file, its repair must leave no result deleted, and a lost store must come
back from runs/ as the same `innerdpo runs` table."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from innerdpo_bench.cli.main import app
from innerdpo_bench.store import STORE_FILE, Store

pytestmark = pytest.mark.slow
runner = CliRunner()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, tiny_model_path):
    """(workspace, a copy of it as built): run 1 dpo (2 steps on mini:train), run 2 the base model, both scored on
    4 rows of each mini shift by `innerdpo worker --once`."""
    root = tmp_path_factory.mktemp("doctor-workspace")
    home = root / "home"
    for args in (["queue", "add", "dpo", "--base-model", "tiny-random", "--dataset", "mini:train", "--max-rows", "8",
                  "--max-steps", "2", "--batch-size", "2", "--effective-batch", "2", "--suite", "mini", "--limit", "4"],
                 ["queue", "add-base", "tiny-random", "--suite", "mini", "--limit", "4"],
                 ["worker", "--devices", "cpu", "--once", "--poll", "0.2"]):
        done = runner.invoke(app, [*args, "--home", str(home)])   # in process: the worker's stages are processes
        assert done.exit_code == 0, done.output
    with Store(home) as store:
        assert [run.status for run in store.list_runs()] == ["done", "done"]
    sqlite3.connect(home / STORE_FILE).execute("PRAGMA wal_checkpoint(TRUNCATE)").close()
    shutil.copytree(home, root / "pristine")
    return home, root / "pristine"


@pytest.fixture
def home(pristine):
    """The module's workspace, as it was built again after the test."""
    workspace, copy = pristine
    yield workspace
    shutil.rmtree(workspace)
    shutil.copytree(copy, workspace)


def doctor(home, *flags):
    return runner.invoke(app, ["doctor", "--home", str(home), *flags])


def problems(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("problem:")]


def runs_of(home) -> dict:
    with Store(home, create=False, readonly=True) as store:
        return {run.id: run for run in store.list_runs()}


def checkpoint(home) -> Path:
    return Path(runs_of(home)[1].run_dir) / "checkpoint"


def test_the_real_workspace_is_healthy(home):
    """Every recorded number is recomputed (acc, acc_sum, n per shift, coherence, the adapter's sha256) and found
    equal: no false alarm on files exactly as the worker wrote them."""
    result = doctor(home)
    assert result.exit_code == 0 and "healthy" in result.output and "(2 run(s))" in result.output, result.output


def _edit_accuracy(home) -> tuple[Path, str]:
    path = checkpoint(home) / "eval.json"
    report = json.loads(path.read_text())
    true = report["shifts"]["in_domain"]["acc"]
    report["shifts"]["in_domain"]["acc"] = 0.125 if true != 0.125 else 0.375
    path.write_text(json.dumps(report))
    return path, f"in_domain acc is {report['shifts']['in_domain']['acc']!r}, its rows give {true!r} (the store " \
                 f"holds in_domain acc {true!r})"


def _truncate_config(home) -> tuple[Path, str]:
    path = checkpoint(home) / "config.json"
    path.write_bytes(path.read_bytes()[:40])
    return path, "is not valid JSON"


def _garble_metrics(home) -> tuple[Path, str]:
    path = checkpoint(home) / "metrics.jsonl"
    lines = path.read_text().splitlines()
    lines[0] = lines[0][:20] + "\x00\x00garbled" + lines[0][30:]
    path.write_text("\n".join(lines) + "\n")
    return path, f"1 of {len(lines)} lines are not JSON records (first: line 1)"


def _flip_adapter_bytes(home) -> tuple[Path, str]:
    """Bytes of a tensor, past the header: the file still loads (its weights are NaN or wrong), only its sha256
    tells."""
    path = checkpoint(home) / "adapter" / "adapter_model.safetensors"
    data = bytearray(path.read_bytes())
    data[-64:-48] = b"\xff" * 16
    path.write_bytes(bytes(data))
    return path, "sha256 is not the adapter_sha256 eval.json records"


def _edit_store(home) -> tuple[Path, str]:
    with sqlite3.connect(home / STORE_FILE) as con:
        con.execute("UPDATE results SET value = 0.0625 WHERE run_id = 2 AND shift = 'orthogonal' AND metric = 'acc'")
    con.close()
    return Path(runs_of(home)[2].run_dir) / "eval.json", "orthogonal acc 0.0625 in the store"


def _orphan(home) -> tuple[Path, str]:
    """The store forgets run 2 (as a store replaced by an older copy would): its directory is an orphan."""
    run_dir = Path(runs_of(home)[2].run_dir)
    with Store(home) as store:
        store.remove(2)
    return run_dir, "is not in the store"


# corruption → (make it: home → (the path the problem names, words of the problem), what --repair does)
FAULTS = {
    "edited eval.json accuracy": (_edit_accuracy, "reevaluate"),
    "truncated config.json": (_truncate_config, "retrain"),
    "garbled metrics.jsonl": (_garble_metrics, "rewrite"),
    "flipped adapter bytes": (_flip_adapter_bytes, "retrain"),
    "store results edited": (_edit_store, "record"),
    "orphan run directory": (_orphan, "import"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_corruption_is_named_and_repaired_without_losing_a_result(home, fault):
    make, repair = FAULTS[fault]
    before = runs_of(home)
    table = runner.invoke(app, ["runs", "--home", str(home), "--format", "csv"]).output
    path, words = make(home)
    result = doctor(home)
    assert result.exit_code == 1, result.output
    found = problems(result.output)
    assert len(found) == 1 and str(path) in found[0] and words in found[0], result.output
    assert "--repair would" in result.output
    garbled = path.read_bytes() if repair == "rewrite" else None

    repaired = doctor(home, "--repair")
    assert repaired.exit_code == 0 and "1 repaired, 0 left" in repaired.output, repaired.output
    assert doctor(home).exit_code == 0
    after = runs_of(home)
    for run_id, run in before.items():   # no result is lost: every run keeps (or gets back) its recorded values
        assert after[run_id].results == run.results and after[run_id].run_dir == run.run_dir
    requeued = {run_id for run_id, run in after.items() if run.status == "queued"}
    assert requeued == ({1} if repair in ("reevaluate", "retrain") else set())
    aside = checkpoint(home).parent / "checkpoint.attempt-1"
    assert aside.is_dir() == (repair == "retrain")
    if repair == "retrain":   # the checkpoint is kept as it was, corruption included, for a look
        assert (aside / path.relative_to(checkpoint(home))).is_file() and not checkpoint(home).exists()
    if repair in ("reevaluate", "retrain"):
        assert "innerdpo doctor --repair: queued again" in (checkpoint(home).parent / "worker.log").read_text()
    if repair == "rewrite":
        assert path.with_name("metrics.jsonl.garbled").read_bytes() == garbled
        assert all(isinstance(json.loads(line), dict) for line in path.read_text().splitlines())
    if repair in ("record", "import"):
        assert runner.invoke(app, ["runs", "--home", str(home), "--format", "csv"]).output == table


def test_a_store_run_whose_directory_is_gone_is_reported_and_kept(home):
    run_dir = Path(runs_of(home)[2].run_dir)
    shutil.rmtree(run_dir)
    for flags in ((), ("--repair",)):
        result = doctor(home, *flags)
        assert result.exit_code == 1 and f"its directory {run_dir} is missing" in result.output, result.output
    assert runs_of(home)[2].results   # its results stay in the store


def test_a_run_removed_with_queue_rm_is_not_an_orphan(home):
    removed = runner.invoke(app, ["queue", "rm", "2", "--home", str(home)])
    assert removed.exit_code == 0, removed.output
    result = doctor(home, "--repair")
    assert result.exit_code == 0 and "healthy" in result.output, result.output
    assert sorted(runs_of(home)) == [1]


@pytest.mark.parametrize("loss", ["deleted", "0 bytes", "deleted, run dirs without run.json"])
def test_a_lost_store_is_rebuilt_from_runs_to_the_same_table(home, loss):
    """A deleted store, or one cut to 0 bytes, beside its run directories; directories that older workers wrote
    (no run.json) are imported from train_spec.json and eval.json: the same table, the same training config."""
    tables = {fmt: runner.invoke(app, ["runs", "--home", str(home), "--format", fmt]).output
              for fmt in ("table", "csv", "json")}
    store = home / STORE_FILE
    for path in home.glob(STORE_FILE + "*"):
        path.unlink()
    if loss == "0 bytes":
        store.write_bytes(b"")
    old_dirs = "without run.json" in loss
    for path in home.glob("runs/*/run.json") if old_dirs else ():
        path.unlink()
    result = doctor(home)
    assert result.exit_code == 1, result.output
    found = problems(result.output)
    assert len(found) == 3 and str(store) in found[0] and ("is empty" if loss == "0 bytes" else "is missing") in found[0]
    assert all("is not in the store" in line for line in found[1:])
    repaired = doctor(home, "--repair")
    assert repaired.exit_code == 0 and "3 repaired, 0 left" in repaired.output, repaired.output
    assert doctor(home).exit_code == 0
    assert runner.invoke(app, ["runs", "--home", str(home)]).output == tables["table"]
    assert runner.invoke(app, ["runs", "--home", str(home), "--format", "csv"]).output == tables["csv"]
    kept = ("id", "name", "kind", "status", "attempts", "exit_code", "error", "run_dir", "priority", "results",
            "provenance", "row", *(() if old_dirs else ("spec", "created_at")))
    rebuilt = json.loads(runner.invoke(app, ["runs", "--home", str(home), "--json"]).output)
    original = json.loads(tables["json"])
    assert [{key: record[key] for key in kept} for record in rebuilt] == \
        [{key: record[key] for key in kept} for record in original]
    if old_dirs:   # the sweep label lived only in the store; the training config and eval settings come back
        assert [record["spec"].get("train") for record in rebuilt] == [record["spec"].get("train") for record in original]
        assert [record["spec"]["eval"] for record in rebuilt] == [record["spec"]["eval"] for record in original]
        assert "from its train_spec.json and eval.json (no run.json)" in result.output
    if loss == "0 bytes":
        assert [path.stat().st_size for path in home.glob(STORE_FILE + ".broken-*")] == [0]   # kept, not deleted


def test_a_repaired_run_is_scored_again_by_a_worker_and_ends_as_it_was(home):
    """The whole loop: an edited accuracy, --repair queues the run, a real worker scores it again; eval.json, the
    store and doctor agree with the original numbers."""
    true = runs_of(home)[1].results["in_domain"]["acc"]
    _edit_accuracy(home)
    assert doctor(home, "--repair").exit_code == 0
    worked = runner.invoke(app, ["worker", "--home", str(home), "--devices", "cpu", "--once", "--poll", "0.2"])
    assert worked.exit_code == 0, worked.output
    assert doctor(home).exit_code == 0
    run = runs_of(home)[1]
    assert run.status == "done" and run.results["in_domain"]["acc"] == true
    assert json.loads((checkpoint(home) / "eval.json").read_text())["shifts"]["in_domain"]["acc"] == true
