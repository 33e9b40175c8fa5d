"""The fast forward: completion-only head equals the naive full-logits computation; the reference pass
is exactly the base model; gradients reach only adapter (and transform) parameters."""

import pytest
import torch

from innerdpo_bench.data.encode import PairCollator, encode_pairs
from innerdpo_bench.forward import completion_logprobs, forward_pass
from innerdpo_bench.methods.pooling import completion_pool

ROWS = [
    {"prompt": "What is two plus three?", "chosen": "Two plus three is five.", "rejected": "Two plus three is six."},
    {"prompt": "Name a colour of the sky.", "chosen": "The sky is often blue.",
     "rejected": "The sky is usually a bright green colour today."},
    {"prompt": "Is it fair to share?", "chosen": "Yes, sharing equally is fair.", "rejected": "No."},
]


def naive_logprobs(model, batch):
    """Full logits at every position, then gather: the reference computation."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    logp = logits[:, :-1].log_softmax(-1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    return (logp * batch["completion_mask"][:, 1:]).sum(1)


@pytest.fixture(scope="module")
def batch(tiny_tokenizer):
    encoded, _ = encode_pairs(tiny_tokenizer, ROWS)
    return PairCollator(tiny_tokenizer.pad_token_id)(encoded)


@pytest.fixture()
def lora_model(tiny_model_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", use_rslora=True))
    with torch.no_grad():  # make the adapter non-trivial so policy != reference
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    return model


def test_completion_only_head_matches_naive(lora_model, batch):
    fast = forward_pass(lora_model, batch, layers=[])
    slow = naive_logprobs(lora_model, batch)
    assert torch.allclose(fast.logp_sum, slow, atol=1e-3)
    assert fast.n_tokens.tolist() == batch["completion_mask"][:, 1:].sum(1).tolist()


@pytest.mark.parametrize("chunk", [1, 3, 1024])
def test_chunked_head_with_grad_matches_naive(lora_model, batch, chunk):
    fast = forward_pass(lora_model, batch, layers=[], chunk_size=chunk)
    slow = naive_logprobs(lora_model, batch)
    assert torch.allclose(fast.logp_sum, slow, atol=1e-3)
    fast.logp_sum.sum().backward()
    grads = {n: p.grad.clone() for n, p in lora_model.named_parameters() if p.grad is not None}
    lora_model.zero_grad()
    slow.sum().backward()
    for n, p in lora_model.named_parameters():
        if p.grad is not None:
            assert torch.allclose(grads[n], p.grad, atol=1e-4), n


def test_completion_logprobs_equals_log_softmax_gather():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50, bias=False)
    h = torch.randn(13, 8)
    t = torch.randint(0, 50, (13,))
    expected = head(h).log_softmax(-1)[torch.arange(13), t]
    assert torch.allclose(completion_logprobs(head, h, t, chunk_size=4), expected, atol=1e-6)


def test_reference_pass_is_the_base_model(lora_model, tiny_model_path, batch):
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    with torch.no_grad(), lora_model.disable_adapter():
        ref = forward_pass(lora_model, batch, layers=[1, 2])
    with torch.no_grad():
        plain = forward_pass(base, batch, layers=[1, 2])
        policy = forward_pass(lora_model, batch, layers=[1, 2])
    assert torch.equal(ref.logp_sum, plain.logp_sum)
    for layer in (1, 2):
        assert torch.equal(ref.hidden[layer], plain.hidden[layer])
    assert not torch.allclose(policy.logp_sum, ref.logp_sum)


def test_hooks_capture_hidden_states_like_output_hidden_states(lora_model, batch):
    with torch.no_grad():
        ours = forward_pass(lora_model, batch, layers=[0, 1, 3])
        theirs = lora_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            output_hidden_states=True).hidden_states
    for layer in (0, 1, 3):
        assert torch.allclose(ours.hidden[layer], theirs[layer], atol=1e-6)


def test_pooling_in_the_hook_equals_pooling_after(lora_model, batch):
    mask = batch["completion_mask"]
    with torch.no_grad():
        after = forward_pass(lora_model, batch, layers=[1, 2])
        in_hook = forward_pass(lora_model, batch, layers=[1, 2], pool=lambda h: completion_pool(h, mask))
    for layer in (1, 2):
        assert in_hook.hidden[layer].shape == (6, after.hidden[layer].shape[-1])
        assert torch.allclose(in_hook.hidden[layer], completion_pool(after.hidden[layer], mask), atol=1e-6)


def test_special_tokens_and_prompt_are_not_scored(tiny_tokenizer, batch):
    ids, mask = batch["input_ids"], batch["completion_mask"]
    specials = set(tiny_tokenizer.all_special_ids)
    assert not any(int(t) in specials for t in ids[mask])
    encoded, _ = encode_pairs(tiny_tokenizer, ROWS[:1])
    prompt_len = len(tiny_tokenizer(ROWS[0]["prompt"])["input_ids"])
    assert encoded[0]["chosen_mask"][:prompt_len] == [0] * prompt_len
