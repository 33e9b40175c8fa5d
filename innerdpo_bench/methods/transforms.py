"""Hidden-state transforms applied to policy and reference token states before pooling (spec §5).

Each transform maps `{layer: [rows, tokens, hidden]}` to the same kind of dict (`forward`) and pools
its output over completion tokens (`pool`, which may avoid materialising the transformed states:
see `EtherTransform.pool`). They never touch the
model's forward pass, so they never change its outputs: evaluation does not need them. Trainable ones
are optimised with the adapter and saved beside it (`transforms.safetensors` + `transforms.json`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from innerdpo_bench.errors import UserError, unknown_choice
from innerdpo_bench.methods.catalog import ETHER_TYPES, TRANSFORMS
from innerdpo_bench.methods.pooling import completion_pool, pool_weights


class IdentityTransform(nn.Module):
    """`none`: the states as they are. Reference states can be pooled as soon as they are produced."""

    name = "none"
    pools_raw_states = True

    def __init__(self, layers: list[int]):
        super().__init__()
        self.layers = list(layers)

    @property
    def output_layers(self) -> list[int]:
        return self.layers

    def forward(self, states: dict[int, Tensor], last_index: Tensor) -> dict[int, Tensor]:
        return states

    def pool(self, states: dict[int, Tensor], mask: Tensor, last_index: Tensor, normalize: bool = True,
             filter_sinks: bool = False) -> dict[int, Tensor]:
        return {layer: completion_pool(h, mask, normalize, filter_sinks) for layer, h in states.items()}

    def options(self) -> dict:
        return {}


class EtherLayer(nn.Module):
    """`T(h) = U·P·H·h` for one layer (ETHER, arXiv 2405.20271, as a learned low-rank view of the states).

    `H = blockdiag(H_1 … H_nb)` acts on `nb` contiguous column blocks of h (the clean block-diagonal form;
    the reference reshaped the matrix instead, scrambling which coordinates a block reflects, a quirk
    left out). `P ∈ ℝ^{m×d}` is a fixed random down-projection drawn from the run's seed; `U ∈ ℝ^{d×m}`
    is trained.
      * `ether`: `H_i = I − 2·r rᵀ/‖r‖²` (Householder: orthogonal, symmetric, H² = I); r kaiming-uniform.
      * `etherplus`: `H_i = I − u uᵀ/‖u‖² + v vᵀ/‖v‖²`, v initialised to −u so H = I at init.
      * `oft`: Cayley map `H_i = (I + S)(I − S)⁻¹`, `S = (A − Aᵀ)/2`, A = 0 at init (orthogonal, H = I at init).
    """

    def __init__(self, hidden_size: int, n_blocks: int, reduction: int, ether_type: str, seed: int, layer: int):
        super().__init__()
        if hidden_size % n_blocks:
            raise UserError(f"--ether-blocks {n_blocks} must divide the hidden size {hidden_size}")
        self.ether_type = ether_type
        self.n_blocks = n_blocks
        block = hidden_size // n_blocks
        rank = max(1, hidden_size // reduction)
        if ether_type == "ether":
            self.r = nn.Parameter(torch.empty(n_blocks, block))
            nn.init.kaiming_uniform_(self.r, a=math.sqrt(5))
        elif ether_type == "etherplus":
            u = torch.empty(n_blocks, block)
            nn.init.kaiming_uniform_(u, a=math.sqrt(5))
            self.u = nn.Parameter(u)
            self.v = nn.Parameter(-u.clone())
        elif ether_type == "oft":
            self.a = nn.Parameter(torch.zeros(n_blocks, block, block))
        else:
            raise unknown_choice("--ether-type", ether_type, ETHER_TYPES)
        generator = torch.Generator().manual_seed(seed * 100_003 + layer)
        self.register_buffer("down", torch.randn(rank, hidden_size, generator=generator) / math.sqrt(hidden_size))
        self.up = nn.Linear(rank, hidden_size, bias=False)

    def block_matrices(self) -> Tensor:
        """The dense `H_i`, `[n_blocks, block, block]` (for tests and for `oft`)."""
        if self.ether_type == "oft":
            skew = (self.a - self.a.transpose(-1, -2)) / 2
            eye = torch.eye(skew.shape[-1], dtype=skew.dtype, device=skew.device).expand_as(skew)
            # (I+S) and (I−S)⁻¹ commute, so (I+S)(I−S)⁻¹ = solve(I−S, I+S).
            return torch.linalg.solve(eye - skew, eye + skew)
        eye = torch.eye(self._block_size(), dtype=self.up.weight.dtype, device=self.up.weight.device)
        return eye + self._rank_one_terms()

    def _block_size(self) -> int:
        return self.down.shape[1] // self.n_blocks

    def _rank_one_terms(self) -> Tensor:
        def outer(x: Tensor) -> Tensor:
            return torch.einsum("bi,bj->bij", x, x) / (x * x).sum(-1)[:, None, None]

        if self.ether_type == "ether":
            return -2 * outer(self.r)
        return -outer(self.u) + outer(self.v)

    def reflect(self, h: Tensor) -> Tensor:
        """`H·h` over the last dimension, block by block, without forming H for the Householder types."""
        blocks = h.reshape(*h.shape[:-1], self.n_blocks, -1)  # [..., nb, block]
        if self.ether_type == "oft":
            out = torch.einsum("bij,...bj->...bi", self.block_matrices(), blocks)
        else:
            def project(x: Tensor) -> Tensor:  # x xᵀ h / ‖x‖² per block
                return x * ((blocks * x).sum(-1, keepdim=True) / (x * x).sum(-1, keepdim=True))

            if self.ether_type == "ether":
                out = blocks - 2 * project(self.r)
            else:
                out = blocks - project(self.u) + project(self.v)
        return out.reshape(h.shape)

    def effective_down(self) -> Tensor:
        """`P·H` `[m, hidden]`: row i is `Hᵀ p_i`. With it, `T(h) = U·(P H)·h` costs one thin matmul."""
        blocks = self.down.reshape(self.down.shape[0], self.n_blocks, -1)  # [m, nb, block]
        if self.ether_type == "oft":
            out = torch.einsum("mbi,bij->mbj", blocks, self.block_matrices())
        else:  # Householder forms are symmetric: Hᵀ p = H p
            out = self.reflect(self.down).reshape(blocks.shape)
        return out.reshape(self.down.shape)

    def low_rank(self, h: Tensor) -> Tensor:
        """`z = P·H·h` `[..., m]`, the trained view before the up-projection."""
        return h.to(self.up.weight.dtype) @ self.effective_down().T

    def forward(self, h: Tensor) -> Tensor:
        return self.up(self.low_rank(h))


class EtherTransform(nn.Module):
    """`ether`: one `EtherLayer` per collected layer, applied to every token state."""

    name = "ether"
    pools_raw_states = False

    def __init__(self, layers: list[int], hidden_size: int, n_blocks: int = 2, reduction: int = 60,
                 ether_type: str = "ether", seed: int = 0):
        super().__init__()
        self.layers = list(layers)
        self.hidden_size, self.n_blocks, self.reduction, self.ether_type, self.seed = (
            hidden_size, n_blocks, reduction, ether_type, seed)
        self.per_layer = nn.ModuleDict(
            {str(layer): EtherLayer(hidden_size, n_blocks, reduction, ether_type, seed, layer) for layer in layers}
        )

    @property
    def output_layers(self) -> list[int]:
        return self.layers

    def forward(self, states: dict[int, Tensor], last_index: Tensor) -> dict[int, Tensor]:
        return {layer: self.per_layer[str(layer)](h) for layer, h in states.items()}

    def pool(self, states: dict[int, Tensor], mask: Tensor, last_index: Tensor, normalize: bool = True,
             filter_sinks: bool = False) -> dict[int, Tensor]:
        """Pool `T(h_t) = U z_t` without forming it: `‖U z_t‖² = z_tᵀ(UᵀU)z_t` and
        `Σ_t w_t U z_t = U Σ_t w_t z_t`, so only the `[rows, tokens, m]` view z is materialised."""
        out = {}
        for layer, h in states.items():
            module = self.per_layer[str(layer)]
            z = module.low_rank(h)  # [rows, tokens, m]
            up = module.up.weight  # [hidden, m]
            norms = torch.einsum("rtm,mn,rtn->rt", z, up.T @ up, z).clamp_min(1e-12).sqrt()
            weights = pool_weights(norms, mask, normalize, filter_sinks)
            out[layer] = (torch.einsum("rt,rtm->rm", weights.to(z.dtype), z) @ up.T).float()
        return out

    def options(self) -> dict:
        return dict(hidden_size=self.hidden_size, n_blocks=self.n_blocks, reduction=self.reduction,
                    ether_type=self.ether_type, seed=self.seed)


_PROJECTOR_CACHE: dict[tuple, Tensor] = {}


def logit_lens_projector(weight: Tensor) -> Tensor:
    """`W⁺W` `[d, d]` for the output embedding `W ∈ ℝ^{V×d}`, in fp32, computed once per process per weight.

    `δ = W⁺(W h_j − W h_{j−1}) = (W⁺W)(h_j − h_{j−1})`, so the V-sized logits never need to be formed:
    the same numbers at d/V of the cost (for SmolLM2's 49,152-word vocabulary, 85× fewer FLOPs per layer).
    """
    key = (weight.data_ptr(), tuple(weight.shape), str(weight.device))
    if key not in _PROJECTOR_CACHE:
        w = weight.detach().float()
        _PROJECTOR_CACHE[key] = torch.linalg.pinv(w) @ w
    return _PROJECTOR_CACHE[key]


class SupressedHS(nn.Module):
    """`supr` (SupressedHS): keep only what each layer wrote that later layers suppress (arXiv 2401.12181,
    2406.19384). No parameters.

    For collected layers l_0 < … < l_{L−1}: take each row's LAST COMPLETION token state h_l (the
    reference took the last padded position, a quirk left out); logit lens without the final norm
    `z_l = W h_l`; `δ_j = W⁺(z_{l_j} − z_{l_{j−1}})`; mask `M_j = [δ_j > τ]` per row; output layer l_j
    is `h_{l_j} ⊙ M_j` at every token. The first collected layer is dropped (L−1 layers out).
    """

    name = "supr"
    pools_raw_states = False

    def __init__(self, layers: list[int], output_embedding: Tensor, tau: float = 0.1):
        super().__init__()
        if len(layers) < 2:
            raise UserError(f"the supr transform needs at least 2 layers in --layers, got {sorted(layers)}")
        self.layers = sorted(layers)
        self.tau = tau
        self._weight = output_embedding  # the model's own tensor: not copied, not saved

    @property
    def output_layers(self) -> list[int]:
        return self.layers[1:]

    def masks(self, last_states: dict[int, Tensor]) -> dict[int, Tensor]:
        """`M_j` per output layer from the last-token states `{layer: [rows, hidden]}`.

        Computed as `δ_j = (W⁺W)(h_{l_j} − h_{l_{j−1}})` (see `logit_lens_projector`), which equals
        `W⁺(z_{l_j} − z_{l_{j−1}})` without forming the vocabulary-sized logits.
        """
        projector = logit_lens_projector(self._weight)
        out = {}
        for prev, layer in zip(self.layers, self.layers[1:]):
            step = last_states[layer].detach().float() - last_states[prev].detach().float()
            out[layer] = step @ projector.T > self.tau  # [rows, hidden]
        return out

    def forward(self, states: dict[int, Tensor], last_index: Tensor) -> dict[int, Tensor]:
        rows = torch.arange(last_index.shape[0], device=last_index.device)
        masks = self.masks({layer: states[layer][rows, last_index] for layer in self.layers})
        return {layer: states[layer] * masks[layer][:, None, :].to(states[layer].dtype) for layer in self.output_layers}

    def pool(self, states: dict[int, Tensor], mask: Tensor, last_index: Tensor, normalize: bool = True,
             filter_sinks: bool = False) -> dict[int, Tensor]:
        """The mask is per row, so `Σ_t w_t (h_t ⊙ M) = (Σ_t w_t h_t) ⊙ M` and
        `‖h_t ⊙ M‖² = Σ_d h_td² M_d`: the masked states are never materialised."""
        rows = torch.arange(last_index.shape[0], device=last_index.device)
        masks = self.masks({layer: states[layer][rows, last_index] for layer in self.layers})
        out = {}
        for layer in self.output_layers:
            h, keep = states[layer], masks[layer].to(states[layer].dtype)  # keep: [rows, hidden]
            norms = torch.einsum("rtd,rtd,rd->rt", h, h, keep).clamp_min(1e-12).sqrt()
            weights = pool_weights(norms, mask, normalize, filter_sinks)
            out[layer] = (torch.einsum("rt,rtd->rd", weights.to(h.dtype), h) * keep).float()
        return out

    def options(self) -> dict:
        return dict(tau=self.tau)


def build_transform(name: str, layers: list[int], hidden_size: int, output_embedding: Tensor | None = None,
                    *, ether_blocks: int = 2, ether_reduction: int = 60, ether_type: str = "ether",
                    supr_tau: float = 0.1, seed: int = 0) -> nn.Module:
    """The transform `name` for these layers."""
    if name == "none":
        return IdentityTransform(layers)
    if name == "ether":
        return EtherTransform(layers, hidden_size, ether_blocks, ether_reduction, ether_type, seed)
    if name == "supr":
        if output_embedding is None:
            raise ValueError("supr needs the model's output embedding")
        return SupressedHS(layers, output_embedding, supr_tau)
    raise unknown_choice("transform", name, TRANSFORMS)


def transform_state(transform: nn.Module) -> tuple[dict, dict[str, Tensor]]:
    """What a transform is, as data: its description (name, layers, options) and its tensors (none for the
    parameter-free ones). `rundir.save_transform` writes them; `transform_from_state` rebuilds the transform."""
    meta = {"name": transform.name, "layers": transform.layers, "options": transform.options()}
    return meta, {k: v.detach().cpu().contiguous() for k, v in transform.state_dict().items()}


def transform_from_state(meta: dict, tensors: dict[str, Tensor], output_embedding: Tensor | None = None) -> nn.Module:
    """The transform `transform_state` described, with identical weights."""
    opts = meta["options"]
    name, layers = meta["name"], meta["layers"]
    if name == "none":
        return IdentityTransform(layers)
    if name == "supr":
        return build_transform("supr", layers, 0, output_embedding, supr_tau=opts["tau"])
    transform = EtherTransform(layers, opts["hidden_size"], opts["n_blocks"], opts["reduction"],
                               opts["ether_type"], opts["seed"])
    transform.load_state_dict(tensors)
    return transform
