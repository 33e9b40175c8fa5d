"""The variants `bench/train_step.py` measures: TRL's DPOTrainer, our methods (live reference and from the
reference-pass cache), and our methods with options."""

from __future__ import annotations

# A method plus options: the align methods of the seed's later work, its trust-region floor, SimPER and WPO.
VARIANT_OPTIONS: dict[str, tuple[str, dict]] = {
    "hs-none-pars_rat": ("hs-none-InnerDPO", {"align_method": "pars_rat"}),
    "hs-none-pars_rat_log": ("hs-none-InnerDPO", {"align_method": "pars_rat_log"}),
    "hs-none-pars_rat_topk": ("hs-none-InnerDPO", {"align_method": "pars_rat_topk"}),
    "hs-none-learned_sign": ("hs-none-InnerDPO", {"align_method": "learned_sign"}),
    "hs-none-clamp_bottom": ("hs-none-InnerDPO", {"align_method": "pars_rat", "trust_region": 2.0,
                                                  "trust_region_form": "bottom"}),
    "hs-none-simper": ("hs-none-InnerDPO", {"output_loss": "simper"}),
    "dpo-wpo": ("dpo", {"wpo": True}),
}
# `-cached`: the same run reading the reference from the reference-pass cache (`--ref-cache on`, refcache.py); every
# other variant of ours runs the reference live (`--ref-cache off`), as the uncached baseline.
CACHED = ["dpo-cached", "hs-none-InnerDPO-cached", "hs-supr-InnerDPO-cached"]
DEFAULT_OURS = ["dpo", "ipo", "hs-none-InnerDPO", "hs-ether-InnerDPO", "hs-supr-InnerDPO", *CACHED]
OURS = [*DEFAULT_OURS, "simper", *VARIANT_OPTIONS]
VARIANTS = ["trl-dpo"] + DEFAULT_OURS
# For information, not in the default run (it must fit in 10 minutes on the 2-core CPU with the eval bench):
# simper and the methods with options; TRL's own defaults, which turn gradient checkpointing on (less memory,
# more time), and our dpo with --gradient-checkpointing.
EXTRA_VARIANTS = ["simper", *VARIANT_OPTIONS, "trl-dpo-default", "dpo-gc"]
TIMED = ("trl-dpo", "trl-dpo-default", "dpo", "dpo-gc")  # standalone runs that also measure step time
# In the paired run only, no standalone child (which would cost a minute each of the 10): ipo's step is dpo's (they
# differ in one scalar of the loss), and dpo-cached's memory has no target; its time against TRL is derived as dpo's
# standalone step × the paired dpo-cached/dpo ratio (`bench/cache_targets.py`).
PAIRED_ONLY = ("ipo", "dpo-cached")
# Each gets a time (paired) and a memory ratio to dpo, with the InnerDPO target 1.10.
BESIDE_DPO = ("hs-none-InnerDPO", "hs-ether-InnerDPO", "hs-supr-InnerDPO", "simper", *VARIANT_OPTIONS)


def variant_config(variant: str, **fields):
    """The validated TrainConfig of one of our variants: its method and options, `-gc` for gradient checkpointing."""
    from innerdpo_bench.config import TrainConfig

    name = variant.removesuffix("-gc").removesuffix("-cached")
    method, options = VARIANT_OPTIONS.get(name, (name, {}))
    return TrainConfig(method=method, gradient_checkpointing=variant.endswith("-gc"),
                       ref_cache="on" if variant.endswith("-cached") else "off", **options, **fields).validate()
