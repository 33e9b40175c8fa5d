"""The dashboard's Pilot tests' shared parts: a store of seven runs on a fixed clock (`fill_store`: runs 1-4 done
with results, 5 running, 6-7 queued), the app on it (`make_app`), and waits and readers for the runs table. Async
test bodies run under `asyncio.run` (`pilot_test`), so no pytest plugin or asyncio mode is needed."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import time
from pathlib import Path

import pytest

pytest.importorskip("textual")   # a test module that imports these helpers is skipped where textual is missing

from rich.text import Text  # noqa: E402

from innerdpo_bench.store import Store  # noqa: E402
from innerdpo_bench.tui.app import InnerDPOApp  # noqa: E402
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

