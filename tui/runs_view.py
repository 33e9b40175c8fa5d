"""The runs view: a live results table with a filter bar, sort, seed groups, a baseline and pinned runs."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Input, Static

from innerdpo_bench.errors import UserError
from innerdpo_bench.results import cells, table
from innerdpo_bench.store import Run
from innerdpo_bench.tui import view as view_model
from innerdpo_bench.tui.data import Progress, format_duration
from innerdpo_bench.tui.keyed_table import ColumnSpec, KeyedTable

# Full header names need this many columns; narrower terminals get in_dom, diff, moral, orth.
WIDE_LAYOUT_COLUMNS = 170
SEED_GROUPS = "seed"        # the grouping chooser's first choice: `innerdpo runs --group-seeds`
COMPACT_BELOW = 120         # narrower: shift cells leave out a group's ± std so that all four shifts fit 80 columns


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


class RunsView(Vertical):
    """Filter bar, results table and a status line; owns the view state (sort, filter, baseline, pins)."""

    BINDINGS = [
        Binding("slash", "focus_filter", "Filter", tooltip="Focus the filter bar (? shows the grammar)"),
        Binding("s", "next_sort", "Sort", tooltip="Sort by the next column"),
        Binding("S", "previous_sort", "Sort back", show=False, tooltip="Sort by the previous column"),
        Binding("r", "reverse_sort", "Rev", tooltip="Reverse the sort direction (missing values stay last; retry "
                "is R in the queue)"),
        Binding("g", "choose_groups", "Group", tooltip="Group rows: by seed (runs that differ only by seed) or by "
                "any keys (align_method, alpha, ...)"),
        Binding("C", "choose_columns", "Columns", show=False, tooltip="Add columns: sample statistics, sweep, attempts or any "
                "train option"),
        Binding("b", "toggle_baseline", "Base", tooltip="Show the shift columns as deltas against this run"),
        Binding("p", "toggle_pin", "Pin", tooltip="Pin this run to the top"),
        Binding("e", "export", "Export", tooltip="Export the visible view as Markdown, CSV or JSON"),
        Binding("v", "evaluate", "Eval", show=False, tooltip="Queue an evaluation of this run's checkpoint (asks "
                "first)"),
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

        data = self.state.to_json()
        home = getattr(self.app, "home", None)
        if home is not None and data != self._saved:
            viewprefs.save(home, "tui", data)
            self._saved = data

    # ------------------------------------------------------------------ data in

    @property
    def table(self) -> RunsTable:
        return self.query_one(RunsTable)

    def apply_runs(self, runs: list[Run], progress: dict[int, Progress]) -> None:
        """A new snapshot of the store: update the rows in place (nothing to do if nothing changed)."""
        if runs == self.runs and progress == self.progress:
            return
        self.runs, self.progress = runs, progress
        if self.is_mounted and self.table.columns:  # else on_mount lays out and shows them
            self.refresh_rows()

    def refresh_rows(self, cursor_key: str | None = None) -> None:
        """Rebuild the view from the current runs and state and show it (the table changes in place)."""
        try:
            view = view_model.build_view(self.runs, self.state)
        except UserError as err:
            if self.state.baseline is not None:  # its results were cleared (retried) or it was removed
                self.state.baseline = None
                self.app.notify(f"baseline cleared: {err}", severity="warning")
                self.refresh_rows(cursor_key)
            else:  # the applied filter names a field no run has any more (runs removed)
                self._show_filter_error(str(err))
            return
        self.view = view
        if view.shown != self._laid_out:  # a column was added or removed
            self._set_columns(view.shown)
        rows = [(view_model.row_key(row), {"mark": view_model.marker(row, view),
                                           **view_model.row_cells(row, view, self.compact)}) for row in view.rows]
        self.table.relabel(self._labels())
        self.table.show(rows, cursor_key)
        self._show_status()
        self._remember()

    def _labels(self) -> dict[str, Text]:
        return {column: view_model.header_label(column, self.view, short=not self.wide, sort=self.state.sort,
                                                reverse=self.state.reverse)
                for column in self.columns}

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns shown: the dashboard's, then those added with `C` (that the runs still have)."""
        return self.view.shown if self.view is not None else view_model.shown_columns(self.state, self.runs)

    def _set_columns(self, shown: tuple[str, ...]) -> None:
        labels = {column: view_model.header_label(column, self.view, short=not self.wide, sort=self.state.sort,
                                                  reverse=self.state.reverse) for column in shown}
        widths = {"method": view_model.COMPACT_METHOD_WIDTH} if self.compact else {}
        self.table.set_columns([ColumnSpec("mark", Text(" "), width=1),
                                *(ColumnSpec(column, labels[column], width=widths.get(column)) for column in shown)])
        self.table.fixed_columns = 2
        self._laid_out = shown

    def _layout(self) -> None:
        """(Re)lay out the columns for the terminal width: full header names only where they fit."""
        self.wide = self.app.size.width >= WIDE_LAYOUT_COLUMNS
        keep = self.table.current_key
        self.compact = self.app.size.width < COMPACT_BELOW
        self._set_columns(self.columns)
        if self.runs:
            self.refresh_rows(keep)

    def on_resize(self) -> None:
        width = self.app.size.width
        if (width >= WIDE_LAYOUT_COLUMNS) != self.wide or (width < COMPACT_BELOW) != self.compact:
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

    # ------------------------------------------------------------------ groups, baseline, pins

    def action_toggle_groups(self) -> None:
        """Seed groups on or off (the command palette's quick toggle; `g` chooses keys too)."""
        self.state.group_seeds, self.state.group_by = not (self.state.group_seeds or self.state.group_by), ()
        self.refresh_rows()

    def action_choose_groups(self) -> None:
        """`g`: a list of grouping choices (space ticks, enter applies): seed groups, or any keys of the runs."""
        from innerdpo_bench.tui.modals import ChooseModal

        options = [(SEED_GROUPS, "seed groups: runs that differ only by seed"),
                   *((name, help_) for name, help_ in view_model.column_choices(self.runs))]
        ticked = set(self.state.group_by) or ({SEED_GROUPS} if self.state.group_seeds else set())

        def chosen(keys: tuple[str, ...] | None) -> None:
            if keys is None:
                return
            self.state.group_by = tuple(key for key in keys if key != SEED_GROUPS)
            self.state.group_seeds = SEED_GROUPS in keys and not self.state.group_by
            self.refresh_rows()

        self.app.push_screen(ChooseModal("Group rows by (none ticked: one row per run)", options, ticked), chosen)

    def action_choose_columns(self) -> None:
        """`C`: tick the columns to add after the dashboard's (space ticks, enter applies)."""
        from innerdpo_bench.tui.modals import ChooseModal

        def chosen(names: tuple[str, ...] | None) -> None:
            if names is not None:
                self.state.extra_columns = names
                self.refresh_rows()

        self.app.push_screen(ChooseModal("Add columns", view_model.column_choices(self.runs),
                                         set(self.state.extra_columns)), chosen)

    def action_toggle_baseline(self) -> None:
        run = self.selected_run()
        if run is None:
            return
        if self.state.baseline == run.id:
            self.state.baseline = None
            self.app.notify("baseline cleared")
        else:
            previous = self.state.baseline
            self.state.baseline = run.id
            try:
                view_model.build_view(self.runs, self.state)
            except UserError as err:
                self.state.baseline = previous
                self.app.notify(str(err), severity="error")
                return
            self.app.notify(f"baseline: run {run.id} ({run.name}); shift columns show deltas")
            problem = cells.unreadable(run)
            if problem:  # the table still shows its store results; per-row deltas are left blank
                self.app.notify(f"unreadable: {problem}", severity="warning")
        self.refresh_rows()

    def action_toggle_pin(self) -> None:
        runs = self.selected_runs()
        if not runs:
            return
        ids = {run.id for run in runs}
        if ids & self.state.pinned:
            self.state.pinned -= ids
        else:
            self.state.pinned |= ids
        self.refresh_rows()

    def baseline_run(self) -> Run | None:
        return next((run for run in self.runs if run.id == self.state.baseline), None)

    # ------------------------------------------------------------------ actions handed to the app

    def action_export(self) -> None:
        self.app.action_export()

    def action_evaluate(self) -> None:
        run = self.selected_run()
        if run is not None:
            self.app.confirm_evaluate(run.id)
