"""Output-level preference losses (DPO, IPO) on a per-pair score.

Both take a per-pair margin `ptheta` (or, for InnerDPO's hidden term, an align score g) and return the
per-pair loss; the caller averages over pairs. They are the same functions for both uses, so the hidden
term is "the same family as the output term" by construction (spec §8).
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

PairLoss = Callable[[Tensor, float], Tensor]


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


OUTPUT_LOSSES: dict[str, PairLoss] = {
    "dpo": dpo_loss,
    "ipo": ipo_loss,
}
