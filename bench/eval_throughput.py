"""Evaluation throughput: `innerdpo eval` vs plain lm-eval (`--model hf`) on the same rows and adapters.

    python -m bench.eval_throughput [--model smollm2-135m|tiny-random] [--rows 24] [--adapters 3]
                                    [--chat-template auto|on|off] [--out FILE]

Both sides run the same `innerdpo_*` tasks of the mini suite (first `--rows` rows of each shift) on LoRA
adapters of one base model, in this process, one after the other, model loading included:
  * plain: `lm_eval.simple_evaluate(model="hf", ...)`, stock HFLM at batch size 16 (the faster of 16 and 32 on
    the CPU machine; `--batch-sizes 16,32` tries several on the first adapter and keeps the best, whose run counts);
  * ours: `innerdpo eval ADAPTER`, with the score cache starting empty.
Both render the rows the same way: through the model's chat template when it has one (`auto`, what
`innerdpo eval` does by default and how training renders; plain lm-eval gets `apply_chat_template=True`), or
as plain text (`--chat-template off`).

Same outputs on both sides. `innerdpo eval ADAPTER` writes, for every row, the adapter's AND the base
model's log-probs (the base columns, coherence, per-row comparisons). Plain lm-eval needs two runs per
checkpoint for that, `pretrained=BASE,peft=ADAPTER` and `pretrained=BASE`, and its HF model keeps nothing
from one run to the next, so over a sweep the base run is repeated for every adapter, while ours scores
the base rows once per base model and suite and reuses them. The plain base run costs the same for every
adapter (same model, same requests), so it is measured once and counted per adapter.
Reported: pairs/s per checkpoint, the ratios against the targets (>= 1.3x for one checkpoint, >= 2x per
checkpoint over several adapters), two ratios for information (a plain user who runs the base once for the
whole sweep; one pass against one pass), and whether every per-row decision (chosen > rejected on summed
log-prob), adapters' and base model's, is identical.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from bench.common import write_record

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


def plain_eval(base: str, adapter: Path | None, rows: int, batch_size: int, chat: bool) -> tuple[float, dict]:
    """Stock lm-eval on one adapter (None: the base model): (seconds, {task: [chosen > rejected per doc]})."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    from innerdpo_bench.evaluation import suites

    manager = TaskManager(include_path=str(suites.tasks_dir()), include_defaults=False,
                          metadata={"suite": "mini", "rows": rows, "pretrained": base})
    start = time.perf_counter()
    out = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={base}," + (f"peft={adapter}," if adapter else "") + "dtype=float32",
                                  tasks=TASKS, task_manager=manager, batch_size=batch_size, device="cpu",
                                  log_samples=True, apply_chat_template=chat)
    seconds = time.perf_counter() - start
    decisions = {task: [float(s["resps"][0][0][0]) > float(s["resps"][1][0][0])
                        for s in sorted(out["samples"][task], key=lambda s: s["doc_id"])] for task in TASKS}
    return seconds, decisions


def our_eval(adapter: Path, rows: int, out: Path, chat: bool) -> tuple[float, dict, dict]:
    """`innerdpo eval` on one adapter: (seconds, adapter decisions, base decisions)."""
    from innerdpo_bench.evaluation.evaluate import evaluate

    start = time.perf_counter()
    result = evaluate(str(adapter), suite="mini", limit=rows, device="cpu", output=str(out), apply_chat_template=chat)
    seconds = time.perf_counter() - start
    decisions: dict[str, list[bool]] = {task: [] for task in TASKS}
    base: dict[str, list[bool]] = {task: [] for task in TASKS}
    records = [json.loads(line) for line in result.rows_path.read_text().splitlines()]
    for record in sorted(records, key=lambda r: (r["shift"], r["doc_id"])):
        decisions[f"innerdpo_{record['shift']}"].append(record["logp_chosen"] > record["logp_rejected"])
        base[f"innerdpo_{record['shift']}"].append(record["base_logp_chosen"] > record["base_logp_rejected"])
    return seconds, decisions, base


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--rows", type=int, default=24, help="rows per shift")
    parser.add_argument("--adapters", type=int, default=3)
    parser.add_argument("--batch-sizes", default="16",
                        help="plain lm-eval batch sizes to try on the first adapter; the fastest is used for the rest")
    parser.add_argument("--chat-template", default="auto", choices=["auto", "on", "off"],
                        help="render rows through the chat template (auto: when the model has one)")
    parser.add_argument("--out", default="bench/results/eval_throughput.json")
    args = parser.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from innerdpo_bench.cli.app import quiet_libraries
    from innerdpo_bench.models import resolve_base_model

    quiet_libraries()
    base = resolve_base_model(args.model)
    from innerdpo_bench.models import load_tokenizer

    chat = {"on": True, "off": False}.get(args.chat_template, bool(getattr(load_tokenizer(base), "chat_template", None)))
    pairs = args.rows * len(SHIFTS)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        adapters = make_adapters(base, args.adapters, tmp)

        sweep, first = {}, {}
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            first[batch_size] = plain_eval(base, adapters[0], args.rows, batch_size, chat)
            sweep[batch_size] = first[batch_size][0]
            print(f"plain lm-eval, batch {batch_size}: {pairs / sweep[batch_size]:.1f} pairs/s", flush=True)
        best = min(sweep, key=sweep.get)  # its run on the first adapter counts; the others run at it
        plain = [first[best]] + [plain_eval(base, adapter, args.rows, best, chat) for adapter in adapters[1:]]
        plain_base = plain_eval(base, None, args.rows, best, chat)

        # Our side starts from an empty score cache of its own (the adapters name the base by its path,
        # so nothing else is looked up in the cache directory).
        previous = os.environ.get("INNERDPO_CACHE")
        os.environ["INNERDPO_CACHE"] = str(tmp / "cache")
        try:
            ours = [our_eval(adapter, args.rows, tmp / f"eval{i}.json", chat) for i, adapter in enumerate(adapters)]
        finally:
            if previous is None:
                os.environ.pop("INNERDPO_CACHE")
            else:
                os.environ["INNERDPO_CACHE"] = previous

    identical = all(p[1] == o[1] and plain_base[1] == o[2] for p, o in zip(plain, ours))
    plain_per = [s for s, *_ in plain]
    ours_per = [s for s, *_ in ours]
    n = len(adapters)
    ratios = {  # name: (value, target or None)
        "one checkpoint, same outputs (plain: adapter + base runs)": ((plain_per[0] + plain_base[0]) / ours_per[0], 1.3),
        f"per checkpoint over {n} adapters, same outputs": (sum(p + plain_base[0] for p in plain_per) / sum(ours_per), 2.0),
        f"over {n} adapters, plain runs the base once": ((sum(plain_per) + plain_base[0]) / sum(ours_per), None),
    }
    if n > 1:  # ours from the second adapter on: its own pass plus the harness over cached base rows
        ratios["one pass vs one pass (adapters 1+)"] = (sum(plain_per[1:]) / sum(ours_per[1:]), None)
    print(f"\nchat template: {'on' if chat else 'off'}; plain best batch size {best}")
    print(f"{'checkpoint':12s} {'plain pairs/s':>14s} {'ours pairs/s':>13s}")
    for index, (p, o) in enumerate(zip(plain_per, ours_per)):
        print(f"adapter {index:<4d} {pairs / p:14.1f} {pairs / o:13.1f}")
    print(f"{'base model':12s} {pairs / plain_base[0]:14.1f} {'(in each)':>13s}")
    print(f"\n{'ratio':58s} {'value':>6s} {'target':>7s}")
    for name, (value, target) in ratios.items():
        verdict = "" if target is None else ("ok" if value >= target else "MISSED")
        print(f"{name:58s} {value:6.2f} {'' if target is None else '>= ' + str(target):>7s} {verdict}")
    print(f"identical per-row decisions (adapters and base): {identical}")

    write_record(args.out, "bench.eval_throughput", {
        "model": args.model, "rows_per_shift": args.rows, "chat_template": chat, "pairs_per_checkpoint": pairs,
        "plain_batch_sweep_s": sweep, "plain_best_batch": best, "plain_adapter_s": plain_per,
        "plain_base_s": plain_base[0], "ours_s": ours_per,
        "ratios": {name: {"value": round(value, 3), "target": target} for name, (value, target) in ratios.items()},
        "identical_decisions": identical}, argv, ("torch", "transformers", "peft", "lm_eval"))


if __name__ == "__main__":
    main()
