"""The results table over the store's runs: rows, seed groups, baseline deltas, filter, sort, and text.

Pure functions over `store.Run` lists (no SQL, no files, no torch, no printing): `innerdpo runs` prints
them and the TUI shows them. One row per run, or with `group_seeds` one row per set of runs that differ
only by seed (`seeds.seed_group_key`):

    name | in_domain | difficulty_scaling | moral_transfer | orthogonal | mean | nll_ratio | status | seed | id

A shift cell is that shift's `acc` from the store's results (mean per-token log-prob of chosen >
rejected, `scoring.METRICS`), or what a `shift_values` callable gives (another metric, computed by the
caller from per-row records: `cells.shift_cells`); `mean` is the unweighted mean of the shifts the run
was scored on (eval's `aggregate`); `nll_ratio` is the coherence ratio against the base model. Optional
columns (`OPTIONAL_COLUMNS`, shown with `columns=`): `rep`, `distinct2`, `len` and `gen_nll_ratio`, statistics
of the run's greedy sample generations (`textstats.run_columns`, recorded by the worker). A grouped
cell is the mean over the group's runs that have a value, with the sample standard deviation (n ≥ 2).
With a baseline run the four shift cells are differences from that run's values, and a `significance`
callable (`cells.significance_marks`) may say which are real. Missing values are None and always sort last.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import shlex
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from innerdpo_bench import scoring
from innerdpo_bench.errors import UserError, unknown_choice
from innerdpo_bench.results.seeds import group_by_seed
from innerdpo_bench.store import STATUSES, Run
from innerdpo_bench.suites import SHIFTS
from innerdpo_bench.textstats import RUN_COLUMNS as SAMPLE_COLUMNS
from innerdpo_bench.textstats import SAMPLES_GROUP

# The shift cells of one run, and whether each of a row's baseline deltas is significant (None: unknown).
ShiftValues = Callable[[Run], Mapping[str, float | None]]
Significance = Callable[[Sequence[Run], Run], Mapping[str, bool | None]]
HARNESS_KEY = scoring.METRICS["acc"].harness_key    # what the shift cells hold by default
TRANSFER = "transfer"                               # the table's extra metric: normalised transfer of acc
TABLE_METRICS = (*scoring.METRICS, TRANSFER)
TABLE_METRIC_HELP = "What the shift cells hold: " + scoring.metric_help(
    extra="transfer (gain(shift) / gain(in_domain), gain = acc − base acc)")
NUMERIC_COLUMNS = (*SHIFTS, "mean", "nll_ratio")
COLUMNS = ("name", *NUMERIC_COLUMNS, "status", "seed", "id")
OPTIONAL_COLUMNS = SAMPLE_COLUMNS                   # numeric, shown only when asked for (`columns=`)
ALL_NUMERIC = (*NUMERIC_COLUMNS, *OPTIONAL_COLUMNS)
FORMATS = ("table", "markdown", "csv", "json")
MISSING = "-"
NOT_SIGNIFICANT = " (ns)"  # a baseline delta whose 95% paired bootstrap interval includes 0

FILTER_HELP = (
    "Space-separated terms, all of which must hold: FIELD:VALUE or FIELD=VALUE (equal; text case-insensitive), "
    "FIELD!=VALUE, FIELD~TEXT (contains), FIELD>N, FIELD>=N, FIELD<N, FIELD<=N. Fields: name, method, status, kind, "
    "seed, id, suite, base_model, a results column (in_domain, difficulty_scaling, moral_transfer, orthogonal, "
    "mean, nll_ratio) or any train flag (alpha, align_method, ...). A run without the value never matches a "
    "comparison. Quote a term with spaces: 'name~align=logodds α=1'. Example: "
    "'method:hs-none-InnerDPO status:done mean>0.6'."
)


# --------------------------------------------------------------------------- one run's values


def method_of(run: Run) -> str:
    """The training method, or "none" for a base-model (eval-only) run."""
    return str(run.spec.get("train", {}).get("method") or "none")


def seed_of(run: Run) -> int | None:
    seed = run.spec.get("train", {}).get("seed")
    return seed if isinstance(seed, int) else None


def finite_or_none(value: Any) -> float | None:
    """A finite float, or None for missing and NaN."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def harness_acc(run: Run) -> dict[str, float | None]:
    """The default shift cells: each shift's `acc` as the store recorded it from eval.json."""
    return {shift: run.results.get(shift, {}).get(HARNESS_KEY) for shift in SHIFTS}


def run_values(run: Run, shift_values: ShiftValues = harness_acc) -> dict[str, Any]:
    """The table's columns for one run; numeric cells are None when missing or NaN. `shift_values` gives
    the shift cells (default: the store's `acc`)."""
    cells = shift_values(run)
    shifts = {shift: finite_or_none(cells.get(shift)) for shift in SHIFTS}
    scored = [value for value in shifts.values() if value is not None]
    return {
        "name": run.name,
        **shifts,
        "mean": sum(scored) / len(scored) if scored else None,
        "nll_ratio": finite_or_none(run.results.get("coherence", {}).get("nll_ratio")),
        **{column: finite_or_none(run.results.get(SAMPLES_GROUP, {}).get(column)) for column in OPTIONAL_COLUMNS},
        "status": run.status,
        "seed": seed_of(run),
        "id": run.id,
    }


def _field_value(run: Run, key: str) -> Any:
    """What a filter FIELD reads on a run (see FILTER_HELP)."""
    if key in COLUMNS or key in OPTIONAL_COLUMNS:
        return run_values(run)[key]
    train, evaluation = run.spec.get("train", {}), run.spec.get("eval", {})
    if key == "method":
        return method_of(run)
    if key == "kind":
        return run.kind
    if key == "base_model":
        return train.get("base_model", evaluation.get("checkpoint"))
    return train.get(key, evaluation.get(key))


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class Row:
    """One line of the table: one run, or the runs of a seed group (`runs`, by id).

    `values` maps every column to its cell value: for a group, numeric columns hold the mean over the
    runs that have a value, `seed` and `id` hold tuples, `status` the shared status or a count per
    status. `std` holds the sample standard deviation of numeric columns (groups of 2 or more).
    """

    runs: tuple[Run, ...]
    values: dict[str, Any]
    std: dict[str, float | None] = field(default_factory=dict)
    # baseline tables: per shift, whether the delta's 95% paired bootstrap interval excludes 0 (None: unknown)
    significant: dict[str, bool | None] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.runs)


@dataclass(frozen=True)
class Table:
    """Rows ready to print. `baseline` is the run id the shift cells are differences from, if any."""

    rows: list[Row]
    grouped: bool = False
    baseline: int | None = None
    selected: tuple[str, ...] | None = None    # `make_table(columns=...)`: these columns, in this order

    @property
    def columns(self) -> tuple[str, ...]:
        if self.selected is not None:
            return self.selected
        return COLUMNS + ("n",) if self.grouped else COLUMNS


def _group_row(runs: list[Run], shift_values: ShiftValues = harness_acc) -> Row:
    per_run = [run_values(run, shift_values) for run in runs]
    values: dict[str, Any] = {"name": runs[0].name}
    std: dict[str, float | None] = {}
    for column in ALL_NUMERIC:
        present = [values_[column] for values_ in per_run if values_[column] is not None]
        values[column] = statistics.fmean(present) if present else None
        std[column] = statistics.stdev(present) if len(present) >= 2 else None
    statuses = [run.status for run in runs]
    values["status"] = statuses[0] if len(set(statuses)) == 1 else ", ".join(
        f"{statuses.count(status)} {status}" for status in STATUSES if status in statuses)
    values["seed"] = tuple(seed for seed in (seed_of(run) for run in runs) if seed is not None)
    values["id"] = tuple(run.id for run in runs)
    values["n"] = len(runs)
    return Row(tuple(runs), values, std)


def build_rows(runs: Iterable[Run], group_seeds: bool = False, shift_values: ShiftValues = harness_acc) -> list[Row]:
    """One Row per run (in the given order), or per seed group (ordered by each group's first run)."""
    runs = list(runs)
    if not group_seeds:
        return [Row((run,), run_values(run, shift_values)) for run in runs]
    return [_group_row(members, shift_values) for members in group_by_seed(runs)]


def apply_baseline(rows: list[Row], baseline: Run, shift_values: ShiftValues = harness_acc,
                   significance: Significance | None = None) -> list[Row]:
    """Rows whose four shift cells are differences from `baseline`'s (None where either is missing).

    With `significance` (the caller's test of a row's runs against the baseline on their per-row records,
    e.g. a paired bootstrap: `cells.significance_marks`), `Row.significant` says whether each delta's 95%
    interval excludes 0; `cell` marks the others "(ns)". Group standard deviations are unchanged:
    subtracting a constant does not move them."""
    reference = run_values(baseline, shift_values)
    if all(reference[shift] is None for shift in SHIFTS):
        raise UserError(f"baseline run {baseline.id} has no results yet (status {baseline.status}); choose a run "
                        "that has been evaluated")
    shifted = []
    for row in rows:
        values = dict(row.values)
        for shift in SHIFTS:
            if values[shift] is not None and reference[shift] is not None:
                values[shift] -= reference[shift]
            else:
                values[shift] = None
        significant: dict[str, bool | None] = {}
        if significance is not None and any(values[shift] is not None for shift in SHIFTS):
            significant = dict(significance(row.runs, baseline))
        shifted.append(Row(row.runs, values, row.std, significant))
    return shifted


# --------------------------------------------------------------------------- sort


def sort_rows(rows: list[Row], column: str, reverse: bool = False) -> list[Row]:
    """Rows ordered by `column` (ascending, or descending with `reverse`); missing values always last."""
    columns = COLUMNS + ("n",) + OPTIONAL_COLUMNS
    if column not in columns:
        raise unknown_choice("--sort column", column, columns)

    def key(row: Row) -> Any:
        value = row.values.get(column)
        if isinstance(value, tuple):  # a group's seeds or ids: order by the first
            value = value[0] if value else None
        return value.lower() if isinstance(value, str) else value

    present = [row for row in rows if key(row) is not None]
    missing = [row for row in rows if key(row) is None]
    return sorted(present, key=key, reverse=reverse) + missing


# --------------------------------------------------------------------------- filter

_TERM = re.compile(r"(?P<field>[A-Za-z_][A-Za-z0-9_.-]*)(?P<op><=|>=|!=|==|<|>|=|:|~)(?P<value>.+)", re.DOTALL)
_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}
_FIXED_FIELDS = ("name", "method", "status", "kind", "seed", "id", "suite", "base_model", *ALL_NUMERIC)


def _bad_filter(term: str, why: str) -> UserError:
    return UserError(f"bad --filter term {term!r}: {why}. Terms look like method:dpo, status:done, seed:1, "
                     "mean>0.9, nll_ratio<=1.1, name~ether")


def _equal(value: Any, wanted: str) -> bool:
    if value is None:
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value) == float(wanted)
        except ValueError:
            return False
    return str(value).lower() == wanted.lower()


def parse_filter(expr: str, runs: Iterable[Run] = ()) -> Callable[[Run], bool]:
    """A predicate over runs for a --filter expression (grammar: FILTER_HELP); UserError if malformed.

    Fields are the fixed ones plus every train/eval key found in `runs`' specs, so a misspelt field
    is an error with a suggestion rather than a filter that silently matches nothing.
    """
    try:
        terms = shlex.split(expr or "")
    except ValueError as err:
        raise UserError(f"bad --filter {expr!r}: {err}") from None
    known = set(_FIXED_FIELDS)
    for run in runs:
        known.update(run.spec.get("train", {}), run.spec.get("eval", {}))
    tests: list[Callable[[Run], bool]] = []
    for term in terms:
        match = _TERM.fullmatch(term)
        if match is None:
            raise _bad_filter(term, "expected FIELD, an operator (: = != ~ < <= > >=) and a value")
        name, op, wanted = match["field"].replace("-", "_"), match["op"], match["value"]
        if name not in known:
            raise unknown_choice("--filter field", name, sorted(known))
        if name == "status" and op in (":", "=", "==", "!=") and wanted not in STATUSES:
            raise unknown_choice("status in --filter", wanted, STATUSES)
        if op in (":", "=", "=="):
            tests.append(lambda run, name=name, wanted=wanted: _equal(_field_value(run, name), wanted))
        elif op == "!=":
            tests.append(lambda run, name=name, wanted=wanted: not _equal(_field_value(run, name), wanted))
        elif op == "~":
            tests.append(lambda run, name=name, wanted=wanted.lower():
                         _field_value(run, name) is not None and wanted in str(_field_value(run, name)).lower())
        else:
            try:
                threshold = float(wanted)
            except ValueError:
                raise _bad_filter(term, f"{op} needs a number, not {wanted!r}") from None
            if not math.isfinite(threshold):  # nan matches nothing and inf everything or nothing: never meant
                raise _bad_filter(term, f"{op} needs a finite number, not {wanted!r}")
            compare = _COMPARISONS[op]
            tests.append(lambda run, name=name, compare=compare, threshold=threshold:
                         (value := finite_or_none(_field_value(run, name))) is not None and compare(value, threshold))
    return lambda run: all(test(run) for test in tests)


# --------------------------------------------------------------------------- the pipeline


def make_table(runs: list[Run], *, filter_expr: str = "", sort: str | None = None, reverse: bool = False,
               group_seeds: bool = False, baseline: int | None = None, shift_values: ShiftValues = harness_acc,
               significance: Significance | None = None, columns: Sequence[str] | None = None) -> Table:
    """Filter, then group, then subtract the baseline, then sort (default: by id). The baseline may be
    any run of `runs`, filtered out or not; UserError if it is not there or has no results. `shift_values`
    and `significance`: see the module docstring (computed by the caller; this module reads no file).
    `columns`: show these (`parse_columns`) instead of the default ones."""
    keep = parse_filter(filter_expr, runs)
    reference = None
    if baseline is not None:
        reference = next((run for run in runs if run.id == baseline), None)
        if reference is None:
            raise UserError(f"no run with id {baseline} for --baseline")
    rows = build_rows([run for run in runs if keep(run)], group_seeds, shift_values)
    if reference is not None:
        rows = apply_baseline(rows, reference, shift_values, significance)
    rows = sort_rows(rows, sort or "id", reverse)
    return Table(rows, grouped=group_seeds, baseline=baseline, selected=tuple(columns) if columns else None)


def parse_columns(text: str | None, grouped: bool = False) -> tuple[str, ...] | None:
    """"name,rep,distinct2" → those columns (default, optional, and `n` for seed groups); None for none given;
    UserError naming --columns and the known columns otherwise."""
    if text is None or not text.strip():
        return None
    known = COLUMNS + OPTIONAL_COLUMNS + (("n",) if grouped else ())
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    for column in chosen:
        if column not in known:
            raise unknown_choice("--columns column", column, known)
    return chosen


# --------------------------------------------------------------------------- text


def header(column: str, table: Table) -> str:
    return f"Δ{column}" if table.baseline is not None and column in SHIFTS else column


def cell(row: Row, column: str, table: Table) -> str:
    """A cell as text: 3 decimals (signed for a baseline delta), `mean ± std` in a group, `-` if missing."""
    value = row.values.get(column)
    if value is None or value == ():
        return MISSING
    if column in ALL_NUMERIC:
        text = f"{value:+.3f}" if table.baseline is not None and column in SHIFTS else f"{value:.3f}"
        spread = row.std.get(column)
        text = f"{text} ± {spread:.3f}" if spread is not None else text
        if table.baseline is not None and row.significant.get(column) is False:
            text += NOT_SIGNIFICANT
        return text
    if isinstance(value, tuple):
        return ",".join(str(item) for item in value)
    return str(value)


def to_markdown(table: Table) -> str:
    """A GitHub-flavoured markdown table (numbers right-aligned), to paste into a paper or an issue."""
    columns = table.columns
    lines = ["| " + " | ".join(header(column, table) for column in columns) + " |",
             "|" + "|".join("---:" if column in ALL_NUMERIC + ("seed", "id", "n") else ":---"
                            for column in columns) + "|"]
    for row in table.rows:
        lines.append("| " + " | ".join(cell(row, column, table).replace("|", "\\|") for column in columns) + " |")
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """CSV with full-precision numbers (empty when missing); groups add `<column>_std` columns."""
    columns = list(table.columns)
    numeric = [column for column in columns if column in ALL_NUMERIC]
    std_columns = [f"{column}_std" for column in numeric] if table.grouped else []
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([header(column, table) for column in columns] + std_columns)
    for row in table.rows:
        values = [row.values.get(column) for column in columns]
        values = [" ".join(str(item) for item in value) if isinstance(value, tuple) else value for value in values]
        stds = [row.std.get(column) for column in numeric] if table.grouped else []
        writer.writerow(["" if value is None else value for value in values + stds])
    return out.getvalue()


def _finite(values: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe numbers: NaN and infinities become null (json.dumps would write the invalid `NaN`)."""
    return {key: None if isinstance(value, float) and not math.isfinite(value) else value
            for key, value in values.items()}


def run_record(run: Run, provenance: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Everything the store knows about a run: spec, status, timing, results (NaN as null) and provenance."""
    return {
        "id": run.id, "name": run.name, "kind": run.kind, "method": method_of(run), "seed": seed_of(run),
        "status": run.status, "spec": run.spec, "attempts": run.attempts, "worker": run.worker,
        "run_dir": run.run_dir, "exit_code": run.exit_code, "error": run.error,
        "cancel_requested": run.cancel_requested, "priority": run.priority, "created_at": run.created_at,
        "started_at": run.started_at, "finished_at": run.finished_at, "heartbeat_at": run.heartbeat_at,
        "results": {shift: _finite(metrics) for shift, metrics in run.results.items()},
        "provenance": provenance or {},
    }


def to_json(table: Table, provenance: dict[int, dict[str, dict[str, Any]]] | None = None) -> str:
    """A JSON list with one object per table row, one per line. Ungrouped: the run's full record
    (`run_record`) plus `row`, its table cells (deltas when there is a baseline). Grouped: `row`, `std`, `n`
    and `runs`. (No indentation: json's C encoder only runs without it, 4x faster over 10,000 runs.)"""
    provenance = provenance or {}
    lines = []
    for row in table.rows:
        cells = {column: list(value) if isinstance(value, tuple) else value
                 for column, value in _finite({column: row.values.get(column) for column in table.columns}).items()}
        if table.grouped:
            item = {"row": cells, "std": _finite(row.std), "n": row.n, "baseline": table.baseline,
                    "runs": [run_record(run, provenance.get(run.id)) for run in row.runs]}
        else:
            item = {**run_record(row.runs[0], provenance.get(row.runs[0].id)), "row": cells,
                    "baseline": table.baseline}
        lines.append(json.dumps(item, ensure_ascii=False))
    return "[\n" + ",\n".join(lines) + "\n]\n" if lines else "[]\n"
