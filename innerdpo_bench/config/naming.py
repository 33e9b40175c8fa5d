"""Display names: a run's method plus what differs from that method's defaults (spec §9), so the runs of a
sweep can be told apart at a glance, e.g. `hs-none-InnerDPO align=logodds α=1`.

Rules (choices the spec leaves open), all read off the fields' metadata (`TrainConfig.info`):
  * only `experiment` fields count, the data (dataset, as its file name for a path, and a row limit) included,
    last; `setup` ones (base model, seed, steps, batch sizes, truncation lengths, device, precision, logging) do
    not, unless a sweep varies them (`always`), since a sweep's own axes must always show; `bookkeeping` ones
    (output directory, trackers, checkpoints, reference cache) never do;
  * a field counts only where it applies (`FieldInfo.applies`: the hidden-term settings for InnerDPO, `ether_*`
    for the ether transform, `supr_tau` for supr, `topk_dims` for `pars_rat_topk`, `learned_sign_lr` for
    `learned_sign`, β except for SimPER, label smoothing for a dpo output term, the trust-region form only
    with a trust region, patience and eval steps only with a validation split);
  * order: align method and α first (the paper's axes), the data last (what most often differs between
    workspaces, not between a sweep's runs), the rest in `TrainConfig` field order between; each shown
    by its label (`FieldInfo.label`, e.g. α), numbers as `%g`, a switched-on flag as its label, a switched-off
    one as `no-<label>`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import PurePath
from typing import Any

from innerdpo_bench.config.train import TrainConfig

FIRST = ("align_method", "alpha")
LAST = ("dataset", "max_rows")


def label(name: str, config: type[TrainConfig] = TrainConfig) -> str:
    """How a name shows a field (`FieldInfo.label`: `alpha` → α); any other key (an eval option) as it is."""
    return (config.info(name).label or name) if name in config.__dataclass_fields__ else name


def _shown(config: type[TrainConfig], name: str, value: Any) -> str:
    text = label(name, config)
    if name == "dataset" and isinstance(value, str) and PurePath(value).suffix in (".json", ".jsonl", ".parquet"):
        value = PurePath(value).name   # a file: its name (a hub id or a mini split as given)
    if isinstance(value, bool):
        return text if value else f"no-{text}"
    if isinstance(value, float):
        return f"{text}={value:g}"
    return f"{text}={value}"


@functools.lru_cache(maxsize=16)
def _defaults(config: type[TrainConfig], method: str) -> TrainConfig:
    return config(method=method)


def differing(cfg: TrainConfig, always: Iterable[str] = ()) -> list[str]:
    """The fields of `cfg` that its display name shows, in display order."""
    config = type(cfg)
    defaults = _defaults(config, cfg.canonical_method)
    always = set(always) - {"method", "seed"}
    order = (*FIRST, *(name for name in config.names() if name not in FIRST + LAST), *LAST)
    return [name for name in order
            if name in always or (config.info(name).role == "experiment" and cfg.applies(name)
                                  and getattr(cfg, name) != getattr(defaults, name))]


def display_name(cfg: TrainConfig, always: Iterable[str] = ()) -> str:
    """`hs-none-InnerDPO align=logodds α=1`: the canonical method name and each setting that differs from its
    defaults (`always`: fields a sweep varies, shown whatever their value)."""
    shown = (_shown(type(cfg), name, getattr(cfg, name)) for name in differing(cfg, always))
    return " ".join([cfg.canonical_method, *shown])


def eval_name(source_name: str, source_id: int) -> str:
    """The name of an evaluation-only re-run of run `source_id`: whose evaluation it is."""
    return f"{source_name} (eval of run {source_id})"
