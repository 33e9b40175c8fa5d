"""Sweeps: the cartesian product of train-flag values and seeds as run specs, every run checked before any is
queued (`innerdpo queue add METHOD --grid KEY=V1,V2 --seeds 1,2` or `--sweep FILE.yaml`).

A sweep file is YAML (or JSON) with these keys, all optional but a method somewhere:

    method: hs-none-InnerDPO          # or a `method` axis in grid
    base:                             # any `innerdpo train` option, snake_case or kebab-case
      base_model: tiny-random
      dataset: mini:in_domain
      max_steps: 3
    grid:                             # axis → list of values (a scalar is a one-value axis)
      align_method: [para_signed, logodds, cosine_cross_model]
      alpha: [0.1, 1]
    seeds: [1, 2]                     # or "1,2"
    suite: mini                       # evaluation options
    limit: 16
    samples: 3                        # greedy completions per shift after scoring

Train options may also sit at the top level beside `grid` (the same as under `base`). Flags given on the
command line override the file's base, `--grid KEY=...` replaces the file's axis of that key, `--seeds` its
seeds. Choices: runs are ordered axis by axis in the order the axes were given (the last axis varies
fastest), seeds innermost, so a seed group's runs sit together in the queue; `seed` and `output_dir` cannot
be axes (seeds are `--seeds`; the worker chooses run directories); every queued run records the sweep id
(`RunSpec.sweep`, `sweep_id()`), a single run as a sweep of one.
"""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from innerdpo_bench.config import TrainConfig
from innerdpo_bench.config.fields import coerce, field_name, hints
from innerdpo_bench.config.spec import RunSpec
from innerdpo_bench.errors import UserError, did_you_mean

GRID_HELP = ("KEY=V1,V2: queue one run per value (repeat for more axes: the cartesian product, times --seeds). KEY "
             "is any train option (snake_case or kebab-case), method included, e.g. --grid align_method=logodds,"
             "cosine_cross_model --grid alpha=0.1,1.")
NOT_AXES = ("seed", "output_dir")
FILE_KEYS = ("method", "base", "grid", "seeds", "suite", "limit", "samples")


@dataclass
class Sweep:
    """What a sweep queues: `base` train options, `grid` axes (key → values), seeds and evaluation options; values
    already of their field's type (`fields.coerce`), so the cells are `TrainConfig.from_mapping`'s input as they are."""

    base: dict[str, Any] = field(default_factory=dict)
    grid: dict[str, list[Any]] = field(default_factory=dict)
    seeds: list[int] | None = None
    suite: str | None = None
    limit: int | None = None
    samples: int | None = None


def option_key(key: str, where: str, config: type[TrainConfig] = TrainConfig) -> str:
    """A train option's field name from `alpha`, `align-method` or `--align-method`; UserError naming `where`."""
    name = field_name(key)
    if name not in hints(config):
        raise UserError(f"{where}: unknown train option {key!r}.{did_you_mean(name, hints(config))} Options are the "
                        "`innerdpo train` flags.")
    return name


def _value(key: str, value: Any, where: str, config: type[TrainConfig], text: bool = False) -> Any:
    return coerce(hints(config)[key], value, key, where, text=text)


def _axis(key: str, where: str, config: type[TrainConfig] = TrainConfig) -> str:
    name = option_key(key, where, config)
    if name in NOT_AXES:
        raise UserError(f"{where}: {name} cannot be a grid axis" + (" (use --seeds)" if name == "seed" else ""))
    return name


def parse_grid(items: Sequence[str], config: type[TrainConfig] = TrainConfig) -> dict[str, list[Any]]:
    """["alpha=0.1,1", ...] → {"alpha": [0.1, 1.0]}; UserError naming the --grid item."""
    grid: dict[str, list[Any]] = {}
    for item in items or ():
        where = f"--grid {item!r}"
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise UserError(f"{where}: expected KEY=V1,V2 (e.g. --grid alpha=0.1,1)")
        name = _axis(key, where, config)
        if name in grid:
            raise UserError(f"{where}: {name} is already an axis; give its values once")
        parsed = [_value(name, text, where, config, text=True) for text in values.split(",") if text.strip()]
        if len(set(map(repr, parsed))) != len(parsed):
            raise UserError(f"{where}: a value repeats")
        grid[name] = parsed
    return grid


def load_sweep(path: str | Path, config: type[TrainConfig] = TrainConfig) -> Sweep:
    """The Sweep a YAML or JSON file describes (see the module docstring); UserError naming the file and key."""
    import yaml

    path = Path(path).expanduser()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UserError(f"cannot read --sweep {path} ({err.strerror or err})") from None
    except yaml.YAMLError as err:
        raise UserError(f"--sweep {path} is not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"--sweep {path} must hold a mapping with method, base, grid, seeds, suite, limit, samples")
    sweep = Sweep()
    names = hints(config)
    base = data.pop("base", None) or {}
    if not isinstance(base, dict):
        raise UserError(f"--sweep {path}: base must be a mapping of train options")
    for key in list(data):
        if key not in FILE_KEYS and field_name(key) in names:
            base[key] = data.pop(key)   # a train option at the top level
    for key in data:
        if key not in FILE_KEYS:
            raise UserError(f"--sweep {path}: unknown key {key!r}.{did_you_mean(str(key), FILE_KEYS + tuple(names))}")
    if data.get("method") is not None:
        base["method"] = data["method"]
    for key, value in base.items():
        name = option_key(str(key), f"--sweep {path} base", config)
        if name == "output_dir":
            raise UserError(f"--sweep {path}: output_dir is the worker's choice")
        sweep.base[name] = _value(name, value, f"--sweep {path} base", config)
    grid = data.get("grid") or {}
    if not isinstance(grid, dict):
        raise UserError(f"--sweep {path}: grid must map train options to lists of values")
    for key, values in grid.items():
        where = f"--sweep {path} grid"
        name = _axis(str(key), where, config)
        values = values if isinstance(values, list) else [values]
        if not values:
            raise UserError(f"{where}: {name} has no values")
        sweep.grid[name] = [_value(name, value, f"{where} {name}", config) for value in values]
    seeds = data.get("seeds")
    if seeds is not None:
        from innerdpo_bench.queue.runspec import parse_seeds

        text = ",".join(map(str, seeds)) if isinstance(seeds, list) else str(seeds)
        sweep.seeds = parse_seeds(text)
    sweep.suite = data.get("suite")
    if sweep.suite is not None and not isinstance(sweep.suite, str):
        raise UserError(f"--sweep {path}: suite must be a string")
    sweep.limit = data.get("limit")
    if sweep.limit is not None and (not isinstance(sweep.limit, int) or isinstance(sweep.limit, bool)):
        raise UserError(f"--sweep {path}: limit must be an integer")
    sweep.samples = data.get("samples")
    if sweep.samples is not None and (not isinstance(sweep.samples, int) or isinstance(sweep.samples, bool)):
        raise UserError(f"--sweep {path}: samples must be an integer")
    return sweep


def sweep_id() -> str:
    """A new sweep id: the time it was queued and a random suffix, e.g. `1202-171530-a3`."""
    return f"{time.strftime('%m%d-%H%M%S')}-{secrets.token_hex(1)}"


def cells(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of the axes, as {key: value} per cell (one empty cell without axes)."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[key] for key in keys))]


def _describe_cell(cell: Mapping[str, Any], seed: Any) -> str:
    return " ".join([*(f"{key}={value}" for key, value in cell.items()), f"seed {seed}"])


def sweep_specs(sweep: Sweep, sweep_ident: str | None = None,
                config: type[TrainConfig] = TrainConfig) -> list[RunSpec]:
    """Every run of the sweep as a run spec (`runspec.train_specs`: each cell's options through
    `TrainConfig.from_mapping`, the one parser, then checked completely; named by what differs from the method's
    defaults plus every axis); UserError "run K of N (cell): why" for the first bad one, so nothing is queued. Each
    spec records `sweep_ident`."""
    from innerdpo_bench.queue.runspec import eval_spec, train_specs

    evaluation = eval_spec(sweep.suite, sweep.limit, sweep.samples)
    if "method" not in sweep.base and "method" not in sweep.grid:
        raise UserError("give METHOD (e.g. innerdpo queue add dpo), a method axis (--grid method=dpo,ipo) or a "
                        "sweep file with method")
    runs = [(cell, seed) for cell in cells(sweep.grid)
            for seed in (sweep.seeds or [sweep.base.get("seed", 0)])]
    specs = []
    for index, (cell, seed) in enumerate(runs, 1):
        prefix = f"run {index} of {len(runs)} ({_describe_cell(cell, seed)}): " if len(runs) > 1 else ""
        try:
            cfg = config.from_mapping({**sweep.base, **cell}, "a sweep cell")
            spec, = train_specs(cfg, [seed], evaluation, always=sweep.grid, sweep=sweep_ident)
        except UserError as err:
            raise UserError(f"{prefix}{err}") from None
        specs.append(spec)
    return specs
