"""`innerdpo tui` end to end in a real terminal (tmux): live rows from another process, a sort key, quit; a sweep
workspace's curves and compare views.

A background process plays the worker: it claims the queued runs and records their results through the
Store API (training itself is tested elsewhere). The test reads the screen with `tmux capture-pane`,
always polling for the state it expects next, never sleeping a fixed time.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from innerdpo_bench.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")]

# run id → in_domain score, landing in this order (so the id order and the score order differ).
SCORES = {1: 0.700, 2: 0.900, 3: 0.800}

WRITER = """
import sys, time
from innerdpo_bench.store import Store
scores = {1: 0.700, 2: 0.900, 3: 0.800}
with Store(sys.argv[1]) as store:
    for run_id, score in scores.items():
        time.sleep(0.4)
        run = store.claim_next("e2e-writer")
        store.record_results(run.id, {"in_domain": {"acc": score}, "orthogonal": {"acc": score - 0.1}})
        store.finish(run.id, "e2e-writer", "done", 0)
"""


class Tmux:
    """One tmux server of our own (its own socket), so the test never touches the user's sessions."""

    def __init__(self) -> None:
        self.socket = f"innerdpo-e2e-{uuid.uuid4().hex[:8]}"

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True,
                              text=True).stdout

    def start_tui(self, home: Path, width: int, height: int) -> None:
        """`innerdpo tui --home HOME` in a detached session of that size; it prints EXIT=<code> when it quits."""
        script = Path(sys.executable).with_name("innerdpo")
        command = f"{script} tui" if script.exists() else f"{sys.executable} -m innerdpo_bench tui"
        self("new-session", "-d", "-s", "tui", "-x", str(width), "-y", str(height),
             f"TERM=xterm-256color {command} --home {home} --poll 0.3; echo EXIT=$?; sleep 60")

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "tui")

    def wait_for(self, predicate, what: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if predicate(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the screen was:\n{text}")
            time.sleep(0.1)

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


def row_order(screen: str) -> list[int]:
    """Run ids in the order their rows appear on the captured screen (rows start with the id)."""
    ids = []
    for line in screen.splitlines():
        match = re.match(r"^\s*[◆●]?\s+(\d+)\s+(dpo|ipo|hs-)", line)
        if match:
            ids.append(int(match.group(1)))
    return ids


def test_tui_shows_rows_as_they_land_sorts_on_a_key_and_quits(tmp_path: Path):
    home = tmp_path / "home"
    with Store(home) as store:
        for method in ("dpo", "ipo", "hs-ether-InnerDPO"):
            store.add_run({"name": method, "train": {"method": method, "seed": 1, "max_steps": 10},
                           "eval": {"suite": "mini", "limit": 10}})
    tmux = Tmux()
    try:
        tmux.start_tui(home, 100, 24)
        tmux.wait_for(lambda text: "in_dom" in text and row_order(text) == [1, 2, 3], "the three queued runs")

        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(home)])
        try:
            screen = tmux.wait_for(lambda text: all(f"{score:.3f}" in text for score in SCORES.values()),
                                   "the results the writer records")
        finally:
            assert writer.wait(timeout=30) == 0
        assert row_order(screen) == [1, 2, 3]           # landed in place, still in id order

        tmux("send-keys", "-t", "tui", ">")              # sort: id → name
        tmux.wait_for(lambda text: "name▲" in text, "the name sort")
        tmux("send-keys", "-t", "tui", ">")              # → in_domain, best first
        # The header can be repainted a frame before the rows: wait for both, then check the order.
        best_first = sorted(SCORES, key=SCORES.get, reverse=True)
        assert best_first == [2, 3, 1]
        screen = tmux.wait_for(lambda text: "in_dom▼" in text and row_order(text) == best_first, "the in_domain sort")
        assert row_order(screen) == [2, 3, 1]
        tmux("send-keys", "-t", "tui", "r")              # reversed
        screen = tmux.wait_for(lambda text: "in_dom▲" in text and row_order(text) == [1, 3, 2], "the reversed sort")
        assert row_order(screen) == [1, 3, 2]

        tmux("send-keys", "-t", "tui", "q")
        screen = tmux.wait_for(lambda text: "EXIT=" in text, "the dashboard to exit")
        assert "EXIT=0" in screen
    finally:
        tmux.kill()
    with Store(home) as store:                          # quitting changed nothing in the store
        assert [run.status for run in store.list_runs()] == ["done", "done", "done"]


STEPPER = """
import sys, time
from pathlib import Path
log = Path(sys.argv[1])
for step in range(20, 60, 10):      # a training run writing a step line now and then
    time.sleep(0.5)
    with open(log, "a") as handle:
        handle.write(f"step {step} loss={0.7 - step / 250:.3f} marker-{step}\\n")
"""


def test_the_detail_screen_follows_a_running_training_log_in_a_real_terminal(tmp_path: Path):
    home = tmp_path / "home"
    with Store(home) as store:
        run_id = store.add_run({"name": "dpo", "train": {"method": "dpo", "seed": 1, "max_steps": 50},
                                "eval": {"suite": "mini", "limit": 10}})
        store.claim_next("e2e-writer")
        run_dir = home / "runs" / str(run_id)
        store.set_run_dir(run_id, run_dir)
    checkpoint = run_dir / "checkpoint"
    checkpoint.mkdir(parents=True)
    (checkpoint / "status.json").write_text('{"state": "running"}')
    (checkpoint / "metrics.jsonl").write_text('{"step": 10, "loss": 0.66}\n')
    training_log = checkpoint / "train.log"
    training_log.write_text("step 10 loss=0.660 marker-10\n")
    tmux = Tmux()
    try:
        tmux.start_tui(home, 120, 30)
        tmux.wait_for(lambda text: row_order(text) == [run_id], "the running run")
        tmux("send-keys", "-t", "tui", "Enter")          # its detail screen
        tmux.wait_for(lambda text: "marker-10" in text, "the training log's first step line")
        stepper = subprocess.Popen([sys.executable, "-c", STEPPER, str(training_log)])
        try:
            tmux.wait_for(lambda text: "marker-50" in text, "the step lines written while the screen is open",
                          timeout=30.0)
        finally:
            assert stepper.wait(timeout=30) == 0
        tmux("send-keys", "-t", "tui", "q")
        assert "EXIT=0" in tmux.wait_for(lambda text: "EXIT=" in text, "the dashboard to exit")
    finally:
        tmux.kill()


def test_a_sweep_workspace_in_a_real_terminal_marks_two_runs_and_opens_curves_and_compare(tmp_path: Path):
    """Issue 32's done-when, under tmux: every run told apart by its name, two runs marked with space, their curves
    overlaid (l), then compared (c) with the paired statistics and the two-sided config diff."""
    from sweep_workspace import build

    home = build(tmp_path / "home")
    tmux = Tmux()
    try:
        tmux.start_tui(home, 100, 30)
        # 100 columns: the names shortened (`hs-none logodds α=1`), still every setting that tells runs apart
        screen = tmux.wait_for(lambda text: "logodds α=1" in text and "para_signed α=0.1" in text, "the sweep's names")
        for key in ("j", "space", "j", "j", "j", "j", "j", "j", "space"):   # runs 2 and 8
            tmux("send-keys", "-t", "tui", key)
        tmux.wait_for(lambda text: "2 marked" in text, "two marked runs")
        tmux("send-keys", "-t", "tui", "l")
        screen = tmux.wait_for(lambda text: "curves of 2 run(s)" in text and "step" in text and "┤" in text,
                               "the curves chart")
        assert "2 hs-none-InnerDPO" in screen and "8 hs-none-InnerDPO" in screen     # the legend names both
        tmux("send-keys", "-t", "tui", "Escape")
        tmux.wait_for(lambda text: "2 marked" in text, "back on the runs")
        tmux("send-keys", "-t", "tui", "c")
        screen = tmux.wait_for(lambda text: "p McNemar" in text and "+0.175" in text, "the comparison")
        assert "alpha" in screen and "para_signed" in screen and "logodds" in screen   # both sides of the diff
        tmux("send-keys", "-t", "tui", "q")
        assert "EXIT=0" in tmux.wait_for(lambda text: "EXIT=" in text, "the dashboard to exit")
    finally:
        tmux.kill()
