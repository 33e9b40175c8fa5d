"""The dashboard's queue view and add form (Pilot): progress, ETA, reorder, cancel, retry, a run per seed."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("textual")

from innerdpo_bench.store import Store  # noqa: E402
from innerdpo_bench.tui.modals import AddRunModal  # noqa: E402
from innerdpo_bench.tui.queue_view import QueueTable  # noqa: E402

from helpers.tui import SIZE, fill_store, intents_done, make_app, order, pilot_test, started, wait_for  # noqa: E402


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """fill_store's workspace: runs 1-4 done with results, 5 running, 6-7 queued."""
    return fill_store(tmp_path / "home")


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
