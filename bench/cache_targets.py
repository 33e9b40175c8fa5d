"""Issue 20's targets for the reference-pass cache, from one `bench.train_step` invocation's measurements.

Measured: the paired per-batch step times of the `-cached` variants against our live-reference runs, the standalone
peak memory of hs-none and hs-supr cached and live, and each cache's one-off build (one batched no-grad pass over
the paired run's pairs, which are exactly one epoch of its batches). dpo-cached against TRL is derived: dpo's
standalone step (the one TRL's is compared with) × the paired dpo-cached/dpo ratio, so it costs no child process of
its own. Derived too (not a timed sweep, which would not fit the 10-minute bench): the wall time of 4-run sweeps
from those measurements, `E` epochs of `n` batches per run:
    uncached = E·n·Σ_runs t_run,   cached = E·n·Σ_runs t_run,cached + Σ_caches build
with t_run = the run's median per-batch ratio to dpo × dpo's median step, the same paired ratios as the targets
above (the ratio of two variants' raw medians is noisier: each median falls on another batch, and the batches
differ in length); dpo and ipo share one cache, and ipo's cached step is taken as dpo-cached's × ipo/dpo.
"""

from __future__ import annotations

import statistics

TARGETS = {"dpo-cached/trl time": 0.30, "dpo-cached/dpo time": 0.80, "hs-none-InnerDPO-cached/dpo time": 0.85,
           "hs-supr-InnerDPO-cached/dpo time": 0.85, "memory": 1.0, "build/epoch": 1.0, "sweep": 0.85}
SWEEP_EPOCHS = (1.0, 4.4)  # the shortest run `--ref-cache auto` builds for, and the spec's budget on a GENIES split


def _ratio(name: str, value: float, limit: float) -> dict:
    return {name: {"value": round(value, 3), "target": limit, "met": value <= limit}}


def cache_ratios(results: dict, paired_summary: dict, paired: dict | None) -> dict:
    """{ratio name: {value, target, met}} for whatever of the cached variants was measured."""
    out: dict = {}
    if "dpo-cached" in paired_summary and results.get("dpo", {}).get("step_s") and results.get("trl-dpo", {}).get("step_s"):
        dpo_cached_s = results["dpo"]["step_s"] * paired_summary["dpo-cached"]["per_batch_ratio_to_dpo"]
        out.update(_ratio("dpo-cached/trl time (dpo standalone x paired ratio)",
                          dpo_cached_s / results["trl-dpo"]["step_s"], TARGETS["dpo-cached/trl time"]))
    for name in ("dpo-cached", "hs-none-InnerDPO-cached", "hs-supr-InnerDPO-cached"):
        if name in paired_summary:
            out.update(_ratio(f"{name}/dpo time", paired_summary[name]["per_batch_ratio_to_dpo"], TARGETS[f"{name}/dpo time"]))
        live = name.removesuffix("-cached")
        if name in results and live in results:
            out.update(_ratio(f"{name}/{live} memory", results[name]["peak_mb_memory_steps"]
                              / results[live]["peak_mb_memory_steps"], TARGETS["memory"]))
    if paired is None:
        return out
    warm = paired["warmup"]
    times = {v: t[warm:] for v, t in paired["times_s"].items()}
    if "dpo" not in times:
        return out
    dpo_step = statistics.median(times["dpo"])
    step = {v: dpo_step * statistics.median(a / b for a, b in zip(t, times["dpo"])) for v, t in times.items()}
    builds, batches = paired.get("ref_cache_build_s", {}), paired.get("batches", 0)
    for name, build in builds.items():
        live = name.removesuffix("-cached")
        if live in times and build is not None:
            saved = statistics.median(a - b for a, b in zip(times[live], times[name]))  # the reference forward
            if saved > 0:
                out.update(_ratio(f"{name} build/one epoch of reference passes", build / (saved * batches),
                                  TARGETS["build/epoch"]))
    methods = ("dpo", "ipo", "hs-none-InnerDPO", "hs-supr-InnerDPO")
    cached = ("dpo-cached", "hs-none-InnerDPO-cached", "hs-supr-InnerDPO-cached")
    if all(v in step for v in methods + cached) and all(builds.get(v) for v in cached):
        ipo_cached = step["dpo-cached"] * step["ipo"] / step["dpo"]  # step["dpo"] is dpo_step
        for epochs in SWEEP_EPOCHS:
            steps = epochs * batches
            live = steps * sum(step[v] for v in methods)
            fast = steps * (step["dpo-cached"] + ipo_cached + step["hs-none-InnerDPO-cached"]
                            + step["hs-supr-InnerDPO-cached"]) + sum(builds[v] for v in cached)
            out.update(_ratio(f"sweep dpo,ipo,hs-none,hs-supr x{epochs:g} ep (derived)", fast / live, TARGETS["sweep"]))
            align = 4 * steps * step["hs-none-InnerDPO"]
            align_fast = 4 * steps * step["hs-none-InnerDPO-cached"] + builds["hs-none-InnerDPO-cached"]
            out.update(_ratio(f"sweep 4 hs-none runs x{epochs:g} ep (derived)", align_fast / align, TARGETS["sweep"]))
    return out
