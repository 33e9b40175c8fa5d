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
    assert data["output_losses"] == ["dpo", "ipo", "simper"]
    assert {"pars_rat", "pars_rat_log", "pars_rat_topk", "learned_sign"} <= {a["name"] for a in data["align_methods"]}
    assert all(a["description"] for a in data["align_methods"])
    assert data["transforms"] == ["none", "ether", "supr"]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("args, message", [
    (["dpx"], "unknown method 'dpx'. Did you mean 'dpo'?"),
    (["hs-none-InnerDPO", "--align-method", "para_sign"], "unknown --align-method 'para_sign'"),
    (["hs-ether-InnerDPO", "--ether-type", "householder"], "unknown --ether-type"),
    (["dpo", "--max-steps", "0"], "--max-steps must be in [1, 10000000], got 0"),
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
    ([{"prompt": "p", "chosen": "a"}], "row 1: missing field 'rejected'"),
    ([{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": " ", "rejected": "b"}],
     "row 2: field 'chosen' is empty"),
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
    rerun = invoke("train", "hs-none-InnerDPO", "--base-model", "tiny-random", "--dataset", "mini:train",
                   "--max-steps", "100000", "--output-dir", str(out), "--quiet")   # the same command again
    assert rerun.exit_code == 2 and "did not finish (status interrupted); continue it with --resume" in rerun.output


def test_commands_that_need_no_model_start_without_torch(tmp_path):
    """`innerdpo runs`, `queue ls` and `--help` only read the store: they must not pay for importing torch."""
    import subprocess
    import sys

    from innerdpo_bench.store import Store

    Store(tmp_path).close()  # an empty workspace (a missing one is an error: tests/test_store_faults.py)
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom innerdpo_bench.cli.main import app\n"
            f"for args in (['runs', '--home', {str(tmp_path)!r}], ['queue', 'ls', '--home', {str(tmp_path)!r}], ['--help']):\n"
            "    result = CliRunner().invoke(app, args)\n"
            "    assert result.exit_code == 0, (args, result.output)\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


# --------------------------------------------------------------------------- train --config


def spec_file(tmp_path, **config):
    """A queued run's training config as the worker hands it to `train --config` (RUN/train_spec.json)."""
    from innerdpo_bench.config import TrainConfig
    from innerdpo_bench.queue.runspec import train_specs

    path = tmp_path / "train_spec.json"
    spec, = train_specs(TrainConfig(**{"base_model": "tiny-random", "dataset": "mini:in_domain", **config}))
    path.write_text(json.dumps(spec.to_json()["train"]))
    return path


@pytest.fixture
def trained_config(monkeypatch):
    """Make `innerdpo train` record the TrainConfig it would train with instead of training; the list it fills."""
    import innerdpo_bench.train.trainer

    seen = []
    monkeypatch.setattr(innerdpo_bench.train.trainer, "train", lambda cfg, progress, resume_run=False: seen.append(cfg) or cfg.output_dir)
    return seen


def test_train_from_a_spec_file_writes_the_config_json_of_the_flags_form(tmp_path, tiny_model_path):
    flags = ["hs-none-InnerDPO", "--base-model", "tiny-random", "--dataset", "mini:in_domain", "--max-steps", "1",
             "--alpha", "1", "--seed", "3", "--no-norm-before-pool"]
    config = spec_file(tmp_path, method="hs-none-InnerDPO", max_steps=1, alpha=1.0, seed=3, norm_before_pool=False)
    by_flags = invoke("train", *flags, "--output-dir", str(tmp_path / "flags"), "--quiet")
    by_file = invoke("train", "--config", str(config), "--output-dir", str(tmp_path / "file"), "--quiet")
    assert by_flags.exit_code == 0 and by_file.exit_code == 0, by_flags.output + by_file.output
    written = [json.loads((tmp_path / name / rundir.CONFIG).read_text()) for name in ("flags", "file")]
    for resolved in written:
        assert resolved.pop("output_dir").endswith(("flags", "file"))
    assert written[0] == written[1]


def test_flags_given_on_the_command_line_override_the_file(tmp_path, trained_config):
    config = spec_file(tmp_path, method="ipo", max_steps=7, seed=3, beta=0.2, filter_sinks=True)
    result = invoke("train", "dpo", "--config", str(config), "--max-steps", "2", "--no-filter-sinks",
                    "--output-dir", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    (cfg,) = trained_config
    assert (cfg.method, cfg.max_steps, cfg.filter_sinks) == ("dpo", 2, False)         # given: the flags'
    assert (cfg.seed, cfg.beta, cfg.base_model) == (3, 0.2, "tiny-random")             # left out: the file's
    assert cfg.learning_rate == 1e-5 and cfg.output_dir == str(tmp_path / "run")


@pytest.mark.parametrize("content, message", [
    ({"method": "dpo", "max_step": 3}, "unknown key 'max_step'. Did you mean 'max_steps'?"),
    ({"method": "dpo", "max_steps": "3"}, "'max_steps' must be an integer, not a string '3'"),
    ({"method": "dpx"}, "unknown method 'dpx'. Did you mean 'dpo'?"),
    ([1, 2], "must hold a JSON object of train options"),
])
def test_a_bad_config_file_is_one_line_naming_the_file_and_exit_2(tmp_path, trained_config, content, message):
    config = tmp_path / "spec.json"
    config.write_text(json.dumps(content))
    result = invoke("train", "--config", str(config), "--output-dir", str(tmp_path / "run"))
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1 and not trained_config
    if "unknown key" in message:
        assert str(config) in result.output


def test_train_needs_a_method_or_a_config_file(tmp_path, trained_config):
    result = invoke("train", "--output-dir", str(tmp_path / "run"))
    assert result.exit_code == 2 and "give METHOD (e.g. innerdpo train dpo), --config FILE, or --resume --output-dir RUN" in result.output
    config = tmp_path / "spec.json"
    config.write_text("{}")  # every default: method dpo
    assert invoke("train", "--config", str(config)).exit_code == 0 and trained_config[0].method == "dpo"
