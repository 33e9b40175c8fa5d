"""The dashboard's pure helpers (progress, file follower, eval spec, run config); the CLI never imports textual."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("textual")

from innerdpo_bench.store import Store  # noqa: E402
from innerdpo_bench.tui.data import (  # noqa: E402
    FileFollower,
    Progress,
    eval_spec,
    format_duration,
    progress_of,
    run_config,
)
from innerdpo_bench.tui.queue_view import progress_bar  # noqa: E402

from helpers.tui import NOW, fill_store  # noqa: E402


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """fill_store's workspace: runs 1-4 done with results, 5 running, 6-7 queued."""
    return fill_store(tmp_path / "home")


# --------------------------------------------------------------------------- pure helpers


def test_progress_eta_and_bar(home):
    with Store(home) as store:
        running, done, queued = store.get_run(5), store.get_run(1), store.get_run(6)
    progress = progress_of(running, NOW)
    assert progress == Progress("train", 40, 100, 600.0, 900.0)
    assert progress.fraction == 0.4
    assert progress_of(done, NOW).fraction == 1.0 and progress_of(done, NOW).elapsed_s == 150.0
    assert progress_of(queued, NOW).phase == "queued"
    assert progress_bar(0.4) == "████      "
    assert progress_bar(0.45) == "████▌     "
    assert [format_duration(s) for s in (None, 45, 905, 11_100)] == ["-", "45s", "15m05s", "3h05m"]


def test_file_follower_keeps_partial_lines_and_notices_a_new_file(tmp_path):
    path = tmp_path / "train.log"
    follower = FileFollower(path)
    assert follower.read() == ([], False)             # not there yet
    path.write_text("one\ntw")
    assert follower.read() == (["one"], False)
    with open(path, "a") as log:
        log.write("o\nthree\n")
    assert follower.read() == (["two", "three"], False)
    path.write_text("new\n")                           # replaced by a shorter file
    assert follower.read() == (["new"], True)
    big = tmp_path / "big.log"
    big.write_text("".join(f"line {index}\n" for index in range(10_000)))
    lines, _ = FileFollower(big, tail_bytes=100).read()
    assert lines[-1] == "line 9999" and len(lines) < 12 and lines[0].startswith("line ")


def test_eval_spec_targets_the_checkpoint_and_refuses_unfinished_runs(home):
    from innerdpo_bench.errors import UserError

    with Store(home) as store:
        done, running = store.get_run(4), store.get_run(5)
    spec = eval_spec(done)
    assert spec.eval.to_json() == {"checkpoint": str(home / "runs" / "4" / "checkpoint"), "suite": "mini", "limit": 50}
    assert spec.train.method == "hs-ether-InnerDPO"
    with pytest.raises(UserError, match="no finished checkpoint"):
        eval_spec(running)


def test_config_of_a_queued_run_has_the_same_keys_as_a_trained_one(home):
    with Store(home) as store:
        queued, trained = store.get_run(6), store.get_run(4)
    queued_config, source = run_config(queued)
    trained_config, trained_source = run_config(trained)
    assert (source, trained_source) == ("spec", "config.json")
    assert set(trained_config) - set(queued_config) == {"versions.torch"}


def test_cli_without_the_tui_never_imports_textual():
    code = "import sys, innerdpo_bench.cli.main; print(any(m.split('.')[0] == 'textual' for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
