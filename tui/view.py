"""The runs view as data: which rows, in which order, with which cells; the table module does the work.

`build_view` runs `innerdpo_bench.results.table.make_table` (filter, seed groups, baseline deltas, sort
with missing values last; baseline significance from the per-row records, `results.cells`) and then puts
pinned rows on top. The cells are `table.cell`'s text, so an export
of the view (`table.to_markdown` etc. on the same `ViewTable`) holds exactly what the screen shows.
No Textual here; cells are styled `rich.text.Text` (never markup: a run name like `x[red]` stays literal).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from rich.text import Text

from innerdpo_bench.evaluation.suites import SHIFTS
from innerdpo_bench.methods.catalog import METHODS
from innerdpo_bench.results import cells, columns, table
from innerdpo_bench.store import Run

# The dashboard's columns, by table-module name ("id" is shown as "run"). The scores come before the
# descriptive columns so that an 80-column terminal shows them without scrolling.
COLUMNS = ("id", "method", *SHIFTS, "mean", "nll_ratio", "status", "seed", "align", "transform")
TEXT_COLUMNS = ("method", "align", "transform")     # not table.COLUMNS: this module adds their values
NUMERIC = frozenset((*table.NUMERIC_COLUMNS, "seed", "id"))
HEADERS = {"id": "run"}
SHORT_HEADERS = {"id": "run", "in_domain": "in_dom", "difficulty_scaling": "diff", "moral_transfer": "moral",
                 "orthogonal": "orth", "nll_ratio": "nll", "transform": "tf"}
STATUS_STYLES = {"done": "green", "running": "cyan", "failed": "red", "cancelled": "yellow", "queued": "dim"}


@dataclass(frozen=True)
class ViewTable(table.Table):
    """A `table.Table` whose columns are the dashboard's, so `table.to_markdown/to_csv/to_json` export it."""

    shown: tuple[str, ...] = COLUMNS
    pinned: frozenset[int] = frozenset()

    @property
    def columns(self) -> tuple[str, ...]:
        return self.shown


@dataclass
class ViewState:
    """What the user chose: filter, sort, seed groups or grouping keys, baseline run, pinned runs, and columns
    added to the default ones (remembered per workspace in HOME/view.json by the runs view). `group_by`, when
    set, replaces seed groups (`innerdpo runs --group-by`)."""

    filter_expr: str = ""
    sort: str = "id"
    reverse: bool = False
    group_seeds: bool = False
    baseline: int | None = None
    pinned: set[int] = field(default_factory=set)
    extra_columns: tuple[str, ...] = ()
    group_by: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"filter_expr": self.filter_expr, "sort": self.sort, "reverse": self.reverse,
                "group_seeds": self.group_seeds, "baseline": self.baseline, "pinned": sorted(self.pinned),
                "extra_columns": list(self.extra_columns), "group_by": list(self.group_by)}

    @classmethod
    def from_json(cls, data: dict) -> "ViewState":
        """The state remembered in the workspace (`viewprefs`); anything malformed falls back to the default."""
        state = cls()
        if isinstance(data.get("filter_expr"), str):
            state.filter_expr = data["filter_expr"]
        if isinstance(data.get("sort"), str) and data["sort"]:  # checked against the columns shown (`build_view`)
            state.sort = data["sort"]
        for key in ("reverse", "group_seeds"):
            if isinstance(data.get(key), bool):
                setattr(state, key, data[key])
        if isinstance(data.get("baseline"), int) and not isinstance(data.get("baseline"), bool):
            state.baseline = data["baseline"]
        if isinstance(data.get("pinned"), list):
            state.pinned = {item for item in data["pinned"] if isinstance(item, int) and not isinstance(item, bool)}
        for key in ("extra_columns", "group_by"):
            if isinstance(data.get(key), list):
                setattr(state, key, tuple(dict.fromkeys(item for item in data[key] if isinstance(item, str) and item)))
        return state


def column_choices(runs: Iterable[Run]) -> list[tuple[str, str]]:
    """(name, help) of every column that can be added to the dashboard's: the registered ones (samples'
    rep, distinct2, len, gen_nll_ratio; sweep, attempts, ...) and every train or eval option the runs have."""
    runs = list(runs)
    registered = [(name, column.help) for name, column in columns.COLUMNS.items() if name not in COLUMNS]
    config = [(name, "train or eval option") for name in sorted(columns.config_keys(runs))
              if name not in COLUMNS and name not in columns.COLUMNS]
    return registered + config


def available(names: Iterable[str], runs: Iterable[Run]) -> tuple[str, ...]:
    """The names that are still columns of these runs (a remembered config key no run has is dropped)."""
    known = {name for name, _ in column_choices(runs)} | set(table.COLUMNS)
    return tuple(name for name in names if name in known)


SHOWN_AS = {"align_method": "align"}  # a group key that a default column already shows


def shown_columns(state: ViewState, runs: Iterable[Run]) -> tuple[str, ...]:
    """The dashboard's columns, then the grouping keys (a table grouped by alpha shows alpha, as `runs
    --group-by` does), then the added ones, each once and only where these runs have it."""
    keys = [name for name in available(state.group_by, runs) if SHOWN_AS.get(name) not in COLUMNS]
    added = available(state.extra_columns, runs)
    return COLUMNS + tuple(dict.fromkeys(name for name in (*keys, *added) if name not in COLUMNS))


def descriptive_values(run: Run) -> dict[str, str | None]:
    """method, align and transform of a run: align and transform only where the method has a hidden term."""
    method = table.method_of(run)
    catalog_entry = METHODS.get(method)
    hidden = catalog_entry is not None and catalog_entry.has_hidden_term
    return {"method": method, "align": run.spec.train.align_method if hidden else None,
            "transform": catalog_entry.transform if hidden else None}


def _descriptive(row: table.Row) -> dict[str, object]:
    """`descriptive_values` of a row: a group's shared value, else its distinct values joined (`columns.group_value`)."""
    per_run = [descriptive_values(run) for run in row.runs]
    return {key: columns.group_value([values[key] for values in per_run]) for key in TEXT_COLUMNS}


def is_numeric(column: str, view: ViewTable | None) -> bool:
    """Whether a column is right-aligned: the scores, seed and run id, and an added column holding numbers."""
    return column in NUMERIC or (view is not None and column not in TEXT_COLUMNS
                                 and table.is_numeric_column(column, view))


def _sort_text(rows: list[table.Row], column: str, reverse: bool) -> list[table.Row]:
    # table.sort_rows only knows table.COLUMNS; this is its rule (missing last) for the three text columns.
    present = [row for row in rows if row.values.get(column) is not None]
    missing = [row for row in rows if row.values.get(column) is None]
    return sorted(present, key=lambda row: str(row.values[column]).lower(), reverse=reverse) + missing


def build_view(runs: list[Run], state: ViewState) -> ViewTable:
    """The rows to show, in order (pinned first, each part in sort order). UserError for a bad filter or
    a baseline without results, from `table.make_table`."""
    shown = shown_columns(state, runs)
    sort = state.sort if state.sort in shown else "id"
    text_sort = sort in TEXT_COLUMNS
    added = [name for name in shown if name not in COLUMNS]
    group_by = available(state.group_by, runs)
    made = table.make_table(runs, filter_expr=state.filter_expr, sort=None if text_sort else sort,
                            reverse=state.reverse, group_seeds=state.group_seeds and not group_by,
                            baseline=state.baseline, significance=cells.significance_marks(), group_by=group_by,
                            columns_shown=added or None)
    rows = [replace(row, values={**row.values, **_descriptive(row)}) for row in made.rows]
    if text_sort:
        rows = _sort_text(rows, sort, state.reverse)
    pinned = frozenset(state.pinned)
    rows = [row for row in rows if is_pinned(row, pinned)] + [row for row in rows if not is_pinned(row, pinned)]
    return ViewTable(rows, grouped=made.grouped, baseline=made.baseline, baseline_ids=made.baseline_ids,
                     group_keys=made.group_keys, metric=made.metric, shown=shown, pinned=pinned)


def is_pinned(row: table.Row, pinned: Iterable[int]) -> bool:
    pinned = set(pinned)
    return any(run.id in pinned for run in row.runs)


def row_key(row: table.Row) -> str:
    """A row's identity across polls: its (first) run's id. A seed group keeps it as new seeds land."""
    return str(row.runs[0].id)


def header_label(column: str, view: ViewTable | None, *, short: bool, sort: str, reverse: bool) -> Text:
    """The column header: name (Δ-prefixed for baseline deltas), then a sort arrow or a reserved space,
    so that the arrow never needs a wider column than the one laid out."""
    name = (SHORT_HEADERS if short else HEADERS).get(column, column)
    if view is not None and view.baseline is not None and column in SHIFTS:
        name = "Δ" + name
    arrow = ("▼" if reverse else "▲") if column == sort else " "
    return Text(name + arrow, justify="right" if is_numeric(column, view) else "left",
                style="bold" if column == sort else "")


def cell_text(row: table.Row, column: str, view: ViewTable, compact: bool = False) -> Text:
    """One cell: `table.cell`'s text, right-aligned if numeric, coloured by status or by the sign of a delta
    that is significant; untested, not significant or incomplete cells are dim. `compact` (a narrow terminal)
    leaves a group's ± std out of the shift cells and writes the marks short (ns, ?, k/n), and cuts the method
    to COMPACT_METHOD_WIDTH, so that all four shifts fit 80 columns (the std stays in the exports and the
    detail screen)."""
    plain = table.cell(row, column, view)
    if compact and column in SHIFTS:
        plain = _STD.sub("", plain).replace(" (ns)", " ns").replace(" (?)", " ?")
        plain = re.sub(r" \((\d+/\d+)\)", r" \1", plain)
    if compact and column == "method" and len(plain) > COMPACT_METHOD_WIDTH:
        plain = plain[:COMPACT_METHOD_WIDTH - 1] + "…"
    style = ""
    value = row.values.get(column)
    if plain == table.MISSING:
        style = "dim"
    elif column == "status":
        style = STATUS_STYLES.get(str(value), "")
    elif view.baseline is not None and column in SHIFTS and isinstance(value, float) and row.significant.get(column):
        # Coloured only when the paired test says the delta is real; higher accuracy is better on every shift.
        style = "green" if value > 0 else "red"
    elif row.incomplete(column) or plain.endswith((table.NOT_SIGNIFICANT, table.UNTESTED)):
        style = "dim"
    if column in SHIFTS and any(run.results.get(column, {}).get("below_chance") for run in row.runs):
        plain, style = plain + " ⚠", "bold red"  # the label-orientation audit: far below chance (audit.py)
    return Text(plain, style=style, justify="right" if is_numeric(column, view) else "left", no_wrap=True)


def row_cells(row: table.Row, view: ViewTable, compact: bool = False) -> dict[str, Text]:
    return {column: cell_text(row, column, view, compact) for column in view.columns}


_STD = re.compile(r" ± \d+\.\d+")
COMPACT_METHOD_WIDTH = 12   # the method column of a narrow terminal, cut with an ellipsis


def marker(row: table.Row, view: ViewTable) -> Text:
    """The one-character mark column: ◆ the baseline run, ● a pinned run."""
    ids = {run.id for run in row.runs}
    if view.baseline is not None and view.baseline in ids:
        return Text("◆", style="bold magenta")
    if ids & view.pinned:
        return Text("●", style="bold")
    return Text(" ")
