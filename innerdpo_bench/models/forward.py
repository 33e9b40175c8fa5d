"""One forward over a batch of pairs → completion log-probs and collected hidden states.

Two batch layouts (`data/encode.py`): `[chosen; rejected]` padded rows, or packed pairs (the prompt once,
then both completions, under a block attention mask built here from the segment ids, with position ids
that restart after the prompt, so every completion token is computed exactly as in its own row).

Designed for cost (spec §13):
  * the output head runs only at completion positions, in chunks, and under activation checkpointing
    when gradients are on and the step's completion logits would be large, so no `[rows, tokens, vocab]`
    logits are ever built (the model itself is asked for no position at all, `no_head_positions`);
  * hidden states are captured by forward hooks on the collected blocks; the reference pass pools
    them inside the hook when the transform allows it, keeping `[rows, hidden]` per layer instead of
    token-level states.
The model is called through its top-level forward (so DDP/accelerate wrappers see the call); hooks are
placed on the unwrapped Hugging Face model's submodules and removed before returning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from innerdpo_bench.errors import UserError

DEFAULT_HEAD_CHUNK = 1024
# With gradients on, a step whose completion logits have at most this many elements keeps them for backward
# (128 MB in fp32; for SmolLM2's 49k vocabulary, 680 completion tokens a step); above it every chunk is
# checkpointed, and backward recomputes its logits. Recomputing costs a second head product and log-softmax
# per chunk: 5% of a SmolLM2 step at the bench's 4 pairs (77 completion tokens, 15 MB of logits).
KEEP_LOGITS_UP_TO = 2**25


@dataclass
class ForwardResult:
    logp_sum: Tensor                 # [rows] summed log-prob of completion tokens
    n_tokens: Tensor                 # [rows] number of scored completion tokens
    hidden: dict[int, Tensor]        # layer -> [rows, tokens, hidden] or, when pooled in the hook, [rows, hidden]
    last_index: Tensor               # [rows] position of each row's last completion token
    mask: Tensor                     # [rows, tokens] completion tokens, in the token layout of `hidden`
    wpo_sum: Tensor | None = None    # [rows] Σ_t (log π(y_t) − log Σ_v π(v)²), detached; only with wpo=True


def model_parts(causal_lm: nn.Module) -> tuple[nn.Module, nn.ModuleList, nn.Module, nn.Module]:
    """(decoder, blocks, input embedding, output head) of a Hugging Face causal LM."""
    decoder = causal_lm.get_decoder() if hasattr(causal_lm, "get_decoder") else None
    blocks = getattr(decoder, "layers", None)
    head = causal_lm.get_output_embeddings()
    if decoder is None or blocks is None or head is None:
        raise UserError(f"{type(causal_lm).__name__} is not a supported decoder-only model (needs .layers and an LM head)")
    return decoder, blocks, causal_lm.get_input_embeddings(), head


def no_head_positions(device) -> Tensor:
    """`logits_to_keep` for a model call whose logits nobody reads: an empty index tensor, so the model's own
    LM head runs at no position (`1` would still cost a `[rows, hidden] × [hidden, vocab]` product per call:
    14 ms of a 1.1 s SmolLM2 step on CPU). A tensor rather than an int also keeps every position in every
    layer: Gemma 4 drops all but the last `logits_to_keep` positions in its KV-shared layers when given an int,
    which would leave the hooks the wrong states."""
    return torch.empty(0, dtype=torch.long, device=device)


def unwrap_causal_lm(model: nn.Module) -> nn.Module:
    """The Hugging Face model inside DDP / PEFT wrappers (whose submodules get the hooks)."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    if hasattr(model, "get_base_model"):
        model = model.get_base_model()
    return model


def _chunk_logprobs(head: nn.Module, hidden: Tensor, targets: Tensor, softcap: float | None,
                    with_square_mass: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    logits = head(hidden).float()
    if softcap:
        logits = softcap * torch.tanh(logits / softcap)
    log_norm = torch.logsumexp(logits, dim=-1)
    logp = logits.gather(-1, targets[:, None]).squeeze(-1) - log_norm
    if not with_square_mass:
        return logp
    # log Σ_v π(v)² = logsumexp(2·logits) − 2·logsumexp(logits): WPO's per-token adjustment, never differentiated
    return logp, (torch.logsumexp(2 * logits, dim=-1) - 2 * log_norm).detach()


def completion_logprobs(head: nn.Module, hidden: Tensor, targets: Tensor, chunk_size: int = DEFAULT_HEAD_CHUNK,
                        softcap: float | None = None, with_square_mass: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """log π(target) for `hidden [N, d]` → `[N]`, the head applied `chunk_size` rows at a time; with
    `with_square_mass`, also `log Σ_v π(v)²` per token `[N]` (detached), from the same logits.

    With gradients on and more than `KEEP_LOGITS_UP_TO` logits in all (`N × vocab`), each chunk is
    checkpointed: backward recomputes its logits instead of keeping them alive.
    """
    pieces = []
    recompute = hidden.shape[0] * head.weight.shape[0] > KEEP_LOGITS_UP_TO
    for start in range(0, hidden.shape[0], chunk_size):
        h, t = hidden[start:start + chunk_size], targets[start:start + chunk_size]
        if recompute and torch.is_grad_enabled() and h.requires_grad:
            pieces.append(checkpoint(_chunk_logprobs, head, h, t, softcap, with_square_mass, use_reentrant=False))
        else:
            pieces.append(_chunk_logprobs(head, h, t, softcap, with_square_mass))
    if not pieces:
        empty = hidden.new_zeros(0, dtype=torch.float32)
        return (empty, empty) if with_square_mass else empty
    if with_square_mass:
        return torch.cat([p[0] for p in pieces]), torch.cat([p[1] for p in pieces])
    return torch.cat(pieces)


def last_completion_index(completion_mask: Tensor) -> Tensor:
    """Position of each row's last completion token, `[rows]`."""
    positions = torch.arange(completion_mask.shape[1], device=completion_mask.device)
    return (positions * completion_mask.long()).argmax(dim=1)


def packed_attention_mask(segment_ids: Tensor) -> Tensor:
    """`[B, 1, L, L]` boolean mask (True = may attend) for rows of segments: 0 is the shared context, k ≥ 1 a
    continuation of it, -1 padding. A query sees earlier keys of the context and of its own segment; a
    padding query sees only itself (so no softmax row is empty)."""
    width = segment_ids.shape[1]
    index = torch.arange(width, device=segment_ids.device)
    causal = index[:, None] >= index[None, :]
    keys, queries = segment_ids[:, None, :], segment_ids[:, :, None]
    visible = causal & ((keys == 0) | (keys == queries)) & (queries >= 0)
    return (visible | torch.eye(width, dtype=torch.bool, device=segment_ids.device))[:, None]


def forward_pass(model: nn.Module, batch: dict[str, Tensor], layers: list[int],
                 pool: Callable[[Tensor, Tensor], Tensor] | None = None,
                 chunk_size: int = DEFAULT_HEAD_CHUNK, wpo: bool = False) -> ForwardResult:
    """Run `model` (possibly wrapped) on a collated batch of either layout.

    `layers`: hidden-state indices to collect (0 = embeddings, k = output of block k). For a packed batch
    the states are returned per completion, `[2B, C, hidden]` at the completion tokens (the only tokens
    pooling reads), with `mask` to match; for padded rows they are the rows' states, `[2B, T, hidden]`.
    `pool(states, mask)`: if given, applied to each collected state inside the hook, so only its result
    is kept (used for the no-grad reference pass). `wpo`: also return `wpo_sum` (WPO weighting, spec §3).
    """
    causal_lm = unwrap_causal_lm(model)
    decoder, blocks, embed, head = model_parts(causal_lm)
    input_ids, mask = batch["input_ids"], batch["completion_mask"]      # mask: [2B, C] packed, [2B, T] padded
    packed = "segment_ids" in batch                                      # PackedPairCollator's layout
    if packed:
        sequence_row = (torch.arange(mask.shape[0], device=mask.device) % input_ids.shape[0])[:, None]
        at_tokens = lambda state: state[sequence_row, batch["completion_pos"]]  # noqa: E731
        inputs = {"position_ids": batch["position_ids"], "attention_mask": packed_attention_mask(batch["segment_ids"])}
    else:
        at_tokens = lambda state: state  # noqa: E731
        inputs = {"attention_mask": batch["attention_mask"]}
    captured: dict[int, Tensor] = {}
    final: list[Tensor] = []

    def capture(index: int):
        def hook(_module, _inputs, output):
            state = at_tokens(output[0] if isinstance(output, tuple) else output)
            captured[index] = pool(state, mask) if pool is not None else state
        return hook

    def capture_final(_module, _inputs, output):
        final.append(output[0] if isinstance(output, tuple) else output.last_hidden_state)

    handles = [decoder.register_forward_hook(capture_final)]
    for index in layers:
        handles.append((embed if index == 0 else blocks[index - 1]).register_forward_hook(capture(index)))
    try:
        model(input_ids=input_ids, use_cache=False, logits_to_keep=no_head_positions(input_ids.device), **inputs)
    finally:
        for handle in handles:
            handle.remove()

    if packed:
        scored = mask
        hidden = final[0][sequence_row, batch["completion_from"]][scored]  # [N, d]: the state predicting each token
        targets = input_ids[sequence_row, batch["completion_pos"]][scored]
    else:
        scored = mask[:, 1:]                                             # token t is predicted at position t-1
        hidden = final[0][:, :-1][scored]
        targets = input_ids[:, 1:][scored]
    rows = torch.arange(scored.shape[0], device=scored.device)[:, None].expand_as(scored)[scored]
    softcap = getattr(causal_lm.config, "final_logit_softcapping", None)
    token_logp = completion_logprobs(head, hidden, targets, chunk_size, softcap, with_square_mass=wpo)
    per_row = lambda x: torch.zeros(scored.shape[0], dtype=x.dtype, device=x.device).index_add(0, rows, x)  # noqa: E731
    wpo_sum = None
    if wpo:
        token_logp, square_mass = token_logp
        wpo_sum = per_row(token_logp.detach() - square_mass)
    return ForwardResult(
        logp_sum=per_row(token_logp),
        n_tokens=scored.sum(dim=1),
        hidden=captured,
        last_index=last_completion_index(mask),
        mask=mask,
        wpo_sum=wpo_sum,
    )
