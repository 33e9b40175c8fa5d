"""`innerdpo doctor`: check a workspace (the store, every run directory, the caches, leftovers of killed writes) and
say what is wrong, naming the file, and what fixes it; with `repair=True` do the safe repairs.

What is checked:
  * the store: present, and `PRAGMA quick_check` (`store.integrity`);
  * each finished (`done`) run's directory: present; a trained run's checkpoint/status.json says `complete`, its
    adapter has a JSON `adapter_config.json` and weights whose safetensors header parses and fits the file;
    eval.json is valid (`read_eval_report`), its rows file is there and matches the sha256 eval.json records, and
    it was scored under the current scoring rule (`report.old_scoring_rule`: older records must be evaluated again);
    runs that are queued or running are skipped (their files are being written), failed and cancelled ones are not
    expected to hold results;
  * the caches under `models.cache_dir()`: whole-evaluation entries (`evalcache`: eval.json, rows.jsonl and the
    rows' sha256), score caches (`scores/*.jsonl`, the base-model rows shared by every adapter of a base: every
    line a record), built base models (a `config.json`);
  * leftovers: temporary files of atomic writes and `adapter.tmp` directories that a killed process left in run
    directories, and half-built model directories in the cache.

What `repair` does (the safe repairs: nothing it deletes holds a result, everything is rebuilt on demand):
deletes leftovers, deletes broken cache entries and half-built model directories (the next evaluation or use
recomputes them), and rewrites a score cache without its unreadable lines. It never touches the store or a run's
results: a corrupt store and a run's missing or mismatched files are reported with the command that rebuilds
them (sqlite3 `.recover`, `innerdpo eval ...`), and a run is never requeued (that would replace recorded
results; `innerdpo queue add` does it on purpose).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from innerdpo_bench import files, rundir
from innerdpo_bench.errors import UserError
from innerdpo_bench.evaluation.report import old_scoring_rule, read_eval_report
from innerdpo_bench.rundir import RunPaths
from innerdpo_bench.store import CorruptStore, Run, Store
from innerdpo_bench.store.integrity import recovery_hint

LEFTOVER_AGE_S = 600.0   # a cache's temporary file younger than this may belong to a write in progress
BUILT_MODEL = re.compile(r"(tiny-random-v\d+-s\d+|smollm2-135m-instruct)")
SAFETENSORS_HEADER_MAX = 100 << 20


@dataclass(frozen=True)
class Finding:
    """One thing wrong: `problem` names the file; `fix` is what the user runs (when `repair` cannot); `repair`
    is the safe repair and `repair_text` says what it does."""

    problem: str
    fix: str | None = None
    repair: Callable[[], None] | None = None
    repair_text: str | None = None


def leftover_files(directory: Path) -> list[Path]:
    """What a killed write left in `directory` (not recursive): `rundir.leftover_files` (temporary files of atomic
    writes whose writer is gone, and rows files no eval.json names)."""
    return rundir.leftover_files(directory)


def _old(path: Path, now: float) -> bool:
    try:
        return now - path.stat().st_mtime >= LEFTOVER_AGE_S
    except OSError:
        return False


def _remove(path: Path) -> Callable[[], None]:
    return lambda: shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def _leftovers(directory: Path, now: float | None = None) -> list[Finding]:
    """`leftover_files` of `directory` (only those older than LEFTOVER_AGE_S when `now` is given) as findings."""
    found = [path for path in leftover_files(directory) if now is None or _old(path, now)]
    return [Finding(f"leftover {path}: left by a write that never finished (no reader uses it)", None,
                    _remove(path), "delete it") for path in found]


# --------------------------------------------------------------------------- the store and its runs


def check_store(home: Path) -> tuple[list[Finding], list[Run] | None]:
    """Findings about the store, and its runs (None when it cannot be read). UserError when there is no store
    (a mistyped --home)."""
    try:
        with Store(home, create=False, readonly=True) as store:
            return [], store.list_runs()
    except CorruptStore as err:
        return [Finding(f"store {err.path} fails its integrity check ({err.detail})", recovery_hint(err.path))], None
    except UserError as err:
        if "no store at" in str(err):
            raise
        return [Finding(str(err))], None


def _eval_command(run: Run, paths: RunPaths) -> str:
    evaluation = run.spec.get("eval", {})
    flags = "".join(f" --{key} {evaluation[key]}" for key in ("suite", "limit") if evaluation.get(key) is not None)
    if run.kind == "train_eval":
        return f"innerdpo eval {paths.checkpoint.root}{flags}"
    return f"innerdpo eval {evaluation.get('checkpoint')}{flags} --output {paths.eval_json}"


def safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file's header cannot be loaded (8-byte length, a JSON object, offsets inside the
    file), or None; reads only the header, so no torch."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            length = int.from_bytes(handle.read(8), "little")
            if size < 8 or length > min(size - 8, SAFETENSORS_HEADER_MAX):
                return "its header length does not fit the file (truncated?)"
            header = json.loads(handle.read(length))
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    except (ValueError, UnicodeDecodeError):
        return "its header is not JSON"
    if not isinstance(header, dict):
        return "its header is not a JSON object"
    ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"
            and isinstance(entry, dict) and isinstance(entry.get("data_offsets"), list) and entry["data_offsets"]]
    if any(not isinstance(end, int) or end > size - 8 - length for end in ends):
        return "a tensor lies past the end of the file (truncated?)"
    return None


def _adapter_problems(adapter: Path) -> list[str]:
    if not adapter.is_dir():
        return [f"{adapter} is missing"]
    problems = []
    try:
        json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        problems.append(f"{adapter / 'adapter_config.json'} is missing or not JSON")
    weights = [adapter / name for name in rundir.ADAPTER_WEIGHTS if (adapter / name).is_file()]
    if not weights:
        problems.append(f"{adapter} has no {' or '.join(rundir.ADAPTER_WEIGHTS)}")
    for path in weights:
        problem = safetensors_problem(path) if path.suffix == ".safetensors" else None
        if problem:
            problems.append(f"{path}: {problem}")
    return problems


def _eval_problems(eval_json: Path) -> list[str]:
    """eval.json valid, its rows file present and matching the sha256 it records (top-level `rows_sha256`, or the
    cache section's)."""
    try:
        report = read_eval_report(eval_json, required=("shifts",))
    except UserError as err:
        return [str(err)]
    rows = eval_json.with_name(report["rows_file"]) if isinstance(report.get("rows_file"), str) \
        else rundir.rows_path_for(eval_json)
    if not rows.is_file():
        return [f"{rows} (the per-row records eval.json names) is missing"]
    expected = report.get("rows_sha256") or (report.get("cache") or {}).get("rows_sha256")
    if expected and files.sha256_file(rows) != expected:
        return [f"{rows} does not match the rows_sha256 that {eval_json.name} records (truncated or replaced)"]
    old_rule = old_scoring_rule(report)
    return [f"{eval_json}: {old_rule}"] if old_rule else []


def check_run(run: Run) -> list[Finding]:
    """Findings about one store run's directory (see the module docstring for which runs are checked)."""
    if run.status in ("queued", "running") or not run.run_dir:
        return []
    paths = RunPaths.of(run)
    label = f"run {run.id} ({run.name})"
    if not paths.root.is_dir():
        if run.status != "done":
            return []
        return [Finding(f"{label}: its directory {paths.root} is missing; its results stay in the store (innerdpo "
                        "runs), but compare, rescore and the dashboard's detail need its files")]
    findings = _leftovers(paths.root) + _leftovers(paths.checkpoint.root)
    tmp_adapter = paths.checkpoint.root / (rundir.ADAPTER + ".tmp")
    if tmp_adapter.is_dir():
        findings.append(Finding(f"leftover {tmp_adapter}: an adapter whose save never finished", None,
                                _remove(tmp_adapter), "delete it"))
    if run.status != "done":
        return findings
    problems = []
    if run.kind == "train_eval":
        state = rundir.read_status(paths.checkpoint.root).get("state")
        if state != "complete":
            problems.append(f"{paths.checkpoint.status} says {state!r}, not 'complete'")
        problems += _adapter_problems(paths.checkpoint.root / rundir.ADAPTER)
    retrain = ("its checkpoint cannot be evaluated again; its results stay in the store. To train it again: "
               "innerdpo queue add with the same flags (innerdpo runs --json shows its spec)")
    findings += [Finding(f"{label}: {problem}", retrain) for problem in problems]
    if not problems:
        rebuild = f"rebuild them: {_eval_command(run, paths)}"
        findings += [Finding(f"{label}: {problem}", rebuild) for problem in _eval_problems(paths.eval_json)]
    return findings


# --------------------------------------------------------------------------- caches


def check_caches(cache: Path, now: float) -> list[Finding]:
    """Whole-evaluation entries, score caches, built models and their leftovers under `cache`."""
    from innerdpo_bench.evaluation.cache import CACHED_ROWS, EVAL_CACHE

    findings = []
    evals = cache / EVAL_CACHE
    for entry in sorted(evals.iterdir()) if evals.is_dir() else []:
        if not entry.is_dir():
            continue
        findings += _leftovers(entry, now)
        problem = None
        try:
            report = json.loads((entry / rundir.EVAL).read_text(encoding="utf-8"))
            expected = (report.get("cache") or {}).get("rows_sha256")
            if files.sha256_file(entry / CACHED_ROWS) != expected:
                problem = f"its {CACHED_ROWS} does not match the rows_sha256 its eval.json records"
        except (OSError, ValueError, AttributeError):
            problem = f"its {rundir.EVAL} or {CACHED_ROWS} is missing or unreadable"
        if problem and _old(entry, now):
            findings.append(Finding(f"evaluation cache entry {entry}: {problem}; it is never used", None,
                                    _remove(entry), "delete the entry (the next identical evaluation recomputes it)"))
    scores = cache / "scores"
    for path in sorted(scores.glob("*.jsonl")) if scores.is_dir() else []:
        findings += _score_cache(path)
    if scores.is_dir():
        findings += _leftovers(scores, now)
    for path in sorted(cache.iterdir()) if cache.is_dir() else []:
        if not path.is_dir():
            continue
        if BUILT_MODEL.fullmatch(path.name) and not (path / "config.json").is_file():
            findings.append(Finding(f"built model {path} has no config.json (a build that never finished), and "
                                    "blocks the next build", None, _remove(path),
                                    "delete it (the next use builds it again)"))
        elif BUILT_MODEL.fullmatch(path.name.rsplit(".", 1)[0]) and "." in path.name and _old(path, now):
            findings.append(Finding(f"leftover {path}: a model build that never finished", None, _remove(path),
                                    "delete it"))
    return findings


def _score_cache(path: Path) -> list[Finding]:
    """A score cache is a line per scored request ({"k", "ll", "greedy"}); a cut or foreign line is skipped by
    readers (or, lacking a key, stops them), so the repair keeps only the good lines."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        return [Finding(f"score cache {path} cannot be read ({err.strerror or err})")]
    good = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and {"k", "ll", "greedy"} <= record.keys():
            good.append(line)
    if len(good) == len(lines):
        return []
    bad = len(lines) - len(good)

    def rewrite() -> None:
        files.atomic_write_text(path, "".join(line + "\n" for line in good))

    return [Finding(f"score cache {path}: {bad} of {len(lines)} lines are not score records (a write cut short)",
                    None, rewrite, f"rewrite it with the {len(good)} good lines")]


# --------------------------------------------------------------------------- the whole workspace


def diagnose(home: Path, cache: Path, now: float | None = None) -> tuple[list[Finding], int | None]:
    """Every finding for the workspace `home` and the cache `cache`, and the number of runs checked (None when the
    store cannot be read). UserError when `home` has no store."""
    now = time.time() if now is None else now
    findings, runs = check_store(home)
    for run in runs or []:
        findings += check_run(run)
    findings += check_caches(cache, now)
    return findings, None if runs is None else len(runs)
