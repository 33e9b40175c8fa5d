"""Preference geometry of pooled hidden states, computed once and shared by every align method (spec §7)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor


@dataclass
class PrefGeometry:
    """Pooled states of policy π and reference for chosen and rejected completions, `[..., hidden]`.

    Leading dimensions are free (the loss passes `[layers, pairs, hidden]`), so every quantity below
    is one batched expression. Notation follows the spec:
    `d_π = c_π − r_π`, `d_ref = c_ref − r_ref`, `u = d_ref/‖d_ref‖₂`, `s = ⟨d_π, u⟩`,
    `a_π = s·u`, `o_π = d_π − a_π`, `a_ref = ⟨d_ref, u⟩u`, `o_ref = d_ref − a_ref` (≈ 0).
    Magnitudes ("norm") use the L`norm_p` norm (1 by default, as the seed-date reference); the ratio methods
    divide by the L2 norm `‖d_ref‖₂` whatever `norm_p` is, so that they are exactly 0 when π = ref.
    `topk`: how many coordinates the top-k methods keep; `learned_sign`: σ = tanh(θ) of the `learned_sign`
    method, `[..., hidden]` broadcast over the pair dimension (`methods/learned_sign.py`).
    """

    chosen_pi: Tensor
    rejected_pi: Tensor
    chosen_ref: Tensor
    rejected_ref: Tensor
    norm_p: int = 1
    eps: float = 1e-5
    topk: int = 100
    learned_sign: Tensor | None = None

    def norm(self, x: Tensor) -> Tensor:
        """‖x‖_p over the hidden dimension."""
        return torch.linalg.vector_norm(x, ord=self.norm_p, dim=-1)

    @cached_property
    def diff_pi(self) -> Tensor:
        return self.chosen_pi - self.rejected_pi

    @cached_property
    def diff_ref(self) -> Tensor:
        return self.chosen_ref - self.rejected_ref

    @cached_property
    def pref_dir(self) -> Tensor:
        """u: the reference's unit (L2) preference direction. The norm is clamped at ε (rather than ε
        added) so u is exactly unit whenever the reference separates chosen from rejected at all."""
        return self.diff_ref / torch.linalg.vector_norm(self.diff_ref, dim=-1, keepdim=True).clamp_min(self.eps)

    @cached_property
    def pref_norm_ref(self) -> Tensor:
        """‖d_ref‖₂, clamped at ε like the denominator of u: the reference's own separation."""
        return torch.linalg.vector_norm(self.diff_ref, dim=-1).clamp_min(self.eps)

    @cached_property
    def signed_proj(self) -> Tensor:
        """s = ⟨d_π, u⟩: signed length of the policy's difference along the preference direction."""
        return (self.diff_pi * self.pref_dir).sum(-1)

    @cached_property
    def par_pi(self) -> Tensor:
        return self.signed_proj.unsqueeze(-1) * self.pref_dir

    @cached_property
    def orth_pi(self) -> Tensor:
        return self.diff_pi - self.par_pi

    @cached_property
    def par_ref(self) -> Tensor:
        return (self.diff_ref * self.pref_dir).sum(-1, keepdim=True) * self.pref_dir

    @cached_property
    def orth_ref(self) -> Tensor:
        return self.diff_ref - self.par_ref


def slog(x: Tensor) -> Tensor:
    """Symmetric log `sign(x)·log(1 + |x|)`: monotonic, 0 at 0, compresses large magnitudes.

    Written per branch so its gradient at exactly 0 is the true slope 1: autograd through `sign(x)·|x|`
    gives 0 there, which would freeze a score that starts at exactly 0 (pars_rat at π = ref)."""
    return torch.where(x < 0, -torch.log1p((-x).clamp_min(0)), torch.log1p(x.clamp_min(0)))


def safe_log(x: Tensor, eps: float) -> Tensor:
    """`log(max(x, ε))` for non-negative x (the spec's lg)."""
    return torch.log(x.clamp_min(eps))
