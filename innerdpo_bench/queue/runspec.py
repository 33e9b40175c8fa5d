"""Run specs, what `queue add` stores for a worker: one per seed, validated now, and the order workers take runs in.

A spec is {"name": display name, "train": every TrainConfig field but output_dir (a train_eval run; the
worker writes it to RUN/train_spec.json for `innerdpo train --config`), "eval": {"suite", "limit"}, and
for an eval-only run "checkpoint"}; "eval" also holds "samples" (prompts per shift for `innerdpo eval --samples`)
when the entry asks for sample generations, and only then (so specs queued without it keep their identity). Importing this module loads no torch: the TUI and the CLI use it.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from innerdpo_bench.errors import UserError


def _absolute_if_path(value: str | None) -> str | None:
    """An existing relative path made absolute (the worker runs elsewhere); anything else as given."""
    if value and Path(value).expanduser().exists():
        return str(Path(value).expanduser().resolve())
    return value


def check_eval_options(suite: str | None, limit: int | None, samples: int | None = None) -> None:
    """UserError now, at queue time, for a suite, row limit or sample count that `innerdpo eval` would refuse later."""
    from innerdpo_bench.evaluation import suites

    suites.suite_refs(suite, None)
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1, got {limit}")
    if samples is not None and samples < 0:
        raise UserError(f"--samples must be 0 (none) or a positive number of prompts per shift, got {samples}")


def _eval_spec(suite: str | None, limit: int | None, samples: int | None) -> dict[str, Any]:
    return {"suite": suite, "limit": limit, **({"samples": samples} if samples else {})}


def train_specs(config: dict[str, Any], seeds: list[int] | None = None, suite: str | None = None,
                limit: int | None = None, samples: int | None = None) -> list[dict[str, Any]]:
    """One run spec per seed (`seeds` overrides config["seed"]), each validated as `innerdpo train` would,
    including against the base model's shape and the dataset reference (`check_run`); the method is stored by
    its canonical name, existing relative paths made absolute."""
    from innerdpo_bench.config import TrainConfig
    from innerdpo_bench.config.naming import display_name

    check_eval_options(suite, limit, samples)
    specs = []
    for seed in seeds if seeds else [config.get("seed", 0)]:
        cfg = check_run(TrainConfig(**{**config, "seed": seed}))
        cfg.method = cfg.canonical_method
        cfg.base_model = _absolute_if_path(cfg.base_model)
        cfg.dataset = _absolute_if_path(cfg.dataset)
        train = {key: value for key, value in cfg.to_dict().items() if key != "output_dir"}  # the worker's choice
        specs.append({"name": display_name(train), "train": train, "eval": _eval_spec(suite, limit, samples)})
    return specs


@functools.lru_cache(maxsize=32)
def _shape(base_model: str) -> tuple[int, int] | None:
    from innerdpo_bench.models import model_shape

    return model_shape(base_model)


def check_run(cfg):
    """`cfg.validate()` plus what a worker would otherwise find out only when it runs: the dataset reference
    parses (a mini split exists, a file exists), the base model exists, and the layers, ETHER blocks and supr
    layers fit its shape, read from its config.json (no weights; a hub model whose config.json cannot be read
    offline is left to the worker). Returns cfg; UserError naming the flag."""
    from innerdpo_bench.data.pairs import parse_dataset
    from innerdpo_bench.models import BUILTIN_MODELS, key_is_path

    cfg.validate()
    parse_dataset(cfg.dataset)
    key = cfg.base_model.strip()
    path = Path(key).expanduser()
    if key.lower() not in BUILTIN_MODELS:
        if path.exists() and not (path / "config.json").is_file():
            raise UserError(f"--base-model {key}: directory has no config.json (is it a model directory?)")
        if not path.exists() and key_is_path(key):
            raise UserError(f"--base-model {key} does not exist")
    shape = _shape(str(path.resolve()) if path.exists() else key)
    if shape is not None:
        cfg.check_model(*shape)
    return cfg


def base_spec(base_model: str, suite: str | None = None, limit: int | None = None,
              samples: int | None = None) -> dict[str, Any]:
    """An eval-only run of a base model (method "none"): the base-model row of the results table."""
    check_eval_options(suite, limit, samples)
    if not base_model.strip():
        raise UserError("BASE_MODEL is empty; give a hub id, a model directory, or tiny-random")
    return {"name": "none", "eval": {"checkpoint": _absolute_if_path(base_model), **_eval_spec(suite, limit, samples)}}


def parse_seeds(text: str | None) -> list[int] | None:
    """"1,2,3" → [1, 2, 3]; UserError naming --seeds otherwise."""
    if text is None:
        return None
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--seeds takes comma-separated integers like 1,2,3, not {text!r}") from None
    if not seeds:
        raise UserError("--seeds is empty; give comma-separated integers like 1,2,3")
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {text!r} repeats a seed")
    return seeds
