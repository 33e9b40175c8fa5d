"""Training step time and peak memory: TRL's DPOTrainer vs our dpo, ipo and each InnerDPO transform.

    python -m bench.train_step [--model smollm2-135m|tiny-random] [--steps 20] [--batch-size 4] [--out FILE]

Every variant trains the same base model, LoRA config (r 64, alpha 16, rsLoRA, all linear layers), data
(the mini suite's train split: preference rows of varied lengths, given to TRL as conversations when the
model has a chat template, so both sides train on the same rendered tokens), batch size and precision. Each runs in
its own child process so its peak memory is its own (on CPU, the rise of RSS above what was resident when training started, sampled every 2 ms;
`torch.cuda.max_memory_allocated` on GPU); one invocation runs them all on the same machine, one after the
other. Step time is the median over the timed steps after warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = ["trl-dpo", "dpo", "ipo", "hs-none-InnerDPO", "hs-ether-InnerDPO", "hs-supr-InnerDPO"]
# For information, not in the default run (it adds two minutes on CPU): TRL's own defaults, which turn
# gradient checkpointing on (less memory, more time).
EXTRA_VARIANTS = ["trl-dpo-default"]
TARGETS = {  # ratio: (numerator, denominator, limit)
    "dpo/trl time": ("dpo", "trl-dpo", "step_s", 0.75),
    "dpo/trl memory": ("dpo", "trl-dpo", "peak_mb", 0.60),
}
for _name in ("hs-none-InnerDPO", "hs-ether-InnerDPO", "hs-supr-InnerDPO"):
    TARGETS[f"{_name}/dpo time"] = (_name, "dpo", "step_s", 1.10)
    TARGETS[f"{_name}/dpo memory"] = (_name, "dpo", "peak_mb", 1.10)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssSampler:
    """Highest RSS seen while training (sampled every 2 ms), so the training cost is separated from imports
    and model loading, which dominate a process's high-water mark for small models."""

    def __init__(self):
        import threading

        self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss_mb())

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times: list[float] = []
            self._start = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self._sync()
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self._sync()
            self.times.append(time.perf_counter() - self._start)

        @staticmethod
        def _sync():
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()

    return StepTimer()


def run_variant(variant: str, model_name: str, steps: int, batch_size: int, tmp: Path) -> dict:
    """Train `steps` steps of one variant in this process and measure it."""
    import torch

    from innerdpo_bench.config import TrainConfig
    from innerdpo_bench.data.pairs import load_pairs
    from innerdpo_bench.models import resolve_base_model

    base = resolve_base_model(model_name)
    rows = load_pairs("mini:train")[: steps * batch_size]
    timer = _step_timer()
    cuda = torch.cuda.is_available()
    common = dict(max_steps=steps, per_device_train_batch_size=batch_size, gradient_accumulation_steps=1,
                  learning_rate=1e-5, logging_steps=10_000, save_strategy="no", report_to=[], use_cpu=not cuda,
                  bf16=cuda, disable_tqdm=True, seed=0)
    if variant.startswith("trl-dpo"):
        from datasets import Dataset
        from peft import LoraConfig
        from trl import DPOConfig, DPOTrainer

        from innerdpo_bench.models import load_causal_lm, load_tokenizer

        model = load_causal_lm(base, dtype=torch.bfloat16 if cuda else torch.float32)
        tokenizer = load_tokenizer(base)
        if tokenizer.chat_template:  # conversational rows: TRL renders them through the chat template, as we do
            rows = [{"prompt": [{"role": "user", "content": r["prompt"]}],
                     "chosen": [{"role": "assistant", "content": r["chosen"]}],
                     "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in rows]
        trainer = DPOTrainer(
            # "trl-dpo": the same settings as ours (no gradient checkpointing); "trl-dpo-default": TRL's
            # defaults, which turn gradient checkpointing on (less memory, more time), for information.
            model=model, args=DPOConfig(output_dir=str(tmp / "trl"), beta=0.1, loss_type=["sigmoid"], max_length=512,
                                        gradient_checkpointing=variant == "trl-dpo-default", **common),
            train_dataset=Dataset.from_list(rows), processing_class=tokenizer, callbacks=[timer],
            peft_config=LoraConfig(r=64, lora_alpha=16, use_rslora=True, target_modules="all-linear", task_type="CAUSAL_LM"),
        )
    else:
        from innerdpo_bench.train import build_trainer

        cfg = TrainConfig(method=variant, base_model=model_name, dataset="mini:train", max_steps=steps,
                          batch_size=batch_size, effective_batch=batch_size, output_dir=str(tmp / variant)).validate()
        trainer = build_trainer(cfg, tmp / variant, base, rows, "mini:train").trainer
        trainer.add_callback(timer)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    else:
        # The weights are memory-mapped from the safetensors file and only become resident when first read,
        # which would count the whole model (540 MB for SmolLM2 in fp32) as "training memory" on both sides.
        # Read every parameter first, so the baseline holds the model and the rise is what training adds.
        with torch.no_grad():
            for param in trainer.model.parameters():
                param.sum()
    before = _rss_mb()
    with RssSampler() as sampler:
        trainer.train()
    times = timer.times[3:]  # warm-up steps excluded
    # GPU: the allocator's peak; CPU: how far RSS rose above what was resident before training started.
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else sampler.peak - before
    return {"variant": variant, "step_s": statistics.median(times), "steps_timed": len(times),
            "peak_mb": round(peak, 1), "rss_before_train_mb": round(before, 1),
            "process_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "device": "cuda" if cuda else "cpu"}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=23, help="steps per variant; the first 3 are warm-up")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma list of {', '.join(VARIANTS + EXTRA_VARIANTS)}")
    parser.add_argument("--out", default="bench/results/train_step.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import tempfile

    if args.worker:
        with tempfile.TemporaryDirectory() as tmp:
            result = run_variant(args.worker, args.model, args.steps, args.batch_size, Path(tmp))
        print("RESULT " + json.dumps(result), flush=True)
        return

    results = {}
    for variant in args.variants.split(","):
        cmd = [sys.executable, "-m", "bench.train_step", "--worker", variant, "--model", args.model,
               "--steps", str(args.steps), "--batch-size", str(args.batch_size)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            print(f"{variant} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        results[variant] = json.loads(line[len("RESULT "):])
        r = results[variant]
        print(f"{variant:20s} {r['step_s']*1000:9.1f} ms/step  peak {r['peak_mb']:8.1f} MB", flush=True)

    ratios = {}
    for name, (num, den, key, limit) in TARGETS.items():
        if num in results and den in results:
            value = results[num][key] / results[den][key]
            ratios[name] = {"value": round(value, 3), "target": limit, "met": value <= limit}
    print(f"\n{'ratio':32s} {'value':>7s} {'target':>7s}")
    for name, r in ratios.items():
        print(f"{name:32s} {r['value']:7.3f} {'<= ' + str(r['target']):>7s} {'ok' if r['met'] else 'MISSED'}")
    import torch
    import transformers
    import trl

    record = {"model": args.model, "steps": args.steps, "batch_size": args.batch_size, "results": results,
              "ratios": ratios, "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
              "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__},
              "command": " ".join(["python -m bench.train_step"] + (argv if argv is not None else sys.argv[1:]))}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
