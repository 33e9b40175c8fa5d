"""The dashboard's runs view (Pilot): sort, live updates, filter, baseline, pins, groups, export, help, headers."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

pytest.importorskip("textual")

from innerdpo_bench.store import Store  # noqa: E402
from innerdpo_bench.tui.modals import ExportModal, HelpScreen  # noqa: E402
from innerdpo_bench.tui.runs_view import RunsTable  # noqa: E402
from innerdpo_bench.tui.view import COLUMNS  # noqa: E402

from helpers.tui import (  # noqa: E402
    SIZE,
    cell,
    fill_store,
    make_app,
    order,
    pilot_test,
    runs_table,
    started,
    train_spec,
    visible,
    wait_for,
)

# Expected orders, written out by hand (descending = best first; missing values last either way).
ORDERS = {
    "in_domain": (["4", "1", "2", "3", "5", "6", "7"], ["3", "2", "1", "4", "5", "6", "7"]),
    "difficulty_scaling": (["4", "2", "1", "3", "5", "6", "7"], ["3", "1", "2", "4", "5", "6", "7"]),
    "moral_transfer": (["4", "1", "2", "3", "5", "6", "7"], ["2", "1", "4", "3", "5", "6", "7"]),
    "orthogonal": (["4", "2", "1", "3", "5", "6", "7"], ["3", "1", "2", "4", "5", "6", "7"]),
}
SHORT = {"in_domain": "in_dom", "difficulty_scaling": "diff", "moral_transfer": "moral", "orthogonal": "orth"}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """fill_store's workspace: runs 1-4 done with results, 5 running, 6-7 queued."""
    return fill_store(tmp_path / "home")


# --------------------------------------------------------------------------- sort


@pilot_test
async def test_sort_by_each_shift_column_and_reverse(home):
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        assert order(app) == ["1", "2", "3", "4", "5", "6", "7"]  # by id at start
        seen = []
        for _ in COLUMNS:                               # `>` walks every column once
            await pilot.press("greater_than_sign")
            column = app.runs_view.state.sort
            seen.append(column)
            if column not in ORDERS:
                continue
            descending, ascending = ORDERS[column]
            assert order(app) == descending, column
            assert runs_table(app).columns[column].label.plain.endswith("▼")
            await pilot.press("r")
            assert order(app) == ascending, column
            assert runs_table(app).columns[column].label.plain.endswith("▲")
        assert set(seen) == set(COLUMNS)


@pilot_test
async def test_clicking_a_header_sorts_and_clicking_again_reverses(home):
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.click(RunsTable, offset=await header_centre(pilot, "orthogonal"))
        await wait_for(pilot, lambda: app.runs_view.state.sort == "orthogonal", what="the sort")
        assert order(app) == ORDERS["orthogonal"][0]
        await pilot.click(RunsTable, offset=await header_centre(pilot, "orthogonal"))
        await wait_for(pilot, lambda: order(app) == ORDERS["orthogonal"][1], what="the reversed order")


async def header_centre(pilot, column: str) -> tuple[int, int]:
    """The middle of a column's header, once the layout has settled: column widths follow their content and
    the sort arrow, so a click computed before a poll lands (on a busy machine) on the wrong column."""
    table = runs_table(pilot.app)

    def region():
        found = table._get_column_region(table.get_column_index(column))
        return found.x + found.width // 2 - round(table.scroll_x), found.width

    settled = []

    def stable() -> bool:
        settled.append(region())
        return len(settled) >= 3 and settled[-1] == settled[-2] == settled[-3] and settled[-1][1] > 0

    await wait_for(pilot, stable, what=f"the {column} column's layout")
    return settled[-1][0], 0


# --------------------------------------------------------------------------- live updates


@pilot_test
async def test_a_run_landing_in_the_store_appears_without_a_key_press(home):
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        assert cell(app, 6, "in_domain").plain == "-"
        with Store(home) as store:
            new_id = store.add_run(train_spec("dpo", 3, "para_signed"))
            store.record_results(6, {"in_domain": {"acc": 0.901}})
        took = await wait_for(pilot, lambda: cell(app, 6, "in_domain").plain == "0.901", what="run 6's score")
        assert took < 2.5
        assert str(new_id) in order(app)


@pilot_test
async def test_cursor_keeps_its_run_after_a_resort_and_a_live_update(home):
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("j", "j")                    # on run 3
        assert runs_table(app).current_key == "3"
        app.runs_view.sort_by("in_domain")             # 4 1 2 3 ...: run 3 moves from row 2 to row 3
        await pilot.pause()
        assert runs_table(app).current_key == "3"
        assert runs_table(app).cursor_row == 3
        with Store(home) as store:                     # run 6 lands on top: every row below moves down
            store.record_results(6, {"in_domain": {"acc": 0.990}})
        await wait_for(pilot, lambda: order(app)[0] == "6", what="run 6 on top")
        assert runs_table(app).current_key == "3"
        assert runs_table(app).cursor_row == 4


# --------------------------------------------------------------------------- filter


@pilot_test
async def test_filter_grammar_and_an_invalid_filter(home):
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        error = app.runs_view.query_one("#filter-error")
        await pilot.press("slash", *"method:dpo")
        assert app.focused.id == "filter"
        assert order(app) == ["1", "2"]
        filter_input = app.runs_view.query_one("#filter")
        filter_input.value = "status:done in_domain>0.8"
        await pilot.pause()
        assert order(app) == ["1", "4"]
        filter_input.value = "name~ether seed:2"
        await pilot.pause()
        assert order(app) == ["7"]
        before = visible(app)
        for bad in ("bogus:1", "in_domain>high", "status:finished"):
            filter_input.value = bad
            await pilot.pause()
            assert error.display, bad
            assert "bad --filter" in app.runs_view.filter_error or "unknown" in app.runs_view.filter_error
            assert visible(app) == before, bad        # the table is unchanged
        filter_input.value = ""
        await pilot.pause()
        assert not error.display
        assert len(order(app)) == 7
        await pilot.press("enter")                     # back to the table
        assert app.focused is runs_table(app)


# --------------------------------------------------------------------------- baseline, pins, groups


@pilot_test
async def test_baseline_shows_signed_coloured_deltas(home):
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("b")                         # cursor on run 1
        assert app.runs_view.state.baseline == 1
        better, worse = cell(app, 4, "in_domain"), cell(app, 3, "in_domain")
        # no per-row records in this store: no paired test, so marked (?) and never coloured as real
        assert better.plain == "+0.038 (?)" and "green" not in str(better.style)
        assert worse.plain == "-0.062 (?)" and "red" not in str(worse.style)
        assert cell(app, 1, "orthogonal").plain == "0.700"              # the baseline row shows its own values
        assert cell(app, 3, "moral_transfer").plain == "-"          # missing on one side
        assert cell(app, 4, "mean").plain == "0.712"                 # not a shift: stays absolute
        assert runs_table(app).columns["in_domain"].label.plain.startswith("Δ")
        assert cell(app, 1, "mark").plain == "◆"
        await pilot.press("j", "j", "j", "j", "j")     # run 6 has no results: refused, baseline kept
        await pilot.press("b")
        assert app.runs_view.state.baseline == 1
        await pilot.press("k", "k", "k", "k", "k", "b")  # b on the baseline clears it
        assert app.runs_view.state.baseline is None
        assert cell(app, 4, "in_domain").plain == "0.850"


@pilot_test
async def test_b_on_a_run_with_a_typed_bad_rows_file_says_unreadable_and_keeps_running(home):
    """Run 1's rows file holds a string log-prob: `b` still sets the baseline (store results), says
    "unreadable: ..." naming the file, and the dashboard keeps running."""
    from innerdpo_bench import rundir

    eval_path = home / "runs" / "1" / "checkpoint" / "eval.json"
    row = {"shift": "in_domain", "row_id": "r0", "logp_chosen": "-1.5", "logp_rejected": -2.0, "n_chosen": 3,
           "n_rejected": 3, "base_logp_chosen": -2.0, "base_logp_rejected": -2.0, "correct": True}
    rows_path = rundir.write_eval_pair(eval_path, {"checkpoint": str(eval_path.parent), "suite": "mini",
                                                   "shifts": {"in_domain": {"acc": 0.812, "n": 1}}},
                                       json.dumps(row) + "\n")
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("b")                         # cursor on run 1
        await pilot.pause()
        assert app.runs_view.state.baseline == 1 and app.is_running
        messages = [notification.message for notification in app._notifications]
        (unreadable,) = [message for message in messages if message.startswith("unreadable: ")]
        assert f"{rows_path} line 1: 'logp_chosen' must be a number, not a string" in unreadable
        assert "rebuild it: innerdpo eval" in unreadable
        await pilot.press("j", "b")                    # still responsive: run 2 becomes the baseline
        assert app.runs_view.state.baseline == 2


@pilot_test
async def test_pinned_runs_stay_on_top_whatever_the_sort(home):
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("j", "j", "p")               # pin run 3
        assert order(app)[0] == "3" and cell(app, 3, "mark").plain == "●"
        app.runs_view.sort_by("in_domain")
        await pilot.pause()
        assert order(app) == ["3", "4", "1", "2", "5", "6", "7"]
        await pilot.press("p")                         # the cursor followed run 3: unpin
        assert order(app) == ORDERS["in_domain"][0]


@pilot_test
async def test_group_seeds_toggle(home):
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("g", "space", "enter")      # the chooser's first choice: seed groups
        assert len(order(app)) == 5                    # dpo seeds 1+2 and hs-ether seeds 1+2 collapse
        assert cell(app, 1, "in_domain").plain == "0.806 ± 0.008"
        assert cell(app, 1, "seed").plain == "1,2"
        await pilot.press("g", "space", "enter")      # untick it: one row per run again
        assert len(order(app)) == 7


# --------------------------------------------------------------------------- export


@pilot_test
async def test_export_writes_exactly_the_visible_view(home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("b")                         # baseline run 1
        app.runs_view.set_filter("status:done")
        app.runs_view.sort_by("difficulty_scaling")
        await pilot.press("k", "p")                    # the cursor followed run 1 to row 2: pin run 2 above it
        await pilot.pause()
        shown = visible(app)
        assert [row[0] for row in shown] == ["2", "4", "1", "3"]

        await pilot.press("e")                         # the modal: type a name, choose CSV
        assert isinstance(app.screen, ExportModal)
        app.screen.query_one("#export-path").value = "view"
        await pilot.click("#csv")
        await pilot.pause()
        rows = list(csv.reader(io.StringIO((tmp_path / "view.csv").read_text())))
        assert rows[0][:11] == ["id", "name", "Δin_domain", "Δdifficulty_scaling", "Δmoral_transfer",
                                "Δorthogonal", "mean", "nll_ratio", "status", "seed", "tags"]
        assert rows[0][11:14] == ["in_domain_lo", "in_domain_hi", "in_domain_significant"]  # the test, per shift
        assert [row[0] for row in rows[1:]] == ["2", "4", "1", "3"]
        for exported, on_screen in zip(rows[1:], shown):
            for index, (value, text) in enumerate(zip(exported, on_screen)):
                text = text.removesuffix(" (?)")       # no per-row records here: no test, marked on screen
                if text == "-":
                    assert value == "", (index, exported)
                elif COLUMNS[index] in SHORT:          # 4 decimals in CSV, 3 signed decimals on screen
                    assert abs(float(value) - float(text)) <= 0.0005 + 1e-12 and (exported[0] == "1") != (
                        text[0] in "+-")                # run 1, the baseline, shows its own values, unsigned
                elif COLUMNS[index] in ("mean", "nll_ratio"):  # 4 decimals in CSV (0.7125 shows as 0.712)
                    assert abs(float(value) - float(text)) <= 0.0005 + 1e-12
                elif COLUMNS[index] == "name":          # the screen marks the baseline's row
                    assert value == text.removesuffix(" (baseline)")
                else:
                    assert value == text

        path = app.export_view("markdown", tmp_path / "view.md")
        lines = path.read_text().splitlines()
        assert lines[0].startswith("| id | name | Δin_domain |")
        body = [[item.strip() for item in line.strip("|").split("|")] for line in lines[2:]]
        assert body == shown                           # every cell, as displayed, in order

        records = json.loads(app.export_view("json", tmp_path / "view.json").read_text())
        assert [record["id"] for record in records] == [2, 4, 1, 3]
        assert records[1]["row"]["in_domain"] == pytest.approx(0.850 - 0.812)


# --------------------------------------------------------------------------- help, palette, layout


@pilot_test
async def test_help_lists_keys_and_filter_grammar_and_palette_runs_actions(home):
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        keys = {(where, key) for where, key, _ in app.key_help()}
        assert {("runs", "b"), ("runs", "p"), ("runs", "e"), ("queue", "c"), ("run detail", "v"),
                ("run detail", "o"), ("everywhere", "q"), ("tables", "j")} <= keys
        markdown = app.screen.query_one("Markdown").source
        assert "FIELD:VALUE" in markdown and "| runs | `b` |" in markdown
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"sort by orthogonal")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.runs_view.state.sort == "orthogonal", what="the palette's sort")
        assert order(app) == ORDERS["orthogonal"][0]


@pilot_test
async def test_headers_are_abbreviated_in_narrow_terminals(home):
    app = make_app(home)
    async with app.run_test(size=(80, 24)) as pilot:
        await started(pilot)
        labels = {key.value: column.label.plain.strip(" ▲▼") for key, column in runs_table(app).columns.items()}
        assert [labels[column] for column in SHORT] == list(SHORT.values())
        await pilot.resize_terminal(200, 40)
        await pilot.pause()
        labels = {key.value: column.label.plain.strip(" ▲▼") for key, column in runs_table(app).columns.items()}
        assert [labels[column] for column in SHORT] == list(SHORT)
        assert len(order(app)) == 7                    # rows came back after the re-layout
