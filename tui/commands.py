"""The help's key table and the command palette (ctrl+p), both made from the views' and screens' BINDINGS, so every
action with a key is also in the palette by name, and neither can go stale."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from pathlib import Path

from textual.app import SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from innerdpo_bench.tui.charts import CurvesScreen, ParamScreen
from innerdpo_bench.tui.compare_view import CompareScreen
from innerdpo_bench.tui.detail import RunDetailScreen
from innerdpo_bench.tui.keyed_table import KeyedTable
from innerdpo_bench.tui.queue_view import QueueView
from innerdpo_bench.tui.runs_view import RunsView


def key_help(app) -> Iterable[tuple[str, str, str]]:
    """(where, key, what) for every binding of the app, the tables, the views and the screens."""
    places = (("everywhere", type(app)), ("tables", KeyedTable), ("runs", RunsView), ("queue", QueueView),
              ("run detail", RunDetailScreen), ("compare", CompareScreen), ("curves", CurvesScreen),
              ("parameter plot", ParamScreen))
    yield ("everywhere", "ctrl+p", "command palette: every action by name")
    for where, owner in places:
        for binding in owner.BINDINGS:
            keys = ", ".join(app.get_key_display(Binding(key, binding.action)) for key in binding.key.split(","))
            yield where, keys, binding.tooltip or binding.description
    yield ("tables", "← →", "scroll the columns (the status line names those off screen)")
    yield ("tables", "click header", "sort by that column (again: reverse)")


def _commands(app, prefix: str, owner, target) -> Iterable[SystemCommand]:
    """One palette command per binding of `owner` (a class), run on `target` (its instance)."""
    for binding in owner.BINDINGS:
        if binding.action.startswith(("cursor_", "app.pop_screen", "scroll_")):
            continue
        title = f"{prefix}: {binding.description.lower()}"
        yield SystemCommand(title, f"{binding.tooltip or binding.description} (key {binding.key.split(',')[0]})",
                            partial(app.run_action, binding.action, target))


def system_commands(app, screen: Screen) -> Iterable[SystemCommand]:
    """Every action of the screen shown, by name: its bindings' and a few without a key (exports, sort by X)."""
    for kind, prefix in ((RunDetailScreen, "Run"), (CompareScreen, "Compare"), (CurvesScreen, "Curves"),
                         (ParamScreen, "Parameter plot")):
        if isinstance(screen, kind):
            yield from _commands(app, prefix, kind, screen)
            return
    if screen is not app.main_screen:
        return
    runs, queue = app.runs_view, app.queue_view
    yield SystemCommand("View: runs", "The results table (key 1)", partial(app.action_show_view, "runs"))
    yield SystemCommand("View: queue", "Queued, running and finished runs (key 2)",
                        partial(app.action_show_view, "queue"))
    yield SystemCommand("Help: keys and filter grammar", "All keys (key ?)", app.action_help)
    yield from _commands(app, "Runs", RunsView, runs)
    yield from _commands(app, "Queue", QueueView, queue)
    for column in runs.columns:
        yield SystemCommand(f"Runs: sort by {column}", "Scores best first, text A to Z; r reverses",
                            partial(runs.sort_by, column))
    yield SystemCommand("Runs: group seeds", "One row per method, seeds as mean ± std", runs.action_toggle_groups)
    for fmt, suffix in (("markdown", ".md"), ("csv", ".csv"), ("json", ".json")):
        yield SystemCommand(f"Runs: export as {fmt}", f"Write innerdpo-runs{suffix} in the current directory",
                            partial(app.export_view, fmt, Path.cwd() / f"innerdpo-runs{suffix}"))
