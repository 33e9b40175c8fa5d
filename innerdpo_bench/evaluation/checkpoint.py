"""What an `innerdpo eval` CHECKPOINT names: a run, an adapter or a model, and the base model it needs.

CHECKPOINT is one of
  * a run directory (`config.json` naming a method, `adapter/`; its status must be `complete`);
  * a PEFT adapter directory (`adapter_config.json`; the base model is its `base_model_name_or_path`);
  * a full model directory, a hub id, or a built-in base (`tiny-random`, `smollm2-135m`): the
    base-model row of a results table (method "none").
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from innerdpo_bench import rundir
from innerdpo_bench.errors import UserError
from innerdpo_bench.models import builtin_name, resolve_base_model


@dataclass(frozen=True)
class Checkpoint:
    """What CHECKPOINT resolved to."""

    spec: str                  # as given
    kind: str                  # run | adapter | model
    base_model: str            # as named: run config's base_model, adapter's base_model_name_or_path, or spec
    base_model_path: str       # what from_pretrained gets
    adapter: str | None = None
    run_dir: Path | None = None
    config: dict = field(default_factory=dict)

    def identity(self) -> dict:
        """method / display_name / seed for eval.json: from the run config; "none" for a base model;
        unknown (None, the directory name) for a bare adapter."""
        if self.kind == "run":
            return {k: self.config.get(k) for k in ("method", "display_name", "seed")}
        if self.kind == "model":
            return {"method": "none", "display_name": "none", "seed": None}
        return {"method": None, "display_name": self.name, "seed": None}

    def describe(self) -> dict:
        """The eval.json keys that name what was evaluated (`evalreport.EvalReport`)."""
        return {"checkpoint": str(self.run_dir or self.adapter or self.spec), "kind": self.kind,
                "base_model": self.base_model, "base_model_path": self.base_model_path, "adapter": self.adapter,
                **self.identity()}

    @property
    def name(self) -> str:
        """A file-name-safe label for `eval-<name>.json`."""
        if self.run_dir is not None:
            label = self.run_dir.name
        elif self.adapter is not None:
            path = Path(self.adapter)
            label = f"{path.parent.name}-{path.name}" if path.name == rundir.ADAPTER else path.name
        else:
            label = builtin_name(self.spec) or (Path(self.spec).name if Path(self.spec).is_dir() else self.spec)
        return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-") or "checkpoint"

    def default_eval_path(self) -> Path:
        """RUN/eval.json for a run directory, else ./eval-<name>.json."""
        if self.run_dir is not None:
            return rundir.TrainPaths(self.run_dir).eval_json
        return Path.cwd() / f"eval-{self.name}.json"


def _looks_like_path(text: str) -> bool:
    first = text.split("/", 1)[0]
    return text.startswith((".", "/", "~")) or text.count("/") > 1 or ("/" in text and Path(first).is_dir())


def _is_run_dir(path: Path) -> bool:
    if not rundir.is_run_dir(path):
        return False
    try:
        config = json.loads(rundir.TrainPaths(path).config.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):  # not UTF-8 or not JSON: `_run_checkpoint` says which
        return (path / rundir.ADAPTER).is_dir()
    return isinstance(config, dict) and "method" in config and "base_model" in config


def resolve_checkpoint(spec: str) -> Checkpoint:
    """Classify CHECKPOINT (see the module docstring) and resolve its base model; UserError if it is
    missing, unfinished or unrecognisable."""
    text = spec.strip()
    path = Path(text).expanduser()
    if path.is_dir():
        path = path.resolve()
        if (path / "adapter_config.json").is_file():
            return _adapter_checkpoint(text, path)
        if _is_run_dir(path):
            return _run_checkpoint(text, path)
        if (path / "config.json").is_file():
            return Checkpoint(text, "model", str(path), resolve_base_model(str(path)))
        raise UserError(f"checkpoint {text} is not a run, adapter or model directory "
                        "(no config.json or adapter_config.json)")
    if path.exists():
        raise UserError(f"checkpoint {text} is a file; give a run, adapter or model directory, a hub id or a built-in name")
    if _looks_like_path(text):
        raise UserError(f"checkpoint {text} does not exist")
    return Checkpoint(text, "model", text, resolve_base_model(text))


def _run_checkpoint(text: str, path: Path) -> Checkpoint:
    config = rundir.read_config(path)
    status = rundir.read_status(path)
    state = status.get("state", "unknown")
    if "unreadable" in status:
        raise UserError(status["unreadable"])
    if state != "complete":
        raise UserError(f"run {path} is not complete (status {state}); only finished runs can be evaluated")
    adapter = rundir.TrainPaths(path).adapter
    if not (adapter / "adapter_config.json").is_file():
        raise UserError(f"run {path} has no adapter ({adapter}/adapter_config.json is missing)")
    base_path = config.get("base_model_path")
    if not base_path or not Path(base_path).exists():  # cache moved, or a hub id: resolve the name again
        base_path = resolve_base_model(config["base_model"])
    return Checkpoint(text, "run", config["base_model"], base_path, str(adapter), path, config)


def _adapter_checkpoint(text: str, path: Path) -> Checkpoint:
    try:
        adapter_config = json.loads((path / "adapter_config.json").read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path}/adapter_config.json is not valid JSON ({err.msg})") from None
    base = adapter_config.get("base_model_name_or_path")
    if not base:
        raise UserError(f"{path}/adapter_config.json has no base_model_name_or_path; evaluate the run directory instead")
    return Checkpoint(text, "adapter", base, resolve_base_model(base), str(path))
