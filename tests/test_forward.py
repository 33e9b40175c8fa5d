"""The fast forward: completion-only head equals the naive full-logits computation, in both batch layouts
(padded rows and packed pairs); the reference pass is exactly the base model; gradients reach only adapter
(and transform) parameters."""

import contextlib

import pytest
import torch

from innerdpo_bench.data.encode import PackedPairCollator, PairCollator, encode_pairs
from innerdpo_bench.methods.pooling import completion_pool
from innerdpo_bench.models.forward import completion_logprobs, forward_pass

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


@pytest.fixture(scope="module")
def packed(tiny_tokenizer):
    encoded, _ = encode_pairs(tiny_tokenizer, ROWS)
    return PackedPairCollator(tiny_tokenizer.pad_token_id)(encoded)


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


@contextlib.contextmanager
def head_positions(model):
    """Records, per call of `model`'s LM head, how many positions it ran at."""
    from innerdpo_bench.models.forward import model_parts, unwrap_causal_lm

    seen: list[int] = []
    head = model_parts(unwrap_causal_lm(model))[3]
    handle = head.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].reshape(-1, inputs[0].shape[-1]).shape[0]))
    try:
        yield seen
    finally:
        handle.remove()


def test_completion_only_head_matches_naive(lora_model, batch):
    fast = forward_pass(lora_model, batch, layers=[])
    slow = naive_logprobs(lora_model, batch)
    assert torch.allclose(fast.logp_sum, slow, atol=1e-3)
    assert fast.n_tokens.tolist() == batch["completion_mask"][:, 1:].sum(1).tolist()


@pytest.mark.parametrize("keep", ["kept", "checkpointed"])
@pytest.mark.parametrize("chunk", [1, 3, 1024])
def test_chunked_head_with_grad_matches_naive(lora_model, batch, chunk, keep, monkeypatch):
    """Both ways of running the head under gradients (logits kept for backward, or each chunk checkpointed and
    recomputed: the head then runs twice per chunk) give the naive log-probs and gradients."""
    import innerdpo_bench.models.forward as forward

    if keep == "checkpointed":
        monkeypatch.setattr(forward, "KEEP_LOGITS_UP_TO", 0)
    with head_positions(lora_model) as calls:
        fast = forward_pass(lora_model, batch, layers=[], chunk_size=chunk)
        fast.logp_sum.sum().backward()
    scored = int(fast.n_tokens.sum())
    chunks = -(-scored // chunk)
    assert len(calls) == 1 + chunks * (2 if keep == "checkpointed" else 1)  # 1: the model's own call, no position
    lora_model.zero_grad()
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


@pytest.mark.parametrize("layout", ["batch", "packed"])
def test_wpo_sum_matches_the_naive_per_token_adjustment(lora_model, layout, request):
    """Σ_t (log π(y_t) − log Σ_v π(v)²) over completion tokens, from full logits, in both layouts; detached."""
    rows = request.getfixturevalue("batch")  # the naive computation reads the padded rows
    logits = lora_model(input_ids=rows["input_ids"], attention_mask=rows["attention_mask"]).logits.float()[:, :-1]
    logp_all = logits.log_softmax(-1)
    adjusted = logp_all.gather(-1, rows["input_ids"][:, 1:, None]).squeeze(-1) - torch.logsumexp(2 * logp_all, -1)
    expected = (adjusted * rows["completion_mask"][:, 1:]).sum(1)
    fast = forward_pass(lora_model, request.getfixturevalue(layout), layers=[], chunk_size=5, wpo=True)
    assert torch.allclose(fast.wpo_sum, expected, atol=1e-3)
    assert not fast.wpo_sum.requires_grad and fast.logp_sum.requires_grad
    assert forward_pass(lora_model, rows, layers=[]).wpo_sum is None


@pytest.mark.parametrize("layout", ["batch", "packed"])
def test_the_head_runs_only_at_completion_tokens(lora_model, layout, request):
    """The model's own LM head gets no position (we apply the head ourselves, at the scored tokens only)."""
    rows = request.getfixturevalue(layout)
    with head_positions(lora_model) as seen, torch.no_grad():
        result = forward_pass(lora_model, rows, layers=[], chunk_size=10_000)
    assert seen == [0, int(result.n_tokens.sum())]


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
        in_hook = forward_pass(lora_model, batch, layers=[1, 2], pool=completion_pool)
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


# --------------------------------------------------------------------------- packed pairs


def test_packed_layout_holds_the_prompt_once(tiny_tokenizer, batch, packed):
    pairs = len(ROWS)
    assert packed["input_ids"].shape[0] == pairs
    assert packed["input_ids"].numel() < batch["input_ids"].numel()
    for row in range(pairs):
        prompt = int((packed["segment_ids"][row] == 0).sum())
        chosen = batch["input_ids"][row][batch["attention_mask"][row].bool()]
        rejected = batch["input_ids"][pairs + row][batch["attention_mask"][pairs + row].bool()]
        real = packed["input_ids"][row][packed["segment_ids"][row] >= 0]
        assert real.tolist() == chosen.tolist() + rejected[prompt:].tolist()
        # each completion's positions continue from the prompt, as in its own row
        for segment, ids in ((1, chosen), (2, rejected)):
            positions = packed["position_ids"][row][packed["segment_ids"][row] == segment]
            assert positions.tolist() == list(range(prompt, len(ids)))


def test_packed_scored_tokens_are_the_unpacked_ones(batch, packed):
    assert packed["completion_mask"].sum(1).tolist() == batch["completion_mask"][:, 1:].sum(1).tolist()


def test_packed_logprobs_and_gradients_match_naive(lora_model, batch, packed):
    fast = forward_pass(lora_model, packed, layers=[])
    slow = naive_logprobs(lora_model, batch)
    assert torch.allclose(fast.logp_sum, slow, atol=1e-3)
    assert fast.n_tokens.tolist() == batch["completion_mask"][:, 1:].sum(1).tolist()
    fast.logp_sum.sum().backward()
    grads = {n: p.grad.clone() for n, p in lora_model.named_parameters() if p.grad is not None}
    assert grads
    lora_model.zero_grad()
    slow.sum().backward()
    for n, p in lora_model.named_parameters():
        if p.grad is not None:
            assert torch.allclose(grads[n], p.grad, atol=1e-4), n


def test_packed_hidden_states_equal_the_rows_states_at_completion_tokens(lora_model, batch, packed):
    with torch.no_grad():
        rows = forward_pass(lora_model, batch, layers=[0, 2, 4])
        pack = forward_pass(lora_model, packed, layers=[0, 2, 4])
    for layer in (0, 2, 4):
        for seq in range(2 * len(ROWS)):
            expected = rows.hidden[layer][seq][batch["completion_mask"][seq]]
            got = pack.hidden[layer][seq][pack.mask[seq]]
            assert torch.allclose(got, expected, atol=1e-5), (layer, seq)
        # so pooling (what the hidden-state loss reads) agrees too, in the hook or after
        pooled_rows = completion_pool(rows.hidden[layer], rows.mask)
        assert torch.allclose(completion_pool(pack.hidden[layer], pack.mask), pooled_rows, atol=1e-5)
    with torch.no_grad():
        in_hook = forward_pass(lora_model, packed, layers=[2], pool=completion_pool)
    assert torch.allclose(in_hook.hidden[2], completion_pool(rows.hidden[2], rows.mask), atol=1e-5)
    last_rows = rows.hidden[4][torch.arange(6), rows.last_index]
    assert torch.allclose(pack.hidden[4][torch.arange(6), pack.last_index], last_rows, atol=1e-5)


def test_a_packed_completion_never_sees_its_sibling(lora_model, tiny_tokenizer):
    """Change only the chosen completion: the rejected one's score must not move."""
    a = dict(ROWS[1])
    b = dict(a, chosen="Clouds are grey, and so is rain over the hills in autumn.")
    collate = PackedPairCollator(tiny_tokenizer.pad_token_id)
    with torch.no_grad():
        first = forward_pass(lora_model, collate(encode_pairs(tiny_tokenizer, [a])[0]), layers=[])
        second = forward_pass(lora_model, collate(encode_pairs(tiny_tokenizer, [b])[0]), layers=[])
    assert not torch.allclose(first.logp_sum[0], second.logp_sum[0])
    assert torch.allclose(first.logp_sum[1], second.logp_sum[1], atol=1e-5)
