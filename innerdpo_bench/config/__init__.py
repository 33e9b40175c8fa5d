"""Training configuration: one dataclass whose fields carry their help text; the CLI is built from it."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from innerdpo_bench.config.trackers import parse_report_to
from innerdpo_bench.errors import UserError, did_you_mean, unknown_choice
from innerdpo_bench.methods.catalog import ALIGN_METHODS, ETHER_TYPES, OUTPUT_LOSS_NAMES, WPO_FORMS, resolve_method
from innerdpo_bench.methods.layers import DEFAULT_LAYERS, check_layer_spec

DEFAULT_BASE_MODEL = "wassname/llama-3.2-3b-sft"
# Options that change where a run logs and how often it checkpoints, never what it trains: they may differ
# between the attempts of one run (`resume.check_same_run`), and runs that differ only in them are the same run.
BOOKKEEPING = frozenset({"output_dir", "report_to", "save_steps", "save_total_limit", "ref_cache"})


def opt(default, help: str, group: str = "Training"):
    """A config field with CLI help; `group` is the --help panel it appears in."""
    return field(default=default, metadata={"help": help, "group": group})


@dataclass
class TrainConfig:
    method: str = opt("dpo", "dpo | ipo | simper | hs-none-InnerDPO | hs-ether-InnerDPO | hs-supr-InnerDPO", "Run")
    base_model: str = opt(DEFAULT_BASE_MODEL, "Hub id, local model directory, or a built-in: tiny-random, smollm2-135m.", "Run")
    dataset: str = opt("alpaca_easy", "GENIES name, HUB_ID[:config][#split], a .json/.jsonl/.parquet file, or mini:SPLIT.", "Run")
    max_rows: int | None = opt(None, "Use only the first N training rows.", "Run")
    seed: int = opt(0, "Fixes data order, LoRA init, transform init and the ETHER projection.", "Run")
    output_dir: str | None = opt(None, "Run directory (default: runs/<method>-<dataset>-s<seed>-<time>).", "Run")

    max_steps: int = opt(500, "Optimiser steps (default 500 x effective batch 16 = 8,000 pairs, the spec's budget).")
    learning_rate: float = opt(1e-5, "AdamW learning rate (cosine schedule, linear warm-up).")
    warmup_ratio: float = opt(0.1, "Fraction of steps spent warming up linearly.")
    weight_decay: float = opt(0.001, "AdamW weight decay.")
    max_grad_norm: float = opt(10.0, "Gradient clipping norm.")
    batch_size: int = opt(4, "Pairs per device per forward pass.")
    effective_batch: int = opt(16, "Pairs per optimiser step; gradient accumulation fills it.")
    max_prompt_length: int = opt(450, "Prompt tokens kept (truncated from the left).")
    max_length: int = opt(512, "Prompt + completion tokens kept (completion truncated on the right).")
    pack_prompt: bool = opt(True, "Run a pair as one sequence, prompt once then chosen then rejected, with a block "
                            "attention mask (same numbers, fewer tokens); off: two padded rows per pair.")
    gradient_checkpointing: bool = opt(False, "Recompute each block's activations during backward instead of keeping "
                                       "them: much less memory, about a third more time per step.")
    lora_r: int = opt(64, "LoRA rank (all linear layers, rsLoRA).", "Adapter")
    lora_alpha: int = opt(16, "LoRA alpha.", "Adapter")
    lora_dropout: float = opt(0.0, "LoRA dropout.", "Adapter")
    precision: str = opt("auto", "auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16.")
    logging_steps: int = opt(10, "Write metrics.jsonl every N steps.")
    eval_fraction: float = opt(0.0, "Hold out this fraction of the training rows for validation (0 = off): the loss on "
                               "them every --eval-steps steps goes to metrics.jsonl, the adapter with the lowest one is "
                               "saved, and training stops after --patience evaluations without improvement.")
    eval_steps: int = opt(50, "Optimiser steps between validation evaluations (with --eval-fraction).")
    patience: int = opt(3, "Early stop after this many validation evaluations without a lower loss (spec §10: 3; "
                        "0 = never stop early, still save the best).")
    device: str = opt("auto", "auto | cpu | cuda.")
    save_steps: int | None = opt(None, "Write a resumable checkpoint (adapter, optimiser, scheduler, RNG, transform, "
                                 "sample order) to RUN/checkpoints every N steps; `innerdpo train --resume` continues "
                                 "from the newest. Default: 10% of --max-steps rounded up to a multiple of "
                                 "--logging-steps; 0 = off. A completed run deletes its checkpoints.", "Checkpoints")
    save_total_limit: int = opt(1, "Checkpoints kept, newest first (2 or more: a corrupt newest falls back to the "
                                "one before).", "Checkpoints")
    report_to: str = opt("none", "Experiment trackers, comma-separated: none | tensorboard (event files in "
                         "RUN/tensorboard) | wandb | mlflow | comet_ml | ... (transformers' names; each an optional "
                         "install, e.g. pip install 'innerdpo-bench[tensorboard]').", "Checkpoints")
    ref_cache: str = opt("auto", "Reference-pass cache: the frozen reference's log-probs (and, for hs-none/hs-supr, "
                         "pooled states) computed once before training and reused by every later run with the same "
                         "base, data and settings, so training runs no reference forward (hs-ether keeps the live "
                         "pass). auto: reuse one, build one when the run sees at least one epoch | on: always build | "
                         "off. `innerdpo cache ls|clear` shows and frees them.")

    beta: float = opt(0.1, "β of the output loss.", "Loss")
    logp_agg: str = opt("mean", "mean | sum of completion-token log-probs. mean (default, every method) makes "
                        "InnerDPO with α=0 equal dpo exactly; sum is the DPO paper's form.", "Loss")
    label_smoothing: float = opt(0.0, "cDPO label smoothing ε (dpo output term only).", "Loss")
    output_loss: str | None = opt(None, "Output-term family for InnerDPO: dpo | ipo | simper (the hidden term uses "
                                  "the same; simper has no β and needs --logp-agg mean). Implied by dpo/ipo/simper.", "Loss")
    nll_weight: float = opt(0.0, "Weight of an SFT term: mean per-token NLL of the chosen completion.", "Loss")
    wpo: bool = opt(False, "WPO weighting (Zhou et al. 2024): each pair's preference loss times a weight from lw, the "
                    "mean over its tokens of log p(y_t) - log sum_v p(v)^2; the form is --wpo-form.", "Loss")
    wpo_form: str = opt("reference", "reference (default): sigmoid((lw_c + lw_r)/3) over its batch mean, mean weight 1 "
                        "so the loss scale and learning rate keep their meaning | paper: exp(lw_c + lw_r), as TRL's "
                        "use_weighting (unnormalised: also scales the loss down).", "Loss")

    alpha: float = opt(0.25, "α, weight of the hidden-state term (InnerDPO).", "InnerDPO")
    beta_h: float = opt(1.0, "β of the hidden-state term.", "InnerDPO")
    align_method: str = opt("para_signed", "How the policy's hidden-state difference is scored; see `innerdpo methods`.", "InnerDPO")
    layers: str = opt(DEFAULT_LAYERS, "Hidden states read: comma list or range(a,b[,step]); negatives count from "
                      "the block count, fractions in (0,1) scale it.", "InnerDPO")
    layer_reduce: str = opt("loss", "loss: mean of per-layer losses | score: mean score, then one loss.", "InnerDPO")
    trust_region: float = opt(0.0, "Clamp align scores to [-T, T] before the loss (0 = off).", "InnerDPO")
    trust_region_form: str = opt("both", "both: clamp to [-T, T] | top: min(g, T), the later reference's default | "
                                 "bottom: max(g, T), the reference's clamp_bottom (no gradient below T).", "InnerDPO")
    norm_p: int = opt(1, "Norm for magnitudes in align methods: 1 | 2.", "InnerDPO")
    topk_dims: int = opt(100, "pars_rat_topk: coordinates of the reference preference kept (at most hidden/4).", "InnerDPO")
    learned_sign_lr: float = opt(1e-2, "learned_sign: learning rate of the sign logits (their own AdamW group, no "
                                 "weight decay; at the adapter's rate a sign could not flip within a run).", "InnerDPO")
    norm_before_pool: bool = opt(True, "Unit-normalise token states before the masked mean.", "InnerDPO")
    filter_sinks: bool = opt(False, "Drop tokens whose state norm exceeds mean + 1 std before pooling.", "InnerDPO")
    ether_type: str = opt("ether", "ether | etherplus | oft (hs-ether-InnerDPO).", "InnerDPO")
    ether_blocks: int = opt(2, "ETHER block count (must divide the hidden size).", "InnerDPO")
    ether_reduction: int = opt(60, "ETHER low-rank reduction r: rank = hidden // r.", "InnerDPO")
    supr_tau: float = opt(0.1, "SupressedHS mask threshold τ.", "InnerDPO")

    # ------------------------------------------------------------------ derived
    @property
    def canonical_method(self) -> str:
        return resolve_method(self.method).name

    @property
    def transform(self) -> str | None:
        return resolve_method(self.method).transform

    @property
    def resolved_output_loss(self) -> str:
        method = resolve_method(self.method)
        return self.output_loss or method.output_loss

    def validate(self) -> "TrainConfig":
        """Check every choice and bound; raise UserError naming the flag. Returns self."""
        method = resolve_method(self.method)
        if self.output_loss is not None:
            if self.output_loss not in OUTPUT_LOSS_NAMES:
                raise unknown_choice("--output-loss", self.output_loss, OUTPUT_LOSS_NAMES)
            if not method.has_hidden_term and self.output_loss != method.output_loss:
                raise UserError(f"--output-loss {self.output_loss} contradicts method {method.name}; use method {self.output_loss}")
        if self.resolved_output_loss == "simper" and self.logp_agg != "mean":
            raise UserError("SimPER is defined on per-token mean log-probs (inverse perplexities): use --logp-agg mean")
        if self.align_method not in ALIGN_METHODS:
            raise unknown_choice("--align-method", self.align_method, ALIGN_METHODS)
        choices = {"logp_agg": ("mean", "sum"), "layer_reduce": ("loss", "score"), "ether_type": ETHER_TYPES,
                   "trust_region_form": ("both", "top", "bottom"), "wpo_form": WPO_FORMS,
                   "precision": ("auto", "fp32", "bf16"), "device": ("auto", "cpu", "cuda"),
                   "ref_cache": ("auto", "on", "off")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise unknown_choice(flag_name(name), getattr(self, name), allowed)
        if self.norm_p not in (1, 2):
            raise UserError(f"--norm-p must be 1 or 2, got {self.norm_p}")
        positive = ("max_steps", "batch_size", "effective_batch", "max_length", "max_prompt_length", "lora_r", "logging_steps",
                    "topk_dims")
        for name in positive:
            if getattr(self, name) < 1:
                raise UserError(f"{flag_name(name)} must be at least 1, got {getattr(self, name)}")
        for name in ("beta", "beta_h", "learning_rate", "learned_sign_lr"):
            if not getattr(self, name) > 0:
                raise UserError(f"{flag_name(name)} must be positive, got {getattr(self, name)}")
        if not 0 <= self.eval_fraction < 1:
            raise UserError(f"--eval-fraction must be in [0, 1), got {self.eval_fraction}")
        if self.eval_steps < 1 or self.patience < 0:
            raise UserError(f"--eval-steps must be at least 1 and --patience at least 0, got {self.eval_steps}, {self.patience}")
        if self.trust_region < 0:
            raise UserError(f"--trust-region must be 0 (off) or positive, got {self.trust_region}")
        if self.save_steps is not None and self.save_steps < 0:
            raise UserError(f"--save-steps must be 0 (off) or positive, got {self.save_steps}")
        if self.save_total_limit < 1:
            raise UserError(f"--save-total-limit must be at least 1, got {self.save_total_limit}")
        parse_report_to(self.report_to)
        if self.max_rows is not None and self.max_rows < 1:
            raise UserError(f"--max-rows must be at least 1, got {self.max_rows}")
        if not 0 <= self.label_smoothing < 0.5:
            raise UserError(f"--label-smoothing must be in [0, 0.5), got {self.label_smoothing}")
        if self.max_prompt_length >= self.max_length:
            raise UserError("--max-prompt-length must be smaller than --max-length")
        for name in ("ether_blocks", "ether_reduction"):
            if getattr(self, name) < 1:
                raise UserError(f"{flag_name(name)} must be at least 1, got {getattr(self, name)}")
        check_layer_spec(self.layers)
        return self

    @property
    def resolved_save_steps(self) -> int:
        """--save-steps, or its default (`auto_save_steps`); 0 = no checkpoints."""
        return auto_save_steps(self.max_steps, self.logging_steps) if self.save_steps is None else self.save_steps
    def check_model(self, hidden_size: int, n_blocks: int) -> "TrainConfig":
        """What `validate` cannot know without the base model's shape (read from its config.json, no
        weights): the layers exist, ETHER blocks divide the hidden size, supr has two layers. UserError
        naming the flag, as training would raise it later."""
        if self.transform is None:
            return self
        from innerdpo_bench.methods.layers import resolve_layers

        layers, _ = resolve_layers(self.layers, n_blocks)
        if self.transform == "ether" and hidden_size % self.ether_blocks:
            raise UserError(f"--ether-blocks {self.ether_blocks} must divide the hidden size {hidden_size} of "
                            f"{self.base_model}")
        if self.transform == "supr" and len(layers) < 2:
            raise UserError(f"the supr transform needs at least 2 layers in --layers, got {sorted(layers)}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> "TrainConfig":
        """The config a JSON file of TrainConfig fields names (`innerdpo train --config`; what `queue add`
        stores), with `overrides` on top; fields the file leaves out keep their defaults. UserError naming the
        file for unreadable JSON, an unknown key or a value of the wrong type. Not validated yet."""
        path = Path(path).expanduser()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise UserError(f"cannot read --config {path} ({err.strerror or err})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UserError(f"--config {path} is not valid JSON ({getattr(err, 'msg', err)})") from None
        if not isinstance(data, dict):
            raise UserError(f"--config {path} must hold a JSON object of train options, like the stored "
                            'spec["train"] of `innerdpo queue ls --json`')
        from innerdpo_bench.typecheck import describe, json_type, mismatch

        hints = typing.get_type_hints(cls)
        for key, value in data.items():
            if key not in hints:
                raise UserError(f"--config {path}: unknown key {key!r}.{did_you_mean(key, hints)} Keys are the "
                                "`innerdpo train` option names in snake_case.")
            if mismatch(value, hints[key]) is not None:
                raise UserError(f"--config {path}: {key!r} must be {describe(hints[key])}, not {json_type(value)} "
                                f"{value!r}")
            if hints[key] in (float, float | None) and isinstance(value, int):
                data[key] = float(value)  # as typer would parse it, so config.json is the same either way
        return cls(**{**data, **overrides})


def auto_save_steps(max_steps: int, logging_steps: int) -> int:
    """The default --save-steps: 10 % of max_steps rounded up to a multiple of logging_steps (a checkpoint step is
    a logging step), or the 10 % itself when that multiple is not below max_steps (then
    `resume.CheckpointCallback` adds a log record at each checkpoint step)."""
    tenth = max(1, -(-max_steps // 10))
    aligned = -(-tenth // logging_steps) * logging_steps
    return aligned if aligned < max_steps else tenth


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")
