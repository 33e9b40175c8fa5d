"""The whole-evaluation cache: an evaluation's key, and its eval.json and rows stored under `cache_dir()/evals/<key>/`.

Before any model is loaded, `eval_cache_key` hashes what the numbers depend on: the base model (path or hub
id; small files by content, weight files by name, size and mtime), the adapter (sha256 of its weights and
adapter_config.json), the task version (sha256 of `tasks/` YAML and utils.py plus `SCORING_CODE`), the
installed lm_eval / transformers / peft / torch versions, the suite (a data directory: its path and file
contents), the row cap, the sampling, the chat-template setting and the dtype. A hit copies the entry's
eval.json and rows.jsonl to the outputs, with `cache: {"hit": true, "key": …}` in eval.json, and runs no
model and no harness. Device and batch size are not in the key: they change scores only by float rounding.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from innerdpo_bench import files, rundir
from innerdpo_bench.errors import UserError
from innerdpo_bench.evaluation import suites
from innerdpo_bench.evaluation.checkpoint import Checkpoint
from innerdpo_bench.evaluation.report import EvalReport, read_eval_report
from innerdpo_bench.evaluation.suites import SHIFTS
from innerdpo_bench.models import cache_dir
from innerdpo_bench.runlog import installed_versions

EVAL_CACHE = "evals"                      # under models.cache_dir()
CACHED_ROWS = "rows.jsonl"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack", ".ckpt")
HASHED_FILE_BYTES = 64 << 20              # base-model files above this are fingerprinted, not hashed
# Besides tasks/: the code that turns data into scores. Any edit to these starts a fresh cache.
# Paths relative to the innerdpo_bench package.
SCORING_CODE = ("evaluation/evaluate.py", "evaluation/fastlm.py", "evaluation/suites.py", "evaluation/scoring.py",
                "evaluation/audit.py", "data/pairs.py", "data/mini.py", "data/real.py", "data/genies.py",
                "data/ethics.py", "data/shipped.py", "data/textio.py")
KEYED_PACKAGES = ("lm_eval", "transformers", "peft", "torch")


def _sha256_files(paths: list[Path], root: Path) -> str:
    """One digest over the names (relative to `root`) and contents of `paths`."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.relative_to(root)).encode() + b"\0" + files.sha256_file(path).encode() + b"\0")
    return digest.hexdigest()


def task_version() -> str:
    """sha256 of the lm-eval task folder (every YAML and utils.py) and of `SCORING_CODE`."""
    tasks = suites.tasks_dir()
    task_files = sorted(p for p in tasks.iterdir() if p.is_file() and ("yaml" in p.name or p.name == "utils.py"))
    package = Path(__file__).parent.parent
    return hashlib.sha256((_sha256_files(task_files, tasks) +
                           _sha256_files([package / name for name in SCORING_CODE], package)).encode()).hexdigest()


def base_identity(base_model_path: str) -> dict:
    """The base model as the cache sees it: its path (or hub id) and, for a directory, every file: weights by
    name, size and mtime (hashing gigabytes would cost more than a cache hit saves), the rest (config,
    tokenizer, chat template) by content."""
    root = Path(base_model_path)
    if not root.is_dir():
        return {"base": str(base_model_path)}
    listing = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        stat = path.stat()
        if path.suffix in WEIGHT_SUFFIXES or stat.st_size > HASHED_FILE_BYTES:
            # whole seconds: a CI cache restored from a tar keeps them, not always the nanoseconds
            listing[str(path.relative_to(root))] = f"{stat.st_size}:{int(stat.st_mtime)}"
        else:
            listing[str(path.relative_to(root))] = files.sha256_file(path)
    return {"base": str(root), "files": listing}



def eval_cache_key(ckpt: Checkpoint, label: str, data_dir: str | None, rows_cap: int, sample: str,
                   sample_seed: int | None, apply_chat_template: bool | None, dtype: str) -> tuple[str, dict]:
    """(key, identity): 24 hex digits of sha256 over everything an evaluation's numbers depend on (module
    docstring), and that identity itself (written beside the cached files as key.json)."""
    data = suites.data_identity(label)   # a suite read from files: their sha256 too
    if data_dir is not None:
        root = Path(data_dir).expanduser().resolve()
        data = {"data_dir": str(root),
                "files": _sha256_files([root / f"{shift}.jsonl" for shift in SHIFTS], root)}
    adapter = None
    if ckpt.adapter is not None:
        adapter_dir = Path(ckpt.adapter)
        adapter = {"weights": rundir.adapter_sha256(adapter_dir) or str(adapter_dir.resolve()),
                   "config": files.sha256_file(adapter_dir / "adapter_config.json")}
    identity = {"base_model": base_identity(ckpt.base_model_path), "adapter": adapter, "task_version": task_version(),
                "versions": installed_versions(*KEYED_PACKAGES), "data": data, "rows": rows_cap, "sample": sample,
                "sample_seed": sample_seed, "apply_chat_template": apply_chat_template, "dtype": dtype}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:24]
    return key, identity


def eval_cache_dir(key: str) -> Path:
    return cache_dir() / EVAL_CACHE / key


def rows_sha256(rows_text: str) -> str:
    return hashlib.sha256(rows_text.encode("utf-8")).hexdigest()


def _read_cached(key: str) -> tuple[EvalReport, str] | None:
    """(eval.json, rows text) of a cached evaluation, or None when absent, partial or corrupt."""
    entry = eval_cache_dir(key)
    try:
        report = read_eval_report(entry / rundir.EVAL)
        rows_text = (entry / CACHED_ROWS).read_text(encoding="utf-8")
    except (OSError, UserError):
        return None
    if (report.get("cache") or {}).get("rows_sha256") != rows_sha256(rows_text):  # half-copied or clobbered
        return None
    return report, rows_text


def _write_cached(key: str, identity: dict, report: EvalReport, rows_text: str) -> None:
    """Store an evaluation: rows first, eval.json (naming the rows' checksum) last, each written atomically,
    so a reader sees a whole entry or a checksum mismatch, never half of one."""
    entry = eval_cache_dir(key)
    entry.mkdir(parents=True, exist_ok=True)
    files.atomic_write_text(entry / CACHED_ROWS, rows_text)
    rundir.write_json(entry / "key.json", identity)
    rundir.write_json(entry / rundir.EVAL, report)


def cached_evaluation(key: str, ckpt: Checkpoint) -> tuple[EvalReport, str] | None:
    """(eval.json, rows text) of a cached evaluation as this checkpoint's, or None on a miss. The numbers and
    how they were computed (versions, device, timestamp) stay as cached; what names the checkpoint is this
    one's. The caller sets `seconds`."""
    cached = _read_cached(key)
    if cached is None:
        return None
    report, rows_text = cached
    computed = {"computed_at": report.get("timestamp"), "computed_seconds": report.get("seconds")}
    report.update(**ckpt.describe(),
                  # no request was scored by this call
                  score_cache={name: {**use, "hits": 0, "misses": 0}
                               for name, use in (report.get("score_cache") or {}).items()},
                  cache={**report["cache"], "hit": True, "key": key, **computed})
    return report, rows_text


def store_evaluation(key: str, identity: dict, report: EvalReport, rows_text: str) -> str | None:
    """Put a computed evaluation in the cache, naming its rows' checksum in `report["cache"]`; the reason it
    could not (a read-only or full cache costs the next run its shortcut, not this result), else None."""
    report["cache"] = {"hit": False, "key": key, "rows_sha256": rows_sha256(rows_text)}
    try:
        _write_cached(key, identity, report, rows_text)
    except OSError as err:
        return f"could not store the evaluation in the cache {eval_cache_dir(key)} ({err.strerror or err})"
    return None
