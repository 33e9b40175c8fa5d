"""The results table's columns beyond the fixed ones: a registry of named per-run values, and every config key.

`COLUMNS` maps a column name to a `Column` (how to read it off a store run, whether it is a number, a help
line). Any other name is a config column: the run's train (else eval) option of that name, present only where
the run's method uses it (`TrainConfig.applies`: `align_method` is no column of a dpo run), so a filter or a
column on a config key matches only the runs that have it. Another module adds columns by adding entries to
`COLUMNS` (a plain dict: text statistics of samples, say). In a group row a column shows the shared value,
else a registered numeric column's mean, else the distinct values joined by ", ".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from innerdpo_bench.evaluation import scoring
from innerdpo_bench.evaluation.suites import SHIFTS
from innerdpo_bench.evaluation.textstats import RUN_COLUMNS, SAMPLES_GROUP
from innerdpo_bench.store import Run

ShiftValues = Callable[[Run], "dict[str, float | None]"]   # the shift cells of one run
HARNESS_KEY = scoring.METRICS["acc"].harness_key    # what the shift cells hold by default


def method_of(run: Run) -> str:
    """The training method, or "none" for a base-model (eval-only) run."""
    return run.spec.method


def seed_of(run: Run) -> int | None:
    return run.spec.seed


def finite_or_none(value: Any) -> float | None:
    """A finite float, or None for missing and NaN."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def harness_acc(run: Run) -> dict[str, float | None]:
    """The default shift cells: each shift's `acc` as the store recorded it from eval.json."""
    return {shift: run.results.get(shift, {}).get(HARNESS_KEY) for shift in SHIFTS}


def run_values(run: Run, shift_values: ShiftValues = harness_acc) -> dict[str, Any]:
    """The table's fixed columns for one run; numeric cells are None when missing or NaN. `shift_values` gives
    the shift cells (default: the store's `acc`)."""
    cells = shift_values(run)
    shifts = {shift: finite_or_none(cells.get(shift)) for shift in SHIFTS}
    scored = [value for value in shifts.values() if value is not None]
    return {
        "name": run.name,
        **shifts,
        "mean": sum(scored) / len(scored) if scored else None,
        "nll_ratio": finite_or_none(run.results.get("coherence", {}).get("nll_ratio")),
        "status": run.status,
        "seed": seed_of(run),
        "id": run.id,
    }


@dataclass(frozen=True)
class Column:
    """A table column read off one store run: `value(run)` (None: missing), shown right-aligned if `numeric`."""

    help: str
    value: Callable[[Run], Any]
    numeric: bool = False


COLUMNS: dict[str, Column] = {
    "method": Column("the training method (none: a base model)", method_of),
    "kind": Column("train_eval, or eval for an evaluation-only run", lambda run: run.kind),
    "sweep": Column("the sweep id of the `queue add` that queued the run", lambda run: run.spec.sweep),
    "source_run": Column("for an evaluation-only re-run: the run whose model it scored",
                         lambda run: run.spec.source_run, numeric=True),
    "attempts": Column("how many times a worker claimed the run", lambda run: run.attempts, numeric=True),
    "transform": Column("the InnerDPO hidden-state transform (none, ether, supr); - without a hidden term",
                        lambda run: _transform(run)),
    "tags": Column("the run's labels (queue add --tag, queue edit, the dashboard's n)",
                   lambda run: ",".join(run.tags) or None),
    "note": Column("the run's note (queue add --note, queue edit, the dashboard's n)", lambda run: run.note or None),
    "created": Column("when the run was queued (UTC)", lambda run: _utc(run.created_at)),
    "runtime_s": Column("seconds from its worker's last claim to its end (or now, running: -)",
                        lambda run: round(run.finished_at - run.started_at, 1)
                        if run.finished_at and run.started_at else None, numeric=True),
}


def _transform(run: Run) -> str | None:
    from innerdpo_bench.errors import UserError

    try:
        return run.spec.train.transform if run.spec.train is not None else None
    except UserError:  # a method this version does not know: no transform to show
        return None


def _utc(seconds: float | None) -> str | None:
    import time

    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(seconds)) if seconds else None


_SAMPLE_HELP = {  # statistics of the run's greedy sample generations (textstats.run_columns; docs/statistics.md)
    "rep": "samples: the fraction of 4-grams repeating an earlier one in the same text (the adapter's)",
    "distinct2": "samples: distinct 2-grams / 2-grams over all the adapter's texts",
    "len": "samples: the adapter's mean completion length in words",
    "gen_nll_ratio": "samples: the adapter's mean per-token NLL of its own greedy text over the base's of its own",
}
assert set(_SAMPLE_HELP) == set(RUN_COLUMNS)


def _sample_stat(name: str) -> Callable[[Run], float | None]:
    return lambda run: finite_or_none(run.results.get(SAMPLES_GROUP, {}).get(name))


COLUMNS.update({name: Column(help_, _sample_stat(name), numeric=True) for name, help_ in _SAMPLE_HELP.items()})


EVAL_KEYS = ("suite", "limit", "samples", "checkpoint")


def config_value(run: Run, key: str) -> Any:
    """The run's train option `key` where its method uses it, else its eval option `key`, else None."""
    train = run.spec.train
    if train is not None and key in train.__dataclass_fields__:
        return getattr(train, key) if train.applies(key) else None
    return getattr(run.spec.eval, key) if key in EVAL_KEYS else None


def value(run: Run, name: str) -> Any:
    """A registered column's value, else the config value of that name."""
    column = COLUMNS.get(name)
    return column.value(run) if column is not None else config_value(run, name)


def config_keys(runs: Iterable[Run]) -> set[str]:
    """Every train and eval option name found in the runs' specs (an eval option only where a run sets it)."""
    keys: set[str] = set()
    for run in runs:
        if run.spec.train is not None:
            keys.update(run.spec.train.__dataclass_fields__)
        keys.update(key for key in EVAL_KEYS if key in ("suite", "limit") or getattr(run.spec.eval, key) is not None)
    return keys


def is_numeric(name: str, values: Sequence[Any] = ()) -> bool:
    if name in COLUMNS:
        return COLUMNS[name].numeric
    present = [v for v in values if v is not None]
    return bool(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)


def group_value(values: Sequence[Any], average: bool = False) -> Any:
    """One cell for a group's values: the shared one, else with `average` (a registered numeric column, a
    measurement) the numbers' mean, else the distinct values joined (settings: α 0.1 and 1 are "0.1, 1")."""
    present = [v for v in values if v is not None]
    if not present:
        return None
    distinct = list(dict.fromkeys(map(repr, present)))
    if len(distinct) == 1:
        return present[0]
    if average and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return statistics.fmean(present)
    return ", ".join(dict.fromkeys(format_value(v) for v in present))


def format_value(value: Any) -> str:
    """A column value as text: numbers as %g, booleans as on/off, tuples comma-joined."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value)
