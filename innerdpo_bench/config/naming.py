"""Display names: a run's method plus what differs from that method's defaults (spec §9), so the runs of a
sweep can be told apart at a glance, e.g. `hs-none-InnerDPO align=logodds α=1`.

Rules (choices the spec leaves open):
  * only settings that change what is learned count: where the run is set up (base model, dataset, seed,
    steps, batch sizes, truncation lengths, device, precision, logging, output directory) does not, unless a sweep varies it
    (`always`), since a sweep's own axes must always show;
  * a setting counts only where the method uses it: the hidden-term settings for InnerDPO, `ether_*` for the
    ether transform, `supr_tau` for supr, `topk_dims` for `pars_rat_topk`, `learned_sign_lr` for
    `learned_sign`, β except for SimPER, label smoothing for a dpo output term, the trust-region form only
    with a trust region, patience and eval steps only with a validation split;
  * order: align method and α first (the paper's axes), then the rest in `TrainConfig` field order;
    numbers as `%g`, a switched-on flag as its label, a switched-off one as `no-<label>`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from innerdpo_bench.config import TrainConfig
from innerdpo_bench.methods.catalog import resolve_method

LABELS = {"align_method": "align", "alpha": "α", "beta": "β", "beta_h": "β_h", "learning_rate": "lr",
          "output_loss": "out", "trust_region": "trust", "trust_region_form": "trust_form",
          "layer_reduce": "reduce", "topk_dims": "topk", "nll_weight": "nll", "logp_agg": "agg",
          "ether_type": "ether", "ether_blocks": "ether_blocks", "ether_reduction": "ether_r",
          "label_smoothing": "ε", "warmup_ratio": "warmup", "weight_decay": "wd", "max_grad_norm": "clip"}
SETUP = frozenset({"method", "base_model", "dataset", "max_rows", "seed", "output_dir", "max_steps", "device",
                   "precision", "logging_steps", "gradient_checkpointing", "pack_prompt", "batch_size",
                   "effective_batch", "max_length", "max_prompt_length"})
HIDDEN_TERM = frozenset({"alpha", "beta_h", "align_method", "layers", "layer_reduce", "trust_region",
                         "trust_region_form", "norm_p", "norm_before_pool", "filter_sinks", "output_loss",
                         "topk_dims", "learned_sign_lr", "ether_type", "ether_blocks", "ether_reduction",
                         "supr_tau"})
FIRST = ("align_method", "alpha")
FIELDS = tuple(field.name for field in dataclasses.fields(TrainConfig))


def applies(key: str, train: Mapping[str, Any]) -> bool:
    """Whether setting `key` changes anything for the run `train` describes (see the module docstring)."""
    method = resolve_method(str(train.get("method") or "dpo"))
    if key in HIDDEN_TERM and not method.has_hidden_term:
        return False
    output_loss = train.get("output_loss") or method.output_loss
    conditions = {
        "ether_type": method.transform == "ether", "ether_blocks": method.transform == "ether",
        "ether_reduction": method.transform == "ether", "supr_tau": method.transform == "supr",
        "topk_dims": train.get("align_method") == "pars_rat_topk",
        "learned_sign_lr": train.get("align_method") == "learned_sign",
        "trust_region_form": bool(train.get("trust_region")), "beta": output_loss != "simper",
        "wpo_form": bool(train.get("wpo")),
        "label_smoothing": output_loss == "dpo",
        "eval_steps": bool(train.get("eval_fraction")), "patience": bool(train.get("eval_fraction")),
    }
    return conditions.get(key, True)


def _label(key: str, value: Any) -> str:
    label = LABELS.get(key, key)
    if isinstance(value, bool):
        return label if value else f"no-{label}"
    if isinstance(value, float):
        return f"{label}={value:g}"
    return f"{label}={value}"


def differing(train: Mapping[str, Any], always: Iterable[str] = ()) -> list[str]:
    """The keys of `train` that its display name shows, in display order."""
    method = resolve_method(str(train.get("method") or "dpo"))
    defaults = dataclasses.asdict(TrainConfig(method=method.name))
    always = set(always) - {"method", "seed"}
    shown = []
    for key in (*FIRST, *(key for key in FIELDS if key not in FIRST)):
        if key not in train:
            continue
        if key in always or (key not in SETUP and applies(key, train) and train[key] != defaults[key]):
            shown.append(key)
    return shown


def display_name(train: Mapping[str, Any], always: Iterable[str] = ()) -> str:
    """`hs-none-InnerDPO align=logodds α=1`: the canonical method name and each setting that differs from its
    defaults (`always`: keys a sweep varies, shown whatever their value)."""
    method = resolve_method(str(train.get("method") or "dpo")).name
    return " ".join([method, *(_label(key, train[key]) for key in differing(train, always))])


def eval_name(source_name: str, source_id: int) -> str:
    """The name of an evaluation-only re-run of run `source_id`: whose evaluation it is."""
    return f"{source_name} (eval of run {source_id})"
