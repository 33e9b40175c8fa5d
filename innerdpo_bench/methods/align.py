"""InnerDPO align methods: each maps the preference geometry to a per-pair score g (higher = more aligned).

One expression each over `PrefGeometry`, registered in `ALIGN_FUNCTIONS`. The names users choose from
(`--align-method`, `innerdpo methods`, the dashboard), with when to use each, are in the torch-free
`methods/catalog.py`. Adding a method is one function plus one registry line here, its entry in the
catalog, and one row in the value table of `tests/test_align.py` (each test fails until it is there).

Zero norms (spec §7 note). A norm can be exactly 0 in floating point: `o_ref` whenever `d_ref` lies on a
coordinate axis (or rounding cancels exactly), `o_π` when the policy's difference is exactly parallel.
`lg(x) = log(max(x, ε))` maps every x ≤ ε, 0 included, to log ε, so a score does not depend on whether
rounding landed on 0 or on 1e-9. The seed-date reference used `sign(x)·log(max(|x|, ε))`, which is log ε
just above 0 but 0 at exactly 0: its `logodds` jumped by |log ε| (11.5 at ε = 1e-5) for the pairs where
`o_ref` rounded to exactly 0 (an audit found 12 of 1,280 pooled pairs at d = 120, moving one batch's loss
by 0.126). We keep the continuous `lg`; the terms `log(‖·‖ + ε)` are continuous at 0 as well.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

from innerdpo_bench.methods.geometry import PrefGeometry, safe_log, slog

AlignFn = Callable[[PrefGeometry], Tensor]


def para_signed(g: PrefGeometry) -> Tensor:
    """g = s = ⟨d_π, u⟩."""
    return g.signed_proj


def para_signed_log(g: PrefGeometry) -> Tensor:
    """g = slog(s)."""
    return slog(g.signed_proj)


def para_orth_signed(g: PrefGeometry) -> Tensor:
    """g = s − log(‖o_π‖ + ε)."""
    return g.signed_proj - safe_log(g.norm(g.orth_pi) + g.eps, g.eps)


def para_orth_signed_log(g: PrefGeometry) -> Tensor:
    """g = slog(s) − log(‖o_π‖ + ε)."""
    return slog(g.signed_proj) - safe_log(g.norm(g.orth_pi) + g.eps, g.eps)


def logodds(g: PrefGeometry) -> Tensor:
    """g = (lg‖a_π‖ − lg‖o_π‖) − (lg‖a_ref‖ − lg‖o_ref‖)."""
    lg = lambda x: safe_log(x, g.eps)  # noqa: E731
    return (lg(g.norm(g.par_pi)) - lg(g.norm(g.orth_pi))) - (lg(g.norm(g.par_ref)) - lg(g.norm(g.orth_ref)))


def cosine_policy_margin(g: PrefGeometry) -> Tensor:
    """g = cos(c_π, r_π) − cos(c_ref, r_ref), in [−2, 2], 0 when π = ref."""
    return F.cosine_similarity(g.chosen_pi, g.rejected_pi, dim=-1) - F.cosine_similarity(
        g.chosen_ref, g.rejected_ref, dim=-1
    )


def cosine_cross_model(g: PrefGeometry) -> Tensor:
    """g = cos(c_π, c_ref) − cos(r_π, r_ref), 0 when π = ref."""
    return F.cosine_similarity(g.chosen_pi, g.chosen_ref, dim=-1) - F.cosine_similarity(
        g.rejected_pi, g.rejected_ref, dim=-1
    )


def pars_rat(g: PrefGeometry) -> Tensor:
    """g = s/‖d_ref‖₂ − 1"""
    return g.signed_proj / g.pref_norm_ref - 1.0


# With r = s/‖d_ref‖₂: 10·log r for r ≥ 1, the reference's `10·(log s − log ‖d_ref‖)`; −10·log(2 − r) below, in
# (−10·log 2, 0) for 0 < r < 1 where the reference falls to −∞, and finite for r ≤ 0 where it is NaN (catalog.py).
def pars_rat_log(g: PrefGeometry) -> Tensor:
    """g = 10·slog(s/‖d_ref‖₂ − 1)"""
    return 10.0 * slog(pars_rat(g))


# The package's own form (pars_rat restricted to K); the reference's topk.py is another loss (catalog.py).
def pars_rat_topk(g: PrefGeometry) -> Tensor:
    """g = ⟨d_π,K, d_ref,K⟩/‖d_ref,K‖₂² − 1, K = the k coordinates of largest |d_ref|"""
    k = max(1, min(g.topk, g.diff_ref.shape[-1] // 4))  # the reference's cap: at most a quarter of the coordinates
    index = g.diff_ref.abs().topk(k, dim=-1).indices
    ref_k, pi_k = g.diff_ref.gather(-1, index), g.diff_pi.gather(-1, index)
    return (pi_k * ref_k).sum(-1) / (ref_k * ref_k).sum(-1).clamp_min(g.eps**2) - 1.0


def learned_sign(g: PrefGeometry) -> Tensor:
    """g = ⟨d_π ⊙ u, σ⟩, σ = tanh(θ) learned per layer and coordinate"""
    if g.learned_sign is None:
        raise ValueError("the learned_sign align method needs its signs (PrefGeometry.learned_sign)")
    return (g.diff_pi * g.pref_dir * g.learned_sign).sum(-1)


def para(g: PrefGeometry) -> Tensor:
    """g = log(‖a_π‖ + ε)."""
    return safe_log(g.norm(g.par_pi) + g.eps, g.eps)


def orth(g: PrefGeometry) -> Tensor:
    """g = −log(‖o_π‖ + ε)."""
    return -safe_log(g.norm(g.orth_pi) + g.eps, g.eps)


def para_orth2(g: PrefGeometry) -> Tensor:
    """g = (‖a_π‖ − ‖a_ref‖) − (‖o_π‖ − ‖o_ref‖)."""
    return (g.norm(g.par_pi) - g.norm(g.par_ref)) - (g.norm(g.orth_pi) - g.norm(g.orth_ref))


def direct_projection(g: PrefGeometry) -> Tensor:
    """g = ‖d_π ⊙ u‖₁."""
    return (g.diff_pi * g.pref_dir).abs().sum(-1)


def direct_projection_log(g: PrefGeometry) -> Tensor:
    """g = log(1 + ‖d_π ⊙ u‖₁ + ε)."""
    return safe_log(1.0 + direct_projection(g) + g.eps, g.eps)


ALIGN_FUNCTIONS: dict[str, AlignFn] = {
    # current
    "para_signed": para_signed,
    "para_signed_log": para_signed_log,
    "para_orth_signed": para_orth_signed,
    "para_orth_signed_log": para_orth_signed_log,
    "logodds": logodds,
    "cosine_policy_margin": cosine_policy_margin,
    "cosine_cross_model": cosine_cross_model,
    # the seed's later work (branch topk) and its first note
    "pars_rat": pars_rat,
    "pars_rat_log": pars_rat_log,
    "pars_rat_topk": pars_rat_topk,
    "learned_sign": learned_sign,
    # older (the seed's "old" commands)
    "para": para,
    "para_orth": logodds,  # the older name of logodds: the same function
    "para_orth2": para_orth2,
    "orth": orth,
    "direct_projection": direct_projection,
    "direct_projection_log": direct_projection_log,
}
