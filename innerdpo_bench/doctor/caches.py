"""`innerdpo doctor`'s cache checks: whole-evaluation entries, the base-model score caches and built models under
`models.cache_dir()`, and what killed writes left there. Every repair deletes or rewrites something the next use
rebuilds."""

from __future__ import annotations

import json
import re
from pathlib import Path

from innerdpo_bench import files, rundir
from innerdpo_bench.doctor.findings import Finding, leftovers, old, remove

BUILT_MODEL = re.compile(r"(tiny-random-v\d+-s\d+|smollm2-135m-instruct)")


def check_caches(cache: Path, now: float) -> list[Finding]:
    """Whole-evaluation entries, score caches, built models and their leftovers under `cache`."""
    from innerdpo_bench.evaluation.cache import CACHED_ROWS, EVAL_CACHE

    findings = []
    evals = cache / EVAL_CACHE
    for entry in sorted(evals.iterdir()) if evals.is_dir() else []:
        if not entry.is_dir():
            continue
        findings += leftovers(entry, now)
        problem = None
        try:
            report = json.loads((entry / rundir.EVAL).read_text(encoding="utf-8"))
            expected = (report.get("cache") or {}).get("rows_sha256")
            if files.sha256_file(entry / CACHED_ROWS) != expected:
                problem = f"its {CACHED_ROWS} does not match the rows_sha256 its eval.json records"
        except (OSError, ValueError, AttributeError):
            problem = f"its {rundir.EVAL} or {CACHED_ROWS} is missing or unreadable"
        if problem and old(entry, now):
            findings.append(Finding(f"evaluation cache entry {entry}: {problem}; it is never used", None,
                                    remove(entry), "delete the entry (the next identical evaluation recomputes it)"))
    scores = cache / "scores"
    for path in sorted(scores.glob("*.jsonl")) if scores.is_dir() else []:
        findings += _score_cache(path)
    if scores.is_dir():
        findings += leftovers(scores, now)
    for path in sorted(cache.iterdir()) if cache.is_dir() else []:
        if not path.is_dir():
            continue
        if BUILT_MODEL.fullmatch(path.name) and not (path / "config.json").is_file():
            findings.append(Finding(f"built model {path} has no config.json (a build that never finished), and "
                                    "blocks the next build", None, remove(path),
                                    "delete it (the next use builds it again)"))
        elif BUILT_MODEL.fullmatch(path.name.rsplit(".", 1)[0]) and "." in path.name and old(path, now):
            findings.append(Finding(f"leftover {path}: a model build that never finished", None, remove(path),
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
