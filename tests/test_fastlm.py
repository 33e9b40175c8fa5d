"""The fast harness model: identical answers to stock HFLM, and a score cache keyed by model identity."""

import json

import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.models.huggingface import HFLM
from typer.testing import CliRunner

from innerdpo_bench.cli.main import app
from innerdpo_bench.data.mini import load_mini
from innerdpo_bench.evaluation.fastlm import FastHFLM, ScoreCache, model_identity
from innerdpo_bench.models import load_causal_lm, load_tokenizer


def requests_for(rows):
    pairs = [(r["prompt"], " " + r[side]) for r in rows for side in ("chosen", "rejected")]
    pairs.append(("2 + 2 =", " 4"))  # a one-token continuation
    return [Instance(request_type="loglikelihood", doc={}, arguments=p, idx=i) for i, p in enumerate(pairs)]


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_path):
    torch.manual_seed(0)
    return load_causal_lm(tiny_model_path, dtype=torch.float32).eval(), load_tokenizer(tiny_model_path)


def test_same_answers_as_stock_hflm(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    rows = load_mini("orthogonal")[:10] + load_mini("difficulty_scaling")[:10]
    stock = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4).loglikelihood(requests_for(rows))
    fast = FastHFLM(pretrained=model, tokenizer=tokenizer, batch_size=3).loglikelihood(requests_for(rows))
    assert len(stock) == len(fast) == 41
    for (ll_s, greedy_s), (ll_f, greedy_f) in zip(stock, fast):
        assert ll_f == pytest.approx(ll_s, abs=1e-4)
        assert greedy_f == greedy_s


def test_score_cache_round_trip(model_and_tokenizer, tmp_path):
    model, tokenizer = model_and_tokenizer
    rows = load_mini("moral_transfer")[:6]
    cache = ScoreCache({"test": 1}, root=tmp_path)
    first = FastHFLM(pretrained=model, tokenizer=tokenizer, batch_size=4, score_cache=cache).loglikelihood(requests_for(rows))
    assert cache.misses == 13 and cache.hits == 0
    reloaded = ScoreCache({"test": 1}, root=tmp_path)
    lm = FastHFLM(pretrained=model, tokenizer=tokenizer, batch_size=4, score_cache=reloaded)
    assert lm.loglikelihood(requests_for(rows)) == first
    assert reloaded.hits == 13 and reloaded.misses == 0
    assert ScoreCache({"test": 2}, root=tmp_path).entries == {}  # another identity shares nothing


def test_identity_changes_with_the_adapter(trained_run, tiny_model_path):
    plain = model_identity(tiny_model_path, None, "float32", 2048)
    adapted = model_identity(tiny_model_path, str(trained_run / "adapter"), "float32", 2048)
    assert plain != adapted and len(adapted["adapter"]) == 64


def test_second_adapter_reuses_the_base_rows(trained_run, tmp_path, monkeypatch):
    """Two adapters of one base: the second computes only its own rows; the base rows come from the cache."""
    import shutil

    from safetensors.torch import load_file, save_file

    monkeypatch.setenv("INNERDPO_CACHE", str(tmp_path / "cache"))  # empty score and evaluation caches
    other = tmp_path / "other-adapter"
    shutil.copytree(trained_run / "adapter", other)
    weights = load_file(str(other / "adapter_model.safetensors"))
    save_file({k: v + 0.01 if "lora_B" in k else v for k, v in weights.items()}, str(other / "adapter_model.safetensors"))

    runner = CliRunner()
    reports = []
    for name, adapter in (("a", trained_run / "adapter"), ("b", other)):
        result = runner.invoke(app, ["eval", str(adapter), "--suite", "mini", "--limit", 5, "--device", "cpu",
                                     "--output", str(tmp_path / f"{name}.json")])
        assert result.exit_code == 0, result.output
        reports.append(json.loads((tmp_path / f"{name}.json").read_text()))
    a, b = reports
    assert a["score_cache"]["base"]["misses"] == 40 and a["score_cache"]["model"]["misses"] == 40
    assert b["score_cache"]["base"]["misses"] == 0 and b["score_cache"]["base"]["hits"] == 40
    assert b["score_cache"]["model"]["misses"] == 40
    for shift, metrics in a["base"]["shifts"].items():
        assert b["base"]["shifts"][shift]["acc"] == metrics["acc"]
    assert a["shifts"] != b["shifts"] or a["coherence"] != b["coherence"]  # the second adapter really ran


def test_three_choices_and_left_truncation_match_stock(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    rows = load_mini("in_domain")[:4]
    pairs = [(r["prompt"], " " + c) for r in rows for c in (r["chosen"], r["rejected"], "Nobody knows.")]
    make = lambda: [Instance(request_type="loglikelihood", doc={}, arguments=p, idx=i) for i, p in enumerate(pairs)]  # noqa: E731
    longest = max(len(tokenizer(c, add_special_tokens=False)["input_ids"]) for _, c in pairs)
    for max_length in (2048, longest + 2):  # the second truncates most requests from the left
        stock = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=5, max_length=max_length).loglikelihood(make())
        fast = FastHFLM(pretrained=model, tokenizer=tokenizer, batch_size=2, max_length=max_length).loglikelihood(make())
        for (ll_s, greedy_s), (ll_f, greedy_f) in zip(stock, fast):
            assert ll_f == pytest.approx(ll_s, abs=1e-4) and greedy_f == greedy_s


SYSTEM = "<system> You answer briefly and truthfully. </system>\nUser: "


def test_shared_prefix_is_computed_once_and_changes_nothing(model_and_tokenizer, monkeypatch):
    """Contexts that all open with the same tokens (a chat template's system prompt): the prefix runs once,
    its keys and values feed every batch, and every answer still equals stock HFLM's."""
    model, tokenizer = model_and_tokenizer
    rows = load_mini("in_domain")[:6] + load_mini("orthogonal")[:6]
    pairs = [(SYSTEM + r["prompt"] + "\nAssistant:", " " + r[side]) for r in rows for side in ("chosen", "rejected")]
    make = lambda: [Instance(request_type="loglikelihood", doc={}, arguments=p, idx=i) for i, p in enumerate(pairs)]  # noqa: E731
    contexts = [tokenizer(c, add_special_tokens=False)["input_ids"] for c, _ in pairs]
    assert len(FastHFLM.shared_prefix(contexts)) >= 8
    prefixes = []
    original = FastHFLM._prefix_cache
    monkeypatch.setattr(FastHFLM, "_prefix_cache", lambda self, prefix: prefixes.append(prefix) or original(self, prefix))
    stock = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4).loglikelihood(make())
    fast = FastHFLM(pretrained=model, tokenizer=tokenizer, batch_size=5).loglikelihood(make())
    assert len(prefixes) == 1
    for (ll_s, greedy_s), (ll_f, greedy_f) in zip(stock, fast, strict=True):
        assert ll_f == pytest.approx(ll_s, abs=1e-4) and greedy_f == greedy_s


def test_shared_prefix_rules():
    assert FastHFLM.shared_prefix([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 7]]) == [1, 2, 3, 4, 5]
    assert FastHFLM.shared_prefix([[1, 2, 3, 4, 5], [1, 2, 3, 4, 5, 6]]) == [1, 2, 3, 4]  # one token left of each
    assert FastHFLM.shared_prefix([[1, 2, 3, 9], [1, 2, 3, 8]]) == []                       # too short to pay
    assert FastHFLM.shared_prefix([[1, 2, 3, 4, 5, 6]]) == []                                # nothing to share


def test_one_text_split_at_two_points_scores_each_split(model_and_tokenizer):
    """ETHICS justice pairs overlap: one pair's prompt + completion can be another's with the split elsewhere
    ("...to finish" + " first ... because I have been training professionally all summer." and "...because I have
    been" + " training professionally all summer."; 51 such requests in genies:alpaca_easy's moral_transfer). Each
    request is scored on its own continuation, as stock HFLM without its logits cache does. (With the cache, on by
    default in lm_eval 0.4.13, stock HFLM reuses one request's logits for the other and reads them at the other's
    continuation length: wrong numbers; tasks/README.md says to pass logits_cache=False.)"""
    model, tokenizer = model_and_tokenizer
    text = "I am justified in expecting to finish first in the race, because I have been training all summer."
    split = [("I am justified in expecting to finish", text[len("I am justified in expecting to finish"):]),
             ("I am justified in expecting to finish first in the race, because I have been",
              " training all summer.")]
    make = lambda: [Instance(request_type="loglikelihood", doc={}, arguments=p, idx=i) for i, p in enumerate(split)]  # noqa: E731
    fast = FastHFLM(pretrained=model, tokenizer=tokenizer, batch_size=4).loglikelihood(make())
    uncached = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=4, logits_cache=False).loglikelihood(make())
    alone = [HFLM(pretrained=model, tokenizer=tokenizer, batch_size=1).loglikelihood([r])[0] for r in make()]
    for (ll_f, _), (ll_u, _), (ll_a, _) in zip(fast, uncached, alone):
        assert ll_f == pytest.approx(ll_u, abs=1e-4) and ll_f == pytest.approx(ll_a, abs=1e-4)
    assert fast[0][0] < fast[1][0] - 1.0   # the longer continuation holds the shorter one's tokens and more
