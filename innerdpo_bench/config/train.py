"""`TrainConfig`: a training run's whole configuration, one typed value from the flag to the loss.

Its fields know themselves (`fields.opt`: help, --help panel, display label, when they apply, role), so `--help`,
display names (`naming.py`), the results' config columns, the reference cache's key and the dashboard's form read
them here. One parser, `TrainConfig.from_mapping(data, where=...)`, serves `train --config`, sweep files and cells,
`queue add` and the dashboard's form, with one coercion rule (`fields.coerce`); `validate` checks choices and
bounds, once at each boundary (`queue add`, and training started from a file); `cfg.loss` is the loss's own
config (`methods.loss_config.LossConfig`), the same values, no second set of defaults.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from innerdpo_bench.config.fields import AT_LEAST_0, AT_LEAST_1, POSITIVE, Bounds, FieldInfo, coerce, field_name, hints, opt
from innerdpo_bench.config.trackers import parse_report_to
from innerdpo_bench.errors import UserError, did_you_mean, unknown_choice
from innerdpo_bench.methods.catalog import ALIGN_METHODS, ETHER_TYPES, OUTPUT_LOSS_NAMES, WPO_FORMS, resolve_method
from innerdpo_bench.methods.layers import DEFAULT_LAYERS, check_layer_spec
from innerdpo_bench.methods.loss_config import LossConfig

DEFAULT_BASE_MODEL = "wassname/llama-3.2-3b-sft"


# When a field changes anything (`FieldInfo.applies`), given the config.
def _hidden(cfg) -> bool:
    return resolve_method(cfg.method).has_hidden_term


def _transform_is(name: str):
    return lambda cfg: resolve_method(cfg.method).transform == name


def _align_is(name: str):
    return lambda cfg: _hidden(cfg) and cfg.align_method == name


def _output_loss(cfg) -> str:
    return cfg.output_loss or resolve_method(cfg.method).output_loss


def _validating(cfg) -> bool:
    return bool(cfg.eval_fraction)


@dataclass
class TrainConfig:
    LOSS_CONFIG: ClassVar[type] = LossConfig   # what `loss` builds: every field of it is a field here

    method: str = opt("dpo", "dpo | ipo | simper | hs-none-InnerDPO | hs-ether-InnerDPO | hs-supr-InnerDPO", "Run",
                      role="setup")
    base_model: str = opt(DEFAULT_BASE_MODEL, "Hub id, local model directory, or a built-in: tiny-random, smollm2-135m.", "Run",
                          role="setup")
    dataset: str = opt("alpaca_easy", "GENIES name, HUB_ID[:config][#split], a .json/.jsonl/.parquet file, or "
                       "mini:SPLIT.", "Run", label="data")
    max_rows: int | None = opt(None, "Use only the first N training rows.", "Run", label="rows", bounds=AT_LEAST_1)
    seed: int = opt(0, "Fixes data order, LoRA init, transform init and the ETHER projection.", "Run", role="setup",
                    bounds=Bounds(0, 2**32 - 1))
    output_dir: str | None = opt(None, "Run directory (default: runs/<method>-<dataset>-s<seed>-<time>).", "Run",
                                 role="bookkeeping")

    max_steps: int = opt(500, "Optimiser steps (default 500 x effective batch 16 = 8,000 pairs, the spec's budget).",
                         role="setup", bounds=Bounds(1, 10_000_000))
    learning_rate: float = opt(1e-5, "AdamW learning rate (cosine schedule, linear warm-up).", label="lr",
                               bounds=POSITIVE, usual=(1e-7, 1e-1))
    warmup_ratio: float = opt(0.1, "Fraction of steps spent warming up linearly.", label="warmup", bounds=Bounds(0, 1))
    weight_decay: float = opt(0.001, "AdamW weight decay.", label="wd", bounds=AT_LEAST_0, usual=(0.0, 1.0))
    max_grad_norm: float = opt(10.0, "Gradient clipping norm.", label="clip", bounds=POSITIVE, usual=(1e-3, 1e4))
    batch_size: int = opt(4, "Pairs per device per forward pass.", role="setup", bounds=Bounds(1, 65_536))
    effective_batch: int = opt(16, "Pairs per optimiser step; gradient accumulation fills it.", role="setup",
                               bounds=Bounds(1, 10_000_000))
    max_prompt_length: int = opt(450, "Prompt tokens kept (truncated from the left).", role="setup", reference=True,
                                 bounds=Bounds(1, 10_000_000))
    max_length: int = opt(512, "Prompt + completion tokens kept (completion truncated on the right).",
                          role="setup", reference=True, bounds=Bounds(1, 10_000_000))
    pack_prompt: bool = opt(True, "Run a pair as one sequence, prompt once then chosen then rejected, with a block "
                            "attention mask (same numbers, fewer tokens); off: two padded rows per pair.",
                            role="setup", reference=True)
    gradient_checkpointing: bool = opt(False, "Recompute each block's activations during backward instead of keeping "
                                       "them: much less memory, about a third more time per step.", role="setup")
    lora_r: int = opt(64, "LoRA rank (all linear layers, rsLoRA).", "Adapter", bounds=Bounds(1, 65_536))
    lora_alpha: int = opt(16, "LoRA alpha.", "Adapter", bounds=Bounds(1, 1_000_000))
    lora_dropout: float = opt(0.0, "LoRA dropout.", "Adapter", bounds=Bounds(0, 1, high_open=True))
    precision: str = opt("auto", "auto (bf16 on GPU, fp32 on CPU) | fp32 | bf16.", role="setup")
    logging_steps: int = opt(10, "Write metrics.jsonl every N steps.", role="setup", bounds=AT_LEAST_1)
    eval_fraction: float = opt(0.0, "Hold out this fraction of the training rows for validation (0 = off): the loss on "
                               "them every --eval-steps steps goes to metrics.jsonl, the adapter with the lowest one is "
                               "saved, and training stops after --patience evaluations without improvement.",
                               bounds=Bounds(0, 1, high_open=True))
    eval_steps: int = opt(50, "Optimiser steps between validation evaluations (with --eval-fraction).",
                          applies=_validating, bounds=AT_LEAST_1)
    patience: int = opt(3, "Early stop after this many validation evaluations without a lower loss (spec §10: 3; "
                        "0 = never stop early, still save the best).", applies=_validating, bounds=AT_LEAST_0)
    device: str = opt("auto", "auto | cpu | cuda.", role="setup")
    save_steps: int | None = opt(None, "Write a resumable checkpoint (adapter, optimiser, scheduler, RNG, transform, "
                                 "sample order) to RUN/checkpoints every N steps; `innerdpo train --resume` continues "
                                 "from the newest. Default: 10% of --max-steps rounded up to a multiple of "
                                 "--logging-steps; 0 = off. A completed run deletes its checkpoints.", "Checkpoints",
                                 role="bookkeeping", bounds=AT_LEAST_0)
    save_total_limit: int = opt(1, "Checkpoints kept, newest first (2 or more: a corrupt newest falls back to the "
                                "one before).", "Checkpoints", role="bookkeeping", bounds=AT_LEAST_1)
    report_to: str = opt("none", "Experiment trackers, comma-separated: none | tensorboard (event files in "
                         "RUN/tensorboard) | wandb | mlflow | comet_ml | ... (transformers' names; each an optional "
                         "install, e.g. pip install 'innerdpo-bench[tensorboard]').", "Checkpoints", role="bookkeeping")
    ref_cache: str = opt("auto", "Reference-pass cache: the frozen reference's log-probs (and, for hs-none/hs-supr, "
                         "pooled states) computed once before training and reused by every later run with the same "
                         "base, data and settings, so training runs no reference forward (hs-ether keeps the live "
                         "pass). auto: reuse one, build one when the run sees at least one epoch | on: always build | "
                         "off. `innerdpo cache ls|clear` shows and frees them.", role="bookkeeping")

    beta: float = opt(0.1, "β of the output loss.", "Loss",
                      label="β", applies=lambda cfg: _output_loss(cfg) != "simper",
                      bounds=POSITIVE, usual=(1e-3, 100.0))
    logp_agg: str = opt("mean", "mean | sum of completion-token log-probs. mean (default, every method) makes "
                        "InnerDPO with α=0 equal dpo exactly; sum is the DPO paper's form.", "Loss", label="agg")
    label_smoothing: float = opt(0.0, "cDPO label smoothing ε (dpo output term only).", "Loss",
                                 label="ε", applies=lambda cfg: _output_loss(cfg) == "dpo",
                                 bounds=Bounds(0, 0.5, high_open=True))
    output_loss: str | None = opt(None, "Output-term family for InnerDPO: dpo | ipo | simper (the hidden term uses "
                                  "the same; simper has no β and needs --logp-agg mean). Implied by dpo/ipo/simper.", "Loss",
                                  label="out", applies=_hidden)
    nll_weight: float = opt(0.0, "Weight of an SFT term: mean per-token NLL of the chosen completion.", "Loss",
                            label="nll", bounds=AT_LEAST_0, usual=(0.0, 100.0))
    wpo: bool = opt(False, "WPO weighting (Zhou et al. 2024): each pair's preference loss times a weight from lw, the "
                    "mean over its tokens of log p(y_t) - log sum_v p(v)^2; the form is --wpo-form.", "Loss")
    wpo_form: str = opt("reference", "reference (default): sigmoid((lw_c + lw_r)/3) over its batch mean, mean weight 1 "
                        "so the loss scale and learning rate keep their meaning | paper: exp(lw_c + lw_r), as TRL's "
                        "use_weighting (unnormalised: also scales the loss down).", "Loss",
                        applies=lambda cfg: bool(cfg.wpo))

    alpha: float = opt(0.25, "α, weight of the hidden-state term (InnerDPO).", "InnerDPO", label="α", applies=_hidden,
                       usual=(0.0, 100.0))
    beta_h: float = opt(1.0, "β of the hidden-state term.", "InnerDPO", label="β_h", applies=_hidden,
                        bounds=POSITIVE, usual=(1e-3, 100.0))
    align_method: str = opt("para_signed", "How the policy's hidden-state difference is scored; see `innerdpo methods`.", "InnerDPO",
                            label="align", applies=_hidden)
    layers: str = opt(DEFAULT_LAYERS, "Hidden states read: comma list or range(a,b[,step]); negatives count from "
                      "the block count, fractions in (0,1) scale it.", "InnerDPO", applies=_hidden)
    layer_reduce: str = opt("loss", "loss: mean of per-layer losses | score: mean score, then one loss.", "InnerDPO",
                            label="reduce", applies=_hidden)
    trust_region: float = opt(0.0, "Clamp align scores to [-T, T] before the loss (0 = off).", "InnerDPO",
                              label="trust", applies=_hidden, bounds=AT_LEAST_0)
    trust_region_form: str = opt("both", "both: clamp to [-T, T] | top: min(g, T), the later reference's default | "
                                 "bottom: max(g, T), the reference's clamp_bottom (no gradient below T).", "InnerDPO",
                                 label="trust_form", applies=lambda cfg: _hidden(cfg) and bool(cfg.trust_region))
    norm_p: int = opt(1, "Norm for magnitudes in align methods: 1 | 2.", "InnerDPO", applies=_hidden)
    topk_dims: int = opt(100, "pars_rat_topk: coordinates of the reference preference kept (at most hidden/4).", "InnerDPO",
                         label="topk", applies=_align_is("pars_rat_topk"), bounds=AT_LEAST_1)
    learned_sign_lr: float = opt(1e-2, "learned_sign: learning rate of the sign logits (their own AdamW group, no "
                                 "weight decay; at the adapter's rate a sign could not flip within a run).", "InnerDPO",
                                 applies=_align_is("learned_sign"), bounds=POSITIVE, usual=(1e-5, 1.0))
    norm_before_pool: bool = opt(True, "Unit-normalise token states before the masked mean.", "InnerDPO",
                                 applies=_hidden, reference=True)
    filter_sinks: bool = opt(False, "Drop tokens whose state norm exceeds mean + 1 std before pooling.", "InnerDPO",
                             applies=_hidden, reference=True)
    ether_type: str = opt("ether", "ether | etherplus | oft (hs-ether-InnerDPO).", "InnerDPO",
                          label="ether", applies=_transform_is("ether"))
    ether_blocks: int = opt(2, "ETHER block count (must divide the hidden size).", "InnerDPO",
                            label="ether_blocks", applies=_transform_is("ether"), bounds=AT_LEAST_1)
    ether_reduction: int = opt(60, "ETHER low-rank reduction r: rank = hidden // r.", "InnerDPO",
                               label="ether_r", applies=_transform_is("ether"), bounds=AT_LEAST_1)
    supr_tau: float = opt(0.1, "SupressedHS mask threshold τ.", "InnerDPO", applies=_transform_is("supr"),
                          bounds=AT_LEAST_0)

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
        """Check every choice and bound; raise UserError naming the flag. Returns self.

        Numbers: every float finite, every number within its field's `bounds` (`FieldInfo`: the values a researcher
        would accept; a value that is merely unusual is `warnings()`' business, not refused)."""
        for name in self.names():
            value, info = getattr(self, name), self.info(name)
            if isinstance(value, float) and not math.isfinite(value):
                raise UserError(f"{flag_name(name)} must be a finite number, got {value}")
            problem = info.bounds.problem(value) if info.bounds is not None and value is not None else None
            if problem:
                raise UserError(f"{flag_name(name)} {problem}, got {value}")
        method = resolve_method(self.method)
        if self.output_loss is not None:
            if self.output_loss not in OUTPUT_LOSS_NAMES:
                raise unknown_choice("--output-loss", self.output_loss, OUTPUT_LOSS_NAMES)
            if not method.has_hidden_term and self.output_loss != method.output_loss:
                raise UserError(f"--output-loss {self.output_loss} contradicts method {method.name}; "
                                f"use method {self.output_loss}")
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
        parse_report_to(self.report_to)
        if self.max_prompt_length >= self.max_length:
            raise UserError("--max-prompt-length must be smaller than --max-length")
        check_layer_spec(self.layers)
        return self

    def warnings(self) -> list[str]:
        """One line per value that is accepted but unusual (outside its field's `usual` range, e.g. a learning rate
        of 1e10): `queue add` and `train` print them; the run still goes ahead."""
        lines = []
        for name in self.names():
            usual, value = self.info(name).usual, getattr(self, name)
            if usual is not None and self.applies(name) and not usual[0] <= value <= usual[1]:
                lines.append(f"{flag_name(name)} {value:g} is unusual (usually {usual[0]:g} to {usual[1]:g}); "
                             "check it is what you meant")
        return lines

    @property
    def resolved_save_steps(self) -> int:
        """--save-steps, or its default (`auto_save_steps`); 0 = no checkpoints."""
        return auto_save_steps(self.max_steps, self.logging_steps) if self.save_steps is None else self.save_steps
    def check_model(self, hidden_size: int, n_blocks: int, max_positions: int | None = None) -> "TrainConfig":
        """What `validate` cannot know without the base model's shape (read from its config.json, no
        weights): --max-length fits its positions, the LoRA rank its hidden size, the layers exist, ETHER blocks
        divide the hidden size, supr has two layers. UserError naming the flag, as training would raise it later."""
        if max_positions is not None and self.max_length > max_positions:
            raise UserError(f"--max-length {self.max_length} exceeds the {max_positions} positions of "
                            f"{self.base_model} (its config.json's max_position_embeddings)")
        if self.lora_r > hidden_size:
            raise UserError(f"--lora-r {self.lora_r} exceeds the hidden size {hidden_size} of {self.base_model}: "
                            "a LoRA rank above it adds nothing")
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

    @property
    def loss(self):
        """The loss's config (`LOSS_CONFIG`): its fields' values here, with the output family resolved and α = 0 for
        a method without a hidden-state term (dpo, ipo, simper)."""
        values = {name: getattr(self, name) for name in self.LOSS_CONFIG.__dataclass_fields__
                  if name in self.__dataclass_fields__}
        values.update(output_loss=self.resolved_output_loss, alpha=self.alpha if _hidden(self) else 0.0)
        return self.LOSS_CONFIG(**values)

    # ------------------------------------------------------------------ what the fields know
    @classmethod
    def info(cls, name: str) -> FieldInfo:
        """The metadata of field `name` (`fields.FieldInfo`)."""
        return cls.__dataclass_fields__[name].metadata["info"]

    @classmethod
    def names(cls, role: str | None = None, reference: bool | None = None) -> tuple[str, ...]:
        """Field names in declaration order, those of `role` only (experiment | setup | bookkeeping) or only those the
        reference pass depends on (`reference=True`)."""
        return _names(cls, role, reference)

    def applies(self, name: str) -> bool:
        """Whether field `name` changes anything for this run (`FieldInfo.applies`: `align_method` not for dpo)."""
        check = self.info(name).applies
        return check is None or bool(check(self))

    def to_dict(self) -> dict:
        """Every field's value (all are JSON scalars, so no copy is needed: `dataclasses.asdict` deep-copied each,
        most of `innerdpo runs --format json`'s time at 10,000 runs)."""
        return {name: getattr(self, name) for name in self.names()}

    # ------------------------------------------------------------------ the one parser
    @classmethod
    def from_mapping(cls, data: Any, where: str, *, text: bool = False, **overrides: Any) -> "TrainConfig":
        """The config a mapping of field names to values describes, `overrides` (already typed) on top; fields it
        leaves out keep their defaults. Keys in snake_case or kebab-case; values by `fields.coerce`'s one rule
        (`text`: the values were typed, as --grid values and the form's inputs are). UserError naming `where` for a
        mapping that is not one, an unknown key or a value of the wrong type. Not validated: `validate` is the
        boundary's."""
        if not isinstance(data, dict):
            raise UserError(f"{where} must hold a JSON object of train options, like the stored spec's \"train\" "
                            "(`innerdpo queue ls --json`)")
        types = hints(cls)
        values: dict[str, Any] = {}
        for key, value in data.items():
            name = field_name(key)
            if name not in types:
                raise UserError(f"{where}: unknown key {key!r}.{did_you_mean(name, types)} Keys are the `innerdpo "
                                "train` option names in snake_case.")
            values[name] = coerce(types[name], value, name, where, text=text)
        return cls(**{**values, **overrides})

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> "TrainConfig":
        """`from_mapping` of a JSON file (`innerdpo train --config`; the worker's `RUN/train_spec.json`); UserError
        naming the file when it cannot be read or parsed."""
        path = Path(path).expanduser()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise UserError(f"cannot read --config {path} ({err.strerror or err})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UserError(f"--config {path} is not valid JSON ({getattr(err, 'msg', err)})") from None
        return cls.from_mapping(data, f"--config {path}", **overrides)


@functools.cache
def _names(cls: type[TrainConfig], role: str | None, reference: bool | None) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls)
                 if (role is None or cls.info(f.name).role == role)
                 and (reference is None or cls.info(f.name).reference == reference))


def auto_save_steps(max_steps: int, logging_steps: int) -> int:
    """The default --save-steps: 10 % of max_steps rounded up to a multiple of logging_steps (a checkpoint step is
    a logging step), or the 10 % itself when that multiple is not below max_steps (then
    `resume.CheckpointCallback` adds a log record at each checkpoint step)."""
    tenth = max(1, -(-max_steps // 10))
    aligned = -(-tenth // logging_steps) * logging_steps
    return aligned if aligned < max_steps else tenth


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")
