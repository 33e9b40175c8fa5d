"""User-facing method names (spec §9): what each adds to the output loss and which transform it uses."""

from __future__ import annotations

from dataclasses import dataclass

from innerdpo_bench.errors import unknown_choice


@dataclass(frozen=True)
class Method:
    name: str
    output_loss: str            # dpo | ipo
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
}


def resolve_method(name: str) -> Method:
    """The method for a user-given name, case-insensitive, seed spellings accepted
    (`hs-None-InnerDPO`, `hs-ETHER-InnerDPO`, `hs-SupressedHS-InnerDPO`)."""
    canonical = ALIASES.get(name.strip().lower())
    if canonical is None:
        raise unknown_choice("method", name, METHODS)
    return METHODS[canonical]
