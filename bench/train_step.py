"""Training step time and peak memory: TRL's DPOTrainer vs our dpo, ipo and each InnerDPO transform.

    python -m bench.train_step [--model smollm2-135m|tiny-random] [--steps 9] [--memory-steps 4]
                               [--paired-steps 11] [--batch-size 4] [--variants LIST] [--out FILE]

Every variant trains the same base model, LoRA config (r 64, alpha 16, rsLoRA, all linear layers), data
(the mini suite's train split: preference rows of varied lengths, given to TRL as conversations when the
model has a chat template, so both sides train on the same rendered tokens), batch size and precision; one
invocation runs everything on the same machine, one measurement after the other.

Three measurements, each where it is exact:
  * Standalone runs, one child process per variant, so its peak memory is its own: on CPU the rise of RSS
    above what was resident once the model's weights were read (sampled every 2 ms), on GPU
    `torch.cuda.max_memory_allocated`. Every variant reports its peak over the first `--memory-steps`
    steps (the same batches for all of ours; the length-grouped sampler puts the longest batch first);
    TRL and our dpo run `--steps` steps and also report their step time, the median after 3 warm-up steps.
    ipo and dpo-cached have no standalone run (`bench/variants.py` PAIRED_ONLY): ipo's step is dpo's, and
    dpo-cached's time against TRL is dpo's standalone step × its paired ratio.
  * A paired run, one child process holding all of our variants: for each of `--paired-steps` batches,
    every variant does one full step (forward, backward, optimiser) on that same batch, in rotating order.
    Separate processes minutes apart drift by ±10% on a shared machine (ipo, whose step is dpo's, measured
    1.11x dpo that way); pairing cancels the drift, so the InnerDPO/dpo time ratios are the medians of the
    per-batch ratios, after one warm-up batch (every variant's first call).
The `-cached` variants (`bench/variants.py`) read the reference from the reference-pass cache, built in each child
before training (in a workspace of this invocation's own, so the build is measured); the others run it live.
Issue 20's cache targets, including sweep times derived from these measurements, are in `bench/cache_targets.py`.
Ratios against the targets: dpo/TRL time (standalone) and memory, each InnerDPO variant / dpo time (paired)
and memory (first `--memory-steps` steps); the same for simper and the methods with options (`bench/variants.py`).

Model FLOPs: 6·N·T per step, N the base model's non-embedding parameters and T the tokens the step
actually runs (non-padding; a packed pair counts its prompt once): the LoRA policy's forward and backward
≈ 4·N·T (the frozen weights need no weight gradient), the reference forward 2·N·T. Reported as achieved
TFLOP/s for every timed variant, and as model FLOPs utilisation (MFU) against the accelerator's dense bf16
peak on a known GPU (H100, H200, A100) or `--peak-tflops`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.cache_targets import cache_ratios
from bench.common import write_record
from bench.variants import BESIDE_DPO, EXTRA_VARIANTS, OURS, PAIRED_ONLY, TIMED, VARIANTS, variant_config

WARMUP = 3
PAIRED_WARMUP = 1
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense, SXM parts (H100 PCIe: 756)


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


def _sync():
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _peak_mb(sampler: RssSampler, before: float) -> float:
    """GPU: the allocator's peak so far; CPU: how far RSS rose above `before`."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return max(sampler.peak, _rss_mb()) - before


def _step_recorder(memory_steps: int):
    from transformers import TrainerCallback

    class StepRecorder(TrainerCallback):
        """Step times, and the memory peak when `memory_steps` steps are done."""

        def __init__(self):
            self.times: list[float] = []
            self.peak_at_memory_steps: float | None = None
            self.sampler: RssSampler | None = None
            self.before = 0.0
            self._start = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            _sync()
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            _sync()
            self.times.append(time.perf_counter() - self._start)
            if len(self.times) == memory_steps and self.sampler is not None:
                self.peak_at_memory_steps = _peak_mb(self.sampler, self.before)

    return StepRecorder()


def non_embedding_parameters(model) -> int:
    """Parameters of the base model (no adapter) outside the input embedding (a tied LM head shares it)."""
    from innerdpo_bench.models.forward import model_parts, unwrap_causal_lm

    causal_lm = unwrap_causal_lm(model)
    embedding = {id(p) for p in model_parts(causal_lm)[2].parameters()}
    return sum(p.numel() for name, p in causal_lm.named_parameters() if id(p) not in embedding and "lora_" not in name)


def batch_tokens(batch: dict) -> int:
    """Tokens a batch runs: packed pairs (segment ids ≥ 0), else the attention mask's ones (ours padded, TRL)."""
    if "segment_ids" in batch:
        return int((batch["segment_ids"] >= 0).sum())
    return int(batch["attention_mask"].sum())


def peak_tflops(override: float | None) -> float | None:
    import torch

    if override:
        return override
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)
    return None


def model_flops(params: int, tokens: float) -> float:
    """6·N·T: LoRA forward + backward ≈ 4·N·T, reference forward 2·N·T."""
    return 6.0 * params * tokens


def _count_tokens(trainer) -> list[int]:
    """Wrap the trainer's collator so every collated batch's token count is recorded."""
    counts: list[int] = []
    collate = trainer.data_collator

    def counting(features):
        batch = collate(features)
        counts.append(batch_tokens(batch))
        return batch

    trainer.data_collator = counting
    return counts


def _common_args(steps: int, batch_size: int) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return dict(max_steps=steps, per_device_train_batch_size=batch_size, gradient_accumulation_steps=1,
                learning_rate=1e-5, logging_steps=10_000, save_strategy="no", report_to=[], use_cpu=not cuda,
                bf16=cuda, disable_tqdm=True, seed=0)


def _trl_trainer(variant: str, base: str, rows: list[dict], steps: int, batch_size: int, tmp: Path):
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    from innerdpo_bench.models import load_causal_lm, load_tokenizer

    model = load_causal_lm(base, dtype=torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    tokenizer = load_tokenizer(base)
    if tokenizer.chat_template:  # conversational rows: TRL renders them through the chat template, as we do
        rows = [{"prompt": [{"role": "user", "content": r["prompt"]}],
                 "chosen": [{"role": "assistant", "content": r["chosen"]}],
                 "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in rows]
    return DPOTrainer(
        # "trl-dpo": the same settings as ours (no gradient checkpointing); "trl-dpo-default": TRL's
        # defaults, which turn gradient checkpointing on (less memory, more time), for information.
        model=model, args=DPOConfig(output_dir=str(tmp / "trl"), beta=0.1, loss_type=["sigmoid"], max_length=512,
                                    gradient_checkpointing=variant == "trl-dpo-default",
                                    **_common_args(steps, batch_size)),
        train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
        peft_config=LoraConfig(r=64, lora_alpha=16, use_rslora=True, target_modules="all-linear", task_type="CAUSAL_LM"),
    )


def _our_trainer(variant: str, model_name: str, base: str, rows: list[dict], steps: int, batch_size: int, tmp: Path):
    from innerdpo_bench.train.trainer import build_trainer

    cfg = variant_config(variant, base_model=model_name, dataset="mini:train", max_steps=steps, batch_size=batch_size,
                         effective_batch=batch_size, output_dir=str(tmp / variant))
    return build_trainer(cfg, tmp / variant, base, rows, "mini:train").trainer


def _read_weights(trainer) -> None:
    """The weights are memory-mapped from the safetensors file and only become resident when first read,
    which would count the whole model (540 MB for SmolLM2 in fp32) as "training memory". Read every
    parameter first, so the baseline holds the model and the rise is what training adds."""
    import torch

    with torch.no_grad():
        for param in trainer.model.parameters():
            param.sum()


def run_variant(variant: str, model_name: str, steps: int, memory_steps: int, batch_size: int, tmp: Path) -> dict:
    """Train one variant standalone in this process and measure it."""
    import torch

    from innerdpo_bench.data.pairs import load_pairs
    from innerdpo_bench.models import resolve_base_model

    base = resolve_base_model(model_name)
    steps = steps if variant in TIMED else memory_steps
    rows = load_pairs("mini:train")[: steps * batch_size]
    if variant.startswith("trl-dpo"):
        trainer = _trl_trainer(variant, base, rows, steps, batch_size, tmp)
    else:
        trainer = _our_trainer(variant, model_name, base, rows, steps, batch_size, tmp)
    recorder = _step_recorder(memory_steps)
    trainer.add_callback(recorder)
    tokens = _count_tokens(trainer)
    params = non_embedding_parameters(trainer.model)
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    else:
        _read_weights(trainer)
    recorder.before = before = _rss_mb()
    with RssSampler() as sampler:
        recorder.sampler = sampler
        trainer.train()
    timed = recorder.times[WARMUP:]
    step_s = statistics.median(timed) if variant in TIMED and timed else None
    tokens_per_step = statistics.mean(tokens[:len(recorder.times)]) if tokens else None
    cache = getattr(trainer, "ref_cache", None)
    return {"variant": variant, "steps": len(recorder.times), "step_s": step_s, "steps_timed": len(timed),
            "ref_cache_build_s": cache.built_seconds if cache is not None else None,
            "tokens_per_step": tokens_per_step, "non_embedding_params": params,
            "model_tflops_per_s": (model_flops(params, tokens_per_step) / step_s / 1e12
                                   if step_s and tokens_per_step else None),
            "peak_mb": round(_peak_mb(sampler, before), 1),
            "peak_mb_memory_steps": round(recorder.peak_at_memory_steps or _peak_mb(sampler, before), 1),
            "rss_before_train_mb": round(before, 1),
            "process_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "device": "cuda" if cuda else "cpu"}


def run_paired(variants: list[str], model_name: str, steps: int, batch_size: int, tmp: Path) -> dict:
    """All of `variants` in this process: each batch gets one full step of every variant, in rotating order."""
    from innerdpo_bench.data.pairs import load_pairs
    from innerdpo_bench.models import resolve_base_model

    base = resolve_base_model(model_name)
    rows = load_pairs("mini:train")[: steps * batch_size]
    trainers = {v: _our_trainer(v, model_name, base, rows, steps, batch_size, tmp) for v in variants}
    for trainer in trainers.values():
        trainer.create_optimizer_and_scheduler(num_training_steps=steps)
        trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(), which this loop stands in for
        trainer.model.train()
    # The same collated batches for all; from a cached variant's loader if there is one, so they carry the
    # `ref_index` its cache needs (every cache here holds the same pairs in the same order; live variants ignore it).
    source = next((v for v in variants if trainers[v].ref_cache is not None), variants[0])
    batches = list(trainers[source].get_train_dataloader())[:steps]
    builds = {v: t.ref_cache.built_seconds for v, t in trainers.items() if t.ref_cache is not None}
    times: dict[str, list[float]] = {v: [] for v in variants}
    tokens = [batch_tokens(batch) for batch in batches]
    params = non_embedding_parameters(trainers[variants[0]].model)
    for index, batch in enumerate(batches):
        order = variants[index % len(variants):] + variants[:index % len(variants)]
        for variant in order:
            trainer = trainers[variant]
            inputs = trainer._prepare_inputs(batch)
            _sync()
            start = time.perf_counter()
            trainer.training_step(trainer.model, inputs)
            trainer.optimizer.step()
            trainer.lr_scheduler.step()
            trainer.model.zero_grad(set_to_none=True)
            _sync()
            times[variant].append(time.perf_counter() - start)
    return {"times_s": times, "warmup": PAIRED_WARMUP, "tokens": tokens, "non_embedding_params": params,
            "ref_cache_build_s": builds, "batches": len(batches)}


def _child(args: list[str]) -> dict | None:
    proc = subprocess.run([sys.executable, "-m", "bench.train_step", *args], capture_output=True, text=True)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    if proc.returncode != 0 or line is None:
        print(f"{' '.join(args)} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(line[len("RESULT "):])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=9, help=f"steps of the timed standalone runs; the first {WARMUP} are warm-up")
    parser.add_argument("--memory-steps", type=int, default=4, help="steps over which every variant's peak memory is taken")
    parser.add_argument("--paired-steps", type=int, default=11,
                        help=f"batches of the paired run; the first {PAIRED_WARMUP} are warm-up (0: skip it)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the device's peak TFLOP/s for MFU (default: known GPUs' dense bf16 peak; none on CPU)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma list of {', '.join(VARIANTS + EXTRA_VARIANTS)}")
    parser.add_argument("--paired-only", action="store_true",
                        help="skip the standalone runs (no TRL, memory or standalone times): the paired ratios only")
    parser.add_argument("--out", default="bench/results/train_step.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--paired-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import tempfile

    if args.worker or args.paired_worker:
        with tempfile.TemporaryDirectory() as tmp:
            if args.worker:
                result = run_variant(args.worker, args.model, args.steps, args.memory_steps, args.batch_size, Path(tmp))
            else:
                result = run_paired(args.paired_worker.split(","), args.model, args.paired_steps, args.batch_size, Path(tmp))
        print("RESULT " + json.dumps(result), flush=True)
        return

    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS + EXTRA_VARIANTS))
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}")
    paired_variants = [v for v in OURS if v in variants]
    runs_paired = args.paired_steps > PAIRED_WARMUP and "dpo" in paired_variants and len(paired_variants) > 1
    paired_only = [v for v in variants if v in PAIRED_ONLY]
    if paired_only and not runs_paired:
        parser.error(f"{', '.join(paired_only)} run only in the paired run, which needs dpo among --variants and "
                     f"--paired-steps above {PAIRED_WARMUP}")
    shared = ["--model", args.model, "--batch-size", str(args.batch_size)]
    peak = peak_tflops(args.peak_tflops)
    # The children keep their reference caches in a workspace of this invocation's own, so every cached variant
    # measures its build (refcache.cache_root reads INNERDPO_HOME).
    cache_home = tempfile.TemporaryDirectory(prefix="bench-refcache-")
    os.environ["INNERDPO_HOME"] = cache_home.name
    results = {}
    for variant in [] if args.paired_only else [v for v in variants if v not in PAIRED_ONLY]:
        result = _child(["--worker", variant, "--steps", str(args.steps), "--memory-steps", str(args.memory_steps)] + shared)
        if result is None:
            continue
        results[variant] = result
        step = f"{result['step_s'] * 1000:9.1f} ms/step" if result["step_s"] else f"{'':17s}"
        if result["model_tflops_per_s"]:
            step += f" {result['model_tflops_per_s']:6.2f} TFLOP/s"
            if peak is not None:
                result["mfu"] = result["model_tflops_per_s"] / peak
                step += f" MFU {result['mfu']:.1%}"
        print(f"{variant:20s} {step}  peak {result['peak_mb_memory_steps']:8.1f} MB over {args.memory_steps} steps"
              + (f", {result['peak_mb']:8.1f} MB over {result['steps']}" if result["steps"] != args.memory_steps else "")
              + (f"; cache built in {result['ref_cache_build_s']:.2f}s" if result.get("ref_cache_build_s") else ""),
              flush=True)

    paired = None
    if runs_paired:
        paired = _child(["--paired-worker", ",".join(paired_variants), "--paired-steps", str(args.paired_steps)] + shared)
    paired_summary = {}
    if paired is not None:
        times = {v: t[PAIRED_WARMUP:] for v, t in paired["times_s"].items()}
        flops = [model_flops(paired["non_embedding_params"], n) for n in paired["tokens"][PAIRED_WARMUP:]]
        print(f"\npaired run, {len(times['dpo'])} batches after {PAIRED_WARMUP} warm-up, every variant on each batch:")
        for variant, t in times.items():
            ratio = statistics.median(a / b for a, b in zip(t, times["dpo"]))
            achieved = sum(flops) / sum(t) / 1e12
            paired_summary[variant] = {"step_s": statistics.median(t), "per_batch_ratio_to_dpo": ratio,
                                       "model_tflops_per_s": achieved,
                                       "mfu": achieved / peak if peak is not None else None}
            mfu = f" MFU {achieved / peak:.1%}" if peak is not None else ""
            print(f"{variant:20s} {statistics.median(t) * 1000:9.1f} ms/step  {ratio:6.3f}x dpo (median per-batch ratio)"
                  f"  {achieved:6.2f} TFLOP/s{mfu}")

    ratios = {}

    def add(name: str, value: float | None, limit: float):
        if value is not None:
            ratios[name] = {"value": round(value, 3), "target": limit, "met": value <= limit}

    if "dpo" in results and "trl-dpo" in results:
        add("dpo/trl time", results["dpo"]["step_s"] / results["trl-dpo"]["step_s"], 0.75)
        add("dpo/trl memory", results["dpo"]["peak_mb"] / results["trl-dpo"]["peak_mb"], 0.60)
    if "dpo-gc" in results and "trl-dpo-default" in results:  # both with gradient checkpointing
        add("dpo-gc/trl-default time", results["dpo-gc"]["step_s"] / results["trl-dpo-default"]["step_s"], 0.75)
        add("dpo-gc/trl-default memory", results["dpo-gc"]["peak_mb"] / results["trl-dpo-default"]["peak_mb"], 0.60)
    for name in BESIDE_DPO:
        if name in paired_summary:
            add(f"{name}/dpo time", paired_summary[name]["per_batch_ratio_to_dpo"], 1.10)
        if name in results and "dpo" in results:
            add(f"{name}/dpo memory", results[name]["peak_mb_memory_steps"] / results["dpo"]["peak_mb_memory_steps"], 1.10)
    ratios.update(cache_ratios(results, paired_summary, paired))
    print(f"\n{'ratio':48s} {'value':>7s} {'target':>7s}")
    for name, r in ratios.items():
        print(f"{name:48s} {r['value']:7.3f} {'<= ' + str(r['target']):>7s} {'ok' if r['met'] else 'MISSED'}")
    cache_home.cleanup()
    write_record(args.out, "bench.train_step", {
        "model": args.model, "steps": args.steps, "peak_tflops": peak, "memory_steps": args.memory_steps,
        "paired_steps": args.paired_steps, "batch_size": args.batch_size, "results": results,
        "paired": {"summary": paired_summary, **(paired or {})}, "ratios": ratios},
        argv, ("torch", "transformers", "peft", "trl"))


if __name__ == "__main__":
    main()
