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
from dataclasses import dataclass, field

from rich.text import Text

from innerdpo_bench.evaluation.suites import SHIFTS
from innerdpo_bench.results import cells, columns, table
from innerdpo_bench.results import summaries  # noqa: F401  (registers the training-summary columns)
from innerdpo_bench.store import Run

# The dashboard's columns by default, by table-module name ("id" is shown as "run"): the run, its name (the display
# name: every setting that tells it apart), the scores, then the rest; `C` shows, hides and reorders any column.
COLUMNS = ("id", "name", *SHIFTS, "mean", "nll_ratio", "status", "seed", "tags")
FIXED = ("id",)                          # always shown, first (the table keeps it on screen while scrolling)
NUMERIC = frozenset((*table.NUMERIC_COLUMNS, "seed", "id"))
HEADERS = {"id": "run", "align_method": "align"}
SHORT_HEADERS = {"id": "run", "in_domain": "in_dom", "difficulty_scaling": "diff", "moral_transfer": "moral",
                 "orthogonal": "orth", "nll_ratio": "nll", "transform": "tf", "align_method": "align"}
STATUS_STYLES = {"done": "green", "running": "cyan", "failed": "red", "cancelled": "yellow", "queued": "dim"}


@dataclass(frozen=True)
class ViewTable(table.Table):
    """A `table.Table` whose columns are the dashboard's, so `table.to_markdown/to_csv/to_json` export it."""

    shown: tuple[str, ...] = COLUMNS
    pinned: frozenset[int] = frozenset()
    marked: frozenset[int] = frozenset()
    common: frozenset[str] = frozenset()   # name parts every row's name has after its method (compact names drop them)

    @property
    def columns(self) -> tuple[str, ...]:
        return self.shown


@dataclass
class ViewState:
    """What the user chose: filter, sort, seed groups or grouping keys, baseline run, pinned runs, the columns in
    order (None: COLUMNS), and the runs marked for compare and curves (remembered per workspace in HOME/view.json by
    the runs view; a named view keeps columns, filter, sort and grouping). `group_by`, when set, replaces seed
    groups (`innerdpo runs --group-by`)."""

    filter_expr: str = ""
    sort: str = "id"
    reverse: bool = False
    group_seeds: bool = False
    baseline: int | None = None
    pinned: set[int] = field(default_factory=set)
    columns: tuple[str, ...] | None = None
    group_by: tuple[str, ...] = ()
    marked: set[int] = field(default_factory=set)

    def to_json(self) -> dict:
        return {"filter_expr": self.filter_expr, "sort": self.sort, "reverse": self.reverse,
                "group_seeds": self.group_seeds, "baseline": self.baseline, "pinned": sorted(self.pinned),
                "columns": None if self.columns is None else list(self.columns), "group_by": list(self.group_by),
                "marked": sorted(self.marked)}

    def named(self) -> dict:
        """What a named view keeps (`results.views`): columns, filter, sort and grouping."""
        return {"columns": list(self.columns or COLUMNS), "filter": self.filter_expr, "sort": self.sort,
                "reverse": self.reverse, "group_by": list(self.group_by), "group_seeds": self.group_seeds}

    def load_named(self, view: dict) -> None:
        """Apply a named view (`results.views.clean`'s fields); the baseline, pins and marks stay."""
        self.columns = tuple(view["columns"]) if view.get("columns") else None
        self.filter_expr = view.get("filter", "")
        self.sort, self.reverse = view.get("sort", "id"), view.get("reverse", False)
        self.group_by, self.group_seeds = tuple(view.get("group_by", ())), view.get("group_seeds", False)

    @classmethod
    def from_json(cls, data: dict) -> "ViewState":
        """The state remembered in the workspace (`viewprefs`); anything malformed falls back to the default. An
        older file's `extra_columns` are the default columns plus those."""
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
        for key in ("pinned", "marked"):
            if isinstance(data.get(key), list):
                setattr(state, key, {item for item in data[key] if isinstance(item, int) and not isinstance(item, bool)})
        names = {key: tuple(dict.fromkeys(item for item in data[key] if isinstance(item, str) and item))
                 for key in ("columns", "extra_columns", "group_by") if isinstance(data.get(key), list)}
        state.group_by = names.get("group_by", ())
        if names.get("columns"):
            state.columns = names["columns"]
        elif names.get("extra_columns"):
            state.columns = tuple(dict.fromkeys(COLUMNS + names["extra_columns"]))
        return state


def column_choices(runs: Iterable[Run]) -> list[tuple[str, str]]:
    """(name, help) of every column the dashboard can show: the table's, the registered ones (method, tags, note,
    created, runtime_s, the training summaries, the samples' statistics, sweep, attempts, ...) and every train or
    eval option the runs have."""
    runs = list(runs)
    fixed = [(name, HELP.get(name, "")) for name in (*COLUMNS, *table.COLUMNS) if name in table.COLUMNS or name in HELP]
    registered = [(name, column.help) for name, column in columns.COLUMNS.items()]
    config = [(name, "train or eval option") for name in sorted(columns.config_keys(runs))
              if name not in columns.COLUMNS]
    return list({name: (name, help_) for name, help_ in fixed + registered + config}.values())


HELP = {"id": "the run id", "name": "the run's name (the display name unless renamed)", "mean": "mean of the shifts",
        "nll_ratio": "adapter NLL of chosen over the base model's, in_domain", "status": "queued, running, done, ...",
        "seed": "the training seed", **{shift: f"accuracy on {shift}" for shift in SHIFTS}}


def shown_columns(state: ViewState, runs: Iterable[Run], known: set[str] | None = None) -> tuple[str, ...]:
    """The columns shown, in order: the run id first, then the chosen ones (default COLUMNS), then grouping keys not
    among them (a table grouped by alpha shows alpha, as `runs --group-by` does), each once and only where these
    runs have it (a remembered config key no run has is dropped)."""
    known = known if known is not None else {name for name, _ in column_choices(runs)}
    chosen = [name for name in (state.columns or COLUMNS) if name in known or name in table.COLUMNS]
    return tuple(dict.fromkeys([*FIXED, *chosen, *(key for key in state.group_by if key in known)]))


def is_numeric(column: str, view: ViewTable | None) -> bool:
    """Whether a column is right-aligned: the scores, seed and run id, and an added column holding numbers."""
    return column in NUMERIC or (view is not None and table.is_numeric_column(column, view))


def build_view(runs: list[Run], state: ViewState) -> ViewTable:
    """The rows to show, in order (pinned first, each part in sort order). UserError for a bad filter or
    a baseline without results, from `table.make_table`."""
    known = {name for name, _ in column_choices(runs)}
    shown = shown_columns(state, runs, known)
    sort = state.sort if state.sort in shown else "id"
    group_by = tuple(key for key in state.group_by if key in known)
    made = table.make_table(runs, filter_expr=state.filter_expr, sort=sort, reverse=state.reverse,
                            group_seeds=state.group_seeds and not group_by, baseline=state.baseline,
                            significance=cells.significance_marks(), group_by=group_by, columns_shown=shown)
    pinned = frozenset(state.pinned)
    rows = [row for row in made.rows if is_pinned(row, pinned)] + [row for row in made.rows if not is_pinned(row, pinned)]
    return ViewTable(rows, grouped=made.grouped, baseline=made.baseline, baseline_ids=made.baseline_ids,
                     group_keys=made.group_keys, metric=made.metric, shown=shown, pinned=pinned,
                     marked=frozenset(state.marked), common=common_parts(rows))


def common_parts(rows: list[table.Row]) -> frozenset[str]:
    """The `key=value` parts that every multi-part name of the rows has (`data=mini:in_domain` in a sweep on one
    dataset): they tell no row apart, so a narrow terminal leaves them out of the name column."""
    parts = [set(str(row.values.get("name") or "").split()[1:]) for row in rows]
    parts = [found for found in parts if found]
    return frozenset(set.intersection(*parts)) if parts else frozenset()


def short_name(name: str, common: frozenset[str]) -> str:
    """A name for a narrow terminal: the method without its `-InnerDPO` family suffix, the align method by its name
    alone (they are distinct words), the parts every row shares left out (`hs-none-InnerDPO align=logodds α=1
    data=mini:in_domain` → `hs-none logodds α=1`). Exports and the status line keep the full name."""
    method, *rest = name.split(" ") or [""]
    return " ".join([method.removesuffix("-InnerDPO"),
                     *(part.removeprefix("align=") for part in rest if part not in common)])


def is_pinned(row: table.Row, pinned: Iterable[int]) -> bool:
    pinned = set(pinned)
    return any(run.id in pinned for run in row.runs)


def signature(row: table.Row, token: object) -> tuple:
    """What a row's cells are made of: equal signatures, equal cells (the table then leaves the row alone)."""
    return (token, row.values, row.std, row.significant, row.counts, row.is_baseline, row.tested,
            tuple(bool(run.results.get(shift, {}).get("below_chance")) for run in row.runs for shift in SHIFTS))


def content_keys(runs: Iterable[Run]) -> list[tuple]:
    """What the runs table shows of each run: a poll that changed only heartbeats and progress leaves it as is."""
    return [(run.id, run.name, run.status, run.kind, run.spec, run.results, run.attempts, run.error, run.run_dir)
            for run in runs]


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
    leaves a group's ± std out of the shift cells and writes the marks short (ns, ?, k/n), so that all four
    shifts fit 80 columns (the std stays in the exports and the detail screen)."""
    plain = table.cell(row, column, view)
    if compact and column == "name":
        plain = short_name(plain, view.common)
    if compact and column in SHIFTS:
        plain = _STD.sub("", plain).replace(" (ns)", " ns").replace(" (?)", " ?")
        plain = re.sub(r" \((\d+/\d+)\)", r" \1", plain)
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


def marker(row: table.Row, view: ViewTable) -> Text:
    """The one-character mark column: ◆ the baseline run, ✓ a marked run (space; compare and curves), ● a pinned
    run."""
    ids = {run.id for run in row.runs}
    if view.baseline is not None and view.baseline in ids:
        return Text("◆", style="bold magenta")
    if ids & view.marked:
        return Text("✓", style="bold cyan")
    if ids & view.pinned:
        return Text("●", style="bold")
    return Text(" ")
