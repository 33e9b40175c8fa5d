"""The layout of a run directory (a training run's and a queue run's), atomic writes, checksums and the status marker.

A training run directory is what `innerdpo train --output-dir RUN` writes (`TrainPaths`):

    RUN/
      config.json              the full resolved config (base model, data, seed, versions)
      status.json              {"state": running | complete | interrupted | failed, ...}; written last
      adapter/                 the PEFT LoRA adapter (lm-eval: `peft=RUN/adapter`)
      transforms.json          InnerDPO transform name, layers, options
      transforms.safetensors   its weights, when it has any
      metrics.jsonl            one record per logging step
      train.log                the training log
      checkpoints/checkpoint-N/  resumable training checkpoints while it runs (`resume.py`); gone once complete
      tensorboard/             TensorBoard event files (`--report-to tensorboard`, `innerdpo eval --report-to`)
      eval.json                written by `innerdpo eval` (the `evalreport.EvalReport` schema)
      eval_rows.jsonl          its per-row records (`rows_path_for`)

A directory whose status is not `complete` is never presented as a finished run.

A queue run directory is `HOME/runs/<id>-<slug>/`, where a worker runs one store run (`RunPaths`):

    worker.log               what workers did with the run: claims, commands, exit codes, requeues, errors
    train.log, eval.log      the subprocesses' stdout and stderr, appended over attempts (a file, never a pipe)
    worker.json              the subprocess running now (host, pid, stage), so a later attempt can stop a leftover
    train_spec.json          the run's stored training config: `innerdpo train --config` reads it
    checkpoint/              `innerdpo train --output-dir`: the training run directory above
    checkpoint.attempt-N/    an earlier attempt's unfinished checkpoint, moved aside and kept
    eval.json                eval-only runs (base models): `innerdpo eval BASE --output RUN/eval.json`

The checkpoint is a subdirectory because `train` refuses a non-empty --output-dir and the worker's logs
exist before train starts; so a train_eval run's eval.json is `checkpoint/eval.json`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from innerdpo_bench.errors import UserError

if TYPE_CHECKING:
    from innerdpo_bench.store import Run

CONFIG = "config.json"
STATUS = "status.json"
ADAPTER = "adapter"
METRICS = "metrics.jsonl"
TRAIN_LOG = "train.log"
EVAL = "eval.json"
ROWS_SUFFIX = "_rows.jsonl"
# The names `methods.transforms.save_transform` writes (methods/ imports nothing outside itself).
TRANSFORMS_CONFIG = "transforms.json"
TRANSFORMS_WEIGHTS = "transforms.safetensors"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")

RUNS_DIR = "runs"
CHECKPOINT = "checkpoint"
WORKER_LOG = "worker.log"
EVAL_LOG = "eval.log"
CHILD = "worker.json"
TRAIN_SPEC = "train_spec.json"
LOG_NAMES = (TRAIN_LOG, EVAL_LOG, WORKER_LOG)


# --------------------------------------------------------------------------- paths


def rows_path_for(eval_path: Path) -> Path:
    """`eval.json` → `eval_rows.jsonl`; `eval-x.json` → `eval-x_rows.jsonl`."""
    return eval_path.with_name(eval_path.stem + ROWS_SUFFIX)


def eval_path_for_rows(path: Path) -> Path | None:
    """The inverse of `rows_path_for`: `x_rows.jsonl` → `x.json`; None for a file that is not a rows file."""
    return path.with_name(path.name[: -len(ROWS_SUFFIX)] + ".json") if path.name.endswith(ROWS_SUFFIX) else None


@dataclass(frozen=True)
class TrainPaths:
    """The files of a training run directory (the first table of the module docstring)."""

    root: Path

    config = property(lambda self: self.root / CONFIG)
    status = property(lambda self: self.root / STATUS)
    adapter = property(lambda self: self.root / ADAPTER)
    transforms_config = property(lambda self: self.root / TRANSFORMS_CONFIG)
    transforms_weights = property(lambda self: self.root / TRANSFORMS_WEIGHTS)
    metrics = property(lambda self: self.root / METRICS)
    train_log = property(lambda self: self.root / TRAIN_LOG)
    eval_json = property(lambda self: self.root / EVAL)
    rows_file = property(lambda self: rows_path_for(self.eval_json))


@dataclass(frozen=True)
class RunPaths:
    """The files of a queue run directory (the second table of the module docstring); `kind` is the store
    run's: train_eval (trains into `checkpoint`, whose eval.json it is) or eval (an eval-only run)."""

    root: Path
    kind: str

    @classmethod
    def of(cls, run: Run) -> RunPaths:
        """The directory a worker gave `run` (ValueError before one claims it: check `run.run_dir` first)."""
        if not run.run_dir:
            raise ValueError(f"run {run.id} has no run directory yet")
        return cls(Path(run.run_dir), run.kind)

    worker_log = property(lambda self: self.root / WORKER_LOG)
    train_log = property(lambda self: self.root / TRAIN_LOG)
    eval_log = property(lambda self: self.root / EVAL_LOG)
    child = property(lambda self: self.root / CHILD)
    train_spec = property(lambda self: self.root / TRAIN_SPEC)
    checkpoint = property(lambda self: TrainPaths(self.root / CHECKPOINT))
    rows_file = property(lambda self: rows_path_for(self.eval_json))

    @property
    def eval_json(self) -> Path:
        return self.checkpoint.eval_json if self.kind == "train_eval" else self.root / EVAL

    @property
    def logs(self) -> dict[str, Path]:
        """train.log, eval.log and worker.log by name."""
        return {name: self.root / name for name in LOG_NAMES}

    def aside(self, attempt: int) -> Path:
        """Where an earlier attempt's unfinished checkpoint is moved: checkpoint.attempt-N."""
        return self.root / f"{CHECKPOINT}.attempt-{attempt}"


def slug(run: Run) -> str:
    """File-name-safe label for the run directory, e.g. `hs-none-InnerDPO-align-logodds-s1`."""
    label = run.name
    seed = run.spec.get("train", {}).get("seed")
    if seed is not None:
        label += f"-s{seed}"
    elif run.kind == "eval":
        label += "-" + Path(str(run.spec.get("eval", {}).get("checkpoint", ""))).name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-.")[:80] or "run"


def default_run_dir(home: Path, run: Run) -> Path:
    """HOME/runs/<id>-<slug>."""
    return home / RUNS_DIR / f"{run.id}-{slug(run)}"


# --------------------------------------------------------------------------- checksums


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=1024)
def _sha256_stamped(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(Path(path))


def adapter_sha256(adapter_dir: str | os.PathLike | None) -> str | None:
    """sha256 of an adapter's weights file (adapter_model.safetensors, else .bin); None without an adapter or
    that file. Cached by path, size and modification time: the evaluation cache, the score cache and
    provenance all ask for it."""
    if adapter_dir is None:
        return None
    for name in ADAPTER_WEIGHTS:
        path = Path(adapter_dir) / name
        try:
            info = path.stat()
        except OSError:
            continue
        return _sha256_stamped(str(path), info.st_size, info.st_mtime_ns)
    return None


# --------------------------------------------------------------------------- writes and the status marker


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _file_mode() -> int:
    """The mode `open()` would give a new file under the process's umask (0644 under the usual 022): mkstemp's
    temporary files are 0600, which the rename would otherwise keep. Read from /proc where it can be, else by
    setting and restoring the umask (not thread-safe, so done once, at import)."""
    try:
        status = Path("/proc/self/status").read_text()
        umask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Umask:")), 8)
    except (OSError, StopIteration, ValueError, IndexError):
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so readers never see half a file; the file gets the mode a plain
    `open()` would (`FILE_MODE`), not mkstemp's 0600."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
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
