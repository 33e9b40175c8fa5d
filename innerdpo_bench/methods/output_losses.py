"""Output-level preference losses (DPO, IPO, SimPER) and the hidden term's loss of the same family.

DPO and IPO take a per-pair margin `ptheta` (or, for InnerDPO's hidden term, an align score g) and return
the per-pair loss; the caller averages over pairs. They are the same functions for both uses, so the hidden
term is "the same family as the output term" by construction (spec §8). SimPER's output term reads the
policy's log-probs alone (no margin, no reference), so its hidden-term counterpart is a separate function of
the score (`simper_score_loss`). `SCORE_LOSSES` is the family's loss of a score, per name.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from innerdpo_bench.methods.geometry import slog

ScoreLoss = Callable[[Tensor, float], Tensor]


def dpo_loss(margin: Tensor, beta: float, label_smoothing: float = 0.0) -> Tensor:
    """DPO (Rafailov et al. 2023, eq. 7): `−log σ(β·m)`; with cDPO label smoothing ε:
    `−(1−ε)·log σ(β·m) − ε·log σ(−β·m)`.

    `m` is `(logp_π(y_c) − logp_π(y_r)) − (logp_ref(y_c) − logp_ref(y_r))` for the output term.
    """
    scaled = beta * margin
    return -(1.0 - label_smoothing) * F.logsigmoid(scaled) - label_smoothing * F.logsigmoid(-scaled)


def ipo_loss(margin: Tensor, beta: float) -> Tensor:
    """IPO (Azar et al. 2023, eq. 17): `(m − 1/(2β))²`, β being the paper's τ.

    Regresses the margin to a fixed target instead of pushing it to infinity, so it cannot overfit
    a deterministic preference the way DPO can.
    """
    return (margin - 1.0 / (2.0 * beta)) ** 2


def simper_loss(mean_logp_chosen: Tensor, mean_logp_rejected: Tensor) -> Tensor:
    """SimPER (Xiao et al. 2025, arXiv 2502.00883): `exp(logp̄_π(y_r)) − exp(logp̄_π(y_c))`.

    `logp̄` is the per-token mean log-prob of the completion under the policy, so each term is an inverse
    perplexity in (0, 1] and the loss lies in (−1, 1); its minimum raises the chosen completion's and lowers
    the rejected one's. Hyperparameter-free by design: no β, no label smoothing, no reference model (the
    reference pass still runs, for the reported rewards and for InnerDPO's hidden term). Always on the mean
    (`--logp-agg sum` is refused): on summed log-probs both terms vanish for any completion of length > 10.
    """
    return mean_logp_rejected.exp() - mean_logp_chosen.exp()


def simper_score_loss(score: Tensor, beta: float = 1.0) -> Tensor:
    """SimPER's hidden term on an align score g: `−slog(g)`, no hyperparameter (β_h is not used).

    Like the output term it has no β and no target: it decreases monotonically in g, with gradient
    `1/(1 + |g|)` that fades as the policy separates further (an unbounded but logarithmic reward; combine
    with `--trust-region` to cap it). The later reference (`dpo_loss="SimPER"`, branch topk) added
    `+slog(s)` whatever the align method, which *rewards anti-alignment* with the reference preference,
    contradicting the method's aim; a quirk, left out: we use the chosen align method's g and the sign that
    rewards alignment.
    """
    return -slog(score)


def wpo_weights(adjusted_chosen: Tensor, adjusted_rejected: Tensor, form: str = "reference",
                temperature: float = 3.0) -> Tensor:
    """WPO per-pair weights (Zhou et al. 2024, arXiv 2406.11827, eq. 2), detached, from
    `lw = mean_t [log π(y_t) − log Σ_v π(v)²]` over each completion's tokens: how likely the policy is to have
    generated it, adjusted for how peaked each next-token distribution is. Pairs the policy would produce itself
    weigh more, off-policy pairs less.

    * `paper` (the paper's eq. 2 with its per-token mean, as TRL's `use_weighting`, trl 1.16): `w = exp(lw_c + lw_r)`.
      Not normalised: each pair's loss is scaled by its weight, mostly down, so switching it on also lowers the
      effective learning rate. (TRL's 0.x releases clamped w at 1.)
    * `reference` (the default; the research code's `compute_policy_weights`, which calls it a deviation "for
      stability"): `w = σ((lw_c + lw_r)/3)`, divided by its mean over the batch. The mean weight is 1, so the loss
      scale and the learning rate mean the same with and without --wpo, and σ(·/3) compresses the spread. On the
      first 40 training pairs of genies:alpaca_easy with SmolLM2-135M at the start of training (`bench/wpo_spread.py`):
      weights in [0.47, 1.18] (2.5×) here, in [0.020, 1.48] (75×, mean 0.72) for `paper`. The reason is not that exp
      underflows: lw is a per-token mean, so exp(lw_c + lw_r) stays well inside a float's range.
    """
    total = adjusted_chosen + adjusted_rejected
    if form == "paper":
        return torch.exp(total).detach()
    if form != "reference":
        raise ValueError(f"unknown WPO form {form!r}")
    weights = torch.sigmoid(total / temperature)
    return (weights / weights.mean()).detach()


OUTPUT_LOSSES: dict[str, Callable[..., Tensor]] = {
    "dpo": dpo_loss,        # (margin, β, label smoothing)
    "ipo": ipo_loss,        # (margin, β)
    "simper": simper_loss,  # (mean log-prob chosen, mean log-prob rejected), policy only
}

SCORE_LOSSES: dict[str, ScoreLoss] = {
    "dpo": dpo_loss,
    "ipo": ipo_loss,
    "simper": simper_score_loss,
}
