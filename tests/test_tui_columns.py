"""Pilot tests of the dashboard's column picker (`C`), grouping chooser (`g`) and the eval stage's progress."""

from __future__ import annotations

import json

from textual.widgets import SelectionList

from innerdpo_bench.store import Store
from innerdpo_bench.tui import data
from innerdpo_bench.tui.modals import ChooseModal

from helpers.tui import NOW, SIZE, cell, fill_store, make_app, order, pilot_test, runs_table, started, wait_for


def with_samples(home):
    """fill_store's runs, with sample statistics for runs 1 and 4 (what the worker records after `--samples`)."""
    with Store(home) as store:
        store.record_results(1, {"samples": {"rep": 0.25, "distinct2": 0.5, "len": 12.0, "gen_nll_ratio": 1.1}})
        store.record_results(4, {"samples": {"rep": 0.75, "distinct2": 0.125, "len": 30.0, "gen_nll_ratio": 0.9}})
    return home


async def choose(pilot, *values: str) -> None:
    """Tick `values` in the open ChooseModal (by value, as space on each would) and apply with enter."""
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, ChooseModal), what="the chooser")
    options = pilot.app.screen.query_one(SelectionList)
    for value in values:
        options.select(value)
    await pilot.press("enter")
    await wait_for(pilot, lambda: not isinstance(pilot.app.screen, ChooseModal), what="the chooser to close")


@pilot_test
async def test_C_adds_sample_statistics_and_config_columns_that_sort_and_are_remembered(tmp_path):
    home = with_samples(fill_store(tmp_path / "home"))
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("C")
        await wait_for(pilot, lambda: isinstance(app.screen, ChooseModal), what="the column picker")
        offered = [option.value for option in app.screen.query_one(SelectionList).options]
        assert {"rep", "distinct2", "len", "gen_nll_ratio", "sweep", "attempts", "alpha", "align_method",
                "final_loss", "final_margin", "created", "runtime_s", "method"} <= set(offered)
        assert "id" not in offered                                        # always shown
        shown = [key.value for key in runs_table(app).columns][2:]
        assert offered[:len(shown)] == shown                              # shown first, in order, ticked
        assert set(app.screen.query_one(SelectionList).selected) == set(shown)
        await choose(pilot, "rep", "distinct2", "alpha")
        await wait_for(pilot, lambda: "rep" in [key.value for key in runs_table(app).columns], what="the rep column")
        assert [key.value for key in runs_table(app).columns][-3:] == ["alpha", "distinct2", "rep"]  # A to Z
        assert cell(app, 1, "rep").plain == "0.250" and cell(app, 4, "distinct2").plain == "0.125"
        assert cell(app, 2, "rep").plain == "-"                   # no samples recorded for run 2
        assert cell(app, 4, "alpha").plain == "0.25" and cell(app, 1, "alpha").plain == "-"   # dpo has no α
        assert cell(app, 1, "rep").justify == "right"
        app.runs_view.sort_by("rep", reverse=True)
        await pilot.pause()
        assert order(app)[:2] == ["4", "1"]                       # missing values last
        chosen = app.runs_view.state.to_json()
    assert chosen["columns"][-3:] == ["alpha", "distinct2", "rep"] and chosen["sort"] == "rep"
    again = make_app(home)
    async with again.run_test(size=SIZE) as pilot:
        await started(pilot)
        assert [key.value for key in runs_table(again).columns][-3:] == ["alpha", "distinct2", "rep"]
        assert order(again)[:2] == ["4", "1"]


@pilot_test
async def test_escape_in_the_picker_changes_nothing(tmp_path):
    app = make_app(fill_store(tmp_path / "home"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        before = [key.value for key in runs_table(app).columns]
        await pilot.press("C")
        await wait_for(pilot, lambda: isinstance(app.screen, ChooseModal), what="the column picker")
        app.screen.query_one(SelectionList).select("alpha")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ChooseModal), what="the picker to close")
        assert [key.value for key in runs_table(app).columns] == before
        assert app.runs_view.state.columns is None


@pilot_test
async def test_g_groups_by_any_key_and_a_group_is_the_baseline(tmp_path):
    app = make_app(fill_store(tmp_path / "home"))
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("g")
        await choose(pilot, "align_method")
        # runs of one method and align method share a row: dpo 1+2, hs-ether 4+7; the others alone
        await wait_for(pilot, lambda: len(order(app)) == 5, what="five groups")
        assert cell(app, 1, "in_domain").plain == "0.806 ± 0.008"
        status = str(app.runs_view.query_one("#runs-status").render())
        assert "grouped by align_method" in status
        assert app.runs_view.state.group_by == ("align_method",) and not app.runs_view.state.group_seeds
        await pilot.press("b")                                     # the dpo group is the baseline
        await pilot.pause()
        assert app.runs_view.view.baseline_ids == (1, 2)
        assert cell(app, 1, "in_domain").plain == "0.806 ± 0.008"  # the baseline row shows its own values
        assert app.runs_view.columns.count("align_method") == 1      # a grouping key is a column, once
        await pilot.press("g")
        await choose(pilot, "alpha")                                # a grouping key is a column
        await wait_for(pilot, lambda: "alpha" in app.runs_view.columns, what="the alpha column")
        await pilot.press("g")
        await wait_for(pilot, lambda: isinstance(app.screen, ChooseModal), what="the chooser")
        app.screen.query_one(SelectionList).deselect("align_method")
        app.screen.query_one(SelectionList).deselect("alpha")
        await pilot.press("enter")
        await wait_for(pilot, lambda: len(order(app)) == 7, what="one row per run")
        assert "alpha" not in app.runs_view.columns


def test_eval_progress_reads_the_last_count_line_of_eval_log(tmp_path):
    home = fill_store(tmp_path / "home")
    with Store(home) as store:
        run = store.get_run(5)
    checkpoint = tmp_path / "home" / "runs" / "5" / "checkpoint"
    (checkpoint / "status.json").write_text(json.dumps({"state": "complete"}))
    assert data.progress_of(run, NOW).phase == "eval" and data.progress_of(run, NOW).eval_text == "eval"
    log = tmp_path / "home" / "runs" / "5" / "eval.log"
    log.write_text("[3s] scoring with the base model 0/400 (0%)\n[9s] scoring with the base model 120/400 (30%)\n"
                   "[12s] scoring with the adapter 40/400 (10%)\n[12s] scoring with the adapter 80/4")  # a half line
    progress = data.progress_of(run, NOW)
    assert progress.scoring == ("scoring with the adapter", 40, 400)
    assert progress.eval_text == "scoring adapter 10%"
