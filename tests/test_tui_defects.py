"""Pilot tests of the dashboard defects of issue 17: the sort arrow, long names, `?` in the filter bar, invalid
filters, distinct keys, confirmations."""

from __future__ import annotations

from innerdpo_bench.store import Store
from innerdpo_bench.tui.modals import ConfirmModal, EvalModal, HelpScreen
from innerdpo_bench.tui.queue_view import QueueView
from innerdpo_bench.tui.runs_view import RunsView

from helpers.tui import SIZE, fill_store, make_app, order, pilot_test, runs_table, started, wait_for


def header_text(app) -> str:
    """The header row as drawn on screen (not the labels' attributes: the rendering is cached)."""
    table = runs_table(app)
    return "".join(segment.text for segment in table.render_line(0))


@pilot_test
async def test_the_drawn_sort_arrow_always_follows_the_sort(tmp_path):
    from dataclasses import replace

    from innerdpo_bench.tui import view as view_model

    app = make_app(fill_store(tmp_path / "home"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        view = app.runs_view
        def keys(column, reverse):
            return [view_model.row_key(row) for row in view_model.build_view(
                view.runs, replace(view.state, sort=column, reverse=reverse)).rows]

        sorts = [(column, reverse) for column in view_model.COLUMNS for reverse in (False, True)]
        same = next([a, b] for a in sorts for b in sorts if a[0] != b[0] and keys(*a) == keys(*b))
        for column, reverse in [*same, ("id", False), ("in_domain", True), ("id", True)]:  # same: one order
            view.sort_by(column, reverse)
            await pilot.pause()
            drawn = header_text(app)
            label = view_model.header_label(column, view.view, short=not view.wide, sort=column, reverse=reverse)
            assert drawn.count("▲") + drawn.count("▼") == 1 and label.plain.strip() in drawn, (column, drawn)


@pilot_test
async def test_question_mark_in_the_filter_bar_opens_the_help(tmp_path):
    app = make_app(fill_store(tmp_path / "home"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("slash", *"method:dpo", "question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="the help")
        await pilot.press("escape")
        assert app.runs_view.query_one("#filter").value == "method:dpo" and order(app) == ["1", "2"]


@pilot_test
async def test_an_invalid_filter_is_an_error_naming_what_the_rows_still_show(tmp_path):
    app = make_app(fill_store(tmp_path / "home"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("slash", *"method:dpo seed")
        bar = app.runs_view.query_one("#filter")
        error = app.runs_view.query_one("#filter-error")
        assert error.display and bar.has_class("invalid")
        assert "not applied: the rows still show filter 'method:dpo'" in app.runs_view.filter_error
        await pilot.press(*":1")
        assert not error.display and not bar.has_class("invalid") and order(app) == ["1"]


def test_reverse_and_retry_have_distinct_keys():
    keys = {binding.key: binding.action for view in (RunsView, QueueView) for binding in view.BINDINGS}
    runs = {binding.key: binding.action for binding in RunsView.BINDINGS}
    queue = {binding.key: binding.action for binding in QueueView.BINDINGS}
    assert runs["r"] == "reverse_sort" and queue["R"] == "retry" and "r" not in queue
    assert all(keys[key] == action for key, action in {**runs, **queue}.items() if key in runs and key in queue)


@pilot_test
async def test_cancel_and_re_evaluate_ask_first(tmp_path):
    home = fill_store(tmp_path / "home")
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("v")                          # run 1 (done): evaluate again? with which suite and limit
        await wait_for(pilot, lambda: isinstance(app.screen, EvalModal), what="the question")
        await pilot.press("escape")
        await pilot.press("2")                          # the queue view
        await pilot.pause()
        queue = app.query_one(QueueView).query_one("#queue-table")
        queue.focus()
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), what="the question")
        assert "Cancel run" in str(app.screen.question)
        await pilot.press("escape")
        await pilot.pause()
    with Store(home) as store:
        runs = store.list_runs()
    assert len(runs) == 7 and not any(run.cancel_requested or run.status == "cancelled" for run in runs)


@pilot_test
async def test_a_long_name_is_cut_with_an_ellipsis_and_keeps_the_other_columns(tmp_path):
    home = fill_store(tmp_path / "home")
    with Store(home) as store:
        long = "hs-ether-InnerDPO align=cosine_cross_model α=0.75 lr=0.0003 ether_blocks=8 trust=0.5"
        run_id = store.add_run({"name": long, "train": {"method": "hs-ether-InnerDPO", "seed": 9}})
    app = make_app(home)
    async with app.run_test(size=(160, 30)) as pilot:
        await started(pilot)
        await pilot.press("2")
        await pilot.pause()
        table = app.query_one(QueueView).query_one("#queue-table")
        await wait_for(pilot, lambda: str(run_id) in table.keys_in_order(), what="the new run")
        name = table.get_cell(str(run_id), "name")
        width = app.query_one(QueueView).name_width
        assert width == 160 - 110                           # a wide terminal gives the name what it has spare
        assert len(name.plain) <= width and name.plain.endswith("…") and long.startswith(name.plain[:-1])
        assert table.get_cell(str(run_id), "seed").plain == "9"
        assert table.columns["name"].width == width
        await pilot.resize_terminal(200, 30)                 # full names at 200 columns
        await wait_for(pilot, lambda: table.get_cell(str(run_id), "name").plain == long, what="the full name")


@pilot_test
async def test_the_view_state_is_remembered_per_workspace(tmp_path):
    home = fill_store(tmp_path / "home")
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("b")                          # baseline run 1
        app.runs_view.sort_by("in_domain", reverse=True)
        await pilot.press("j", "p", "g", "space", "enter")  # pin, seed groups
        await pilot.pause()
        chosen = app.runs_view.state.to_json()
    assert chosen["baseline"] == 1 and chosen["group_seeds"] and chosen["pinned"] and chosen["sort"] == "in_domain"
    again = make_app(home)
    async with again.run_test(size=SIZE) as pilot:
        await started(pilot)
        assert again.runs_view.state.to_json() == chosen
        assert runs_table(again).columns["in_domain"].label.plain.startswith("Δ")
    other = make_app(fill_store(tmp_path / "other"))   # another workspace starts from the default view
    async with other.run_test(size=SIZE) as pilot:
        await started(pilot)
        assert other.runs_view.state.baseline is None and other.runs_view.state.sort == "id"


@pilot_test
async def test_80_by_24_grouped_with_a_baseline_keeps_all_four_shifts_on_screen(tmp_path):
    app = make_app(fill_store(tmp_path / "home"))
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        await pilot.press("g", "space", "enter", "b")   # seed groups, the first group as baseline
        await pilot.pause()
        table = runs_table(app)
        right = 0
        for key, column in table.columns.items():
            right += column.get_render_width(table)
            if key.value == "orthogonal":
                break
        assert right <= 80, right                        # the last shift ends inside the screen
        drawn = "".join(segment.text for segment in table.render_line(0))
        assert all(name in drawn for name in ("Δin_dom", "Δdiff", "Δmoral", "Δorth")), drawn
