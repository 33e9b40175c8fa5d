"""The run store under a cluster's load, on each backend: claims per second and claim latency with 1 and 8 worker
processes, and how long `innerdpo runs` takes over 10,000 runs (docs/benchmarks.md, "Run store").

    python -m bench.store_claims                       # SQLite and a throw-away PostgreSQL server (tests/pgserver.py)
    python -m bench.store_claims --postgres-url URL    # an existing, empty PostgreSQL database instead

One store per backend holds 10,000 queued runs with 24 results each (4 shifts x 6 metrics, as a scored run has).
`innerdpo runs --format csv` is then timed as a user runs it (a new process: Python's start and imports included),
median of 3, with `Store.list_runs` timed alone beside it. Then each worker count in turn: N processes, started
together, each looping claim_next → finish(done) (a worker's two store writes per run, with no work between them:
the worst contention a queue sees) until it has made its share of `--claims` claims; each claim_next is timed.
Claims per second = all claims / (last claim's end - first claim's start). Targets: p99 claim latency ≤ 50 ms with
8 workers, `innerdpo runs` < 2 s at 10,000 runs, on both backends.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHIFTS = ("in_domain", "difficulty_scaling", "moral_transfer", "orthogonal")
METRICS = ("acc", "acc_stderr", "acc_sum", "logratio", "n", "nll_ratio")

CLAIMER = r"""
import json, pathlib, sys, time
from innerdpo_bench.store import Store
home, url, name, share, go = sys.argv[1], sys.argv[2] or None, sys.argv[3], int(sys.argv[4]), pathlib.Path(sys.argv[5])
latencies, started = [], None
with Store(home, url=url) as store:
    pathlib.Path(str(go) + "." + name).touch()
    while not go.exists():
        time.sleep(0.001)
    started = time.time()
    for _ in range(share):
        before = time.perf_counter()
        run = store.claim_next(name)
        latencies.append(time.perf_counter() - before)
        if run is None:
            break
        store.finish(run.id, name, "done", exit_code=0)
    ended = time.time()
print(json.dumps({"latencies": latencies, "started": started, "ended": ended}))
"""


def fill(home: Path, url: str | None, runs: int) -> float:
    """`runs` queued runs with 24 results each; the seconds it took."""
    from innerdpo_bench.store import Store

    started = time.perf_counter()
    with Store(home, url=url) as store:
        ids = store.add_runs([{"name": "dpo", "train": {"method": "dpo", "seed": index % 5}, "eval": {"suite": "mini"}}
                              for index in range(runs)])
        for run_id in ids:
            store.record_results(run_id, {shift: {metric: (run_id % 97) / 97 for metric in METRICS}
                                          for shift in SHIFTS})
    return time.perf_counter() - started


def time_runs(home: Path, url: str | None, repeats: int = 3) -> tuple[float, float]:
    """(median seconds of `innerdpo runs --format csv` as a new process, median seconds of list_runs alone)."""
    from innerdpo_bench.store import Store

    env = {**os.environ, **({"INNERDPO_STORE": url} if url else {})}
    command = [sys.executable, "-m", "innerdpo_bench", "runs", "--home", str(home), "--format", "csv"]
    cli = []
    for _ in range(repeats):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        cli.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"innerdpo runs failed: {done.stderr.strip()}")
    listed = []
    with Store(home, url=url, readonly=True) as store:
        for _ in range(repeats):
            started = time.perf_counter()
            store.list_runs()
            listed.append(time.perf_counter() - started)
    return statistics.median(cli), statistics.median(listed)


def claim_race(home: Path, url: str | None, workers: int, claims: int) -> dict:
    """`workers` processes claim `claims` runs between them; throughput and latency percentiles (ms)."""
    go = Path(tempfile.mkdtemp(prefix="claims-")) / "go"
    share = claims // workers
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(home), url or "", f"bench:{index}:cpu", str(share),
                               str(go)], stdout=subprocess.PIPE, text=True) for index in range(workers)]
    while not all(Path(f"{go}.bench:{index}:cpu").exists() for index in range(workers)):
        if any(proc.poll() not in (None, 0) for proc in procs):
            raise SystemExit("a claiming process failed")
        time.sleep(0.01)
    go.touch()
    reports = [json.loads(proc.communicate()[0]) for proc in procs]
    latencies = sorted(latency for report in reports for latency in report["latencies"])
    elapsed = max(report["ended"] for report in reports) - min(report["started"] for report in reports)

    def percentile(q: float) -> float:
        return latencies[min(len(latencies) - 1, round(q * (len(latencies) - 1)))] * 1000

    return {"workers": workers, "claims": len(latencies), "claims_per_s": len(latencies) / elapsed,
            "p50_ms": percentile(0.50), "p99_ms": percentile(0.99), "max_ms": latencies[-1] * 1000}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--claims", type=int, default=2_000, help="claims per worker count (split between workers)")
    parser.add_argument("--workers", default="1,8")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default=None, help="an empty database (default: start a throw-away server)")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "store_claims.json"))
    args = parser.parse_args(argv)
    server = None
    rows = []
    try:
        for backend in args.backends.split(","):
            home = Path(tempfile.mkdtemp(prefix=f"store-bench-{backend}-")) / "home"
            url = None
            if backend == "postgresql":
                url = args.postgres_url
                if url is None:
                    sys.path.insert(0, str(ROOT / "tests"))
                    from pgserver import PostgresServer

                    server = PostgresServer()
                    server.start()
                    url = server.new_database()
            filled_s = fill(home, url, args.runs)
            cli_s, list_s = time_runs(home, url)
            print(f"{backend}: filled {args.runs} runs in {filled_s:.1f}s; innerdpo runs {cli_s:.2f}s "
                  f"(list_runs {list_s * 1000:.0f} ms)", flush=True)
            for workers in (int(n) for n in args.workers.split(",")):
                race = claim_race(home, url, workers, args.claims)
                rows.append({"backend": backend, **race, "runs_cli_s": cli_s, "list_runs_s": list_s})
                print(f"  {workers} worker(s): {race['claims_per_s']:.0f} claims/s, p50 {race['p50_ms']:.1f} ms, "
                      f"p99 {race['p99_ms']:.1f} ms, max {race['max_ms']:.1f} ms", flush=True)
    finally:
        if server is not None:
            server.destroy()
    print("\n| backend | workers | claims/s | p50 claim | p99 claim | max claim | `innerdpo runs` (10,000 runs) | "
          "list_runs |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['backend']} | {row['workers']} | {row['claims_per_s']:.0f} | {row['p50_ms']:.1f} ms | "
              f"{row['p99_ms']:.1f} ms | {row['max_ms']:.1f} ms | {row['runs_cli_s']:.2f} s | "
              f"{row['list_runs_s'] * 1000:.0f} ms |")
    from bench.common import write_record

    write_record(args.out, "bench.store_claims", {"runs": args.runs, "rows": rows}, argv, ("psycopg",))


if __name__ == "__main__":
    main()
