"""`RunSpec`: what `queue add` stores for one run and a worker runs, typed; `to_json`/`from_json` are the only
places that know its JSON shape (the store keeps that JSON; no other module reads a spec by key).

The stored JSON (unchanged since the untyped specs, so every store written before reads back as it was):

    {"name": display name,
     "train": every TrainConfig field but output_dir (a train_eval run; absent for an eval-only run),
     "eval": {"suite", "limit", "samples" only when sample generations were asked for,
              "checkpoint" for an eval-only run: what it evaluates},
     "sweep": the sweep id of the `queue add` that queued it (absent before sweeps recorded one),
     "source_run": for an evaluation-only re-run of a run, that run's id,
     any other key: kept as it was (`RunSpec.extra`: a newer version's, or a test stage's instructions)}

"The config of a run" has one rule (`RunSpec.config` for a store run): the stored spec's `train`, the config the
run was asked to train with; a run directory's config.json (what training resolved and recorded) is the config
only of a run the store does not know.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from innerdpo_bench.config.fields import coerce
from innerdpo_bench.config.train import TrainConfig
from innerdpo_bench.errors import UserError

_KEYS = ("name", "train", "eval", "sweep", "source_run")
_EVAL_TYPES = {"suite": str | None, "limit": int | None, "samples": int | None, "checkpoint": str | None}


@dataclass(frozen=True)
class EvalSpec:
    """How a run is evaluated: the suite and row limit, sample prompts per shift (0/None: none) and, for an
    eval-only run, the checkpoint it scores (a base model, a run directory, an adapter)."""

    suite: str | None = None
    limit: int | None = None
    samples: int | None = None
    checkpoint: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"suite": self.suite, "limit": self.limit, **({"samples": self.samples} if self.samples else {}),
                **({"checkpoint": self.checkpoint} if self.checkpoint is not None else {})}

    @classmethod
    def from_json(cls, data: Any, where: str) -> EvalSpec:
        if not isinstance(data, dict):
            raise UserError(f"{where}: \"eval\" must be an object")
        unknown = sorted(set(data) - set(_EVAL_TYPES))
        if unknown:
            raise UserError(f"{where}: unknown eval option {unknown[0]!r}")
        return cls(**{key: coerce(_EVAL_TYPES[key], value, key, where) for key, value in data.items()})


@dataclass(frozen=True)
class RunSpec:
    """One queued run: its display `name`, its training config (`train`; None for an eval-only run), how it is
    evaluated, the sweep that queued it and, for an evaluation-only re-run, the run it re-scores."""

    name: str
    train: TrainConfig | None = None
    eval: EvalSpec = field(default_factory=EvalSpec)
    sweep: str | None = None
    source_run: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)   # keys this version does not know, as they were

    @property
    def config(self) -> TrainConfig | None:
        """The run's training config (module docstring: the one rule for "the config of a run")."""
        return self.train

    @property
    def method(self) -> str:
        """The training method, or "none" for a base model's eval-only run."""
        return self.train.canonical_method if self.train is not None else "none"

    @property
    def seed(self) -> int | None:
        return self.train.seed if self.train is not None else None

    @property
    def base_model(self) -> str | None:
        """The base model: the one trained on, else (an eval-only run of a base model) the one evaluated."""
        return self.train.base_model if self.train is not None else self.eval.checkpoint

    def replace(self, **changes: Any) -> RunSpec:
        return dataclasses.replace(self, **changes)

    def train_json(self) -> dict[str, Any]:
        """The train options as stored (every field but `output_dir`, which the worker chooses); {} for an eval-only
        run."""
        if self.train is None:
            return {}
        return {key: value for key, value in self.train.to_dict().items() if key != "output_dir"}

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name}
        if self.train is not None:
            data["train"] = self.train_json()
        data["eval"] = self.eval.to_json()
        if self.sweep is not None:
            data["sweep"] = self.sweep
        if self.source_run is not None:
            data["source_run"] = self.source_run
        return {**self.extra, **data}

    @classmethod
    def from_json(cls, data: Any, where: str = "run spec") -> RunSpec:
        """The spec a stored JSON object describes (module docstring); UserError naming `where` otherwise. Train
        options a newer spec lacks keep their defaults; the config is type-checked, not validated (validation
        belongs to `queue add` and to training)."""
        if not isinstance(data, dict):
            raise UserError(f"{where} must be a JSON object")
        train = data.get("train")
        return cls(
            name=str(data.get("name") or (train or {}).get("method") or "run"),
            train=TrainConfig.from_mapping(train, f"{where} \"train\"") if train is not None else None,
            eval=EvalSpec.from_json(data.get("eval") or {}, where),
            sweep=coerce(str | None, data.get("sweep"), "sweep", where),
            source_run=coerce(int | None, data.get("source_run"), "source_run", where),
            extra={key: value for key, value in data.items() if key not in _KEYS},
        )
