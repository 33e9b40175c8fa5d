"""The parameters of the `learned_sign` align method: a sign per collected layer and hidden coordinate.

The seed's first note (journal, 2025-06-07): an absolute hidden-state distance only grows what is already
there, so a coordinate that points the wrong way must pass through zero, with many steps of worse loss,
to flip; "it should be abs(hs_diff · learned_sign)", so the learned sign can flip instead. Made precise:

* **learned**: θ ∈ ℝ^{layers × hidden}, one logit per output layer of the transform and per coordinate,
  shared by every pair; σ = tanh(θ) ∈ (−1, 1).
* **score**: `g = ⟨d_π ⊙ u, σ⟩ = Σ_i σ_i · d_π,i · u_i`. With σ = 1 it is `para_signed` (s); with
  σ_i = sign(d_π,i·u_i) it is `direct_projection`'s sum of |·| terms; in between, each coordinate's sign is
  learned rather than fixed (+1) or taken as |·|, and it can flip without the coordinate itself crossing 0.
* **initialisation**: θ = 1 (σ = tanh 1 ≈ 0.762): at the first step the score is 0.762·s, pushing along the
  reference preference direction like `para_signed`.
* **optimiser**: AdamW in a parameter group of its own, learning rate `--learned-sign-lr` (default 1e-2), no
  weight decay (which would pull σ to 0), on the run's schedule. Adam moves a parameter by about one
  learning rate per step, so at the adapter's 1e-5 a sign could not flip within a run; at 1e-2 one takes
  about a hundred steps. The module is attached to the model for training (`train/trainer.py`), so its gradient
  is reset every step with the model's and `--max-grad-norm` clips it together with the adapter's; checkpoints
  save θ and its Adam state, and a resumed run continues them.
* **saved** (by `rundir.save_learned_sign`): `RUN/learned_sign.safetensors`, tensor `logits` `[layers, hidden]`,
  metadata `layers` (JSON list). Like the transforms it never touches the forward pass: evaluation does not need it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

INIT_LOGIT = 1.0


class LearnedSign(nn.Module):
    """θ per output layer and coordinate; `signs()` is σ = tanh(θ) `[layers, 1, hidden]` (broadcast over pairs)."""

    def __init__(self, layers: list[int], hidden_size: int):
        super().__init__()
        self.layers = list(layers)
        self.logits = nn.Parameter(torch.full((len(self.layers), hidden_size), INIT_LOGIT))

    def signs(self) -> Tensor:
        return torch.tanh(self.logits)[:, None, :]

    @classmethod
    def from_logits(cls, layers: list[int], logits: Tensor) -> LearnedSign:
        """A module holding saved logits `[layers, hidden]` (`rundir.load_learned_sign` reads them)."""
        module = cls(layers, logits.shape[1])
        with torch.no_grad():
            module.logits.copy_(logits)
        return module
