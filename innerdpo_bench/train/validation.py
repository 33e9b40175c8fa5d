"""A held-out validation split of the training rows, and early stopping on its loss (spec §10).

`--eval-fraction f` holds out round(f·n) training rows (at least 1) chosen by a permutation seeded with the
run's seed. Every `--eval-steps` optimiser steps, and once more at the end if the last step was not an
evaluation step, the training objective (the same loss, every term) is averaged over the held-out pairs
under `no_grad`, with `reward_acc` and `pref_acc` beside it; each evaluation is a `metrics.jsonl` record
(`eval_loss`, `eval_reward_acc`, `eval_pref_acc`, `eval_best`). The trainable weights with the lowest
validation loss (adapter, transform, learned signs) are kept in memory and are the ones the run saves;
training stops after `--patience` evaluations in a row without a strictly lower loss (0: never early).

A validation loss that is not finite (NaN or ±inf) stops training at once, as Lightning's `EarlyStopping` (the
reference's; `check_finite=True`) does: the run ends `complete` with the best weights so far and the status says
why (`stop_reason`); if no evaluation was finite yet, there are no weights worth saving and the run fails with one
line. (A non-finite *training* loss always fails the run, `trainer.compute_loss`.)

Defaults. The spec lists early stopping with patience 3 as the default; here it is opt-in
(`--eval-fraction 0`, off) because holding rows out changes the training data, and so the results, of every
existing run and of the demo's published table; `--patience` defaults to the spec's 3. The reference
validated on the dataset's `test` split, the rows its in-domain accuracy is then measured on, so model
selection saw the test set; we hold out training rows instead.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable

import torch
from transformers import TrainerCallback

from innerdpo_bench.errors import RunFailed, UserError

log = logging.getLogger("innerdpo_bench")


def split_rows(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(training rows, held-out rows), both in dataset order; no split when `fraction` is 0."""
    if fraction <= 0:
        return rows, []
    n_eval = max(1, round(fraction * len(rows)))
    if n_eval >= len(rows):
        raise UserError(f"--eval-fraction {fraction} holds out {n_eval} of {len(rows)} rows; nothing is left to train on")
    held_out = set(random.Random(seed).sample(range(len(rows)), n_eval))
    return ([r for i, r in enumerate(rows) if i not in held_out], [r for i, r in enumerate(rows) if i in held_out])


class EarlyStopping(TrainerCallback):
    """Evaluate every `eval_steps`, remember the best weights of `parameters`, stop after `patience` misses.

    `evaluate()` returns `{"eval_loss": …, …}`; `log(record)` writes it (the trainer's log, so it lands in
    metrics.jsonl). At the end of training the best weights are copied back into `parameters`.
    """

    def __init__(self, evaluate: Callable[[], dict[str, float]], log_record: Callable[[dict], None],
                 parameters: list[torch.nn.Parameter], eval_steps: int, patience: int):
        self.evaluate = evaluate
        self.log_record = log_record
        self.parameters = parameters
        self.eval_steps = eval_steps
        self.patience = patience
        self.best_loss = float("inf")
        self.best_step: int | None = None
        self.misses = 0
        self.stopped_early = False
        self.last_eval_step: int | None = None
        self.stop_reason = ""
        self._best: list[torch.Tensor] | None = None

    def _evaluate(self, step: int) -> bool:
        """One evaluation: record it, keep the weights if they are the best so far; False when the loss is not
        finite (the caller stops training)."""
        record = self.evaluate()
        self.last_eval_step = step
        if not math.isfinite(record["eval_loss"]):
            self.log_record({**record, "eval_best": False})
            if self._best is None:
                raise RunFailed(f"validation loss became {record['eval_loss']} at step {step}, before any finite one; "
                                "try a lower --learning-rate or --alpha")
            log.warning("step %d: validation loss is %s: stopping now, keeping the best adapter (step %s)", step,
                        record["eval_loss"], self.best_step)
            self.stopped_early = True
            self.stop_reason = f"validation loss {record['eval_loss']} at step {step}"
            return False
        improved = record["eval_loss"] < self.best_loss
        if improved:
            self.best_loss, self.best_step, self.misses = record["eval_loss"], step, 0
            self._best = [p.detach().to("cpu", copy=True) for p in self.parameters]
        else:
            self.misses += 1
        self.log_record({**record, "eval_best": improved})
        log.info("step %d eval_loss=%.4g eval_reward_acc=%.3g%s", step, record["eval_loss"],
                 record["eval_reward_acc"], " (best)" if improved else f" ({self.misses} without improvement)")
        return True

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.eval_steps == 0:
            should_log = control.should_log  # logging the record resets it, and this step's training record is due
            finite = self._evaluate(state.global_step)
            control.should_log = should_log
            if not finite:
                control.should_training_stop = True
            elif self.patience and self.misses >= self.patience:
                self.stopped_early = control.should_training_stop = True
                self.stop_reason = f"{self.misses} evaluations without improvement"
                log.info("early stop at step %d: %d evaluations without improvement; best step %s",
                         state.global_step, self.misses, self.best_step)
        return control

    def on_train_end(self, args, state, control, **kwargs):
        if self.last_eval_step != state.global_step:
            self._evaluate(state.global_step)
        with torch.no_grad():
            for param, best in zip(self.parameters, self._best or []):
                param.copy_(best.to(param.device))

    def summary(self) -> dict:
        return {"best_step": self.best_step, "best_eval_loss": self.best_loss, "stopped_early": self.stopped_early,
                **({"stop_reason": self.stop_reason} if self.stop_reason else {})}


def attach_early_stopping(trainer, held_out: list[dict], collator, batch_size: int, eval_steps: int,
                          patience: int) -> EarlyStopping:
    """Add an `EarlyStopping` over the encoded held-out pairs to a `PreferenceTrainer`: its trainable weights are
    the model's (adapter, and the attached transform and learned signs, if any)."""
    chunks = [held_out[i:i + batch_size] for i in range(0, len(held_out), batch_size)]
    trainables = [p for p in trainer.model.parameters() if p.requires_grad]  # the transform and signs are attached
    early = EarlyStopping(lambda: trainer.evaluate_pairs(collator(chunk) for chunk in chunks), trainer.log,
                          trainables, eval_steps, patience)
    trainer.add_callback(early)
    return early
