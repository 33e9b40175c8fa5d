"""The runs view's actions on the highlighted or marked runs: grouping, columns, sort and named views, baseline,
pins and marks, and the screens they open (compare, curves, parameter plot, detail, edit, evaluate). A mixin of
`runs_view.RunsView`, which holds the state they change (`state`, `runs`, `view`)."""

from __future__ import annotations

from textual.widgets import Input

from innerdpo_bench.errors import UserError
from innerdpo_bench.results import cells
from innerdpo_bench.store import Run
from innerdpo_bench.tui import view as view_model

SEED_GROUPS = "seed"        # the grouping chooser's first choice: `innerdpo runs --group-seeds`


class RunsActions:
    """Needs `state`, `runs`, `view`, `columns`, `selected_run(s)`, `refresh_rows`, `sort_by` and `app`."""

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
        """`C`: every column in the order shown (ticked) then the others; space shows or hides, K/J (or
        shift+up/down) move, enter applies."""
        from innerdpo_bench.tui.modals import ChooseModal

        choices = dict(view_model.column_choices(self.runs))
        shown = [name for name in self.columns if name not in view_model.FIXED]
        options = [(name, choices.get(name, "")) for name in shown] + sorted(
            (name, help_) for name, help_ in choices.items() if name not in shown and name not in view_model.FIXED)

        def chosen(names: tuple[str, ...] | None) -> None:
            if names is not None:
                self.state.columns = tuple(names)
                self.refresh_rows()

        self.app.push_screen(ChooseModal("Columns: space shows or hides, K/J move, enter applies", options,
                                         set(shown), reorder=True), chosen)

    def action_choose_sort(self) -> None:
        """`s`: the shown columns as a list; enter sorts by the highlighted one (scores best first)."""
        from innerdpo_bench.tui.modals import PickModal

        def chosen(column: str | None) -> None:
            if column is not None:
                self.sort_by(column)

        self.app.push_screen(PickModal("Sort by (r reverses)", [(column, view_model.HEADERS.get(column, column))
                                                                 for column in self.columns], self.state.sort), chosen)

    def action_views(self) -> None:
        """`V`: save this view under a name, or load a named one (shared with `innerdpo runs --view NAME`)."""
        from innerdpo_bench.results import views as viewprefs
        from innerdpo_bench.tui.modals import ViewsModal

        home = self.app.home

        def chosen(answer: tuple[str, str] | None) -> None:
            if answer is None:
                return
            action, name = answer
            if action == "save":
                try:
                    saved = viewprefs.save_named(home, name, self.state.named())
                except UserError as err:
                    self.app.notify(str(err), severity="error")
                    return
                self.app.notify(f"view {name!r} saved (innerdpo runs --view {name})" if saved else
                                "the workspace cannot be written: view not saved", severity="information" if saved
                                else "error")
            else:
                self.state.load_named(viewprefs.named_view(home, name))
                self.query_one("#filter", Input).value = self.state.filter_expr
                self.refresh_rows()
                self.app.notify(f"view {name!r}")

        self.app.push_screen(ViewsModal(sorted(viewprefs.named_views(home))), chosen)

    def action_toggle_mark(self) -> None:
        """Space: mark the highlighted run (a group: all its runs) for compare and curves, or unmark it."""
        runs = self.selected_runs()
        if not runs:
            return
        ids = {run.id for run in runs}
        self.state.marked = self.state.marked - ids if ids & self.state.marked else self.state.marked | ids
        self.refresh_rows()

    def marked_runs(self) -> list[Run]:
        return [run for run in self.runs if run.id in self.state.marked]

    def action_compare(self) -> None:
        """`c`: the two marked runs, else the highlighted run against the baseline."""
        marked = self.marked_runs()
        if len(marked) == 2:
            pair = marked
        elif not marked and self.baseline_run() is not None and self.selected_run() is not None \
                and self.selected_run().id != self.state.baseline:
            pair = [self.baseline_run(), self.selected_run()]
        else:
            self.app.notify(f"mark two runs with space to compare them ({len(marked)} marked), or set a baseline "
                            "(b) and highlight another run", severity="warning")
            return
        self.app.open_compare(*pair)

    def action_curves(self) -> None:
        """`l`: the marked runs' training curves overlaid; none marked, the highlighted row's runs."""
        runs = self.marked_runs() or self.selected_runs()
        if runs:
            self.app.open_curves(runs)

    def action_param_plot(self) -> None:
        """`x`: accuracy against a sweep key, over the runs the filter shows."""
        runs = [run for row in (self.view.rows if self.view else []) for run in row.runs]
        self.app.open_param_plot(runs)

    def action_open_detail(self) -> None:
        run = self.selected_run()
        if run is not None:
            self.app.open_detail(run.id)

    def action_annotate(self) -> None:
        run = self.selected_run()
        if run is not None:
            self.app.edit_run(run)

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
            self.app.ask_evaluate(run)
