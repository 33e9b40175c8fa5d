"""The dashboard on a store that fails its integrity check: a persistent error screen naming the file and how to
recover it, and no more polling; at start and when the store turns bad mid-session (Pilot)."""

from __future__ import annotations

import pytest

pytest.importorskip("textual")

from innerdpo_bench.store import STORE_FILE, Store  # noqa: E402
from innerdpo_bench.tui.broken import StoreBrokenScreen  # noqa: E402

from helpers.store import corrupt_page  # noqa: E402
from helpers.tui import SIZE, fill_store, make_app, pilot_test, started, wait_for  # noqa: E402


def error_text(app) -> str:
    return str(app.screen.query_one("#store-broken-text").render())


async def assert_stopped(pilot, app) -> None:
    """No timer left, and asking for polls starts none."""
    assert app._poll_timer is None and app.store_broken is not None
    polls = app.polls
    for _ in range(3):
        app.request_poll()
    await pilot.pause()
    assert app.polls == polls and not app._polling


@pilot_test
async def test_a_store_corrupted_mid_session_covers_the_rows_and_polling_stops(tmp_path):
    home = fill_store(tmp_path / "home")
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        corrupt_page(home / STORE_FILE)
        await wait_for(pilot, lambda: isinstance(app.screen, StoreBrokenScreen), timeout=60, what="the error screen")
        await assert_stopped(pilot, app)
        text = error_text(app)
        assert str(home / STORE_FILE) in text and ".recover" in text and "innerdpo doctor" in text
        await pilot.press("1", "escape", "2")   # the views' keys do not take it away
        assert isinstance(app.screen, StoreBrokenScreen)
        await pilot.press("q")
    assert app.return_code in (0, None)


@pilot_test
async def test_a_store_corrupt_at_start_never_shows_a_table(tmp_path):
    home = fill_store(tmp_path / "home")
    corrupt_page(home / STORE_FILE)
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, StoreBrokenScreen), timeout=60, what="the error screen")
        await assert_stopped(pilot, app)
        assert app.polls == 1 and app.snapshot is None
        assert str(home / STORE_FILE) in error_text(app)


@pytest.mark.parametrize("press", [(), ("1", "2", "escape")])
@pilot_test
async def test_a_0_byte_store_shows_the_broken_screen_with_the_fix_and_stays_0_bytes(tmp_path, press):
    """Before: `innerdpo tui` on a truncated store.sqlite wrote an empty schema (24,576 bytes) and showed an empty
    table, while runs/ held the finished runs. Now every read is read-only, and an empty store is a broken one."""
    home = tmp_path / "home"
    with Store(home) as store:
        for run_id in store.add_runs([{"name": "dpo", "train": {"method": "dpo", "seed": seed}} for seed in (1, 2, 3)]):
            (home / "runs" / f"{run_id}-dpo-s{run_id}").mkdir(parents=True)
    for path in home.glob(f"{STORE_FILE}-*"):
        path.unlink()
    (home / STORE_FILE).write_bytes(b"")
    listing = sorted(path.name for path in home.iterdir())
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, StoreBrokenScreen), timeout=60, what="the error screen")
        await assert_stopped(pilot, app)
        assert app.snapshot is None
        text = error_text(app)
        assert "The store is empty" in text and str(home / STORE_FILE) in text and "0 bytes" in text
        assert f"innerdpo doctor --home {home} --repair" in text and "run directories" in text
        await pilot.press(*press)
        assert isinstance(app.screen, StoreBrokenScreen)
        await pilot.press("q")
    assert (home / STORE_FILE).stat().st_size == 0
    assert sorted(path.name for path in home.iterdir()) == listing
