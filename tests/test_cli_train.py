"""`innerdpo train` / `innerdpo methods` from the command line: help, JSON listing, and every bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from innerdpo_bench import rundir
from innerdpo_bench.cli.main import app
from innerdpo_bench.methods.catalog import ALIGN_METHODS

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args))


def test_help_lists_commands_and_train_flags():
    assert invoke("--help").exit_code == 0
    result = invoke("train", "--help")
    assert result.exit_code == 0
    for flag in ("--align-method", "--alpha", "--beta", "--trust-region", "--layers", "--nll-weight", "--logp-agg"):
        assert flag in result.output


def test_methods_json_lists_everything():
    result = invoke("methods", "--json")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert [m["name"] for m in data["methods"]] == ["dpo", "ipo", "simper", "hs-none-InnerDPO", "hs-ether-InnerDPO",
                                                   "hs-supr-InnerDPO"]
    assert {a["name"] for a in data["align_methods"]} == set(ALIGN_METHODS)
    assert all(a["description"] for a in data["align_methods"])
    assert data["transforms"] == ["none", "ether", "supr"]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("args, message", [
    (["dpx"], "unknown method 'dpx'. Did you mean 'dpo'?"),
    (["hs-none-InnerDPO", "--align-method", "para_sign"], "unknown --align-method 'para_sign'"),
    (["hs-ether-InnerDPO", "--ether-type", "householder"], "unknown --ether-type"),
    (["dpo", "--max-steps", "0"], "--max-steps must be at least 1"),
    (["dpo", "--base-model", "./no/such/model"], "base model path ./no/such/model does not exist"),
    (["dpo", "--dataset", "missing.jsonl"], "dataset file missing.jsonl does not exist"),
    (["dpo", "--logp-agg", "median"], "unknown --logp-agg 'median'"),
    (["dpo", "--output-loss", "ipo"], "contradicts method dpo"),
    (["dpo", "--output-loss", "simper"], "contradicts method dpo"),
    (["simper", "--logp-agg", "sum"], "SimPER is defined on per-token mean log-probs"),
    (["hs-none-InnerDPO", "--output-loss", "simpo"], "unknown --output-loss 'simpo'"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    result = invoke("train", *args, "--base-model" if "--base-model" not in args else "--seed",
                    "tiny-random" if "--base-model" not in args else "0", "--output-dir", str(tmp_path / "run"))
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists() or rundir.read_status(tmp_path / "run")["state"] != "complete"


@pytest.mark.parametrize("rows, message", [
    ([{"prompt": "p", "chosen": "a"}], "row 0: missing field 'rejected'"),
    ([{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": " ", "rejected": "b"}],
     "row 1: field 'chosen' is empty"),
])
def test_bad_dataset_rows(rows, message, tmp_path, tiny_model_path):
    data = write_jsonl(tmp_path / "bad.jsonl", rows)
    result = invoke("train", "dpo", "--base-model", "tiny-random", "--dataset", data, "--output-dir", str(tmp_path / "r"))
    assert result.exit_code == 2 and message in result.output


def test_nan_loss_fails_cleanly_and_marks_the_run(tmp_path, tiny_model_path):
    out = tmp_path / "run"
    result = invoke("train", "ipo", "--base-model", "tiny-random", "--dataset", "mini:in_domain", "--max-steps", "6",
                    "--learning-rate", "1e30", "--max-grad-norm", "1e30", "--warmup-ratio", "0", "--beta", "0.01",
                    "--output-dir", str(out), "--quiet")
    assert result.exit_code == 1, result.output
    assert "loss became" in result.output
    status = rundir.read_status(out)
    assert status["state"] == "failed" and "loss became" in status["error"]
    assert not (out / "adapter").exists()


def test_refuses_to_overwrite_a_run(tmp_path, tiny_model_path):
    out = tmp_path / "run"
    args = ["train", "dpo", "--base-model", "tiny-random", "--dataset", "mini:in_domain", "--max-steps", "1",
            "--output-dir", str(out), "--quiet"]
    assert invoke(*args).exit_code == 0
    result = invoke(*args)
    assert result.exit_code == 2 and "is not empty" in result.output


def test_sigterm_marks_the_run_interrupted(tmp_path, tiny_model_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "innerdpo_bench", "train", "hs-none-InnerDPO", "--base-model", "tiny-random",
         "--dataset", "mini:train", "--max-steps", "100000", "--logging-steps", "1", "--output-dir", str(out), "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    deadline = time.time() + 120
    while time.time() < deadline and not ((out / rundir.METRICS).exists() and (out / rundir.METRICS).stat().st_size):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err
    assert rundir.read_status(out)["state"] == "interrupted"
    assert not (out / "adapter").exists()


def test_commands_that_need_no_model_start_without_torch(tmp_path):
    """`innerdpo runs`, `queue ls` and `--help` only read the store: they must not pay for importing torch."""
    import subprocess
    import sys

    code = ("import sys\nfrom typer.testing import CliRunner\nfrom innerdpo_bench.cli.main import app\n"
            f"for args in (['runs', '--home', {str(tmp_path)!r}], ['queue', 'ls', '--home', {str(tmp_path)!r}], ['--help']):\n"
            "    result = CliRunner().invoke(app, args)\n"
            "    assert result.exit_code == 0, (args, result.output)\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
