"""The layout of one run directory, atomic writes, and the status marker that says whether a run finished.

    RUN/
      config.json              the full resolved config (base model, data, seed, versions)
      status.json              {"state": running | complete | interrupted | failed, ...}; written last
      adapter/                 the PEFT LoRA adapter (lm-eval: `peft=RUN/adapter`)
      transforms.json          InnerDPO transform name, layers, options
      transforms.safetensors   its weights, when it has any
      metrics.jsonl            one record per logging step
      train.log                the training log
      eval.json                written by `innerdpo eval`
A directory whose status is not `complete` is never presented as a finished run.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from innerdpo_bench.errors import UserError

CONFIG = "config.json"
STATUS = "status.json"
ADAPTER = "adapter"
METRICS = "metrics.jsonl"
TRAIN_LOG = "train.log"
EVAL = "eval.json"


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True, default=str) + "\n")


def read_status(run_dir: Path) -> dict:
    path = Path(run_dir) / STATUS
    if not path.is_file():
        return {"state": "unknown"}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {"state": "unknown"}


def write_status(run_dir: Path, state: str, **extra) -> None:
    previous = read_status(run_dir)
    record = {k: v for k, v in previous.items() if k not in ("state", "error")}
    record.update(state=state, updated=now_iso(), **extra)
    write_json(Path(run_dir) / STATUS, record)


def is_run_dir(path: Path) -> bool:
    return (Path(path) / CONFIG).is_file()


def prepare_run_dir(path: Path) -> Path:
    """Create a fresh run directory; refuse one that already holds a run."""
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        state = read_status(path).get("state", "unknown")
        raise UserError(f"output directory {path} is not empty (holds a run with status {state}); choose another --output-dir")
    path.mkdir(parents=True, exist_ok=True)
    return path


def read_config(run_dir: Path) -> dict:
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run directory (no {CONFIG})")
    return json.loads(path.read_text())
