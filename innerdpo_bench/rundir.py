"""The layout of a run directory (a training run's and a queue run's), atomic writes, checksums and the status marker.

A training run directory is what `innerdpo train --output-dir RUN` writes (`TrainPaths`):

    RUN/
      config.json              the full resolved config (base model, data, seed, versions)
      status.json              {"state": running | complete | interrupted | failed, ...}; written last
      adapter/                 the PEFT LoRA adapter (lm-eval: `peft=RUN/adapter`)
      transforms.json          InnerDPO transform name, layers, options
      transforms.safetensors   its weights, when it has any
      learned_sign.safetensors the learned_sign align method's sign logits
      metrics.jsonl            one record per logging step
      train.log                the training log
      checkpoints/checkpoint-N/  resumable training checkpoints while it runs (`resume.py`); gone once complete
      tensorboard/             TensorBoard event files (`--report-to tensorboard`, `innerdpo eval --report-to`)
      eval.json                written by `innerdpo eval` (the `evalreport.EvalReport` schema)
      eval_rows-<sha16>.jsonl  its per-row records, named by content (`rows_path_for`; `write_eval_pair`)

A directory whose status is not `complete` is never presented as a finished run.

A queue run directory is `HOME/runs/<id>-<slug>/`, where a worker runs one store run (`RunPaths`):

    run.json                 the store's row of the run (id, name, kind, spec), written at each claim: `innerdpo doctor
                             --repair` puts a run back into a store that lost it from this and the files below
    worker.log               what workers did with the run: claims, commands, exit codes, requeues, errors
    train.log, eval.log      the subprocesses' stdout and stderr, appended over attempts (a file, never a pipe)
    worker.json              the subprocess running now (host, pid, stage), so a later attempt can stop a leftover
    train_spec.json          the run's stored training config: `innerdpo train --config` reads it
    checkpoint/              `innerdpo train --output-dir`: the training run directory above
    checkpoint.attempt-N/    an earlier attempt's unfinished checkpoint, moved aside and kept
    eval.json                eval-only runs (base models): `innerdpo eval BASE`, published by the worker
    eval.attempt-N/          claim N's evaluation (eval.json, its rows, samples) until the worker publishes it to
                             eval.json (checkpoint/eval.json for a trained run) under a claim that still holds

The checkpoint is a subdirectory because `train` refuses a non-empty --output-dir and the worker's logs
exist before train starts; so a train_eval run's eval.json is `checkpoint/eval.json`.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from innerdpo_bench.errors import UserError
from innerdpo_bench.files import (LEGACY_TEMP_NAME, TEMP_NAME, atomic_write_text, leftover_temp,
                                  sha256_file_memo)

if TYPE_CHECKING:
    from innerdpo_bench.store import Run

CONFIG = "config.json"
STATUS = "status.json"
ADAPTER = "adapter"
METRICS = "metrics.jsonl"
PROGRESS = "progress.json"   # training's heartbeat, replaced every step: step, max_steps, time, seconds per step
TRAIN_LOG = "train.log"
EVAL = "eval.json"
ROWS_SUFFIX = "_rows.jsonl"
# The InnerDPO transform (`save_transform`) and the learned sign (`save_learned_sign`); methods/ does no I/O.
TRANSFORMS_CONFIG = "transforms.json"
TRANSFORMS_WEIGHTS = "transforms.safetensors"
LEARNED_SIGN = "learned_sign.safetensors"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")

RUNS_DIR = "runs"
CHECKPOINT = "checkpoint"
WORKER_LOG = "worker.log"
EVAL_LOG = "eval.log"
CHILD = "worker.json"
RUN_RECORD = "run.json"
REMOVED_NOTE = "removed from the store (innerdpo queue rm)"   # worker.log's last line for a removed run
TRAIN_SPEC = "train_spec.json"
STAGED_EVAL = "eval.attempt-"   # eval.attempt-N/: claim N's evaluation, published to eval.json under its claim
LOG_NAMES = (TRAIN_LOG, EVAL_LOG, WORKER_LOG)


# --------------------------------------------------------------------------- paths


ROWS_NAME = re.compile(r"(?P<stem>.+)_rows(?:-(?P<sha>[0-9a-f]{16}))?\.jsonl")


def rows_path_for(eval_path: Path, rows_sha256: str | None = None) -> Path:
    """`eval.json` → `eval_rows-<first 16 hex of rows_sha256>.jsonl` (`eval-x.json` → `eval-x_rows-….jsonl`); without
    a checksum, the name files had before rows were named by content: `eval_rows.jsonl`."""
    tag = f"-{rows_sha256[:16]}" if rows_sha256 else ""
    return eval_path.with_name(f"{eval_path.stem}_rows{tag}.jsonl")


def eval_path_for_rows(path: Path) -> Path | None:
    """The inverse of `rows_path_for`: `x_rows[-sha].jsonl` → `x.json`; None for a file that is not a rows file."""
    match = ROWS_NAME.fullmatch(path.name)
    return path.with_name(match["stem"] + ".json") if match else None


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
    progress = property(lambda self: self.root / PROGRESS)
    train_log = property(lambda self: self.root / TRAIN_LOG)
    eval_json = property(lambda self: self.root / EVAL)


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
    record = property(lambda self: self.root / RUN_RECORD)
    train_spec = property(lambda self: self.root / TRAIN_SPEC)
    checkpoint = property(lambda self: TrainPaths(self.root / CHECKPOINT))

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

    def staged_eval(self, claim: int) -> Path:
        """Where claim `claim`'s evaluation writes its eval.json (rows and samples beside it): eval.attempt-N/, until
        the worker publishes it to `eval_json` under a claim that still holds (`publish_eval`)."""
        return self.root / f"{STAGED_EVAL}{claim}" / EVAL

    def staged_evals(self) -> list[Path]:
        """Every attempt's staging folder (eval.attempt-N/) in the run directory."""
        return sorted(path for path in self.root.glob(f"{STAGED_EVAL}*") if path.is_dir()) if self.root.is_dir() else []


def publish_eval(staged: Path, eval_path: Path) -> bool:
    """Move a staged evaluation (eval.json, its rows file, samples) beside `eval_path`, eval.json last by atomic
    rename, as `write_eval_pair` writes one: a reader sees the old pair or the new one. Then the pair's leftovers go
    (rows files the new eval.json does not name). False, moving nothing, when `staged` is no longer there (published
    already: a store transaction that runs it may run twice)."""
    if not staged.is_file():
        return False
    eval_path.parent.mkdir(parents=True, exist_ok=True)
    for path in sorted(staged.parent.iterdir()):
        temporary = TEMP_NAME.fullmatch(path.name) or LEGACY_TEMP_NAME.fullmatch(path.name)   # a killed write's
        if path != staged and path.is_file() and not temporary:
            os.replace(path, eval_path.parent / path.name)   # both are named eval.json: the rows' names hold
    os.replace(staged, eval_path)
    for path in leftover_files(eval_path.parent, stem=eval_path.stem):
        path.unlink(missing_ok=True)
    return True


def slug(run: Run) -> str:
    """File-name-safe label for the run directory, e.g. `hs-none-InnerDPO-align-logodds-s1`."""
    label = run.name
    if run.spec.seed is not None:
        label += f"-s{run.spec.seed}"
    elif run.kind == "eval":
        label += "-" + Path(str(run.spec.eval.checkpoint or "")).name
    return re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-.")[:80] or "run"


def default_run_dir(home: Path, run: Run) -> Path:
    """HOME/runs/<id>-<slug>."""
    return home / RUNS_DIR / f"{run.id}-{slug(run)}"


def write_run_record(paths: RunPaths, run: Run) -> None:
    """RUN/run.json: what the store knows of the run before it has results (`RUN_RECORD`)."""
    write_json(paths.record, {"id": run.id, "name": run.name, "kind": run.kind, "spec": run.spec.to_json(),
                              "priority": run.priority, "created_at": run.created_at})


def append_note(log: Path, message: str) -> None:
    """One timestamped line in a worker.log, as the worker writes them."""
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"{now_iso()} {message.rstrip()}\n")


# --------------------------------------------------------------------------- checksums


def adapter_sha256(adapter_dir: str | os.PathLike | None) -> str | None:
    """sha256 of an adapter's weights file (adapter_model.safetensors, else .bin); None without an adapter or
    that file. Cached by path, size and modification time: the evaluation cache, the score cache and
    provenance all ask for it."""
    if adapter_dir is None:
        return None
    for name in ADAPTER_WEIGHTS:
        digest = sha256_file_memo(Path(adapter_dir) / name)
        if digest is not None:
            return digest
    return None


# --------------------------------------------------------------------------- writes and the status marker


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _stale_rows(directory: Path, stem: str | None = None) -> list[Path]:
    """Rows files in `directory` (of eval.json stem `stem`, else any) that the eval.json beside them does not name
    (`rows_file`): an earlier evaluation's, or one whose eval.json was never written (killed between the writes)."""
    named: dict[str, set[str]] = {}
    stale = []
    for path in sorted(directory.iterdir()):
        match = ROWS_NAME.fullmatch(path.name)
        if not match or (stem is not None and match["stem"] != stem) or not path.is_file():
            continue
        if match["stem"] not in named:
            named[match["stem"]] = _named_rows(directory / f"{match['stem']}.json")
        if path.name not in named[match["stem"]]:
            stale.append(path)
    return stale


def _named_rows(eval_path: Path) -> set[str]:
    """{the rows file `eval_path` names}; empty when it is missing, so its rows count as stale; an unreadable
    eval.json keeps every rows file (nothing is known)."""
    try:
        report = json.loads(eval_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return set()
    except (OSError, ValueError, RecursionError):
        return {path.name for path in eval_path.parent.iterdir()}
    name = report.get("rows_file") if isinstance(report, dict) else None
    return {name if isinstance(name, str) else rows_path_for(eval_path).name}


def _of_stem(path: Path, stem: str) -> bool:
    """Whether a temporary file is one of eval pair `stem`'s: `stem.json` or a rows file of that stem."""
    match = TEMP_NAME.fullmatch(path.name) or LEGACY_TEMP_NAME.fullmatch(path.name)
    rows = ROWS_NAME.fullmatch(match["name"]) if match else None
    return match is not None and (match["name"] == f"{stem}.json" or (rows is not None and rows["stem"] == stem))


def leftover_files(directory: str | os.PathLike, *, stem: str | None = None) -> list[Path]:
    """Files in `directory` that no reader uses and a killed write left behind, sorted: temporary files of
    `atomic_write_text` whose writer is gone (`NAME.<pid>.<random>.tmp` with the pid not alive on this host;
    earlier versions' `NAME.json.<random>`), and rows files (`X_rows[-sha].jsonl`) that the eval.json beside them
    (`X.json`) does not name. `stem`: only those of the eval pair `stem.json`. Not recursive: call it per
    directory (a queue run directory and its checkpoint/). `innerdpo doctor` lists them; the next
    `write_eval_pair` of a pair removes that pair's.

    In a directory that is not a run directory, a user's own `X_rows.jsonl` without an `X.json` is listed too:
    only `write_eval_pair` deletes, and only its own stem's. A directory written from several hosts at once (a
    shared filesystem) could hold a live writer's temporary file from another host, which this host cannot see
    alive; a run directory is written by one worker at a time."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    temps = [path for path in directory.iterdir()
             if path.is_file() and leftover_temp(path) and (stem is None or _of_stem(path, stem))]
    return sorted({*temps, *_stale_rows(directory, stem)})


def write_eval_pair(eval_path: Path, report: dict, rows_text: str) -> Path:
    """Write eval.json (`report`, to which it adds `rows_file` and `rows_sha256`) and its rows file as one unit;
    returns the rows file's path.

    The rows go first, under a name made from their sha256 (`rows_path_for`), which a previous pair never uses
    unless its rows are the same bytes; eval.json, naming that file (`rows_file`) and its checksum
    (`rows_sha256`), goes last by atomic rename. Killed at any moment, the directory holds the old pair or the
    new one (plus, at worst, an unnamed rows file); readers check the named file's checksum
    (`results.rowsfile.load_evaluation`). Then this pair's leftovers (`leftover_files` with its stem: rows files
    eval.json does not name, dead writers' temporary files) are removed."""
    eval_path = Path(eval_path)
    digest = hashlib.sha256(rows_text.encode("utf-8")).hexdigest()
    rows_path = rows_path_for(eval_path, digest)
    atomic_write_text(rows_path, rows_text)
    report.update(rows_file=rows_path.name, rows_sha256=digest)
    write_json(eval_path, report)
    for path in leftover_files(eval_path.parent, stem=eval_path.stem):
        path.unlink(missing_ok=True)
    return rows_path


def write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True, default=str) + "\n")


def write_progress(run_dir: Path, beat: dict) -> None:
    """Replace the training heartbeat (PROGRESS) with `beat`: a temporary file renamed over it, without an fsync
    (written every step; a reader sees the old beat or the new one, and a lost one is replaced a step later)."""
    path = Path(run_dir) / PROGRESS
    tmp = path.with_name(f".{PROGRESS}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(beat), encoding="utf-8")
    os.replace(tmp, path)


def read_progress(run_dir: Path) -> dict | None:
    """The training heartbeat, None when there is none (not started, or written before heartbeats) or unreadable."""
    try:
        beat = json.loads((Path(run_dir) / PROGRESS).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return beat if isinstance(beat, dict) and isinstance(beat.get("step"), int) else None


class RunStatus(TypedDict, total=False):
    """The keys of status.json that readers act on (train writes more: steps, best_step, ...)."""

    state: str                  # running | complete | interrupted | failed
    error: str | None
    updated: str


class RunConfig(TypedDict, total=False):
    """The keys of config.json that readers use (it holds every `TrainConfig` field and versions)."""

    method: str
    base_model: str
    base_model_path: str | None
    dataset: str
    seed: int | None
    display_name: str | None


RETRAIN = "train the run again (innerdpo train --output-dir NEW_DIR, or innerdpo queue retry ID for a queued run)"


def read_checked_json(path: Path, schema: type, rebuild: str) -> dict:
    """A JSON object file checked against a TypedDict `schema` (`typecheck.mismatch`); UserError naming the file,
    the field and `rebuild` (how to write it again) when it is unreadable, not UTF-8 JSON, not an object, or has
    a key of the wrong type. FileNotFoundError passes through."""
    from innerdpo_bench.typecheck import describe, json_type, mismatch

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except OSError as err:
        raise UserError(f"cannot read {path} ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not UTF-8 text (byte {err.start}: a binary or corrupt file); rebuild it: "
                        f"{rebuild}") from None
    except (ValueError, RecursionError) as err:
        raise UserError(f"{path} is not valid JSON ({getattr(err, 'msg', None) or type(err).__name__}); rebuild it: "
                        f"{rebuild}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} holds {json_type(data)}, not a JSON object; rebuild it: {rebuild}")
    wrong = mismatch(data, schema)
    if wrong is not None:
        where, hint, value = wrong
        raise UserError(f"{path}: {where!r} must be {describe(hint)}, not {json_type(value)}; rebuild it: {rebuild}")
    return data


def read_status(run_dir: Path) -> dict:
    """status.json of a training run directory; {"state": "unknown"} when there is none, and
    {"state": "unreadable", "unreadable": the one-line reason} when it cannot be used (binary, not JSON, a key
    of the wrong type): such a run is never taken for complete."""
    try:
        return read_checked_json(Path(run_dir) / STATUS, RunStatus, RETRAIN)
    except FileNotFoundError:
        return {"state": "unknown"}
    except UserError as err:
        return {"state": "unreadable", "unreadable": str(err)}


def write_status(run_dir: Path, state: str, **extra) -> None:
    """status.json (`RunStatus`), written atomically. On a full disk, where the temporary file cannot be written,
    the existing status.json is overwritten in place instead: its block is already allocated, so a run that fails
    because the disk is full still ends `failed` with the reason (a write cut short leaves a file `read_status`
    calls unreadable, never complete). OSError when neither works."""
    previous = read_status(run_dir)
    record = {k: v for k, v in previous.items() if k not in ("state", "error", "unreadable")}
    record.update(state=state, updated=now_iso(), **extra)
    path = Path(run_dir) / STATUS
    try:
        write_json(path, record)
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT) or not path.is_file():
            raise
        data = (json.dumps(record, indent=2, sort_keys=True, default=str) + "\n").encode("utf-8")
        try:
            with open(path, "r+b") as handle:
                handle.write(data)
                handle.truncate(len(data))
        except OSError:
            raise err from None


def is_run_dir(path: Path) -> bool:
    return (Path(path) / CONFIG).is_file()


def prepare_run_dir(path: Path) -> Path:
    """Create a fresh run directory; refuse a file, and a directory that already holds a run (naming --resume for
    one that did not finish)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"--output-dir {path} is a file, not a directory; choose another --output-dir")
    if path.exists() and any(path.iterdir()):
        state = read_status(path).get("state", "unknown")
        if state in ("running", "interrupted", "failed"):
            raise UserError(f"output directory {path} holds a run that did not finish (status {state}); continue it "
                            "with --resume (the same flags), or choose another --output-dir")
        raise UserError(f"output directory {path} is not empty (holds a run with status {state}); choose another --output-dir")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UserError(f"--output-dir {path}: a parent of it is a file; choose another --output-dir") from None
    return path


def read_config(run_dir: Path) -> dict:
    """config.json of a training run directory, checked (`RunConfig`); UserError when it is missing or unusable."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run directory (no {CONFIG})")
    return read_checked_json(path, RunConfig, RETRAIN)
