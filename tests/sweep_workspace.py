"""A sweep workspace as a new user builds one (issue 32): a 2×2 align method × α sweep of hs-none-InnerDPO over two
seeds, dpo and ipo, a base-model row, one failed and one cancelled run, four queued runs: 17 runs, each done run with
eval.json, per-row records and a 20-step metrics.jsonl, on a fixed clock (the dashboard snapshots depend on it).

    python tests/sweep_workspace.py HOME     # build one (the report's tmux screens)
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from innerdpo_bench.config import TrainConfig
from innerdpo_bench.config.naming import display_name
from innerdpo_bench.evaluation.suites import SHIFTS
from innerdpo_bench.store import Store

from helpers.runs import pattern, write_run

T0 = 1_750_000_000.0
ROWS = 40
GRID = {"align_method": ("para_signed", "logodds"), "alpha": (0.1, 1.0)}
BASE = {"base_model": "tiny-random", "dataset": "mini:in_domain", "max_steps": 20}
EVAL = {"suite": "mini", "limit": ROWS}


def rights(run_index: int, alpha: float = 0.0, align: str = "") -> dict[str, int]:
    """Rows right of ROWS per shift: α helps in_domain, logodds helps difficulty_scaling, the seed jitters."""
    jitter = run_index % 3
    return {"in_domain": 24 + round(8 * alpha) + jitter, "difficulty_scaling": 20 + (4 if align == "logodds" else 0)
            + jitter, "moral_transfer": 19 + jitter, "orthogonal": 21 - jitter}


def write_metrics(checkpoint: Path, slope: float, steps: int = 20) -> None:
    """A 20-step metrics.jsonl (a record per step, as training writes it now) and the runtime summary."""
    lines = []
    for step in range(1, steps + 1):
        loss = round(0.693 - slope * math.log1p(step), 4)
        lines.append({"step": step, "loss": loss, "loss_output": loss, "rewards_margin": round(slope * step / 4, 4),
                      "reward_acc": round(min(1.0, 0.5 + slope * step / 2), 4), "pref_acc": 0.5,
                      "nll_chosen_pi": round(2.0 + slope * step / 10, 4), "learning_rate": 1e-4 * (1 - step / steps),
                      "elapsed_s": 15.0 * step, "time": T0 + 15.0 * step})
    lines.append({"step": steps, "train_runtime": 15.0 * steps, "elapsed_s": 15.0 * steps})
    (checkpoint / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def build(home: Path) -> Path:
    """The 17-run workspace in `home`; returns it."""
    clock = [T0]
    runs: list[tuple[str, dict, str]] = [("eval", {}, "done")]
    for align in GRID["align_method"]:
        for alpha in GRID["alpha"]:
            for seed in (1, 2):
                runs.append(("sweep", {"method": "hs-none-InnerDPO", "align_method": align, "alpha": alpha,
                                       "seed": seed}, "done"))
    runs += [("single", {"method": "dpo", "seed": 1}, "done"), ("single", {"method": "ipo", "seed": 1}, "done"),
             ("single", {"method": "dpo", "seed": 2}, "failed"), ("single", {"method": "ipo", "seed": 2}, "cancelled")]
    for alpha in GRID["alpha"]:
        for seed in (1, 2):
            runs.append(("sweep", {"method": "hs-none-InnerDPO", "align_method": "cosine_cross_model", "alpha": alpha,
                                   "seed": seed}, "queued"))
    with Store(home, clock=lambda: clock[0]) as store:
        for index, (kind, train, fate) in enumerate(runs):
            clock[0] = T0 + 60 * index
            if kind == "eval":
                spec = {"name": "none", "eval": {"checkpoint": "tiny-random", **EVAL}}
                store.add_run(spec, kind="eval")
            else:
                train = {**BASE, **train}
                name = display_name(TrainConfig(**train), always=GRID if kind == "sweep" else ())
                spec = {"name": name, "train": train, "eval": EVAL, "sweep": "0612-1030-a3" if kind == "sweep"
                        else "0612-1100-b7"}
                store.add_run(spec, tags=["sweep-a"] if kind == "sweep" else [])
        for index, (kind, train, fate) in enumerate(runs, start=1):
            if fate == "queued":
                continue
            train = {**BASE, **train} if kind != "eval" else train
            if fate == "cancelled":
                store.cancel(index)
                continue
            clock[0] = T0 + 2000 + 400 * index
            run = store.claim_next("host-a:1:cpu")
            assert run is not None and run.id == index, (run, index)
            if fate == "failed":
                clock[0] += 90
                store.finish(run.id, "host-a:1:cpu", "failed", 1, "loss became nan at step 12; try a lower "
                             "--learning-rate or --alpha")
                continue
            run_dir = home / "runs" / f"{run.id}"
            right = rights(index, train.get("alpha", 0.0), train.get("align_method", ""))
            verdicts = {shift: pattern(ROWS, right[shift]) for shift in SHIFTS}
            if kind == "eval":
                eval_path = write_run(run_dir, verdicts, method="none", adapter=False)
            else:
                eval_path = write_run(run_dir / "checkpoint", verdicts, method=train["method"], seed=train["seed"],
                                      dataset=train["dataset"])
                write_metrics(run_dir / "checkpoint", 0.05 + 0.05 * train.get("alpha", 0.0)
                              + (0.02 if train.get("align_method") == "logodds" else 0.0))
                (run_dir / "checkpoint" / "status.json").write_text(json.dumps({"state": "complete"}))
            store.set_run_dir(run.id, run_dir)
            report = json.loads(eval_path.read_text())
            results = {**report["shifts"], "coherence": {"nll_ratio": 1.0 + 0.01 * index}}
            store.record_results(run.id, results, report["provenance"])
            clock[0] += 316
            assert store.finish(run.id, "host-a:1:cpu", "done", 0)
    return home


if __name__ == "__main__":
    print(build(Path(sys.argv[1])))
