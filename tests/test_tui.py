"""The dashboard (`innerdpo tui`): Pilot tests of behaviour, a few SVG snapshots, and its pure helpers.

Every app runs on a store filled through the Store API in tmp_path, with a fixed clock. Async bodies run
under `asyncio.run` (see `pilot_test`), so no pytest plugin or asyncio mode is needed; snapshots use
pytest-textual-snapshot's `snap_compare` (update with `--snapshot-update`).
"""

from __future__ import annotations

import asyncio
import csv
import functools
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("textual")

from rich.text import Text  # noqa: E402

from innerdpo_bench.store import Store  # noqa: E402
from innerdpo_bench.tui.app import InnerDPOApp  # noqa: E402
from innerdpo_bench.tui.data import (  # noqa: E402
    FileFollower,
    Progress,
    eval_spec,
    format_duration,
    progress_of,
    run_config,
)
from innerdpo_bench.tui.detail import RunDetailScreen  # noqa: E402
from innerdpo_bench.tui.modals import AddRunModal, EvalModal, ExportModal, HelpScreen  # noqa: E402
from innerdpo_bench.tui.queue_view import QueueTable, progress_bar  # noqa: E402
from innerdpo_bench.tui.runs_view import RunsTable  # noqa: E402
from innerdpo_bench.tui.view import COLUMNS  # noqa: E402

T0 = 1_750_000_000.0
NOW = T0 + 600.0                # the app's clock: run 5 started at T0, so it has run for 10 minutes
WORKER = "host-a:1:cpu"
SIZE = (120, 30)

# id: (method, seed, align, {shift: acc} or None when not evaluated). Every shift orders the runs differently.
RUNS = {
    1: ("dpo", 1, "para_signed", {"in_domain": 0.812, "difficulty_scaling": 0.641, "moral_transfer": 0.550,
                                  "orthogonal": 0.700, "nll_ratio": 1.020}),
    2: ("dpo", 2, "para_signed", {"in_domain": 0.800, "difficulty_scaling": 0.660, "moral_transfer": 0.520,
                                  "orthogonal": 0.710, "nll_ratio": 1.050}),
    3: ("ipo", 1, "para_signed", {"in_domain": 0.750, "difficulty_scaling": 0.600, "orthogonal": 0.690,
                                  "nll_ratio": 1.100}),  # never scored on moral_transfer
    4: ("hs-ether-InnerDPO", 1, "para_signed", {"in_domain": 0.850, "difficulty_scaling": 0.700,
                                                "moral_transfer": 0.580, "orthogonal": 0.720, "nll_ratio": 1.010}),
    5: ("hs-none-InnerDPO", 1, "logodds", None),    # running: step 40 of 100
    6: ("hs-supr-InnerDPO", 1, "para_signed", None),  # queued
    7: ("hs-ether-InnerDPO", 2, "para_signed", None),  # queued
}
# Expected orders, written out by hand (descending = best first; missing values last either way).
ORDERS = {
    "in_domain": (["4", "1", "2", "3", "5", "6", "7"], ["3", "2", "1", "4", "5", "6", "7"]),
    "difficulty_scaling": (["4", "2", "1", "3", "5", "6", "7"], ["3", "1", "2", "4", "5", "6", "7"]),
    "moral_transfer": (["4", "1", "2", "3", "5", "6", "7"], ["2", "1", "4", "3", "5", "6", "7"]),
    "orthogonal": (["4", "2", "1", "3", "5", "6", "7"], ["3", "1", "2", "4", "5", "6", "7"]),
}
SHORT = {"in_domain": "in_dom", "difficulty_scaling": "diff", "moral_transfer": "moral", "orthogonal": "orth"}


def train_spec(method: str, seed: int, align: str) -> dict:
    name = method + (" align=logodds" if align == "logodds" else "")
    return {"name": name, "train": {"method": method, "seed": seed, "align_method": align, "max_steps": 100,
                                    "base_model": "tiny-random", "dataset": "mini:train", "alpha": 0.25},
            "eval": {"suite": "mini", "limit": 50}}


def write_checkpoint(run_dir: Path, train: dict, steps: range, complete: bool) -> None:
    checkpoint = run_dir / "checkpoint"
    checkpoint.mkdir(parents=True)
    (checkpoint / "config.json").write_text(json.dumps({**train, "versions": {"torch": "2.13.0"}}))
    with open(checkpoint / "metrics.jsonl", "w") as metrics:
        for step in steps:
            metrics.write(json.dumps({"step": step, "loss": round(0.70 - step / 250, 4),
                                      "rewards_margin": round(step / 100, 4)}) + "\n")
    (checkpoint / "status.json").write_text(json.dumps({"state": "complete" if complete else "running"}))
    (run_dir / "train.log").write_text("".join(f"step {step} loss={0.70 - step / 250:.3f}\n" for step in steps))


def fill_store(home: Path) -> Path:
    """Runs 1-4 done with results, 5 running (metrics up to step 40 of 100), 6-7 queued; fixed times."""
    now = [T0]
    with Store(home, clock=lambda: now[0]) as store:
        store.add_runs([train_spec(method, seed, align) for method, seed, align, _ in RUNS.values()])
        for run_id, (_, _, _, scores) in RUNS.items():
            if run_id > 5:
                break
            now[0] = T0 - 1000 + 200 * run_id if scores else T0
            run = store.claim_next(WORKER)
            assert run.id == run_id
            run_dir = home / "runs" / str(run_id)
            store.set_run_dir(run_id, run_dir)
            write_checkpoint(run_dir, run.spec.to_json()["train"], range(10, 101 if scores else 41, 10), bool(scores))
            if scores:
                results = {shift: {"acc": value, "acc_stderr": 0.017, "n": 50}
                           for shift, value in scores.items() if shift != "nll_ratio"}
                results["coherence"] = {"nll_ratio": scores["nll_ratio"]}
                store.record_results(run_id, results)
                (run_dir / "eval.log").write_text("scoring 4 shifts\n")
                os.utime(run_dir / "train.log", (T0, T0))  # eval.log is the newer log, whatever the clock
                os.utime(run_dir / "eval.log", (T0 + 1, T0 + 1))
                now[0] += 150
                store.finish(run_id, WORKER, "done", 0)
    return home


def make_app(home: Path, **kwargs) -> InnerDPOApp:
    return InnerDPOApp(home, poll_s=0.2, clock=lambda: NOW, **kwargs)


def pilot_test(body):
    """Run an async test body in its own event loop (pytest fixtures still resolve by name)."""

    @functools.wraps(body)
    def run(*args, **kwargs):
        return asyncio.run(body(*args, **kwargs))

    return run


async def wait_for(pilot, predicate, timeout: float = 60.0, what: str = "condition") -> float:
    """Pause until `predicate()` holds (no key press); the seconds it took. Fails after `timeout`."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await pilot.pause(0.05)
    return time.monotonic() - start


async def intents_done(app) -> None:
    """Wait for the store writes in flight (not for the detail screen's endless log tail)."""
    writes = [worker for worker in app.workers if worker.group == "intents"]
    if writes:  # an empty list would mean "all workers"
        await app.workers.wait_for_complete(writes)


async def started(pilot) -> InnerDPOApp:
    """The app once its first poll is on screen."""
    def polled() -> bool:
        table = pilot.app.main_screen.query_one_optional(RunsTable)
        return table is not None and table.row_count > 0

    await wait_for(pilot, polled, what="the first poll")
    return pilot.app


def runs_table(app) -> RunsTable:
    return app.runs_view.table


def order(app) -> list[str]:
    return runs_table(app).keys_in_order()


def cell(app, run_id: int | str, column: str) -> Text:
    return runs_table(app).get_cell(str(run_id), column)


def visible(app) -> list[list[str]]:
    """The runs table as shown: one list of cell texts per row, in screen order, data columns only."""
    table = runs_table(app)
    return [[table.get_cell(row.key, column).plain for column in COLUMNS] for row in table.ordered_rows]


@pytest.fixture
def home(tmp_path: Path) -> Path:
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


# --------------------------------------------------------------------------- queue view and intents


def queue_ids(home: Path) -> list[int]:
    from innerdpo_bench.store.claims import queue_order

    with Store(home) as store:
        return [run.id for run in queue_order(store.list_runs("queued"))]


@pilot_test
async def test_queue_view_progress_eta_and_intents(home):
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("2")
        table = app.main_screen.query_one(QueueTable)
        assert app.focused is table
        assert table.keys_in_order()[:3] == ["5", "6", "7"]  # running, then the queue in claim order
        assert table.get_cell("5", "progress").plain.endswith("40%")
        assert table.get_cell("5", "eta").plain == "15m00s"    # 600 s for 40 steps → 900 s for 60 more
        assert table.get_cell("6", "progress").plain == "#1 in line"

        async def settle(predicate, what):
            await intents_done(app)
            await wait_for(pilot, predicate, what=what)

        await pilot.press("j", "j")                    # run 7: to the front
        assert table.current_key == "7"
        await pilot.press("t")
        await settle(lambda: table.keys_in_order()[1] == "7", "run 7 first in line")
        assert queue_ids(home) == [7, 6]
        assert table.current_key == "7"               # the cursor followed the run
        await pilot.press("J")                         # and back down
        await settle(lambda: queue_ids(home) == [6, 7], "run 7 moved down")
        await pilot.press("c", "y")                    # cancel the cursor's run (7), confirmed
        await settle(lambda: table.get_cell("7", "status").plain == "cancelled", "run 7 cancelled")
        await pilot.press("R")                         # retry it (R: r reverses a sort in the runs view)
        await settle(lambda: table.get_cell("7", "status").plain == "queued", "run 7 queued again")
        await pilot.press("k", "k", "c", "y")          # cancel the running run 5: a request to its worker
        await settle(lambda: "cancelling" in table.get_cell("5", "status").plain, "run 5 cancelling")
        with Store(home) as store:
            assert store.get_run(5).cancel_requested and store.get_run(5).status == "running"


@pilot_test
async def test_add_form_queues_one_run_per_seed(home):
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, AddRunModal), timeout=20, what="the form")
        await pilot.pause()                            # laid out, so that clicks land
        form = app.screen
        form.query_one("#method").value = "hs-ether-InnerDPO"
        form.query_one("#align_method").value = "logodds"
        form.query_one("#dataset").value = "mini:train"
        form.query_one("#base_model").value = "tiny-random"
        form.query_one("#max_steps").value = "zero"
        await pilot.click("#submit")
        assert "the form: 'max_steps' must be an integer, not a string 'zero'" in form.error
        form.query_one("#max_steps").value = "5"
        form.query_one("#seeds").value = "3,4"
        form.query_one("#suite").value = "mini"
        form.query_one("#limit").value = "10"
        await pilot.pause(0.3)                         # a button ignores clicks for 0.2 s after one
        await pilot.click("#submit")
        await intents_done(app)
        await wait_for(pilot, lambda: "9" in order(app), what="the queued runs")
    with Store(home) as store:
        added = [store.get_run(8), store.get_run(9)]
    assert [run.spec.train.seed for run in added] == [3, 4]
    assert {run.spec.train.method for run in added} == {"hs-ether-InnerDPO"}
    assert {run.spec.train.align_method for run in added} == {"logodds"}
    assert {run.spec.train.max_steps for run in added} == {5}
    assert added[0].spec.eval.to_json() == {"suite": "mini", "limit": 10}


# --------------------------------------------------------------------------- detail


@pilot_test
async def test_detail_screen_config_diff_curves_results_log_and_keys(home):
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("b")                         # baseline: run 1 (dpo, seed 1)
        await pilot.press("j", "j", "j", "j", "enter")  # run 5: hs-none-InnerDPO logodds, running
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen), what="the detail screen")
        screen = app.screen
        await wait_for(pilot, screen.log_loaded.is_set, what="the log")
        config = screen.query_one("#config-table")
        highlighted = [row.key.value for row in config.ordered_rows if config.get_cell(row.key, "key").plain[0] == "≠"]
        assert set(highlighted) == {"method", "align_method"}   # only what differs from run 1's config
        assert config.get_cell("method", "value").plain == "hs-none-InnerDPO"
        chart = screen.query_one("#detail-chart")
        assert chart.lines == [("loss", [10, 20, 30, 40], [0.66, 0.62, 0.58, 0.54])]   # metrics.jsonl's, with axes
        assert "(step 40)" in screen.curve_labels["loss"]
        log = screen.query_one("#log")
        assert log.lines[-1] == "step 40 loss=0.540"
        with open(home / "runs" / "5" / "train.log", "a") as train_log:   # the log is followed live
            train_log.write("step 50 loss=0.500\n")
        await wait_for(pilot, lambda: log.lines[-1] == "step 50 loss=0.500", what="the new log line")

        await pilot.press("o")
        assert app.clipboard == str(home / "runs" / "5")
        await pilot.press("l")                         # next log: eval.log (none yet)
        assert screen.log_name == "eval.log"
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is app.main_screen

        await pilot.press("k", "k", "k", "k", "enter")  # run 1 (done): results with ± stderr; evaluate again
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen), what="run 1's detail")
        results = app.screen.query_one("#results-table")
        assert results.get_cell("in_domain", "acc").plain == "0.812 ± 0.017"
        assert results.get_cell("in_domain", "shift").plain == "in_dom"
        assert results.get_cell("coherence", "acc").plain == "1.020"
        await pilot.press("v")                         # asks first: which suite and limit (the run's own)
        await wait_for(pilot, lambda: isinstance(app.screen, EvalModal), what="the eval form")
        await pilot.press("ctrl+s")
        await intents_done(app)
    with Store(home) as store:
        evaluation = store.list_runs()[-1]
    assert evaluation.kind == "eval" and evaluation.status == "queued"
    assert evaluation.spec.eval.checkpoint == str(home / "runs" / "1" / "checkpoint")
    assert evaluation.spec.source_run == 1 and evaluation.spec.train.method == "dpo"


def write_samples(checkpoint: Path) -> None:
    """A samples.jsonl as `innerdpo eval --samples 2` writes it: two prompts on in_domain, one on orthogonal."""
    def completion(text: str, finished: bool = True) -> dict:
        return {"greedy": {"text": text, "n_tokens": len(text.split()), "finished": finished, "nll": 1.5}}

    lines = [{"settings": {"prompts": 2, "max_new_tokens": 8}, "base_cache": {"hit": False, "key": "k"}}]
    for shift, index, prompt, base, adapter, ended in (
            ("in_domain", 0, "What is 2+2?", "2+2 is 4.", "four four four four four four four four", False),
            ("in_domain", 1, "Capital of France?", "Paris is the capital.", "Paris.", True),
            ("orthogonal", 0, "Is rest good for a cold?", "Yes, rest and fluids help.", "", True)):
        lines.append({"shift": shift, "index": index, "row_id": f"r{index}", "prompt": prompt,
                      "base": completion(base), "model": completion(adapter, finished=ended)})
    (checkpoint / "samples.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


@pilot_test
async def test_detail_screen_shows_base_and_adapter_samples_and_cycles_prompts_and_shifts(home):
    write_samples(home / "runs" / "1" / "checkpoint")
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        app.open_detail(1)
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen), what="the detail screen")
        screen = app.screen

        def shown(widget_id: str) -> str:
            return str(screen.query_one(widget_id).render())

        await wait_for(pilot, lambda: bool(screen.samples), what="the samples")
        assert screen.query_one("#samples-pane").display
        assert "in_domain · prompt 1/2" in shown("#samples-title")
        assert "What is 2+2?" in shown("#samples-prompt")
        assert shown("#samples-base").startswith("base (adapter off)") and "2+2 is 4." in shown("#samples-base")
        assert shown("#samples-model").startswith("adapter") and "four four" in shown("#samples-model")
        assert "cut at 8 tokens" in shown("#samples-model")              # reached max_new_tokens
        # the shift's statistics: 8 x "four" has 5 four-grams, 1 distinct (rep 0.80; "Paris." has none); bigrams
        # 7 x "four four" + "paris ." → 2 distinct of 8
        assert "adapter rep 0.80 distinct2 0.25" in shown("#samples-title")
        await pilot.press("n")
        assert "prompt 2/2" in shown("#samples-title") and "Capital of France?" in shown("#samples-prompt")
        assert "Paris is the capital." in shown("#samples-base") and "Paris." in shown("#samples-model")
        await pilot.press("n")                                             # wraps around
        assert "prompt 1/2" in shown("#samples-title")
        await pilot.press("s")
        assert "orthogonal · prompt 1/1" in shown("#samples-title")
        assert "(empty)" in shown("#samples-model") and "fluids" in shown("#samples-base")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.main_screen, what="the runs view")
        app.open_detail(2)                                                 # no samples: no pane
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen) and app.screen.run.id == 2
                       and app.screen.query_one_optional("#samples-pane") is not None, what="run 2's detail")
        assert not app.screen.query_one("#samples-pane").display and not app.screen.samples


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


# --------------------------------------------------------------------------- snapshots (sync: snap_compare)


@pytest.fixture
def hermetic(monkeypatch):
    """Snapshots depend on NO_COLOR and the theme: pin both (App() pops NO_COLOR, monkeypatch restores it)."""
    monkeypatch.setenv("NO_COLOR", "1")


def _snapshot_app(home: Path) -> InnerDPOApp:
    return make_app(home, theme="textual-dark")


async def _until_polled(pilot) -> None:
    def polled() -> bool:
        table = pilot.app.main_screen.query_one_optional(RunsTable)  # run_before starts before compose
        return table is not None and table.row_count == 7

    await wait_for(pilot, polled, what="the first poll")


def test_snapshot_runs_view(home, hermetic, snap_compare):
    async def run_before(pilot):
        await _until_polled(pilot)
        pilot.app.runs_view.sort_by("in_domain")
        await pilot.press("j")

    assert snap_compare(_snapshot_app(home), run_before=run_before)


def test_snapshot_queue_view(home, hermetic, snap_compare):
    async def run_before(pilot):
        await _until_polled(pilot)
        await pilot.press("2")

    assert snap_compare(_snapshot_app(home), run_before=run_before)


def test_snapshot_detail(home, hermetic, snap_compare):
    async def run_before(pilot):
        await _until_polled(pilot)
        pilot.app.runs_view.state.baseline = 1
        pilot.app.open_detail(4)
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, RunDetailScreen), what="the detail screen")
        await wait_for(pilot, pilot.app.screen.log_loaded.is_set, what="the log")
        await wait_for(pilot, lambda: len(pilot.app.screen.metrics) == 10, what="the metrics")

    assert snap_compare(_snapshot_app(home), run_before=run_before)


# --------------------------------------------------------------------------- pure helpers


def test_progress_eta_and_bar(home):
    with Store(home) as store:
        running, done, queued = store.get_run(5), store.get_run(1), store.get_run(6)
    progress = progress_of(running, NOW)
    assert progress == Progress("train", 40, 100, 600.0, 900.0)
    assert progress.fraction == 0.4
    assert progress_of(done, NOW).fraction == 1.0 and progress_of(done, NOW).elapsed_s == 150.0
    assert progress_of(queued, NOW).phase == "queued"
    assert progress_bar(0.4) == "████      "
    assert progress_bar(0.45) == "████▌     "
    assert [format_duration(s) for s in (None, 45, 905, 11_100)] == ["-", "45s", "15m05s", "3h05m"]


def test_file_follower_keeps_partial_lines_and_notices_a_new_file(tmp_path):
    path = tmp_path / "train.log"
    follower = FileFollower(path)
    assert follower.read() == ([], False)             # not there yet
    path.write_text("one\ntw")
    assert follower.read() == (["one"], False)
    with open(path, "a") as log:
        log.write("o\nthree\n")
    assert follower.read() == (["two", "three"], False)
    path.write_text("new\n")                           # replaced by a shorter file
    assert follower.read() == (["new"], True)
    big = tmp_path / "big.log"
    big.write_text("".join(f"line {index}\n" for index in range(10_000)))
    lines, _ = FileFollower(big, tail_bytes=100).read()
    assert lines[-1] == "line 9999" and len(lines) < 12 and lines[0].startswith("line ")


def test_eval_spec_targets_the_checkpoint_and_refuses_unfinished_runs(home):
    from innerdpo_bench.errors import UserError

    with Store(home) as store:
        done, running = store.get_run(4), store.get_run(5)
    spec = eval_spec(done)
    assert spec.eval.to_json() == {"checkpoint": str(home / "runs" / "4" / "checkpoint"), "suite": "mini", "limit": 50}
    assert spec.train.method == "hs-ether-InnerDPO"
    with pytest.raises(UserError, match="no finished checkpoint"):
        eval_spec(running)


def test_config_of_a_queued_run_has_the_same_keys_as_a_trained_one(home):
    with Store(home) as store:
        queued, trained = store.get_run(6), store.get_run(4)
    queued_config, source = run_config(queued)
    trained_config, trained_source = run_config(trained)
    assert (source, trained_source) == ("spec", "config.json")
    assert set(trained_config) - set(queued_config) == {"versions.torch"}


def test_cli_without_the_tui_never_imports_textual():
    code = "import sys, innerdpo_bench.cli.main; print(any(m.split('.')[0] == 'textual' for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
