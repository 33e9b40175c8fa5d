"""A newcomer's first hour (issue 33): the default suite needs no network, no network is found out rather than waited
for, long stages print progress when piped, and the hints and messages are true (the demo's, `runs --home FILE`,
`runs --sort` of a score, `innerdpo methods`); and no test leaves a process behind."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from innerdpo_bench import hub, progress
from innerdpo_bench.cli.main import app
from innerdpo_bench.config.spec import RunSpec
from innerdpo_bench.store import Run

runner = CliRunner()
CLI = [sys.executable, "-m", "innerdpo_bench"]


def no_network_env() -> dict[str, str]:
    """This environment with the hub unreachable, as on a machine without a network, and without HF_HUB_OFFLINE
    (what the Makefile sets and a newcomer does not): `.invalid` never resolves (RFC 2606), so this holds in CI
    too."""
    env = {key: value for key, value in os.environ.items()
           if key not in (*hub.OFFLINE_VARIABLES, "HTTPS_PROXY", "https_proxy")}
    return {**env, "HF_ENDPOINT": "https://hub.invalid"}


# --------------------------------------------------------------------------- offline, found out


def test_the_probe_tells_a_listening_endpoint_from_an_unresolvable_one(monkeypatch):
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{listener.getsockname()[1]}")
        monkeypatch.delenv("HTTPS_PROXY", raising=False)
        monkeypatch.delenv("https_proxy", raising=False)
        assert hub.reachable()
        monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
        assert not hub.reachable()
        monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{listener.getsockname()[1]}")   # the proxy carries it
        assert hub.reachable()
    finally:
        listener.close()


@pytest.mark.slow
def test_eval_of_a_run_with_no_network_and_no_suite_scores_the_shipped_suite(trained_run, tmp_path):
    """The default suite is the shipped genies:alpaca_easy: `innerdpo eval RUN` answers with no network and no
    HF_HUB_OFFLINE (the probe said 45 s of hub retries before). The timeout is generous; no duration is asserted."""
    out = tmp_path / "eval.json"
    done = subprocess.run([*CLI, "eval", str(trained_run), "--limit", "2", "--output", str(out)], env=no_network_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["suite"] == "genies:alpaca_easy" and set(report["shifts"]) == {
        "in_domain", "difficulty_scaling", "moral_transfer", "orthogonal"}
    assert "Retrying" not in done.stderr


@pytest.mark.slow
def test_a_hub_suite_with_no_network_is_one_line_without_retries(trained_run):
    done = subprocess.run([*CLI, "eval", str(trained_run), "--suite", "alpaca_easy", "--limit", "2"],
                          env=no_network_env(), capture_output=True, text=True, timeout=600)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(errors) == 1, done.stderr
    assert "wassname/genies_preferences" in errors[0] and "hub.invalid:443) cannot be reached" in errors[0]
    assert "Retrying" not in done.stderr and "Traceback" not in done.stderr


def test_queue_add_with_a_hub_base_and_no_network_queues_without_retry_warnings(tmp_path):
    home = tmp_path / "home"
    done = subprocess.run([*CLI, "queue", "add", "dpo", "--base-model", "someone/some-model", "--dataset", "mini:train",
                           "--home", str(home)], env=no_network_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "queued run 1: dpo data=mini:train seed 0" in done.stdout
    assert "Retry" not in done.stdout + done.stderr and "huggingface" not in done.stderr.lower()


# --------------------------------------------------------------------------- progress when piped


def test_sample_generation_prints_a_count_per_prompt(tiny_model_path, tmp_path):
    """12 base samples once took 36 minutes without a line: now each prompt's completion prints a count."""
    from innerdpo_bench.evaluation.samples import SampleSettings, generate_samples

    said: list[str] = []
    generate_samples("tiny-random", SampleSettings(suite="mini", prompts=2, max_new_tokens=4),
                     output=tmp_path / "samples.jsonl", use_cache=False, progress=said.append)
    counts = [line for line in said if "generating samples with the base model" in line and "/8 (" in line]
    assert [line.split("base model ")[1].split(" ")[0] for line in counts] == [f"{k}/8" for k in range(9)]   # 0: it began


def _eval_log(run_dir: Path) -> Path:
    log = run_dir / "eval.log"
    log.write_text("\n===== 2026-01-01T00:00:00+00:00 attempt 1 eval on w =====\n"
                   "[3s] scoring with the run 40/400 (10%)…\n"
                   "[9s] scoring with the run 120/400 (30%)…\n"
                   "\n===== 2026-01-01T00:10:00+00:00 attempt 2 eval on w =====\n")
    return log


def test_the_worker_and_the_demo_relay_evaluation_counts_from_eval_log(tmp_path):
    """eval.log's count lines are relayed as the worker's and the demo's progress, only those of the current
    attempt (after its header)."""
    from innerdpo_bench.demo import _PlainDisplay
    from innerdpo_bench.queue.worker import Worker, WorkerOptions
    from innerdpo_bench.rundir import RunPaths

    run = Run(id=3, name="dpo", kind="train_eval", spec=RunSpec.from_json({"name": "dpo", "train": {"max_steps": 10}}), status="running", priority=3,
              created_at=0.0, started_at=0.0, finished_at=None, worker="w", heartbeat_at=0.0, run_dir=str(tmp_path),
              attempts=1, exit_code=None, error=None, cancel_requested=False)
    log = _eval_log(tmp_path)
    assert progress.last_count_line(log) is None            # attempt 2 has printed no count yet
    said: list[str] = []
    report = Worker(tmp_path / "home", "cpu", WorkerOptions(), threading.Event(), said.append)._progress_reporter(
        run, "eval", RunPaths(tmp_path, "train_eval"))
    with open(log, "a") as handle:
        handle.write("[2s] scoring with the run 200/400 (50%)…\n")
    report()
    with open(log, "a") as handle:
        handle.write("[5s] generating base 6/12 (50%)…\n")
    report()
    assert [line.split("] ", 1)[1] for line in said] == ["run 3 (dpo): evaluating",
                                                         "run 3 (dpo): evaluating: scoring with the run 200/400 (50%)",
                                                         "run 3 (dpo): evaluating: generating base 6/12 (50%)"]

    class Console:
        printed: list[str] = []

        def print(self, line, **_):
            self.printed.append(line)

    console = Console()
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "metrics.jsonl").write_text(json.dumps({"step": 10}) + "\n")   # training is over
    _PlainDisplay(console, 6).show(2, run)
    assert [line.split("] ", 1)[1] for line in console.printed] == [
        "run 3/6 dpo: evaluating: generating base 6/12 (50%)"]


# --------------------------------------------------------------------------- true hints and messages


def test_first_time_is_said_only_when_a_built_in_base_is_not_built_yet(tiny_model_path, tmp_path, monkeypatch):
    from innerdpo_bench.models import needs_building

    assert not needs_building("tiny-random") and not needs_building("someone/some-model")
    monkeypatch.setenv("INNERDPO_CACHE", str(tmp_path / "empty-cache"))
    assert needs_building("tiny-random") and needs_building("SmolLM2-135M")


def test_runs_on_a_home_that_is_a_file_says_so(tmp_path):
    home = tmp_path / "notes.txt"
    home.write_text("mine")
    for command in (["runs"], ["queue", "ls"], ["doctor"], ["queue", "add", "dpo", "--base-model", "tiny-random",
                                                            "--dataset", "mini:train"]):
        result = runner.invoke(app, [*command, "--home", str(home)])
        assert result.exit_code == 2 and f"--home {home} is a file, not a workspace directory" in result.output, \
            (command, result.output)
    assert home.read_text() == "mine"


def test_plain_methods_lists_the_transforms():
    from innerdpo_bench.methods.catalog import TRANSFORM_SUMMARIES, TRANSFORMS

    assert list(TRANSFORM_SUMMARIES) == list(TRANSFORMS)
    result = runner.invoke(app, ["methods"], terminal_width=400)
    assert result.exit_code == 0 and "transforms" in result.output
    for name, summary in TRANSFORM_SUMMARIES.items():
        assert any(line.split("│")[1:3] and line.split("│")[1].strip() == name and summary in line
                   for line in result.output.splitlines()), name


def test_the_readme_points_only_at_files_a_clone_has():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert "../shared" not in readme and "evalcache.py" not in readme and "evalreport.py" not in readme


# --------------------------------------------------------------------------- no process left behind


def test_a_failing_test_leaves_no_process_behind(tmp_path):
    """A test that starts a process group (a worker and its stage) and fails: when its pytest ends, both are dead."""
    (tmp_path / "conftest.py").write_text((Path(__file__).with_name("conftest.py")).read_text())
    pids = tmp_path / "pids"
    (tmp_path / "test_leaky.py").write_text(textwrap.dedent(f"""
        import subprocess, sys

        def test_leaks():
            child = ("import subprocess, sys, time; grand = subprocess.Popen([sys.executable, '-c', "
                     "'import time; time.sleep(600)']); print(grand.pid, flush=True); time.sleep(600)")
            worker = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True,
                                      start_new_session=True)
            grand = worker.stdout.readline().strip()
            open({str(pids)!r}, "w").write(f"{{worker.pid}} {{grand}}")
            assert False, "a failed assertion while the worker runs"
        """))
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 1 and "1 failed" in done.stdout, done.stdout
    for pid in map(int, pids.read_text().split()):
        assert _dead(pid), pid


def _dead(pid: int) -> bool:
    """Gone, or a zombie waiting for init to reap it (it runs nothing)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "\nState:\tZ" in status
