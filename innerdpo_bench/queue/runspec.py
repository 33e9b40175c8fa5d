"""Making run specs (`config.spec.RunSpec`) for `queue add`: one per seed, each checked now, so a queued run never
fails on a bad flag. Importing this module loads no torch: the TUI and the CLI use it.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from pathlib import Path

from innerdpo_bench.config import TrainConfig
from innerdpo_bench.config.naming import display_name
from innerdpo_bench.config.spec import EvalSpec, RunSpec
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


def eval_spec(suite: str | None = None, limit: int | None = None, samples: int | None = None,
              checkpoint: str | None = None) -> EvalSpec:
    """The evaluation options, checked as `innerdpo eval` would check them."""
    check_eval_options(suite, limit, samples)
    return EvalSpec(suite=suite, limit=limit, samples=samples or None, checkpoint=checkpoint)


def train_specs(config: TrainConfig, seeds: list[int] | None = None, evaluation: EvalSpec | None = None,
                always: Iterable[str] = (), sweep: str | None = None) -> list[RunSpec]:
    """One run spec per seed (`seeds` overrides config.seed), each checked completely (`check_run`, the queue's
    boundary); the method is stored by its canonical name, existing relative paths made absolute, the run directory
    left to the worker. Named by what differs from the method's defaults, `always` (a sweep's axes) included."""
    specs = []
    for seed in seeds if seeds else [config.seed]:
        cfg = check_run(dataclasses.replace(config, seed=seed, output_dir=None))
        cfg = dataclasses.replace(cfg, method=cfg.canonical_method, base_model=_absolute_if_path(cfg.base_model),
                                  dataset=_absolute_if_path(cfg.dataset))
        specs.append(RunSpec(name=display_name(cfg, always), train=cfg, eval=evaluation or EvalSpec(), sweep=sweep))
    return specs


@functools.lru_cache(maxsize=32)
def _shape(base_model: str):
    from innerdpo_bench.models import model_shape

    return model_shape(base_model)


def check_run(cfg: TrainConfig) -> TrainConfig:
    """`cfg.validate()` plus what a worker would otherwise find out only when it runs: the dataset reference
    parses (a mini split exists, a file exists), the base model exists, and --max-length, --lora-r, the layers,
    ETHER blocks and supr layers fit its shape, read from its config.json (no weights; a hub model whose
    config.json cannot be read offline is left to the worker). Returns cfg; UserError naming the flag."""
    from innerdpo_bench.data.pairs import parse_dataset

    cfg.validate()
    parse_dataset(cfg.dataset)
    shape = _shape(_check_base_model(cfg.base_model, "--base-model"))
    if shape is not None:
        cfg.check_model(*shape)
    return cfg


def _check_base_model(key: str, flag: str) -> str:
    """UserError naming `flag` for a model path that does not exist or is no model directory; the key `model_shape`
    reads (an existing path made absolute)."""
    from innerdpo_bench.models import BUILTIN_MODELS, key_is_path

    key = key.strip()
    path = Path(key).expanduser()
    if key.lower() not in BUILTIN_MODELS:
        if path.exists() and not (path / "config.json").is_file():
            raise UserError(f"{flag} {key}: directory has no config.json (is it a model directory?)")
        if not path.exists() and key_is_path(key):
            raise UserError(f"{flag} {key} does not exist")
    return str(path.resolve()) if path.exists() else key


def base_spec(base_model: str, suite: str | None = None, limit: int | None = None,
              samples: int | None = None) -> RunSpec:
    """An eval-only run of a base model (method "none"): the base-model row of the results table."""
    if not base_model.strip():
        raise UserError("BASE_MODEL is empty; give a hub id, a model directory, or tiny-random")
    _check_base_model(base_model, "BASE_MODEL")
    return RunSpec(name="none", eval=eval_spec(suite, limit, samples, _absolute_if_path(base_model)))


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
