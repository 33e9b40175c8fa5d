"""The loss's knobs as one frozen record (torch-free). Values and defaults come from the run's `TrainConfig`
(`cfg.loss`), whose fields of these names carry the help text and the spec's defaults (§8, §10); nothing here
has a default of its own but `eps`, which is no user knob."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LossConfig:
    output_loss: str          # dpo | ipo | simper; the hidden term uses the same family
    beta: float
    label_smoothing: float    # cDPO ε, dpo only
    logp_agg: str             # mean | sum over completion tokens
    alpha: float              # hidden-state weight; 0 = plain DPO/IPO
    beta_h: float
    align_method: str
    layer_reduce: str         # loss | score
    trust_region: float       # 0 = off
    trust_region_form: str    # both: [−T, T] | top: ≤ T | bottom: ≥ T (the reference's clamp_bottom)
    norm_p: int
    topk_dims: int            # pars_rat_topk's k (capped at hidden/4)
    nll_weight: float
    wpo: bool                 # WPO per-pair weights on the preference terms (spec §3)
    wpo_form: str             # reference: σ((lw_c + lw_r)/3) over its batch mean | paper: exp(lw_c + lw_r)
    eps: float = 1e-5
