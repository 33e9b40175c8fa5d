"""Every name a user chooses from, torch-free: methods (spec §9), align methods (§8), transforms, output losses.

The CLI's `--help`, `innerdpo methods`, config validation and the dashboard read these names without
importing torch; the tensor code registers one function per name (`align.ALIGN_FUNCTIONS`,
`output_losses.OUTPUT_LOSSES`, `transforms.build_transform`) and tests check the keys agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from innerdpo_bench.errors import unknown_choice


@dataclass(frozen=True)
class Method:
    name: str
    output_loss: str            # dpo | ipo | simper
    transform: str | None       # None: no hidden-state term
    summary: str

    @property
    def has_hidden_term(self) -> bool:
        return self.transform is not None


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("dpo", "dpo", None, "DPO: −log σ(β·ptheta) on output log-prob margins (Rafailov et al. 2023)."),
        Method("ipo", "ipo", None, "IPO: (ptheta − 1/(2β))², a bounded regression target (Azar et al. 2023)."),
        Method("simper", "simper", None, "SimPER: exp(logp̄_π(y_r)) − exp(logp̄_π(y_c)), inverse perplexities; no β, "
               "no reference model (Xiao et al. 2025)."),
        Method("hs-none-InnerDPO", "dpo", "none", "InnerDPO on raw residual-stream states."),
        Method("hs-ether-InnerDPO", "dpo", "ether", "InnerDPO on a learned ETHER view of the states (reflection + low-rank)."),
        Method("hs-supr-InnerDPO", "dpo", "supr", "InnerDPO on suppressed activations (what later layers remove)."),
    )
}

ALIASES = {
    "hs-none-innerdpo": "hs-none-InnerDPO",
    "hs-ether-innerdpo": "hs-ether-InnerDPO",
    "hs-supr-innerdpo": "hs-supr-InnerDPO",
    "hs-supressedhs-innerdpo": "hs-supr-InnerDPO",
    "hs-supressed-innerdpo": "hs-supr-InnerDPO",
    "dpo": "dpo",
    "ipo": "ipo",
    "simper": "simper",
}


def resolve_method(name: str) -> Method:
    """The method for a user-given name, case-insensitive, seed spellings accepted
    (`hs-None-InnerDPO`, `hs-ETHER-InnerDPO`, `hs-SupressedHS-InnerDPO`)."""
    canonical = ALIASES.get(name.strip().lower())
    if canonical is None:
        raise unknown_choice("method", name, METHODS)
    return METHODS[canonical]


OUTPUT_LOSS_NAMES = ("dpo", "ipo", "simper")
TRANSFORMS = ("none", "ether", "supr")
# What each transform does to the hidden states before pooling (`methods/transforms.py`), for `innerdpo methods`.
TRANSFORM_SUMMARIES = {
    "none": "the states as they are (hs-none-InnerDPO)",
    "ether": "a trained ETHER reflection of a fixed random low-rank view, per layer (hs-ether-InnerDPO; "
             "--ether-type ether | etherplus | oft, --ether-blocks, --ether-reduction)",
    "supr": "only what each layer wrote that later layers suppress, by the logit lens (hs-supr-InnerDPO; "
            "--supr-tau; no parameters)",
}
ETHER_TYPES = ("ether", "etherplus", "oft")
WPO_FORMS = ("reference", "paper")   # methods/output_losses.py wpo_weights; the first is the default


@dataclass(frozen=True)
class AlignMethod:
    """An align method g of the preference geometry (higher = more aligned; symbols: `methods/geometry.py`)."""

    name: str
    formula: str
    when: str                   # what it rewards and when to use it
    current: bool = True        # False: the seed's older methods, kept for comparison
    alias_of: str | None = None

    @property
    def description(self) -> str:
        return f"{self.formula}. {self.when}"


ALIGN_METHODS: dict[str, AlignMethod] = {
    a.name: a
    for a in (
    AlignMethod("para_signed", "g = s = ⟨d_π, u⟩",
                "Default: how far π's chosen−rejected moves along the reference preference direction; unbounded, + aligned, − anti-aligned."),
    AlignMethod("para_signed_log", "g = slog(s)",
                "para_signed with magnitudes compressed; use when s grows large and dominates the loss."),
    AlignMethod("para_orth_signed", "g = s − log(‖o_π‖ + ε)",
                "Rewards parallel movement and penalises off-axis drift on a log scale."),
    AlignMethod("para_orth_signed_log", "g = slog(s) − log(‖o_π‖ + ε)",
                "para_orth_signed with both terms compressed."),
    AlignMethod("logodds", "g = (lg‖a_π‖ − lg‖o_π‖) − (lg‖a_ref‖ − lg‖o_ref‖)",
                "Parallel-vs-orthogonal log-odds relative to the reference; unsigned in s. o_ref ≈ 0, so the reference term is a large ε-clamped constant that shifts, never reverses, the gradient."),
    AlignMethod("cosine_policy_margin", "g = cos(c_π, r_π) − cos(c_ref, r_ref), in [−2, 2], 0 when π = ref",
                "Note: raising it makes chosen and rejected states MORE similar (the reference's docstring reads it as separability; the formula is kept)."),
    AlignMethod("cosine_cross_model", "g = cos(c_π, c_ref) − cos(r_π, r_ref), 0 when π = ref",
                "Keeps chosen states near the reference while moving rejected states away."),
    AlignMethod("pars_rat", "g = s/‖d_ref‖₂ − 1",
                "The seed's later default (branch topk): how many times the reference's own separation π reaches "
                "along u, minus 1; 0 when π = ref, below −1 when anti-aligned. With --trust-region T (form top) it earns "
                "nothing beyond T + 1 times the reference's separation."),
    AlignMethod("pars_rat_log", "g = 10·slog(s/‖d_ref‖₂ − 1)",
                "With r = s/‖d_ref‖₂: equals the reference's 10·log r for r ≥ 1 (π separates at least as much as the "
                "reference). Departs below: for 0 < r < 1 ours is −10·log(2 − r), in (−10·log 2, 0) = (−6.93, 0), where "
                "the reference's 10·log r falls to −∞ as r → 0⁺ (its push there grows as 10/r, ours stays near 5); for "
                "r ≤ 0 the reference is NaN, ours stays finite and keeps falling. Range: all reals, monotonic in s."),
    AlignMethod("pars_rat_topk", "g = ⟨d_π,K, d_ref,K⟩/‖d_ref,K‖₂² − 1, K = the k coordinates of largest |d_ref|",
                "The package's own form: pars_rat on the reference preference's top-k coordinates, "
                "k = min(--topk-dims, hidden/4), the other coordinates left free, inside the usual InnerDPO loss. NOT "
                "the reference's topk.py (branch topk, 54c1dc5, committed as 'doesn't really work'): that selects the "
                "same K but divides the projection by the unit vector's own coordinates (k ratios, not one) and is a "
                "standalone target loss, (T − ratio)² plus hinge terms with T = 2, with no DPO term (docs/methods.md)."),
    AlignMethod("learned_sign", "g = ⟨d_π ⊙ u, σ⟩, σ = tanh(θ) learned per layer and coordinate",
                "The seed's first note: a learned sign lets a coordinate's direction flip without the state crossing 0. "
                "σ = 1 is para_signed, σ = sign(d_π ⊙ u) direct_projection; θ starts at 1, trains at --learned-sign-lr, "
                "saved as learned_sign.safetensors."),
    AlignMethod("para", "g = log(‖a_π‖ + ε)",
                "Unsigned parallel magnitude (moving against the preference also scores).", current=False),
    AlignMethod("para_orth", "g = (lg‖a_π‖ − lg‖o_π‖) − (lg‖a_ref‖ − lg‖o_ref‖)", "Older name of logodds: the same function.", current=False, alias_of="logodds"),
    AlignMethod("para_orth2", "g = (‖a_π‖ − ‖a_ref‖) − (‖o_π‖ − ‖o_ref‖)",
                "logodds without logs, relative to the reference.", current=False),
    AlignMethod("orth", "g = −log(‖o_π‖ + ε)",
                "Only penalises orthogonal drift; says nothing about direction.", current=False),
    AlignMethod("direct_projection", "g = ‖d_π ⊙ u‖₁",
                "Unsigned element-wise projection, always ≥ |s|.", current=False),
    AlignMethod("direct_projection_log", "g = log(1 + ‖d_π ⊙ u‖₁ + ε)",
                "direct_projection compressed.", current=False),
    )
}
CURRENT_ALIGN_METHODS = tuple(name for name, a in ALIGN_METHODS.items() if a.current)
