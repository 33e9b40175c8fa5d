"""What the store hands out: a `Run` snapshot, and where a workspace (HOME) is."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from innerdpo_bench.errors import UserError
from innerdpo_bench.store.schema import FINISHED

STORE_FILE = "store.sqlite"
HOME_ENV = "INNERDPO_HOME"
DEFAULT_HOME = "innerdpo"


@dataclass(frozen=True)
class Run:
    """One row of `runs`: a snapshot that later writes never change.

    `spec` is the parsed JSON of the run's flags; `results` is {shift: {metric: value}} (filled by
    `get_run` and `list_runs`; empty from `claim_next`). Times are unix seconds.
    """

    id: int
    name: str
    kind: str
    spec: dict[str, Any]
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

    @property
    def finished(self) -> bool:
        """Done, failed or cancelled: nothing will run it again unless it is retried."""
        return self.status in FINISHED


RUN_COLUMNS = ", ".join(
    ["id", "name", "kind", "spec", "status", "priority", "created_at", "started_at", "finished_at", "worker",
     "heartbeat_at", "run_dir", "attempts", "exit_code", "error", "cancel_requested", "claims", "tags", "note"]
)


def _parse_spec(run_id: int, text: Any) -> tuple[dict[str, Any] | None, str | None]:
    """(the spec, None), or (None, why it cannot be used: not JSON, not an object, one line naming the run and
    the way out)."""
    try:
        spec = json.loads(text)
    except (TypeError, ValueError, RecursionError) as err:
        why = f"is not valid JSON ({getattr(err, 'msg', None) or type(err).__name__})"
    else:
        if isinstance(spec, dict):
            return spec, None
        why = f"is a JSON {type(spec).__name__}, not an object"
    return None, (f"run {run_id}'s spec in the store {why}; remove the run (innerdpo queue rm {run_id}) and queue it "
                  "again")


def spec_problem(run_id: int, text: Any) -> str | None:
    """Why a stored spec cannot be used (`_parse_spec`); None when it is fine."""
    return _parse_spec(run_id, text)[1]


def run_from_row(row: tuple, results: dict[str, dict[str, float]]) -> Run:
    """Build a Run from a `SELECT {RUN_COLUMNS}` row; UserError (`spec_problem`) when its spec is unusable. The
    spec is parsed once (10,000 runs: 0.13 s less than parsing to check and again to use)."""
    spec, problem = _parse_spec(row[0], row[3])
    if problem is not None:
        raise UserError(problem)
    tags = () if row[17] in (None, "", "[]") else tuple(json.loads(row[17]))   # most runs have none: no parse
    return Run(*row[:3], spec, *row[4:15], bool(row[15]), results, row[16], tags, row[18] or "")


def resolve_home(home: str | os.PathLike | None = None) -> Path:
    """The store's root directory: `home` if given, else $INNERDPO_HOME, else ./innerdpo (made absolute)."""
    chosen = home if home not in (None, "") else (os.environ.get(HOME_ENV) or DEFAULT_HOME)
    return Path(chosen).expanduser().absolute()
