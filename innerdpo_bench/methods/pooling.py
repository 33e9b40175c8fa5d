"""Pool token-level hidden states into one vector per completion (spec §6).

Pooling is a weighted sum `Σ_t w_t·h_t` with `w_t = m_t / (n·‖h_t‖)` (unit-normalise, then masked
mean). Written that way, autograd keeps only the states (which the forward pass keeps anyway) and a
`[rows, tokens]` weight, never a normalised copy of the states; and transforms that know the norms of
their outputs cheaply (ETHER's low-rank view) reuse `pool_weights` without materialising them.
"""

from __future__ import annotations

import torch
from torch import Tensor


def sink_filter(token_norms: Tensor, mask: Tensor, k: float = 1.0) -> Tensor:
    """Drop attention-sink tokens: those whose RAW state norm exceeds mean + k·std of the row's
    completion-token norms. Returns the reduced boolean mask `[rows, tokens]`.

    (The reference filtered after unit normalisation, where every norm is 1; that quirk is left out.)
    """
    with torch.no_grad():
        norms = token_norms.float()
        maskf = mask.float()
        count = maskf.sum(-1, keepdim=True).clamp_min(1.0)
        mean = (norms * maskf).sum(-1, keepdim=True) / count
        var = (((norms - mean) ** 2) * maskf).sum(-1, keepdim=True) / count
        return mask & (norms <= mean + k * var.sqrt())


def pool_weights(token_norms: Tensor, mask: Tensor, normalize: bool = True, filter_sinks: bool = False,
                 eps: float = 1e-6) -> Tensor:
    """`w_t` of the masked mean `[rows, tokens]`, from the per-token norms of the states to pool."""
    if filter_sinks:
        mask = sink_filter(token_norms, mask)
    weights = mask.float() / mask.float().sum(-1, keepdim=True).clamp_min(1.0)
    if normalize:
        weights = weights / token_norms.float().clamp_min(eps)
    return weights


def completion_pool(states: Tensor, mask: Tensor, normalize: bool = True, filter_sinks: bool = False) -> Tensor:
    """Masked mean over completion tokens, optionally of unit-normalised token states.

    `states` `[rows, tokens, hidden]`, `mask` bool `[rows, tokens]` → `[rows, hidden]` in fp32.
    """
    norms = torch.linalg.vector_norm(states, dim=-1) if (normalize or filter_sinks) else torch.ones_like(mask, dtype=states.dtype)
    weights = pool_weights(norms, mask, normalize, filter_sinks)
    return torch.einsum("rt,rtd->rd", weights.to(states.dtype), states).float()
