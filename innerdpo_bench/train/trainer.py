"""Train one LoRA adapter with DPO, IPO or InnerDPO on transformers' Trainer, writing a run directory.

Reads top to bottom like the recipe: resolve config → load rows → model + LoRA (+ transform) →
encode → Trainer with our `compute_loss` → save adapter, transform and status. Because it is
`Trainer`, `accelerate launch -m innerdpo_bench train ...` runs it data-parallel on several GPUs
(only rank 0 writes the run directory).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from transformers import Trainer, TrainingArguments
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from innerdpo_bench import files, rundir, runstate
from innerdpo_bench.config import TrainConfig
from innerdpo_bench.config.naming import display_name
from innerdpo_bench.config.trackers import parse_report_to
from innerdpo_bench.data.encode import PackedPairCollator, PairCollator, encode_pairs
from innerdpo_bench.data.pairs import duplicate_rows, load_pairs, parse_dataset
from innerdpo_bench.errors import RunFailed, UserError
from innerdpo_bench.methods.innerdpo import LossConfig, SideOutputs, preference_loss
from innerdpo_bench.methods.layers import resolve_layers
from innerdpo_bench.methods.learned_sign import LearnedSign
from innerdpo_bench.methods.pooling import completion_pool
from innerdpo_bench.methods.transforms import build_transform, transform_state
from innerdpo_bench.models import load_causal_lm, load_tokenizer, resolve_base_model
from innerdpo_bench.models.forward import forward_pass, model_parts, unwrap_causal_lm
from innerdpo_bench.runlog import attach_file_log, detach_file_log, installed_versions
from innerdpo_bench.train import resume, trackers
from innerdpo_bench.train.callbacks import RunFilesCallback, attach_trackers, curve_every, progress_callback
from innerdpo_bench.train.refcache import BUILD_BATCH_FACTOR, ReferenceCache, cached_spec, reference_cache
from innerdpo_bench.train.validation import EarlyStopping, attach_early_stopping, split_rows

log = logging.getLogger("innerdpo_bench")
TRANSFORM_MODULE = "innerdpo_transform"
LEARNED_SIGN_MODULE = "innerdpo_learned_sign"


class PreferenceTrainer(Trainer):
    """Trainer whose loss is the preference objective on one forward over the batch of pairs per model state.

    The reference is the same network with the adapter disabled, run under `no_grad` first; the
    transform is applied after both forwards, so its parameters get gradient through both paths.
    `learned_sign` (the `learned_sign` align method's θ) trains in an optimiser group of its own.

    Trainable parameters outside the PEFT layers (transform, learned signs) are attached to the model
    (`attach_outside_parameters`): `model.zero_grad()` resets them every step and clipping covers them.
    """

    def __init__(self, *args, loss_config: LossConfig, layers: list[int], transform=None,
                 norm_before_pool: bool = True, filter_sinks: bool = False,
                 learned_sign: LearnedSign | None = None, learned_sign_lr: float = 1e-2,
                 resumable: resume.Resumable | None = None, ref_cache: ReferenceCache | None = None,
                 **kwargs):
        super().__init__(*args, **kwargs)
        self.ref_cache = ref_cache  # batches with a `ref_index` read the reference from it (refcache.py)
        self.loss_config = loss_config
        self.layers = layers
        self.transform = transform
        self.learned_sign = learned_sign.to(self.args.device) if learned_sign is not None else None
        self.learned_sign_lr = learned_sign_lr
        self.norm_before_pool, self.filter_sinks = norm_before_pool, filter_sinks
        self.resumable = resumable
        self.model_accepts_loss_kwargs = False  # our loss is a mean: let Trainer divide by accumulation steps
        self._metric_sums: dict[str, float] = defaultdict(float)
        self._metric_count = 0

    def _pooled(self, result) -> torch.Tensor | None:
        if self.transform is None:
            return None
        if all(h.dim() == 2 for h in result.hidden.values()):  # pooled in the hook already
            pooled = result.hidden
        else:
            pooled = self.transform.pool(result.hidden, result.mask, result.last_index, self.norm_before_pool,
                                         self.filter_sinks)
        return torch.stack([pooled[layer] for layer in self.transform.output_layers])  # [layers, 2B, hidden]

    def objective(self, model, inputs):
        """(loss, metrics, policy forward) of one batch: the reference pass, the policy pass, `preference_loss`."""
        peft_model = self.accelerator.unwrap_model(model)
        in_hook = None
        if self.transform is not None and self.transform.pools_raw_states:
            in_hook = lambda h, mask: completion_pool(h, mask, self.norm_before_pool, self.filter_sinks)  # noqa: E731
        if self.ref_cache is not None and "ref_index" in inputs:
            reference = SideOutputs(*self.ref_cache.lookup(inputs["ref_index"], inputs["input_ids"].device))
        else:
            # The reference runs on the unwrapped model: it needs no gradient sync, and a second call through
            # DDP's forward in the same step would confuse its reducer.
            with torch.no_grad(), peft_model.disable_adapter():
                ref = forward_pass(peft_model, inputs, self.layers, pool=in_hook)
            reference = SideOutputs(ref.logp_sum, ref.n_tokens, self._pooled(ref))
        policy = forward_pass(model, inputs, self.layers, wpo=self.loss_config.wpo)
        loss, metrics = preference_loss(
            SideOutputs(policy.logp_sum, policy.n_tokens, self._pooled(policy), policy.wpo_sum),
            reference,
            self.loss_config,
            self.learned_sign.signs() if self.learned_sign is not None else None,
        )
        return loss, metrics, policy

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss, metrics, policy = self.objective(model, inputs)
        if not torch.isfinite(loss):
            raise RunFailed(f"loss became {loss.item()} at step {self.state.global_step + 1}; "
                            "try a lower --learning-rate or --alpha")
        for key, value in metrics.items():
            if key != "loss":
                self._metric_sums[key] += value
        self._metric_count += 1
        return (loss, policy) if return_outputs else loss

    def evaluate_pairs(self, batches) -> dict[str, float]:
        """The objective and the pair accuracies over held-out batches, averaged per pair, under `no_grad`."""
        was_training = self.model.training
        self.model.eval()
        sums, pairs = defaultdict(float), 0
        with torch.no_grad():
            for batch in batches:
                loss, metrics, _ = self.objective(self.model, self._prepare_inputs(batch))
                n = batch["completion_mask"].shape[0] // 2  # both layouts have a chosen and a rejected row per pair
                for key, value in (("loss", loss.item()), ("reward_acc", metrics["reward_acc"]),
                                   ("pref_acc", metrics["pref_acc"])):
                    sums[key] += value * n
                pairs += n
        self.model.train(was_training)
        return {f"eval_{key}": value / pairs for key, value in sums.items()}

    def _get_train_sampler(self, train_dataset=None):
        """Trainer's sampler, wrapped so a checkpoint records the epoch's order and a resumed run replays it
        (`resume.ReplaySampler`)."""
        sampler = super()._get_train_sampler(train_dataset)
        if sampler is None or self.resumable is None:
            return sampler
        self.resumable.sampler = resume.ReplaySampler(sampler, self.resumable.replay)
        return self.resumable.sampler

    def create_optimizer(self, model=None):
        """Trainer's AdamW over the model (adapter and transform), the learned signs moved to a group of their own
        (their learning rate, no weight decay)."""
        optimizer = super().create_optimizer(model)
        if self.learned_sign is not None and not any(
                group.get("name") == "learned_sign" for group in optimizer.param_groups):
            signs = list(self.learned_sign.parameters())
            for group in optimizer.param_groups:  # the Trainer put them in its decay group: no state exists yet
                group["params"] = [p for p in group["params"] if all(p is not sign for sign in signs)]
            optimizer.add_param_group({"params": signs, "lr": self.learned_sign_lr, "weight_decay": 0.0,
                                       "name": "learned_sign"})
        return optimizer

    def training_step(self, model, inputs, num_items_in_batch=None):
        """The usual step, then average the gradients that live outside DDP (transform, learned signs) across ranks."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.accelerator.num_processes > 1:
            for module in (self.transform, self.learned_sign):
                for param in module.parameters() if module is not None else ():
                    if param.grad is not None:
                        dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
                        param.grad /= self.accelerator.num_processes
        return loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the averaged preference metrics (over ranks too) to each training log record."""
        if "loss" in logs and self._metric_count:
            names = sorted(self._metric_sums)
            values = torch.tensor([self._metric_sums[n] / self._metric_count for n in names], device=self.args.device)
            if self.accelerator.num_processes > 1:
                values = self.accelerator.reduce(values, reduction="mean")
            logs.update(dict(zip(names, values.tolist())))
            self._metric_sums.clear()
            self._metric_count = 0
        super().log(logs, start_time)


def default_output_dir(cfg: TrainConfig) -> Path:
    dataset = cfg.dataset.replace("/", "_").replace(":", "_").replace("#", "_")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.canonical_method}-{Path(dataset).stem}-s{cfg.seed}-{stamp}"


def _use_cuda(cfg: TrainConfig) -> bool:
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda requested but no CUDA device is available")
    return cfg.device != "cpu" and torch.cuda.is_available()


def build_lora_model(base_path: str, cfg: TrainConfig, dtype: torch.dtype):
    from peft import LoraConfig, get_peft_model

    model = load_causal_lm(base_path, dtype=dtype)
    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, use_rslora=True,
                      target_modules="all-linear", task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def attach_outside_parameters(model, modules: dict[str, torch.nn.Module | None]) -> None:
    """Attach each module that has parameters (the transform, the learned signs) to the model under its name, so the
    Trainer's optimiser, `model.zero_grad()` and gradient clipping treat its parameters as the model's. They are used
    outside the model's forward (on the policy and the reference path), which DDP's reducer cannot track: they are
    excluded from DDP (one call naming all of them; a second call would replace the first) and their gradients
    averaged by `PreferenceTrainer.training_step` instead."""
    ignored = []
    for name, module in modules.items():
        if module is None or not any(True for _ in module.parameters()):
            continue
        model.add_module(name, module)
        ignored += [f"{name}.{key}" for key, _ in (*module.named_parameters(), *module.named_buffers())]
    if ignored:
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, ignored)


@dataclass
class Prepared:
    """Everything `train` needs after set-up; tests use it to inspect the model and transform."""

    trainer: PreferenceTrainer
    transform: object | None
    config: dict
    files: RunFilesCallback
    learned_sign: LearnedSign | None = None
    early_stopping: EarlyStopping | None = None
    resumable: resume.Resumable | None = None


def build_trainer(cfg: TrainConfig, run_dir: Path, base_path: str, rows: list[dict], dataset_desc: str,
                  progress: bool = False, eval_rows: list[dict] | None = None,
                  checkpoint: Path | None = None) -> Prepared:
    """Model + LoRA (+ transform), encoded data, and the PreferenceTrainer for one run; with `eval_rows`, early
    stopping on their loss (`validation.py`); with `checkpoint`, our part of its state restored (`resume.py`;
    `Trainer.train(resume_from_checkpoint=...)` restores the rest)."""
    from datasets import Dataset
    from transformers import set_seed

    world = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun / accelerate launch
    use_cuda = _use_cuda(cfg)
    bf16 = cfg.precision == "bf16" or (cfg.precision == "auto" and use_cuda)
    set_seed(cfg.seed)
    tokenizer = load_tokenizer(base_path)
    model = build_lora_model(base_path, cfg, torch.bfloat16 if bf16 else torch.float32)
    causal_lm = unwrap_causal_lm(model)
    _, blocks, _, head = model_parts(causal_lm)

    layers: list[int] = []
    transform = None
    if cfg.transform is not None:
        layers, note = resolve_layers(cfg.layers, len(blocks))
        if note:
            log.warning(note)
        transform = build_transform(cfg.transform, layers, causal_lm.config.hidden_size, head.weight,
                                    ether_blocks=cfg.ether_blocks, ether_reduction=cfg.ether_reduction,
                                    ether_type=cfg.ether_type, supr_tau=cfg.supr_tau, seed=cfg.seed)
    learned_sign = None
    if transform is not None and cfg.align_method == "learned_sign":
        learned_sign = LearnedSign(transform.output_layers, causal_lm.config.hidden_size)
    attach_outside_parameters(model, {TRANSFORM_MODULE: transform, LEARNED_SIGN_MODULE: learned_sign})

    encoded, stats = encode_pairs(tokenizer, rows, cfg.max_prompt_length, cfg.max_length)
    if not encoded:
        raise UserError(f"dataset {dataset_desc}: every row's completion is empty after truncation")
    log.info("rendering: %s", "chat template" if stats.chat_template else "plain text + EOS (no chat template)")
    log.info("rows: %d kept, %d prompts truncated, %d completions truncated, %d dropped (empty completion)",
             stats.rows, stats.prompt_truncated, stats.completion_truncated, stats.dropped_empty)
    if stats.dropped_empty:
        log.warning("dropped %d rows whose completion is empty after truncation", stats.dropped_empty)
    if duplicates := duplicate_rows(rows):  # kept: a repeated pair trains as often as it appears
        log.warning("%d duplicate rows in %s", duplicates, dataset_desc)

    accumulation = max(1, cfg.effective_batch // (cfg.batch_size * world))
    report_to = parse_report_to(cfg.report_to)
    save_steps = cfg.resolved_save_steps
    name = display_name(cfg)
    resolved = {
        **cfg.to_dict(),
        "method": cfg.canonical_method,
        "display_name": name,
        "base_model_path": base_path,
        "dataset_ref": dataset_desc,
        "n_rows": len(rows),
        "n_rows_kept": stats.rows,
        "n_eval_rows": len(eval_rows or []),
        "output_loss": cfg.resolved_output_loss,
        "transform": cfg.transform,
        "layers_resolved": layers,
        "transform_output_layers": list(transform.output_layers) if transform is not None else [],
        "chat_template": stats.chat_template,
        "gradient_accumulation_steps": accumulation,
        "save_steps_resolved": save_steps,
        "world_size": world,
        "precision_resolved": "bf16" if bf16 else "fp32",
        "versions": installed_versions("torch", "transformers", "peft", python=True),
        "output_dir": str(run_dir),
    }
    args = TrainingArguments(
        output_dir=str(resume.checkpoints_dir(run_dir)),
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=accumulation,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=math.ceil(cfg.warmup_ratio * cfg.max_steps),
        weight_decay=cfg.weight_decay,
        max_grad_norm=cfg.max_grad_norm,
        # non-reentrant: works with frozen embeddings, and the hidden-state hooks run again on recompute
        gradient_checkpointing=cfg.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if cfg.gradient_checkpointing else None,
        logging_steps=curve_every(cfg.max_steps, cfg.logging_steps),   # a curve point per step (up to a cap)
        logging_first_step=True,
        save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500,
        save_total_limit=None,  # resume.rotate keeps --save-total-limit, once the newer checkpoint is whole
        report_to=report_to,
        run_name=name,
        remove_unused_columns=False,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=bf16,
        use_cpu=not use_cuda,
        train_sampling_strategy="group_by_length",
        length_column_name="length",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    resumable = resume.Resumable(transform, learned_sign)
    run_files = RunFilesCallback(run_dir, clock=resumable.clock, log_every=cfg.logging_steps)
    callbacks = [run_files, resume.CheckpointCallback(run_dir, resumable, cfg.save_total_limit)]
    callbacks += [progress_callback(name)] if progress else []
    collator = (PackedPairCollator if cfg.pack_prompt else PairCollator)(tokenizer.pad_token_id)
    held_out = encode_pairs(tokenizer, eval_rows, cfg.max_prompt_length, cfg.max_length)[0] if eval_rows else []
    spec, why_not = cached_spec(cfg, transform, layers, causal_lm.dtype)
    ref_cache = None
    if spec is None:
        log.info(why_not)
    else:  # built on the training device (Trainer would move the model there next)
        ref_cache = reference_cache(model.to(args.device), base_path, spec, transform, encoded + held_out, collator,
                                    cfg.batch_size * BUILD_BATCH_FACTOR, args.device, cfg.ref_cache,
                                    cfg.max_steps * cfg.effective_batch)
    if ref_cache is not None:
        resolved["ref_cache_key"] = ref_cache.key
        collator = ref_cache.collator(collator)
    trainer = PreferenceTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(encoded), data_collator=collator, callbacks=callbacks,
        loss_config=cfg.loss, layers=layers, transform=transform,
        norm_before_pool=cfg.norm_before_pool, filter_sinks=cfg.filter_sinks,
        learned_sign=learned_sign, learned_sign_lr=cfg.learned_sign_lr, resumable=resumable,
        ref_cache=ref_cache,
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    early = None
    if eval_rows:
        if not held_out:
            raise UserError(f"dataset {dataset_desc}: every held-out row's completion is empty after truncation")
        early = attach_early_stopping(trainer, held_out, collator, cfg.batch_size, cfg.eval_steps, cfg.patience)
    resumable.early = early
    if checkpoint is not None:
        run_files.resumed_from = resumable.load(checkpoint, cfg.max_steps)
    attach_trackers(trainer, report_to, run_dir, resolved, resumable.resumed_from)
    return Prepared(trainer, transform, resolved, run_files, trainer.learned_sign, early, resumable)


def train(cfg: TrainConfig, progress: bool = True, resume_run: bool = False) -> Path:
    """Train one adapter and return its run directory (status `complete`), or raise.

    Interruption (Ctrl-C, SIGTERM turned into KeyboardInterrupt by the CLI) marks the directory
    `interrupted`; any other failure marks it `failed` with the error, and re-raises. Under
    torchrun/accelerate only rank 0 writes the directory.

    `resume_run` (`innerdpo train --resume`): an existing run directory trained with the same options continues
    from its newest intact checkpoint (`resume.start_attempt`; from step 0 without one), a complete one is
    returned as it is; a missing or empty one starts afresh. Under torchrun every rank picks the same checkpoint.

    `cfg` has been validated where it came in (`innerdpo train`, `queue add`; `TrainConfig.validate`).
    """
    trackers.require_installed(parse_report_to(cfg.report_to))
    base_path = resolve_base_model(cfg.base_model)
    dataset_ref = parse_dataset(cfg.dataset)
    rows, eval_rows = split_rows(load_pairs(dataset_ref, cfg.max_rows), cfg.eval_fraction, cfg.seed)

    rank = int(os.environ.get("RANK", "0"))
    run_dir = Path(cfg.output_dir) if cfg.output_dir else default_output_dir(cfg)
    handler = None
    resuming = resume.open_attempt(run_dir, cfg, resume_run, rank)
    if resuming is None:
        return run_dir  # complete already
    if rank == 0:
        handler = attach_file_log(run_dir / rundir.TRAIN_LOG)
    started = time.time()
    try:
        checkpoint = (resume.start_attempt(run_dir) if rank == 0 else resume.pick_checkpoint(run_dir)) if resuming else None
        prepared = build_trainer(cfg, run_dir, base_path, rows, dataset_ref.describe(), progress, eval_rows,
                                 checkpoint)
        trainer = prepared.trainer
        if rank == 0:
            rundir.write_json(run_dir / rundir.CONFIG, prepared.config)
            if resuming:
                rundir.write_status(run_dir, "running", resumed_from_step=prepared.resumable.resumed_from)
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint is not None else None)
        if trainer.is_world_process_zero():
            adapter_tmp = run_dir / (rundir.ADAPTER + ".tmp")
            trainer.accelerator.unwrap_model(trainer.model).save_pretrained(str(adapter_tmp))
            files.share_modes(adapter_tmp)
            adapter_tmp.rename(run_dir / rundir.ADAPTER)
            if prepared.transform is not None:
                runstate.save_transform(run_dir, *transform_state(prepared.transform))
            if prepared.learned_sign is not None:
                runstate.save_learned_sign(run_dir, prepared.learned_sign.layers, prepared.learned_sign.logits)
            shutil.rmtree(resume.checkpoints_dir(run_dir), ignore_errors=True)  # the adapter is the result now
            files.share_modes(run_dir)  # safetensors' save_file writes 0600 (transform, learned sign)
            seconds = time.time() - started
            runtime = prepared.files.summary.get("train_runtime", seconds)
            early = prepared.early_stopping.summary() if prepared.early_stopping is not None else {}
            rundir.write_status(run_dir, "complete", finished=rundir.now_iso(), seconds=round(seconds, 2),
                                train_runtime=runtime, steps=trainer.state.global_step,
                                seconds_per_step=round(runtime / max(1, trainer.state.global_step
                                                                     - prepared.resumable.resumed_from), 4), **early)
            log.info("finished in %.1fs", seconds)
        return run_dir
    except KeyboardInterrupt:
        if rank == 0:
            rundir.write_status(run_dir, "interrupted", error="interrupted before the run finished")
        raise
    except BaseException as err:
        if rank == 0:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            try:
                rundir.write_status(run_dir, "failed", error=reason)
            except OSError as status_error:   # a full disk: the error that got us here is the one to report
                log.error("cannot mark %s failed (%s)", run_dir / rundir.STATUS, status_error.strerror or status_error)
            log.error("run failed: %s", reason)
        raise
    finally:
        detach_file_log(handler)
