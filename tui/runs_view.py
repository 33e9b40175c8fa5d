"""The runs view: a live results table with a filter bar, sort, seed groups, a baseline and pinned runs."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Input, Static

from innerdpo_bench.errors import UserError
from innerdpo_bench.evaluation.suites import SHIFTS
from innerdpo_bench.results import cells, table
from innerdpo_bench.store import Run
from innerdpo_bench.tui import view as view_model
from innerdpo_bench.tui.data import Progress, format_duration
from innerdpo_bench.tui.keyed_table import ColumnSpec, KeyedTable
from innerdpo_bench.tui.runs_actions import RunsActions

# Full header names need this many columns; narrower terminals get in_dom, diff, moral, orth.
WIDE_LAYOUT_COLUMNS = 170
COMPACT_BELOW = 120         # narrower: shift cells leave out a group's ± std so that all four shifts fit 80 columns
NAME_MIN = 12               # the name column is never cut narrower than this (80 columns: all four shifts show)


class RunsTable(KeyedTable):
    """The results table (one row per run or seed group); keys and state live in RunsView."""


class FilterInput(Input):
    """The filter bar: `?` opens the help (the grammar) instead of typing a character no filter uses."""

    async def _on_key(self, event) -> None:
        if event.character == "?":
            event.stop()
            event.prevent_default()
            self.app.action_help()
            return
        await super()._on_key(event)


class RunsView(RunsActions, Vertical):
    """Filter bar, results table and a status line; owns the view state (sort, filter, baseline, pins)."""

    BINDINGS = [
        Binding("enter", "open_detail", "Detail", tooltip="Open the run's detail: config, curves, results, log"),
        Binding("slash", "focus_filter", "Filter", tooltip="Focus the filter bar (? shows the grammar)"),
        Binding("s", "choose_sort", "Sort", tooltip="Choose the sort column (a list; r reverses)"),
        Binding("greater_than_sign", "next_sort", "Next sort", show=False, tooltip="Sort by the next column"),
        Binding("less_than_sign", "previous_sort", "Prev sort", show=False, tooltip="Sort by the previous column"),
        Binding("r", "reverse_sort", "Rev", show=False, tooltip="Reverse the sort direction (missing values stay "
                "last; retry is R in the queue)"),
        Binding("space", "toggle_mark", "Mark", tooltip="Mark or unmark the run (or group) for compare and curves"),
        Binding("c", "compare", "Compare", tooltip="Compare the two marked runs (or the highlighted run with the "
                "baseline): per-shift delta, paired interval, McNemar, and both configs"),
        Binding("l", "curves", "Curves", tooltip="Overlay the training curves of the marked runs (or the highlighted "
                "row's runs)"),
        Binding("x", "param_plot", "Param", tooltip="A sweep key against a shift's accuracy (mean ± std over seeds)"),
        Binding("C", "choose_columns", "Columns", tooltip="Show, hide and reorder columns (training summaries too)"),
        Binding("V", "views", "Views", tooltip="Save the view under a name, or load a named one (runs --view NAME)"),
        Binding("g", "choose_groups", "Group", show=False, tooltip="Group rows: by seed (runs that differ only by "
                "seed) or by any keys (align_method, alpha, ...)"),
        Binding("b", "toggle_baseline", "Base", show=False, tooltip="Show the shift columns as deltas against "
                "this run"),
        Binding("p", "toggle_pin", "Pin", show=False, tooltip="Pin this run to the top"),
        Binding("n", "annotate", "Name/tags", show=False, tooltip="Rename the run, edit its tags and note"),
        Binding("e", "export", "Export", show=False, tooltip="Export the visible view as Markdown, CSV or JSON"),
        Binding("v", "evaluate", "Eval", tooltip="Queue an evaluation of this run's checkpoint (choose suite and "
                "limit)"),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.state = view_model.ViewState()
        self.runs: list[Run] = []
        self.progress: dict[int, Progress] = {}
        self.view: view_model.ViewTable | None = None
        self.wide = False
        self.compact = False
        self.filter_error: str | None = None
        self._laid_out: tuple[str, ...] = ()
        self._name_width: int | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="filter-bar"):
            yield Static("filter", id="filter-label")
            yield FilterInput(placeholder="e.g. method:dpo in_domain>0.9 status:done name~ether  (? for help)",
                              id="filter", compact=True)
        yield Static("", id="filter-error")
        yield RunsTable(id="runs-table")
        yield Static("", id="runs-status")

    def on_mount(self) -> None:
        from innerdpo_bench.results import views as viewprefs

        home = getattr(self.app, "home", None)
        if home is not None:  # the view this workspace was last left in
            self.state = view_model.ViewState.from_json(viewprefs.load(home, "tui"))
            self._saved = self.state.to_json()
            if self.state.filter_expr:
                self.query_one("#filter", Input).value = self.state.filter_expr
        self._layout()

    _saved: dict | None = None

    def _remember(self) -> None:
        """Write the view state to the workspace when it changed (best effort: a read-only one forgets)."""
        from innerdpo_bench.results import views as viewprefs

        data = {key: value for key, value in self.state.to_json().items() if key != "marked"}  # marks: this session
        home = getattr(self.app, "home", None)
        if home is not None and data != self._saved:
            viewprefs.save(home, "tui", data)
            self._saved = data

    # ------------------------------------------------------------------ data in

    @property
    def table(self) -> RunsTable:
        return self.query_one(RunsTable)

    def apply_runs(self, runs: list[Run], progress: dict[int, Progress], view: view_model.ViewTable | None = None,
                   state: dict | None = None) -> None:
        """A new snapshot of the store: update the rows in place (nothing to do if nothing they show changed).
        `view` is the poll thread's view of these runs for the view state `state` (used when it still holds)."""
        if runs == self.runs and progress == self.progress:
            return
        same_rows = view_model.content_keys(runs) == view_model.content_keys(self.runs)
        self.runs, self.progress = runs, progress
        if not (self.is_mounted and self.table.columns):  # on_mount lays out and shows them
            return
        if same_rows and self.view is not None:   # heartbeats and progress only: the status line
            self._show_status()
        else:
            self.refresh_rows(view=view if state == self.state.to_json() else None)

    def refresh_rows(self, cursor_key: str | None = None, view: view_model.ViewTable | None = None) -> None:
        """Rebuild the view from the current runs and state and show it (the table changes in place)."""
        try:
            view = view or view_model.build_view(self.runs, self.state)
        except UserError as err:
            if self.state.baseline is not None:  # its results were cleared (retried) or it was removed
                self.state.baseline = None
                self.app.notify(f"baseline cleared: {err}", severity="warning")
                self.refresh_rows(cursor_key)
            else:  # the applied filter names a field no run has any more (runs removed)
                self._show_filter_error(str(err))
            return
        first = self.view is None
        self.view = view
        if view.shown != self._laid_out or first or self._fit_name(view.shown) != self._name_width:
            self._set_columns(view.shown)   # a column was added, removed or moved, or the name needs another width
        token = (view.baseline, view.shown, view.pinned, view.marked, view.grouped, self.compact)
        token = (*token, self._name_width)
        rows = [(view_model.row_key(row), view_model.signature(row, token), lambda row=row: self._cells(row, view))
                for row in view.rows]
        self.table.relabel(self._labels())
        self.table.show(rows, cursor_key)
        self._show_status()
        self.call_after_refresh(self._show_status)   # the scroll hint needs the laid-out widths
        self._remember()

    def _cells(self, row, view: view_model.ViewTable) -> dict[str, Text]:
        cells = {"mark": view_model.marker(row, view), **view_model.row_cells(row, view, self.compact)}
        if self._name_width and "name" in cells and cells["name"].cell_len > self._name_width:
            cells["name"].truncate(self._name_width, overflow="ellipsis")   # cut names end in …
        return cells

    def _labels(self) -> dict[str, Text]:
        return {column: view_model.header_label(column, self.view, short=not self.wide, sort=self.state.sort,
                                                reverse=self.state.reverse)
                for column in self.columns}

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns shown, in order (`C` chooses them)."""
        return self.view.shown if self.view is not None else view_model.shown_columns(self.state, self.runs)

    def _set_columns(self, shown: tuple[str, ...]) -> None:
        labels = {column: view_model.header_label(column, self.view, short=not self.wide, sort=self.state.sort,
                                                  reverse=self.state.reverse) for column in shown}
        self._name_width = self._fit_name(shown)
        widths = {"name": self._name_width} if self._name_width else {}
        self.table.set_columns([ColumnSpec("mark", Text(" "), width=1),
                                *(ColumnSpec(column, labels[column], width=widths.get(column)) for column in shown)])
        self.table.fixed_columns = 2
        self._laid_out = shown

    def _fit_name(self, shown: tuple[str, ...]) -> int | None:
        """The name column's width: the longest name where everything fits (200 columns), else what the other
        columns leave, at least NAME_MIN (the names are cut with an ellipsis; → scrolls to the rest)."""
        if "name" not in shown or self.view is None or not self.view.rows:
            return None
        sample = self.view.rows[:500]   # widths of the first rows: enough to lay out, cheap at 10,000 runs
        def width(column: str) -> int:
            label = view_model.header_label(column, self.view, short=not self.wide, sort="", reverse=False)
            return max([label.cell_len, *(view_model.cell_text(row, column, self.view, self.compact).cell_len
                                          for row in sample)]) + 2
        longest = max(view_model.cell_text(row, "name", self.view, self.compact).cell_len for row in sample)
        # Priority: the run, its name and the four shifts fit the width; the columns after them may scroll.
        first = shown[:shown.index("name")] + tuple(column for column in shown if column in SHIFTS)
        others = 1 + 2 + sum(width(column) for column in shown if column != "name" and (
            self.wide or column in first))
        room = self.app.size.width - 2 - others - 2
        return None if room >= longest else max(NAME_MIN, room)

    def _layout(self) -> None:
        """(Re)lay out the columns for the terminal width: full header names only where they fit, the name column
        as wide as the room left."""
        self.wide = self.app.size.width >= WIDE_LAYOUT_COLUMNS
        keep = self.table.current_key
        self.compact = self.app.size.width < COMPACT_BELOW
        self._set_columns(self.columns)
        if self.runs:
            self.refresh_rows(keep)

    def on_resize(self) -> None:
        width = self.app.size.width
        if (width >= WIDE_LAYOUT_COLUMNS) != self.wide or (width < COMPACT_BELOW) != self.compact or (
                self.view is not None and self._fit_name(self.view.shown) != self._name_width):
            self._layout()

    # ------------------------------------------------------------------ the highlighted run

    def selected_runs(self) -> list[Run]:
        """The runs of the row under the cursor (several for a seed group); empty if none."""
        key = self.table.current_key
        if key is None or self.view is None:
            return []
        for row in self.view.rows:
            if view_model.row_key(row) == key:
                return list(row.runs)
        return []

    def selected_run(self) -> Run | None:
        runs = self.selected_runs()
        return runs[0] if runs else None

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        self._show_status()

    @on(DataTable.RowSelected)
    def _selected(self, event: DataTable.RowSelected) -> None:
        run = self.selected_run()
        if run is not None:
            self.app.open_detail(run.id)

    def _show_status(self) -> None:
        view = self.view
        if view is None:
            return
        parts = [f"{len(view.rows)} of {len(self.runs)} runs" if not view.grouped else
                 f"{len(view.rows)} groups of {sum(row.n for row in view.rows)} runs ({len(self.runs)} in store)"]
        parts.append(f"sort {self.state.sort} {'▼' if self.state.reverse else '▲'}")
        if view.group_keys:
            parts.append(f"grouped by {', '.join(view.group_keys)}")
        if view.baseline is not None:
            parts.append(f"Δ vs run {view.baseline}")
        if self.state.pinned:
            parts.append(f"{len(self.state.pinned)} pinned")
        if self.state.marked:
            parts.append(f"{len(self.state.marked)} marked (c compare, l curves)")
        hidden = self.columns_off_screen()
        if hidden:
            parts.append(f"→ scrolls to {', '.join(hidden)}")
        if self.table.filling:
            parts.append("loading rows…")
        if self.state.filter_expr:
            parts.append(f"filter {self.state.filter_expr}")
        summary = Text(" · ".join(parts), style="dim", no_wrap=True, overflow="ellipsis")
        run = self.selected_run()
        line = Text(no_wrap=True, overflow="ellipsis")
        if run is not None:
            line.append(f"run {run.id} ", style="bold")
            line.append(run.name)
            line.append(f" · {run.status}", style=view_model.STATUS_STYLES.get(run.status, ""))
            progress = self.progress.get(run.id)
            if progress is not None and run.status == "running":
                if progress.phase == "train" and progress.step is not None and progress.max_steps:
                    line.append(f" step {progress.step}/{progress.max_steps} ETA {format_duration(progress.eta_s)}")
                else:
                    line.append(f" ({progress.eval_text if progress.phase == 'eval' else progress.phase})")
            if run.error:
                line.append(f" · {run.error}", style="red")
            problem = cells.unreadable(run) if run.status == "done" else None
            if problem:
                line.append(f" · unreadable: {problem}", style="red")
        self.query_one("#runs-status", Static).update(Text("\n").join([line, summary]))

    def columns_off_screen(self) -> list[str]:
        """The shown columns that start right of the table's visible width (→ scrolls to them)."""
        table = self.table
        if not table.size.width or not self._laid_out:
            return []
        x, hidden = 0, []
        for column in table.ordered_columns:
            if x + 1 > table.scroll_x + table.size.width - 1 and column.key.value in self._laid_out:
                hidden.append(view_model.HEADERS.get(column.key.value, column.key.value))
            x += column.get_render_width(table)
        return hidden

    # ------------------------------------------------------------------ filter

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.set_filter(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self) -> None:
        self.table.focus()

    def set_filter(self, expr: str) -> bool:
        """Apply a filter expression; an invalid one is shown as an error (the bar turns red and the error line
        says which filter the rows still follow) rather than applied in part."""
        try:
            table.parse_filter(expr, self.runs)
        except UserError as err:
            applied = f"filter {self.state.filter_expr.strip()!r}" if self.state.filter_expr.strip() else "no filter"
            self._show_filter_error(f"{err} · not applied: the rows still show {applied}")
            self.query_one("#filter", Input).add_class("invalid")
            return False
        self.filter_error = None
        self.query_one("#filter", Input).remove_class("invalid")
        self.query_one("#filter-error", Static).remove_class("shown")
        self.state.filter_expr = expr
        self.refresh_rows()
        return True

    def _show_filter_error(self, message: str) -> None:
        self.filter_error = message
        error = self.query_one("#filter-error", Static)
        error.update(Text(message, style="red"))
        error.add_class("shown")

    def action_focus_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def key_escape(self) -> None:
        if self.query_one("#filter", Input).has_focus:
            self.table.focus()

    # ------------------------------------------------------------------ sort

    def sort_by(self, column: str, reverse: bool | None = None) -> None:
        """Sort by `column`: scores start with the best (descending), other columns ascending."""
        if column not in self.columns:
            raise ValueError(f"no column {column!r}")
        self.state.sort = column
        self.state.reverse = column in table.NUMERIC_COLUMNS if reverse is None else reverse
        self.refresh_rows()

    def _step_sort(self, step: int) -> None:
        columns = self.columns
        if self.state.sort not in columns:
            self.state.sort = "id"
        self.sort_by(columns[(columns.index(self.state.sort) + step) % len(columns)])

    def action_next_sort(self) -> None:
        self._step_sort(1)

    def action_previous_sort(self) -> None:
        self._step_sort(-1)

    def action_reverse_sort(self) -> None:
        self.sort_by(self.state.sort, not self.state.reverse)

    @on(DataTable.HeaderSelected)
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        column = event.column_key.value
        if column == self.state.sort:
            self.action_reverse_sort()
        elif column in self.columns:
            self.sort_by(column)
