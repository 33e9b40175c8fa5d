"""Scored tokens = trained tokens: for every row, the (summed log-prob, token count) behind `acc` equal what training
computes for that completion (`encode_pairs` + `forward_pass`), in `innerdpo eval`'s fast path and in the harness
path (stock lm-eval HFLM on the same tasks), and an independent plain-torch scorer (`bench/plain_scorer.py`) agrees.

A chat template's generation prompt ends in a newline, which lm-eval moves into every continuation it scores; the
tasks ask for its log-prob separately and take it back out (`tasks/utils.py`). Fast: tiny-random with a ChatML-like
template (newline after the generation prompt and after each end-of-turn), real GENIES rows. Slow: SmolLM2-135M,
8 real rows per shift of `genies:alpaca_easy`.
"""

import json
import shutil

import pytest
import torch

from bench.plain_scorer import PlainScorer
from innerdpo_bench.data.encode import PairCollator, encode_pairs
from innerdpo_bench.evaluation import suites
from innerdpo_bench.evaluation.evaluate import evaluate, task_name
from innerdpo_bench.evaluation.suites import SHIFTS
from innerdpo_bench.models import load_causal_lm, load_tokenizer, resolve_base_model
from innerdpo_bench.models.forward import forward_pass

SUITE = "genies:alpaca_easy"
CHATML = ("{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}</s>\n{% endfor %}"
          "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
# Two float32 computations of one sum over other kernels (a padded batch, a packed one, stock HFLM's batches, one full
# sequence) differ by float32 rounding of logits near 30 through a 49,152-way log-sum-exp: on SmolLM2 up to 1.4e-5
# nats per token (1.4e-4 on an 8-token completion, 8.4e-3 on a 1,563-token one). So a summed log-prob agrees to 2e-4
# or 2e-5 per token, whichever is larger; counts and decisions must be equal.
TOLERANCE = 2e-4
PER_TOKEN = 2e-5


def close(ours: float, theirs: float, n: int) -> bool:
    return abs(ours - theirs) <= max(TOLERANCE, PER_TOKEN * n)


def training_scores(model_path: str, limit: int) -> dict[tuple[str, int], tuple[float, int, float, int]]:
    """(shift, doc id) → (logp_chosen, n_chosen, logp_rejected, n_rejected) as training computes them: the rows encoded
    by `encode_pairs` (no truncation), one padded forward of the base model, `forward_pass`'s completion log-probs."""
    tokenizer = load_tokenizer(model_path)
    model = load_causal_lm(model_path, dtype=torch.float32).eval()
    collate = PairCollator(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
    scores = {}
    for shift in SHIFTS:
        encoded, stats = encode_pairs(tokenizer, suites.load_shift(shift, suite=SUITE, rows=limit), 10**6, 10**6 + 1)
        assert stats.rows == limit
        for start in range(0, limit, 4):
            with torch.no_grad():
                result = forward_pass(model, collate(encoded[start:start + 4]), layers=[])
            half = result.logp_sum.shape[0] // 2
            for i in range(half):
                scores[(shift, start + i)] = (result.logp_sum[i].item(), int(result.n_tokens[i]),
                                              result.logp_sum[half + i].item(), int(result.n_tokens[half + i]))
    return scores


def fast_path_rows(model_path: str, limit: int, out) -> dict[tuple[str, int], dict]:
    result = evaluate(model_path, suite=SUITE, limit=limit, batch_size=4, device="cpu", output=str(out),
                      use_cache=False)
    assert result.report["apply_chat_template"] is True
    return {(r["shift"], r["doc_id"]): r for r in map(json.loads, result.rows_path.read_text().splitlines())}


def harness_path_rows(model_path: str, limit: int) -> dict[tuple[str, int], dict]:
    """Stock lm-eval (`model="hf"`, what plain `lm_eval --include_path` runs) on the same tasks, with the chat template;
    each row's scores as the task computes them for `acc` (`PrefTask.row_scores`)."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    manager = TaskManager(include_path=str(suites.tasks_dir()), include_defaults=False,
                          metadata={"suite": SUITE, "rows": limit, "pretrained": model_path})
    tasks = manager.load([task_name(s) for s in SHIFTS])["tasks"]
    # logits_cache=False, as tasks/README.md says: lm-eval's cache misreads requests that share tokens split elsewhere
    results = simple_evaluate(model="hf", model_args=f"pretrained={model_path},dtype=float32,logits_cache=False",
                              device="cpu",
                              tasks=list(tasks.values()), apply_chat_template=True, log_samples=True, batch_size=8)
    rows = {}
    for shift in SHIFTS:
        task = tasks[task_name(shift)]
        for sample in results["samples"][task_name(shift)]:
            assert len(sample["arguments"]) == 3   # chosen, rejected, and the moved newline
            rows[(shift, sample["doc_id"])] = {**task.row_scores(sample["doc"], sample["filtered_resps"]),
                                               "correct": bool(sample["acc"])}
    return rows


def assert_equal_to_training(rows: dict, trained: dict, path: str, max_length: int) -> None:
    """Every row scored equals training's; a row not scored is one lm-eval cannot score (a completion, with the
    moved newline, longer than the model's positions)."""
    for key in trained.keys() - rows.keys():
        assert max(trained[key][1], trained[key][3]) + 1 > max_length, (path, key)
    for key, row in rows.items():
        logp_c, n_c, logp_r, n_r = trained[key]
        assert (row["n_chosen"], row["n_rejected"]) == (n_c, n_r), (path, key)
        assert close(row["logp_chosen"], logp_c, n_c), (path, key, row["logp_chosen"], logp_c)
        assert close(row["logp_rejected"], logp_r, n_r), (path, key, row["logp_rejected"], logp_r)
        assert row["correct"] == (logp_c / n_c > logp_r / n_r), (path, key)
        assert not row["truncated"]


@pytest.fixture(scope="module")
def tiny_chat_model(tiny_model_path, tmp_path_factory):
    """tiny-random with a ChatML-like template (the generation prompt ends in a newline, as SmolLM2's does)."""
    from transformers import AutoTokenizer

    model_dir = tmp_path_factory.mktemp("tiny-chatml") / "model"
    shutil.copytree(tiny_model_path, model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = CHATML
    tokenizer.save_pretrained(model_dir)
    return str(model_dir)


def test_both_paths_score_exactly_the_trained_tokens_tiny_chat(tiny_chat_model, tmp_path):
    """3 rows per shift; tiny-random's 1,024 positions cannot hold the third medical completion: both paths skip it."""
    limit = 3
    trained = training_scores(tiny_chat_model, limit)
    fast = fast_path_rows(tiny_chat_model, limit, tmp_path / "eval.json")
    assert len(fast) == len(trained) - 1
    assert_equal_to_training(fast, trained, "innerdpo eval", 1024)
    harness = harness_path_rows(tiny_chat_model, limit)
    assert harness.keys() == fast.keys()
    assert_equal_to_training(harness, trained, "harness", 1024)
    scorer = PlainScorer(tiny_chat_model)
    for shift, doc_id in fast:
        logp_c, n_c, _, _ = trained[(shift, doc_id)]
        doc = suites.load_shift(shift, suite=SUITE, rows=limit)[doc_id]
        plain_logp, plain_n = scorer(doc["prompt"], doc["chosen"])
        assert plain_n == n_c and close(plain_logp, logp_c, n_c), (shift, doc_id, plain_logp, logp_c)


@pytest.mark.slow
def test_both_paths_score_exactly_the_trained_tokens_smollm2(tmp_path):
    smollm2 = resolve_base_model("smollm2-135m")
    limit = 8
    trained = training_scores(smollm2, limit)
    fast = fast_path_rows(smollm2, limit, tmp_path / "eval.json")
    assert fast.keys() == trained.keys()
    assert_equal_to_training(fast, trained, "innerdpo eval", 8192)
    harness = harness_path_rows(smollm2, limit)
    assert harness.keys() == trained.keys()
    assert_equal_to_training(harness, trained, "harness", 8192)
