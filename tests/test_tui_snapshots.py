"""The dashboard's SVG snapshots of the runs view, queue view and run detail (`snap_compare`; `--snapshot-update`)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("textual")

from innerdpo_bench.tui.app import InnerDPOApp  # noqa: E402
from innerdpo_bench.tui.detail import RunDetailScreen  # noqa: E402
from innerdpo_bench.tui.runs_view import RunsTable  # noqa: E402

from helpers.tui import fill_store, make_app, wait_for  # noqa: E402


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """fill_store's workspace: runs 1-4 done with results, 5 running, 6-7 queued."""
    return fill_store(tmp_path / "home")


# --------------------------------------------------------------------------- snapshots (sync: snap_compare)


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
