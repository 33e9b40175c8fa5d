"""Evaluation throughput: `innerdpo eval` vs plain lm-eval (`--model hf`) on the same rows and adapters.

    python -m bench.eval_throughput [--model smollm2-135m|tiny-random] [--rows 24] [--adapters 3] [--out FILE]

Both sides run the same `innerdpo_*` tasks of the mini suite (first `--rows` rows of each shift) on LoRA
adapters of one base model, in this process, one after the other:
  * plain: `lm_eval.simple_evaluate(model="hf", model_args="pretrained=BASE,peft=ADAPTER")` — stock HFLM,
    at the best of several batch sizes (picked on the first adapter, then used for all);
  * ours: `innerdpo eval ADAPTER`, which also scores the base model (adapter disabled) for coherence and
    per-row records, with the score cache starting empty: the first adapter pays for the base rows, the
    others reuse them.
Reported: pairs/s per checkpoint (model loading included on both sides), the ratios against the
targets (≥ 1.3× for one checkpoint, ≥ 2× per checkpoint over several adapters), and whether every
per-row decision (chosen > rejected on summed log-prob) is identical.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

SHIFTS = ("in_domain", "difficulty_scaling", "moral_transfer", "orthogonal")
TASKS = [f"innerdpo_{s}" for s in SHIFTS]


def make_adapters(base: str, count: int, root: Path) -> list[Path]:
    """`count` LoRA adapters with random non-zero B, so each changes the model differently."""
    import torch
    from peft import LoraConfig, get_peft_model

    from innerdpo_bench.models import load_causal_lm

    paths = []
    for index in range(count):
        torch.manual_seed(index)
        model = get_peft_model(load_causal_lm(base, dtype=torch.float32),
                               LoraConfig(r=16, lora_alpha=16, target_modules="all-linear", use_rslora=True))
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.01)
        path = root / f"adapter{index}"
        model.save_pretrained(str(path))
        paths.append(path)
    return paths


def plain_eval(base: str, adapter: Path, rows: int, batch_size: int) -> tuple[float, dict]:
    """Stock lm-eval on one adapter: (seconds, {task: [chosen > rejected per doc]})."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from innerdpo_bench import suites

    manager = TaskManager(include_path=str(suites.tasks_dir()), include_defaults=False,
                          metadata={"suite": "mini", "rows": rows, "pretrained": base})
    start = time.perf_counter()
    out = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={base},peft={adapter},dtype=float32",
                                  tasks=TASKS, task_manager=manager, batch_size=batch_size, device="cpu",
                                  log_samples=True)
    seconds = time.perf_counter() - start
    decisions = {task: [float(s["resps"][0][0][0]) > float(s["resps"][1][0][0])
                        for s in sorted(out["samples"][task], key=lambda s: s["doc_id"])] for task in TASKS}
    return seconds, decisions


def our_eval(adapter: Path, rows: int, out: Path) -> tuple[float, dict]:
    from innerdpo_bench.evaluate import evaluate

    start = time.perf_counter()
    result = evaluate(str(adapter), suite="mini", limit=rows, device="cpu", output=str(out), apply_chat_template=False)
    seconds = time.perf_counter() - start
    decisions: dict[str, list[bool]] = {task: [] for task in TASKS}
    records = [json.loads(line) for line in result.rows_path.read_text().splitlines()]
    for record in sorted(records, key=lambda r: (r["shift"], r["doc_id"])):
        decisions[f"innerdpo_{record['shift']}"].append(record["logp_chosen"] > record["logp_rejected"])
    return seconds, decisions


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--rows", type=int, default=24, help="rows per shift")
    parser.add_argument("--adapters", type=int, default=3)
    parser.add_argument("--batch-sizes", default="16,32", help="plain lm-eval batch sizes to try")
    parser.add_argument("--out", default="bench/results/eval_throughput.json")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from innerdpo_bench.cli import _quiet_libraries
    from innerdpo_bench.models import resolve_base_model

    _quiet_libraries()
    base = resolve_base_model(args.model)
    pairs = args.rows * len(SHIFTS)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        adapters = make_adapters(base, args.adapters, tmp)

        sweep = {}
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            sweep[batch_size], _ = plain_eval(base, adapters[0], args.rows, batch_size)
            print(f"plain lm-eval, batch {batch_size}: {pairs / sweep[batch_size]:.1f} pairs/s", flush=True)
        best = min(sweep, key=sweep.get)
        plain = [plain_eval(base, adapter, args.rows, best) for adapter in adapters]

        # Our side starts from an empty score cache of its own (the adapters name the base by its path,
        # so nothing else is looked up in the cache directory).
        previous = os.environ.get("INNERDPO_CACHE")
        os.environ["INNERDPO_CACHE"] = str(tmp / "cache")
        try:
            ours = [our_eval(adapter, args.rows, tmp / f"eval{i}.json") for i, adapter in enumerate(adapters)]
        finally:
            if previous is None:
                os.environ.pop("INNERDPO_CACHE")
            else:
                os.environ["INNERDPO_CACHE"] = previous

    identical = all(p[1] == o[1] for p, o in zip(plain, ours))
    plain_per = [s for s, _ in plain]
    ours_per = [s for s, _ in ours]
    one = plain_per[0] / ours_per[0]
    several = (sum(plain_per) / len(plain_per)) / (sum(ours_per) / len(ours_per))
    print(f"\n{'checkpoint':12s} {'plain pairs/s':>14s} {'ours pairs/s':>13s}")
    for index, (p, o) in enumerate(zip(plain_per, ours_per)):
        print(f"adapter {index:<4d} {pairs / p:14.1f} {pairs / o:13.1f}")
    print(f"\n{'ratio':36s} {'value':>7s} {'target':>7s}")
    print(f"{'one checkpoint (ours/plain speed)':36s} {one:7.2f} {'>= 1.3':>7s} {'ok' if one >= 1.3 else 'MISSED'}")
    print(f"{'per checkpoint over ' + str(len(adapters)) + ' adapters':36s} {several:7.2f} {'>= 2':>7s} "
          f"{'ok' if several >= 2 else 'MISSED'}")
    print(f"identical per-row decisions: {identical}")

    import lm_eval
    import torch
    import transformers

    record = {"model": args.model, "rows_per_shift": args.rows, "pairs_per_checkpoint": pairs,
              "plain_batch_sweep_s": sweep, "plain_best_batch": best, "plain_s": plain_per, "ours_s": ours_per,
              "ratio_one_checkpoint": round(one, 3), "ratio_per_checkpoint_several": round(several, 3),
              "identical_decisions": identical,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
              "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                           "lm_eval": lm_eval.__version__}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
