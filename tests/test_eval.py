"""`innerdpo eval` and the plain `lm_eval` CLI on tiny-random + a trained adapter: same numbers, exact per-row
log-probs against a plain-torch scorer, eval.json contents, and one-line errors."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from innerdpo_bench import rundir
from innerdpo_bench.cli.main import app
from innerdpo_bench.data.mini import write_mini_jsonl
from innerdpo_bench.evaluation import suites
from innerdpo_bench.evaluation.suites import SHIFTS

from helpers.evaluation import run_lm_eval_cli
from helpers.runs import rows_file_of

runner = CliRunner()
LIMIT = 8
EVAL_KEYS = {"checkpoint", "kind", "base_model", "adapter", "method", "display_name", "seed", "suite", "limit",
             "versions", "timestamp", "shifts", "aggregate", "coherence", "provenance", "harness",
             "transforms_applied"}
SHIFT_KEYS = {"acc", "acc_stderr", "acc_sum", "acc_sum_stderr", "logratio", "logratio_stderr", "n",
              "below_chance", "chance_p"}   # the label-orientation audit (audit.py)
ROW_KEYS = {"shift", "row_id", "logp_chosen", "logp_rejected", "n_chosen", "n_rejected", "base_logp_chosen",
            "base_logp_rejected", "correct"}


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def tasks_path():
    result = invoke("tasks-path")
    assert result.exit_code == 0, result.output
    return result.output.strip()


@pytest.fixture(scope="module")
def cli_run(trained_run, tiny_model_path, tasks_path, tmp_path_factory):
    """The real lm_eval CLI as a subprocess: base + the run's adapter, mini suite, first 8 rows."""
    assert Path(tasks_path) == suites.tasks_dir()
    return run_lm_eval_cli(tmp_path_factory.mktemp("lm_eval_cli"),
                           f"pretrained={tiny_model_path},peft={trained_run}/adapter,dtype=float32", {"suite": "mini"},
                           LIMIT)


@pytest.fixture(scope="module")
def py_run(trained_run, tmp_path_factory):
    """`innerdpo eval` on a copy of the run (so eval.json lands in the run directory without touching the
    shared fixture), same limit; returns (eval.json, rows, run copy)."""
    run = tmp_path_factory.mktemp("eval_run") / "run"
    shutil.copytree(trained_run, run)
    result = invoke("eval", run, "--suite", "mini", "--limit", LIMIT, "--batch-size", "4", "--device", "cpu")
    assert result.exit_code == 0, result.output
    report = json.loads((run / rundir.EVAL).read_text())
    rows = [json.loads(line) for line in rows_file_of(run / rundir.EVAL).read_text().splitlines()]
    return report, rows, run


class PlainScorer:
    """Sum of log-probs of continuation tokens given the context, with plain transformers (+ PEFT).

    Tokenisation follows the harness's documented rule: trailing whitespace of the context moves to the
    continuation; continuation tokens = enc(context + continuation) minus the enc(context) prefix."""

    def __init__(self, model_path, adapter=None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, adapter)
        self.model = model.eval()

    @torch.no_grad()
    def __call__(self, context: str, continuation: str) -> tuple[float, int]:
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        specials = not context.startswith(self.tokenizer.bos_token)  # a chat template may write BOS itself
        context_ids = self.tokenizer(context, add_special_tokens=specials)["input_ids"]
        whole = self.tokenizer(context + continuation, add_special_tokens=specials)["input_ids"]
        assert whole[:len(context_ids)] == context_ids
        target = torch.tensor(whole[len(context_ids):])
        logits = self.model(torch.tensor([whole])).logits[0].float()
        logprobs = torch.log_softmax(logits[len(context_ids) - 1:-1], dim=-1)
        return logprobs.gather(-1, target[:, None]).sum().item(), len(target)


def test_tasks_path_prints_the_task_folder(tasks_path):
    names = {p.name for p in Path(tasks_path).iterdir()}
    assert {f"innerdpo_{s}.yaml" for s in SHIFTS} | {"innerdpo_shifts.yaml"} <= names


def test_lm_eval_cli_gives_four_tasks_and_the_group_row(cli_run):
    results, samples = cli_run
    table = results["results"]
    assert set(table) == {f"innerdpo_{s}" for s in SHIFTS} | {"innerdpo_shifts"}
    for shift in SHIFTS:
        row = table[f"innerdpo_{shift}"]
        assert row["sample_len"] == LIMIT and len(samples[shift]) == LIMIT
        assert {"acc,none", "acc_sum,none", "logratio,none", "acc_stderr,none"} <= set(row)
    group = results["groups"]["innerdpo_shifts"]
    for metric in ("acc", "acc_sum", "logratio"):
        mean = sum(table[f"innerdpo_{s}"][f"{metric},none"] for s in SHIFTS) / len(SHIFTS)
        assert group[f"{metric},none"] == pytest.approx(mean, abs=1e-12)


def test_innerdpo_eval_matches_the_cli(cli_run, py_run):
    results, _ = cli_run
    report, _, _ = py_run
    for shift in SHIFTS:
        cli_row, ours = results["results"][f"innerdpo_{shift}"], report["shifts"][shift]
        assert ours["n"] == LIMIT
        assert ours["acc"] == cli_row["acc,none"] and ours["acc_sum"] == cli_row["acc_sum,none"], shift
        assert ours["logratio"] == pytest.approx(cli_row["logratio,none"], abs=1e-6)
    assert report["aggregate"]["acc"] == pytest.approx(results["groups"]["innerdpo_shifts"]["acc,none"], abs=1e-12)


def test_harness_rows_equal_a_plain_torch_scorer(cli_run, py_run, trained_run, tiny_model_path):
    """Adapter on: the CLI's logged samples. Adapter off: the base rows `innerdpo eval` took from its second
    harness run. Both against an independent scorer; token counts and per-row metrics too."""
    _, samples = cli_run
    _, rows, _ = py_run
    with_adapter = PlainScorer(tiny_model_path, Path(trained_run) / "adapter")
    base = PlainScorer(tiny_model_path)
    by_id = {(r["shift"], r["doc_id"]): r for r in rows}
    for shift in SHIFTS:
        for sample in samples[shift]:
            args = [(a["arg_0"], a["arg_1"]) for a in sample["arguments"].values()]
            (logp_c, n_c), (logp_r, n_r) = with_adapter(*args[0]), with_adapter(*args[1])
            assert float(sample["resps"][0][0][0]) == pytest.approx(logp_c, abs=1e-4)
            assert float(sample["resps"][1][0][0]) == pytest.approx(logp_r, abs=1e-4)
            assert float(sample["logratio"]) == pytest.approx(logp_c / n_c - logp_r / n_r, abs=1e-4)
            assert float(sample["acc"]) == float(logp_c / n_c > logp_r / n_r)
            row = by_id[(shift, sample["doc_id"])]
            assert (row["n_chosen"], row["n_rejected"]) == (n_c, n_r)
            assert row["logp_chosen"] == pytest.approx(logp_c, abs=1e-4)
            doc = sample["doc"]
            assert args[0] == (doc["prompt"].rstrip(), " " + doc["chosen"])  # the documented rendering
            base_c, base_n_c = base(*args[0])
            base_r, _ = base(*args[1])
            assert row["base_logp_chosen"] == pytest.approx(base_c, abs=1e-4) and base_n_c == n_c
            assert row["base_logp_rejected"] == pytest.approx(base_r, abs=1e-4)


def test_adapter_changes_the_log_probs(py_run):
    _, rows, _ = py_run
    gaps = [abs(r["logp_chosen"] - r["base_logp_chosen"]) for r in rows]
    assert max(gaps) > 1e-2, "adapter on and off gave the same log-probs: the adapter was not applied"


def test_eval_json_and_rows_file(py_run, trained_run):
    report, rows, run = py_run
    assert EVAL_KEYS <= set(report)
    config = json.loads((Path(trained_run) / rundir.CONFIG).read_text())
    assert report["kind"] == "run" and report["adapter"] == str(run / "adapter")
    assert (report["method"], report["display_name"], report["seed"]) == (
        config["method"], config["display_name"], config["seed"])
    assert report["base_model"] == "tiny-random" and report["suite"] == "mini" and report["limit"] == LIMIT
    assert report["transforms_applied"] is False
    assert set(report["versions"]) == {"innerdpo_bench", "lm_eval", "torch", "transformers", "peft"}
    for shift in SHIFTS:
        assert set(report["shifts"][shift]) == SHIFT_KEYS
        metrics = report["shifts"][shift]
        assert isinstance(metrics["below_chance"], bool) and 0.0 < metrics["chance_p"] <= 1.0
        assert set(report["base"]["shifts"][shift]) >= {"below_chance", "chance_p"}
        prov = report["provenance"][shift]
        assert (prov["dataset"], prov["split"], prov["rows"]) == ("innerdpo_bench.data.mini", shift, LIMIT)
        assert "strict" in prov["scoring_rule"]
    assert report["aggregate"]["n"] == LIMIT * len(SHIFTS)
    assert set(report["coherence"]) >= {"nll_ratio", "nll_diff"} and report["coherence"]["nll_ratio"] > 0
    assert {"results", "groups", "versions", "n-samples", "config"} <= set(report["harness"])
    assert "samples" not in report["harness"] and "configs" not in report["harness"]
    assert len(rows) == LIMIT * len(SHIFTS) and all(ROW_KEYS <= set(r) for r in rows)
    assert all(len(r["row_id"]) == 16 for r in rows)
    in_domain = [r for r in rows if r["shift"] == "in_domain"]
    nll = sum(-r["logp_chosen"] / r["n_chosen"] for r in in_domain) / len(in_domain)
    base_nll = sum(-r["base_logp_chosen"] / r["n_chosen"] for r in in_domain) / len(in_domain)
    assert report["coherence"]["nll_ratio"] == pytest.approx(nll / base_nll, rel=1e-12)
    assert report["coherence"]["nll_diff"] == pytest.approx(nll - base_nll, abs=1e-12)
    for shift in SHIFTS:
        acc = sum(r["correct"] for r in rows if r["shift"] == shift) / LIMIT
        assert acc == report["shifts"][shift]["acc"]


def test_base_model_checkpoint_has_nll_ratio_one(tiny_model_path, tmp_path):
    out = tmp_path / "base.json"
    result = invoke("eval", "tiny-random", "--suite", "mini", "--limit", 4, "--json", "--output", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert (report["kind"], report["method"], report["adapter"]) == ("model", "none", None)
    assert report["coherence"]["nll_ratio"] == 1.0 and report["coherence"]["nll_diff"] == 0.0
    assert report["shifts"] == report["base"]["shifts"]
    rows = [json.loads(line) for line in rows_file_of(out).read_text().splitlines()]
    assert all(r["logp_chosen"] == r["base_logp_chosen"] for r in rows)
    assert report["rows_file"] == f"base_rows-{report['rows_sha256'][:16]}.jsonl"


def test_chat_template_rows_are_exact(tiny_model_path, tmp_path):
    """A model with a chat template is scored through it by default (--chat-template auto, as training renders):
    the context is the templated user turn (here with BOS written by the template), the continuation the bare
    completion; per-row scores and counts still match the plain scorer. `off` turns it off."""
    from transformers import AutoTokenizer

    from innerdpo_bench.data.mini import load_mini

    model_dir = tmp_path / "tiny-chat"
    shutil.copytree(tiny_model_path, model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    tokenizer.save_pretrained(model_dir)
    out = tmp_path / "chat.json"
    result = invoke("eval", model_dir, "--suite", "mini", "--limit", 3, "--output", out, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["apply_chat_template"] is True
    plain = tmp_path / "plain.json"
    result = invoke("eval", model_dir, "--suite", "mini", "--limit", 1, "--chat-template", "off", "--output", plain,
                    "--device", "cpu")
    assert result.exit_code == 0 and json.loads(plain.read_text())["apply_chat_template"] is False
    result = invoke("eval", model_dir, "--chat-template", "maybe")
    assert result.exit_code == 2 and "unknown --chat-template 'maybe'" in result.output
    scorer = PlainScorer(model_dir)
    for row in map(json.loads, rows_file_of(tmp_path / "chat.json").read_text().splitlines()):
        doc = load_mini(row["shift"])[row["doc_id"]]
        context = f"<s><|user|>{doc['prompt'].rstrip()}\n<|assistant|>"
        for side in ("chosen", "rejected"):
            logp, n = scorer(context, doc[side])
            assert row[f"logp_{side}"] == pytest.approx(logp, abs=1e-4) and row[f"n_{side}"] == n


def _data_dir(tmp_path, drop=None, break_row=None):
    data = tmp_path / "data"
    write_mini_jsonl(data)
    (data / "train.jsonl").unlink()
    if drop:
        (data / f"{drop}.jsonl").unlink()
    if break_row:
        lines = (data / "orthogonal.jsonl").read_text().splitlines()
        lines[break_row] = json.dumps({"prompt": "p", "chosen": "c"})
        (data / "orthogonal.jsonl").write_text("\n".join(lines) + "\n")
    return data


@pytest.mark.parametrize("case, message", [
    ("unknown_suite", "unknown suite 'alpaca_eazy'. Did you mean 'alpaca_easy'?"),
    ("missing_file", "has no difficulty_scaling.jsonl"),
    ("malformed_row", "orthogonal.jsonl row 2: missing field 'rejected'"),
    ("missing_checkpoint", "does not exist"),
    ("unfinished_run", "is not complete (status running)"),
    ("hub_offline", "cannot load dataset wassname/genies_preferences:math_easy#test"),
])
def test_bad_input_is_one_line_and_exit_2(case, message, tmp_path, tiny_model_path, trained_run):
    args = ["tiny-random", "--suite", "mini", "--limit", "2", "--output", tmp_path / "x.json", "--device", "cpu"]
    if case == "unknown_suite":
        args[2] = "alpaca_eazy"
    elif case == "missing_file":
        args[1:3] = ["--data-dir", _data_dir(tmp_path, drop="difficulty_scaling")]
    elif case == "malformed_row":
        args[1:3] = ["--data-dir", _data_dir(tmp_path, break_row=1)]
    elif case == "missing_checkpoint":
        args[0] = tmp_path / "no" / "such" / "run"
    elif case == "unfinished_run":
        run = tmp_path / "run"
        shutil.copytree(trained_run, run)
        rundir.write_status(run, "running")
        args[0] = run
    elif case == "hub_offline":  # conftest sets HF_DATASETS_OFFLINE: the hub is unreachable
        args[2] = "math_easy"
    result = invoke("eval", *args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert all(line.endswith("…") for line in lines if line not in errors), result.output  # status lines only
    assert "Traceback" not in result.output
