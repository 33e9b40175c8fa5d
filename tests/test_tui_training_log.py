"""The dashboard follows the training log (checkpoint/train.log: the step lines) and estimates the ETA from the
steps per second observed since the first logged step."""

from __future__ import annotations

import json
import os

from innerdpo_bench.store import Store
from innerdpo_bench.tui.data import TRAINING_LOG, default_log, progress_of
from innerdpo_bench.tui.detail import RunDetailScreen

from helpers.tui import NOW, SIZE, fill_store, make_app, pilot_test, started, wait_for


def test_eta_comes_from_the_observed_step_rate_not_the_time_since_the_start(tmp_path):
    home = fill_store(tmp_path / "home")
    metrics = home / "runs" / "5" / "checkpoint" / "metrics.jsonl"
    # run 5 started 600 s ago (model loading included); steps 10..40 took 30 s: one step per second
    metrics.write_text("".join(json.dumps({"step": step, "loss": 0.5, "time": NOW - 40 + step}) + "\n"
                               for step in range(10, 41, 10)))
    with Store(home) as store:
        progress = progress_of(store.get_run(5), NOW)
    assert (progress.step, progress.max_steps) == (40, 100)
    assert progress.eta_s == 60.0        # 60 steps left at 1 step/s; the old estimate said 900 s


@pilot_test
async def test_the_detail_screen_follows_the_training_log_step_lines(tmp_path):
    home = fill_store(tmp_path / "home")
    training_log = home / "runs" / "5" / "checkpoint" / "train.log"
    training_log.write_text("step 30 loss=0.580\nstep 40 loss=0.540\n")
    os.utime(home / "runs" / "5" / "train.log", (NOW - 100, NOW - 100))   # the subprocess's header, older
    with Store(home) as store:
        assert default_log(store.get_run(5)) == TRAINING_LOG
    app = make_app(home)
    async with app.run_test(size=SIZE) as pilot:
        await started(pilot)
        await pilot.press("j", "j", "j", "j", "enter")  # run 5, running
        await wait_for(pilot, lambda: isinstance(app.screen, RunDetailScreen), what="the detail screen")
        screen = app.screen
        await wait_for(pilot, screen.log_loaded.is_set, what="the log")
        assert screen.log_name == TRAINING_LOG
        log = screen.query_one("#log")
        assert log.lines[-1] == "step 40 loss=0.540"
        with open(training_log, "a") as handle:
            handle.write("step 50 loss=0.500\n")
        await wait_for(pilot, lambda: log.lines[-1] == "step 50 loss=0.500", what="the new step line")
        await pilot.press("l")                         # then the subprocess's output, eval.log, worker.log
        assert screen.log_name == "train.log"
