"""`innerdpo doctor`: check a workspace (the store, every run directory, the caches, leftovers of killed writes) and
say what is wrong, naming the file, and what fixes it; with `repair=True` do the repairs that need no guess.

What is checked, and what each repair does (no repair deletes a result):
  * the store: present, and `PRAGMA quick_check` (`store.integrity`). A corrupt one gets sqlite3's `.recover` and is
    never touched. A missing or 0-byte store beside run directories is remade empty, what was there moved aside
    (`orphans.missing_store`), and the run directories imported into it;
  * each finished run's files against each other and against the store (`runs`): the checkpoint (status, config,
    metrics, adapter and its sha256), eval.json against its rows and the store. Untrusted files: the run is queued
    again (its checkpoint moved aside first when it is the checkpoint that cannot be trusted); a store that
    disagrees with verified files records them again. A store run whose directory is gone is reported;
  * run directories the store does not know (`orphans`): imported as the run they record;
  * the caches under `models.cache_dir()` (`caches`): broken entries and half-built models deleted, cut score
    caches rewritten (all rebuilt on demand);
  * leftovers: temporary files of atomic writes and `adapter.tmp` directories that a killed process left, deleted.
"""

from __future__ import annotations

import time
from pathlib import Path

from innerdpo_bench.doctor.caches import BUILT_MODEL, check_caches  # noqa: F401 (re-exported)
from innerdpo_bench.doctor.findings import LEFTOVER_AGE_S, Finding, leftover_files  # noqa: F401 (re-exported)
from innerdpo_bench.doctor.orphans import check_orphans, missing_store
from innerdpo_bench.doctor.runs import check_run, safetensors_problem  # noqa: F401 (re-exported)
from innerdpo_bench.errors import UserError
from innerdpo_bench.store import STORE_FILE, CorruptStore, Run, Store


def check_store(home: Path) -> tuple[list[Finding], list[Run] | None, dict[int, dict]]:
    """Findings about the store, its runs (None when it cannot be read) and their provenance by run id. A missing
    or 0-byte store beside run directories is a finding (its runs: none); UserError when there is no store and
    nothing to rebuild it from (a mistyped --home)."""
    path = home / STORE_FILE
    if not path.is_file() or path.stat().st_size == 0:
        gone = missing_store(home, path)
        if gone is not None:
            return [gone], [], {}
    try:
        with Store(home, create=False, readonly=True) as store:
            return [], store.list_runs(), store.all_provenance()
    except CorruptStore as err:
        return [Finding(err.problem, err.fix)], None, {}   # corrupt, or empty (EmptyStore): the fix each names
    except UserError as err:
        if not path.is_file():   # no store and nothing to rebuild it from: a mistyped --home, or a file
            raise
        return [Finding(str(err))], None, {}


def diagnose(home: Path, cache: Path, now: float | None = None) -> tuple[list[Finding], int | None]:
    """Every finding for the workspace `home` and the cache `cache`, in the order their repairs must run (the store
    first), and the number of runs checked (None when the store cannot be read). UserError when `home` has no store
    and no run directories."""
    now = time.time() if now is None else now
    findings, runs, provenance = check_store(home)
    for run in runs or []:
        findings += check_run(run, home, provenance.get(run.id, {}))
    if runs is not None:
        findings += check_orphans(home, runs)
    findings += check_caches(cache, now)
    return findings, None if runs is None else len(runs)
