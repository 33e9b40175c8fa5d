"""`innerdpo doctor`'s view from the other side: run directories under HOME/runs/ that the store does not know.

A store that was deleted, lost, replaced by an empty one (a truncated file) or started afresh leaves its run
directories behind. Each one says what the store knew: `run.json` (the store's row: id, name, kind, spec; written at
every claim), worker.log (how each attempt ended), and the verified eval.json (`runs.examine`: the results). The
repair imports such a directory into the store as that run, under its own id when it is free:
  * files that check out → `done`, with eval.json's results and provenance (what the worker would have recorded);
  * otherwise → how worker.log says its last attempt ended (`failed` or `cancelled`, with the reason), `queued` if
    it was handed back; a run worker.log shows unfinished, or finished but with files that no longer check out, is
    imported `failed` with that reason, for `innerdpo queue retry`.
A directory without run.json (made before workers wrote it) is imported from train_spec.json and eval.json, and the
finding says so. `innerdpo queue rm` notes in worker.log that the run was removed: such a directory is left alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from innerdpo_bench import rundir
from innerdpo_bench.config.spec import EvalSpec, RunSpec
from innerdpo_bench.doctor.findings import Finding
from innerdpo_bench.doctor.runs import Examined, _some, examine, results_for
from innerdpo_bench.errors import UserError
from innerdpo_bench.rundir import RunPaths
from innerdpo_bench.store import Run, Store

RUN_DIR_NAME = re.compile(r"(?P<id>\d+)-.+")
# worker.log lines (rundir.append_note, Worker._note) that change a run's state, in the order tried: a claim, an end,
# a graceful hand-back, a requeue of a silent worker's run, doctor's own requeue; (pattern, the state, or None: the
# line's `status`)
_EVENTS = (
    (re.compile(r"^attempt (?P<n>\d+) claimed by (?P<worker>\S+)"), "running"),
    (re.compile(r"^attempt (?P<n>\d+) (?P<status>done|failed|cancelled)(?:: (?P<error>.*))?$"), None),
    (re.compile(r"attempt (?P<n>\d+) stopped, run returned to the queue"), "queued"),
    (re.compile(r"; now (?P<status>queued|failed|cancelled)(?: \((?P<error>.*)\))?$"), None),
    (re.compile(r"^innerdpo doctor --repair: queued again"), "queued"),
)


def run_directories(home: Path) -> list[Path]:
    """HOME/runs/<id>-<slug>[.N] directories, by id then name."""
    runs = home / rundir.RUNS_DIR
    found = [path for path in runs.iterdir() if path.is_dir() and RUN_DIR_NAME.fullmatch(path.name)] \
        if runs.is_dir() else []
    return sorted(found, key=lambda path: (int(RUN_DIR_NAME.fullmatch(path.name)["id"]), path.name))


@dataclass(frozen=True)
class History:
    """What worker.log says: the last state it left the run in, the error of a failed end, the attempts it saw,
    when it first wrote, and whether `queue rm` removed the run."""

    state: str | None = None        # done | failed | cancelled | queued | running (claimed, no end) | None (no log)
    error: str | None = None
    claims: int = 0
    first_seen: float | None = None
    removed: bool = False
    worker: str | None = None       # the last claim's worker, when it started, when the run's state last changed
    started_at: float | None = None
    changed_at: float | None = None


def read_history(log: Path) -> History:
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return History()
    seen: dict = {"claims": 0}
    for line in lines:
        stamp, _, message = line.partition(" ")
        try:
            when = datetime.fromisoformat(stamp).timestamp()
        except ValueError:
            when = None
        seen.setdefault("first_seen", when)
        for pattern, fixed in _EVENTS:
            match = pattern.search(message)
            if match:
                groups = match.groupdict()
                seen.update(state=fixed or groups["status"], error=groups.get("error"), changed_at=when)
                if groups.get("n"):
                    seen["claims"] = max(seen["claims"], int(groups["n"]))
                if groups.get("worker"):
                    seen.update(worker=groups["worker"], started_at=when)
                break
    removed = bool(lines) and lines[-1].partition(" ")[2].startswith(rundir.REMOVED_NOTE)
    return History(**seen, removed=removed)


@dataclass
class Plan:
    """How one orphan directory goes back into the store (`import_run`'s arguments), or `why_not`."""

    path: Path
    run_id: int | None = None
    name: str = ""
    kind: str = ""
    spec: RunSpec | None = None
    status: str = "failed"
    error: str | None = None
    results: dict | None = None
    provenance: dict | None = None
    created_at: float = 0.0
    priority: float | None = None
    claims: int = 0
    history: History = History()
    source: str = "run.json"
    why_not: str | None = None


def plan_import(path: Path, taken: set[int]) -> Plan:
    """The import of orphan directory `path` (module docstring); `taken`: ids in the store or planned already."""
    plan = Plan(path)
    record = _read_json(path / rundir.RUN_RECORD)
    default_id = int(RUN_DIR_NAME.fullmatch(path.name)["id"])
    kind = record.get("kind") if record else ("train_eval" if (path / rundir.CHECKPOINT).is_dir()
                                              or (path / rundir.TRAIN_SPEC).is_file() else "eval")
    paths = RunPaths(path, kind if kind in ("train_eval", "eval") else "eval")
    found = examine(paths)
    history = plan.history = read_history(paths.worker_log)
    spec = _spec_of(record)
    if spec is not None:
        plan.spec, plan.name = spec, record["name"]
        plan.created_at = float(record.get("created_at") or 0) or _when(path, history)
        plan.priority = record.get("priority") if isinstance(record.get("priority"), (int, float)) else None
        wanted = record.get("id") if isinstance(record.get("id"), int) else default_id
    else:
        plan.source = ("train_spec.json and " if paths.kind == "train_eval" else "") + "eval.json (no run.json)"
        plan.spec, plan.name, plan.why_not = _reconstructed(paths, found)
        plan.created_at, wanted = _when(path, history), default_id
    if plan.why_not:
        return plan
    plan.run_id = None if wanted in taken else wanted
    plan.kind, plan.claims = paths.kind, history.claims
    if found.verified:
        plan.status, plan.claims = "done", max(history.claims, 1)
        plan.results = results_for(plan.spec, paths, found.report)
        plan.provenance = found.report.get("provenance") or {}
    elif history.state in ("failed", "cancelled", "queued"):
        plan.status, plan.error = history.state, history.error
    else:
        why = _some(found.retrain + found.reevaluate) or "its files hold no results"
        ended = "its last attempt ended done but " if history.state == "done" else ""
        plan.error = f"imported by innerdpo doctor: {ended}{why}; innerdpo queue retry runs it again"
    return plan


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _when(path: Path, history: History) -> float:
    return history.first_seen or path.stat().st_mtime


def _spec_of(record: dict | None) -> RunSpec | None:
    """The spec run.json records, None where there is no readable one."""
    if not (record and isinstance(record.get("spec"), dict) and isinstance(record.get("name"), str)):
        return None
    try:
        return RunSpec.from_json(record["spec"], "run.json's spec")
    except UserError:
        return None


def _reconstructed(paths: RunPaths, found: Examined) -> tuple[RunSpec | None, str, str | None]:
    """(spec, name, why not) of a directory without run.json: train_spec.json is the stored training config, eval.json
    (when it checks out) the evaluation settings."""
    from innerdpo_bench.config import TrainConfig
    from innerdpo_bench.config.naming import display_name

    report = found.report or {}
    suite = report.get("suite") if isinstance(report.get("suite"), str) else None
    limit = report.get("limit") if isinstance(report.get("limit"), int) else None
    if paths.kind == "eval":
        if not isinstance(report.get("checkpoint"), str):
            return None, "", "it has no run.json and no verified eval.json naming the model it scored"
        return RunSpec("none", eval=EvalSpec(suite, limit, checkpoint=report["checkpoint"])), "none", None
    train = _read_json(paths.train_spec)
    if train is None:
        return None, "", f"it has no run.json and {paths.train_spec} is missing or not JSON"
    try:
        config = TrainConfig.from_mapping(train, str(paths.train_spec))
    except UserError as err:
        return None, "", f"it has no run.json and {err}"
    name = display_name(config)
    return RunSpec(name, train=config, eval=EvalSpec(suite, limit)), name, None


def check_orphans(home: Path, runs: list[Run]) -> list[Finding]:
    """A finding per run directory under HOME/runs/ that no store run names, with its import as the repair."""
    known = {str(Path(run.run_dir).resolve()) for run in runs if run.run_dir}
    taken = {run.id for run in runs}
    findings = []
    for path in run_directories(home):
        if str(path.resolve()) in known or read_history(path / rundir.WORKER_LOG).removed:
            continue
        plan = plan_import(path, taken)
        problem = f"run directory {path} is not in the store (the store was lost, replaced or started afresh)"
        if plan.why_not:
            findings.append(Finding(f"{problem}, and cannot be imported: {plan.why_not}"))
            continue
        if plan.run_id is not None:
            taken.add(plan.run_id)
        as_id = f"run {plan.run_id}" if plan.run_id is not None else "a new run (its id is taken)"
        what = "done with the results of its verified eval.json" if plan.status == "done" else \
            plan.status + (f" ({plan.error})" if plan.error else "")
        findings.append(Finding(problem, None, _importer(home, plan),
                                f"import it as {as_id} {plan.name!r}, {what}, from its {plan.source}"))
    return findings


def _importer(home: Path, plan: Plan) -> Callable[[], None]:
    from innerdpo_bench.store.repair import import_run

    def repair() -> None:
        with Store(home, create=False) as store:
            arguments = dict(name=plan.name, kind=plan.kind, spec=plan.spec, status=plan.status, run_dir=str(plan.path),
                             created_at=plan.created_at, priority=plan.priority, claims=plan.claims, error=plan.error,
                             exit_code=0 if plan.status == "done" else None, results=plan.results,
                             provenance=plan.provenance, worker=plan.history.worker,
                             started_at=plan.history.started_at, finished_at=plan.history.changed_at)
            try:
                import_run(store, plan.run_id, **arguments)
            except UserError:   # its id was taken since the check: a new one
                import_run(store, None, **arguments)

    return repair


# --------------------------------------------------------------------------- a store that is gone or empty


def missing_store(home: Path, store_file: Path) -> Finding | None:
    """A workspace whose store is gone (or a 0-byte file) while HOME/runs/ holds run directories: the finding whose
    repair makes an empty store for `check_orphans`' imports, moving what is there aside (kept; a WAL file next to
    a missing store would otherwise be replayed into the new one). None when there is nothing to rebuild from."""
    directories = run_directories(home)
    if not directories:
        return None
    empty = store_file.is_file() and store_file.stat().st_size == 0
    moved = [path for path in (store_file, *(store_file.with_name(store_file.name + s) for s in ("-wal", "-shm")))
             if path.exists() and (empty or path != store_file)]

    def repair() -> None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        for path in moved:
            path.rename(path.with_name(f"{path.name}.broken-{stamp}"))
        Store(home).close()

    state = "is empty (0 bytes: cut short or truncated)" if empty else "is missing"
    kept = f" ({', '.join(path.name for path in moved)} kept beside it, renamed .broken-<time>)" if moved else ""
    return Finding(f"store {store_file} {state}, but {home / rundir.RUNS_DIR} holds {len(directories)} run "
                   "director" + ("y" if len(directories) == 1 else "ies"), None, repair,
                   f"make a new, empty store{kept}; the run directories below are imported into it")
