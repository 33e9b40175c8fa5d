"""The full objective: output term (DPO/IPO) + α · hidden-state term + λ_nll · NLL (spec §3, §8).

Inputs are per-row summaries of one concatenated forward over `[chosen; rejected]` (2B rows: the
first B are chosen, the next B rejected), for the policy and for the reference:
summed completion log-probs, completion token counts and, for InnerDPO, pooled hidden states
`[layers, 2B, hidden]`. Everything here is pure tensor math.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from innerdpo_bench.methods.align import ALIGN_FUNCTIONS
from innerdpo_bench.methods.geometry import PrefGeometry
from innerdpo_bench.methods.loss_config import LossConfig
from innerdpo_bench.methods.output_losses import SCORE_LOSSES, dpo_loss, simper_loss, wpo_weights


@dataclass
class SideOutputs:
    """One model state's forward summary (policy or reference)."""

    logp_sum: Tensor      # [2B] summed log-prob over completion tokens
    n_tokens: Tensor      # [2B] completion token counts
    pooled: Tensor | None = None  # [layers, 2B, hidden] pooled (transformed) states, InnerDPO only
    wpo_sum: Tensor | None = None  # [2B] Σ_t (log π(y_t) − log Σ_v π(v)²), policy only, with --wpo

    def logp(self, agg: str) -> Tensor:
        return self.logp_sum / self.n_tokens.clamp_min(1) if agg == "mean" else self.logp_sum


def pair_loss(kind: str, score: Tensor, beta: float, label_smoothing: float = 0.0) -> Tensor:
    """Per-pair loss of the family `kind` on a score (margin or align score)."""
    if kind == "dpo":
        return dpo_loss(score, beta, label_smoothing)
    return SCORE_LOSSES[kind](score, beta)


def split_pairs(x: Tensor) -> tuple[Tensor, Tensor]:
    """`[2B, ...]` (chosen rows then rejected rows) → chosen `[B, ...]`, rejected `[B, ...]`."""
    half = x.shape[0] // 2
    return x[:half], x[half:]


def trust_clamp(scores: Tensor, cfg: LossConfig) -> Tensor:
    """The trust region on align scores, T = `cfg.trust_region` (0: off), by `cfg.trust_region_form`:

    * `both` (spec §8, default): clamp to [−T, T]: nothing is earned beyond T, nor lost below −T;
    * `top` (the later reference's default): `min(g, T)`: separating beyond T earns nothing, no floor;
    * `bottom` (the later reference's `clamp_bottom=True`): `max(g, T)`, a floor at +T: pairs scoring below
      T get no hidden-term gradient at all; only pairs already past T are pushed further. (With a score that
      starts at 0, as pars_rat at π = ref, nothing moves until the output term has moved the policy past T;
      the journal: "I tried top and bottom and only top", clipping did not help there.)
    """
    limit = cfg.trust_region
    if limit <= 0:
        return scores
    if cfg.trust_region_form == "top":
        return scores.clamp(max=limit)
    if cfg.trust_region_form == "bottom":
        return scores.clamp(min=limit)
    return scores.clamp(-limit, limit)


def hidden_term(pooled_pi: Tensor, pooled_ref: Tensor, cfg: LossConfig,
                learned_sign: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Per-pair hidden loss `[B]` and align scores `[layers, B]`; `learned_sign` is σ `[layers, 1, hidden]` of the
    `learned_sign` align method (`methods/learned_sign.py`).

    `layer_reduce="loss"`: mean over layers of the per-layer losses (seed-date reference);
    `"score"`: mean of g over layers first, then one loss. The trust region (`trust_clamp`) applies before
    the loss: per layer, or after the layer mean with `score`.
    """
    chosen_pi, rejected_pi = split_pairs(pooled_pi.transpose(0, 1))
    chosen_ref, rejected_ref = split_pairs(pooled_ref.transpose(0, 1))
    geometry = PrefGeometry(
        chosen_pi.transpose(0, 1), rejected_pi.transpose(0, 1),
        chosen_ref.transpose(0, 1), rejected_ref.transpose(0, 1),
        norm_p=cfg.norm_p, eps=cfg.eps, topk=cfg.topk_dims, learned_sign=learned_sign,
    )
    scores = ALIGN_FUNCTIONS[cfg.align_method](geometry)  # [layers, B]
    if cfg.layer_reduce == "score":
        loss = pair_loss(cfg.output_loss, trust_clamp(scores.mean(0), cfg), cfg.beta_h)
    else:
        loss = pair_loss(cfg.output_loss, trust_clamp(scores, cfg), cfg.beta_h).mean(0)
    return loss, scores


def preference_loss(policy: SideOutputs, reference: SideOutputs, cfg: LossConfig,
                    learned_sign: Tensor | None = None) -> tuple[Tensor, dict[str, float]]:
    """`L = w·(L_out(β) + α·L_hidden(β_h)) + λ_nll·NLL_π(y_c)`, mean over pairs, and the step's metrics.

    `w` = 1, or with `cfg.wpo` the WPO weights (`wpo_weights` in `cfg.wpo_form`; the reference form is normalised
    over this batch of pairs, so over each micro-batch under gradient accumulation). They weight the preference terms, as the reference weighted
    its whole DPO + hidden loss; the SFT term on the chosen completion is not a preference and stays unweighted.
    """
    logp_pi_c, logp_pi_r = split_pairs(policy.logp(cfg.logp_agg))
    logp_ref_c, logp_ref_r = split_pairs(reference.logp(cfg.logp_agg).detach())
    chosen_ratio = logp_pi_c - logp_ref_c
    rejected_ratio = logp_pi_r - logp_ref_r
    ptheta = chosen_ratio - rejected_ratio
    if cfg.output_loss == "simper":  # the policy's own per-token means, whatever logp_agg the margins use
        loss_out = simper_loss(*split_pairs(policy.logp("mean")))
    else:
        loss_out = pair_loss(cfg.output_loss, ptheta, cfg.beta, cfg.label_smoothing)
    total = loss_out

    metrics: dict[str, float] = {}
    if cfg.alpha != 0.0 and policy.pooled is not None:
        # The reference states are NOT detached (spec §2): they come from a no-grad forward, so only a trainable
        # transform applied after it (ETHER) carries gradient here, and it must get it through both paths.
        loss_hidden, scores = hidden_term(policy.pooled, reference.pooled, cfg, learned_sign)
        total = total + cfg.alpha * loss_hidden
        metrics["loss_hidden"] = loss_hidden.mean().item()
        metrics["align_score"] = scores.mean().item()
        for i, layer_score in enumerate(scores.mean(1).tolist()):
            metrics[f"align_score_l{i}"] = layer_score
        metrics["cos_pi_ref"] = F.cosine_similarity(policy.pooled, reference.pooled, dim=-1).mean().item()

    if cfg.wpo:
        if policy.wpo_sum is None:
            raise ValueError("--wpo needs the policy's wpo_sum (forward_pass(..., wpo=True))")
        weights = wpo_weights(*split_pairs(policy.wpo_sum / policy.n_tokens.clamp_min(1)), form=cfg.wpo_form)
        total = weights * total
        metrics["wpo_weight_min"], metrics["wpo_weight_max"] = weights.min().item(), weights.max().item()

    n_c, _ = split_pairs(policy.n_tokens.clamp_min(1))
    nll_pi_c = -split_pairs(policy.logp_sum)[0] / n_c
    nll_ref_c = -split_pairs(reference.logp_sum)[0].detach() / n_c
    if cfg.nll_weight:
        total = total + cfg.nll_weight * nll_pi_c
    loss = total.mean()

    with torch.no_grad():
        metrics.update(
            loss=loss.item(),
            loss_output=loss_out.mean().item(),
            ptheta=ptheta.mean().item(),
            rewards_chosen=(cfg.beta * chosen_ratio).mean().item(),
            rewards_rejected=(cfg.beta * rejected_ratio).mean().item(),
            rewards_margin=(cfg.beta * ptheta).mean().item(),
            reward_acc=(ptheta > 0).float().mean().item(),
            pref_acc=(logp_pi_c > logp_pi_r).float().mean().item(),
            nll_chosen_pi=nll_pi_c.mean().item(),
            nll_chosen_ref=nll_ref_c.mean().item(),
            nll_chosen_diff=(nll_pi_c - nll_ref_c).mean().item(),
        )
        if cfg.nll_weight:
            metrics["loss_nll"] = nll_pi_c.mean().item()
    return loss, metrics
