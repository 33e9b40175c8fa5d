"""A 10,000-run workspace: how long `innerdpo runs` (each format), `queue ls` and the dashboard's first paint take.

    python -m bench.scale [--runs 10000] [--home DIR] [--repeat 3] [--out FILE]

The workspace is filled through the Store API (a sweep: 6 methods x 4 align methods x 5 α x seeds, 85% done with
results on the four shifts and coherence, the rest failed, cancelled, running or queued), once, into --home
(reused when it already holds that many runs). Each CLI command runs as a subprocess, as a user types it, its
output to /dev/null; the time is the wall clock from start to exit, the best of --repeat, and beside it the CPU
seconds the process used (user + system: what the command costs whatever else the machine runs; on a shared
machine the wall clock is the larger). The dashboard's first paint is the time from `InnerDPOApp.run_test()`
starting (Python and Textual already imported, as in the `innerdpo tui` process once it has started) to the runs
table drawing its first line of rows, and to every row being in the table; its CPU seconds are the process's (all
threads). Target (issue 33 point 8): each at most 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import write_record

METHODS = ("dpo", "ipo", "hs-none-InnerDPO", "hs-ether-InnerDPO", "hs-supr-InnerDPO", "simper")
ALIGNS = ("para_signed", "logodds", "cosine_cross_model", "pars_rat")
ALPHAS = (0.1, 0.25, 0.5, 1.0, 2.0)
SHIFTS = ("in_domain", "difficulty_scaling", "moral_transfer", "orthogonal")
TARGET_S = 2.0


def fill(home: Path, n: int) -> None:
    """`n` runs through the Store API, with results for the done ones (fixed pseudo-random scores)."""
    from innerdpo_bench.config import TrainConfig
    from innerdpo_bench.config.naming import display_name
    from innerdpo_bench.config.spec import EvalSpec, RunSpec
    from innerdpo_bench.store import Store

    cells = itertools.cycle(itertools.product(METHODS, ALIGNS, ALPHAS))
    specs = []
    for index in range(n):
        method, align, alpha = next(cells)
        train = TrainConfig(method=method, seed=index // 120, align_method=align, alpha=alpha, max_steps=100,
                            base_model="tiny-random", dataset="mini:train", learning_rate=1e-5)
        specs.append(RunSpec(name=display_name(train, always=("align_method", "alpha")), train=train,
                             eval=EvalSpec(suite="mini", limit=50), sweep="bench"))
    clock = [1_750_000_000.0]
    with Store(home, clock=lambda: clock[0]) as store:
        ids = store.add_runs(specs)
        for run_id in ids:
            fate = run_id % 20
            if fate == 19:   # 5% stay queued
                continue
            clock[0] += 60
            run = store.claim_next("bench:1:cpu")
            if fate == 18:   # running
                continue
            clock[0] += 600
            if fate == 17:
                store.finish(run.id, "bench:1:cpu", "failed", 1, "loss became nan at step 12")
                continue
            score = (run.id * 7919 % 1000) / 1000
            results = {shift: {"acc": round(0.4 + 0.5 * ((score + k * 0.137) % 1), 3), "acc_stderr": 0.02, "n": 50}
                       for k, shift in enumerate(SHIFTS)}
            results["coherence"] = {"nll_ratio": 1 + score / 10}
            store.record_results(run.id, results)
            store.finish(run.id, "bench:1:cpu", "done", 0)


def count(home: Path) -> int:
    from innerdpo_bench.store import Store

    try:
        with Store(home, readonly=True) as store:
            return len(store.list_runs())
    except Exception:  # noqa: BLE001 (no store yet)
        return 0


def time_command(args: list[str], repeat: int) -> tuple[float, float]:
    """(best wall-clock seconds, CPU seconds of that run) of `innerdpo ARGS` over `repeat` runs (output discarded;
    must exit 0)."""
    import resource

    script = Path(sys.executable).with_name("innerdpo")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "innerdpo_bench"]
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(command + args, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "200"})
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        best = min(best, (wall, cpu))
    return best


async def first_paint(home: Path, n: int) -> tuple[float, float, float]:
    """(seconds to the runs table's first drawn line with a row, seconds to every row in the table) of a fresh
    dashboard; the clock starts as the app starts."""
    from innerdpo_bench.tui.app import InnerDPOApp
    from innerdpo_bench.tui.runs_view import RunsTable

    drawn: list[float] = []
    render_line = RunsTable.render_line

    def timed(table, y):   # the first line drawn below the header once rows are in
        if not drawn and y > 0 and table.row_count:
            drawn.append(time.perf_counter())
            drawn.append(time.process_time())
        return render_line(table, y)

    RunsTable.render_line = timed
    try:
        app = InnerDPOApp(home, poll_s=60.0)
        start, cpu = time.perf_counter(), time.process_time()
        async with app.run_test(size=(200, 50)) as pilot:
            while True:
                view, table = app.runs_view.view, app.main_screen.query_one_optional(RunsTable)
                if drawn and view is not None and table is not None and table.row_count >= len(view.rows):
                    return drawn[0] - start, drawn[1] - cpu, time.perf_counter() - start
                await pilot.pause(0.01)
    finally:
        RunsTable.render_line = render_line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--home", default=None, help="Workspace to fill (default: a temporary one, removed after).")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default="bench/results/scale.json")
    args = parser.parse_args(argv)
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="innerdpo-scale-"))
    try:
        if count(home) != args.runs:
            shutil.rmtree(home, ignore_errors=True)
            start = time.perf_counter()
            fill(home, args.runs)
            print(f"filled {args.runs} runs in {time.perf_counter() - start:.1f}s: {home}")
        timings, cpus = {}, {}
        for label, command in (("runs (table)", ["runs"]), ("runs --format csv", ["runs", "--format", "csv"]),
                               ("runs --format markdown", ["runs", "--format", "markdown"]),
                               ("runs --format json", ["runs", "--format", "json"]),
                               ("queue ls", ["queue", "ls"]), ("queue ls --all", ["queue", "ls", "--all"])):
            timings[label], cpus[label] = time_command([*command, "--home", str(home)], args.repeat)
        paints = [asyncio.run(first_paint(home, args.runs)) for _ in range(args.repeat)]
        first = min(paints)
        timings["dashboard first paint"], cpus["dashboard first paint"] = first[0], first[1]
        timings["dashboard all rows"] = min(every for _, _, every in paints)
        load = os.getloadavg()[0]
        print(f"{'':24s} {'wall':>7s} {'cpu':>7s}   (load average {load:.1f} on {os.cpu_count()} cores)")
        for label, seconds in timings.items():
            cpu = cpus.get(label)
            verdict = "" if label == "dashboard all rows" else "ok" if min(seconds, cpu or seconds) <= TARGET_S \
                else "OVER"
            print(f"{label:24s} {seconds:6.2f}s {'' if cpu is None else f'{cpu:6.2f}s'}  {verdict}")
        write_record(args.out, "bench.scale", {"runs": args.runs, "target_s": TARGET_S, "seconds": timings,
                                               "cpu_seconds": cpus, "load_average": load}, argv,
                     ("textual", "typer"))
    finally:
        if not args.home:
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
