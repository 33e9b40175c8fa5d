"""What the store hands out: a `Run` snapshot, and where a workspace (HOME) is."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from innerdpo_bench.config.spec import RunSpec
from innerdpo_bench.errors import UserError
from innerdpo_bench.store.schema import FINISHED

STORE_FILE = "store.sqlite"
HOME_ENV = "INNERDPO_HOME"
DEFAULT_HOME = "innerdpo"


@dataclass(frozen=True)
class Requeue:
    """An attempt of a run that ended with the run back in the queue: its claim number (worker.log's "attempt N"),
    the worker that held it, when, and why (a killed stage retried, a silent or gone worker, a shutdown)."""

    claim: int
    worker: str | None
    requeued_at: float
    reason: str


@dataclass(frozen=True)
class Run:
    """One row of `runs`: a snapshot that later writes never change.

    `spec` is what `queue add` stored (`config.spec.RunSpec`); `results` is {shift: {metric: value}} (filled by
    `get_run` and `list_runs`; empty from `claim_next`). Times are unix seconds.
    """

    id: int
    name: str
    kind: str
    spec: RunSpec
    status: str
    priority: float
    created_at: float
    started_at: float | None
    finished_at: float | None
    worker: str | None
    heartbeat_at: float | None
    run_dir: str | None
    attempts: int
    exit_code: int | None
    error: str | None
    cancel_requested: bool
    results: dict[str, dict[str, float]] = field(default_factory=dict)
    claims: int = 0              # every claim, never reset; `attempts` counts those that went stale or crashed
    tags: tuple[str, ...] = ()   # the user's labels (`queue add --tag`, the dashboard's `n`); never part of the spec
    note: str = ""               # the user's free text about the run
    retries: int = 1             # automatic requeues after a cluster-like failure (`queue add --retries`)
    requeues: tuple[Requeue, ...] = ()   # the attempts that ended back in the queue, oldest first (get_run, list_runs)

    @property
    def finished(self) -> bool:
        """Done, failed or cancelled: nothing will run it again unless it is retried."""
        return self.status in FINISHED


RUN_COLUMNS = ", ".join(
    ["id", "name", "kind", "spec", "status", "priority", "created_at", "started_at", "finished_at", "worker",
     "heartbeat_at", "run_dir", "attempts", "exit_code", "error", "cancel_requested", "claims", "tags", "note",
     "retries"]
)


def parse_spec(run_id: int, text: Any) -> RunSpec | str:
    """The stored spec of run `run_id`, or why it cannot be used (not JSON, not an object, not a run spec) as one
    line naming the run and the way out."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError, RecursionError) as err:
        why = f"is not valid JSON ({getattr(err, 'msg', None) or type(err).__name__})"
    else:
        if not isinstance(data, dict):
            why = f"is a JSON {type(data).__name__}, not an object"
        else:
            try:
                return RunSpec.from_json(data, f"run {run_id}'s spec")
            except UserError as err:
                return f"{err}; remove the run (innerdpo queue rm {run_id}) and queue it again"
    return f"run {run_id}'s spec in the store {why}; remove the run (innerdpo queue rm {run_id}) and queue it again"


def spec_problem(run_id: int, text: Any) -> str | None:
    """Why a stored spec cannot be used (`parse_spec`), None when it is fine."""
    parsed = parse_spec(run_id, text)
    return parsed if isinstance(parsed, str) else None


def spec_json(spec: RunSpec | dict[str, Any]) -> str:
    """The text the store keeps for a spec (a mapping is read as a stored spec would be first)."""
    if not isinstance(spec, RunSpec):
        spec = RunSpec.from_json(dict(spec), "spec")
    return json.dumps(spec.to_json(), sort_keys=True)


def run_from_row(row: tuple, results: dict[str, dict[str, float]], requeues: tuple[Requeue, ...] = ()) -> Run:
    """Build a Run from a `SELECT {RUN_COLUMNS}` row; UserError (`parse_spec`) when its spec is unusable."""
    spec = parse_spec(row[0], row[3])
    if isinstance(spec, str):
        raise UserError(spec)
    tags = () if row[17] in (None, "", "[]") else tuple(json.loads(row[17]))   # most runs have none: no parse
    return Run(*row[:3], spec, *row[4:15], bool(row[15]), results, row[16], tags, row[18] or "", row[19], requeues)


def results_by_run(rows: list[tuple]) -> dict[int, dict[str, dict[str, float]]]:
    """{run_id: {shift: {metric: value}}} from (run_id, shift, metric, value) rows sorted by run and shift; NULL is
    NaN. Rows come sorted by (run_id, shift): a new dict starts only when either changes. This loop is most of
    list_runs' Python time (10,000 runs x 24 metrics = 240,000 rows)."""
    results: dict[int, dict[str, dict[str, float]]] = {}
    run_key = shift_key = None
    for run_id, shift, metric, value in rows:
        if run_id != run_key:
            run_key, shift_key, run_results = run_id, None, results.setdefault(run_id, {})
        if shift != shift_key:
            shift_key, metrics = shift, run_results.setdefault(shift, {})
        metrics[metric] = math.nan if value is None else value
    return results


def resolve_home(home: str | os.PathLike | None = None) -> Path:
    """The store's root directory: `home` if given, else $INNERDPO_HOME, else ./innerdpo (made absolute)."""
    chosen = home if home not in (None, "") else (os.environ.get(HOME_ENV) or DEFAULT_HOME)
    return Path(chosen).expanduser().absolute()


def no_store_problem(home: Path, path: Path) -> str:
    """Why a command that needs a store finds none at `home`: a file given as --home, or no store file (a mistyped
    --home)."""
    if home.is_file():
        return f"--home {home} is a file, not a workspace directory; give the directory that holds store.sqlite"
    return (f"no store at {path}: check --home (or $INNERDPO_HOME), or queue a run first (innerdpo queue add ...) to "
            "create the workspace")

