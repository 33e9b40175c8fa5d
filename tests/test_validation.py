"""Held-out validation split and early stopping: the patience rule on a scripted loss curve, and a tiny run whose
validation rows contradict its training rows, so it must stop early and keep its first adapter."""

import json
from types import SimpleNamespace

import pytest
import torch
from transformers import TrainerControl

from innerdpo_bench import rundir
from innerdpo_bench.config import TrainConfig
from innerdpo_bench.errors import UserError
from innerdpo_bench.train.validation import EarlyStopping, split_rows


def test_split_rows_is_seeded_disjoint_and_in_order():
    rows = [{"i": i} for i in range(20)]
    train, held_out = split_rows(rows, 0.2, seed=3)
    assert len(held_out) == 4 and len(train) == 16
    assert sorted(r["i"] for r in train + held_out) == list(range(20))
    assert [r["i"] for r in held_out] == sorted(r["i"] for r in held_out)
    assert split_rows(rows, 0.2, seed=3) == (train, held_out) and split_rows(rows, 0.2, seed=4) != (train, held_out)
    assert split_rows(rows, 0.0, seed=3) == (rows, [])
    assert len(split_rows(rows, 0.01, seed=0)[1]) == 1  # at least one row
    with pytest.raises(UserError, match="nothing is left to train on"):
        split_rows(rows[:1], 0.5, seed=0)


def test_patience_counts_evaluations_without_improvement_and_the_best_weights_come_back():
    losses = iter([1.0, 0.8, 0.9, 0.85, 0.95, 0.7])
    weight = torch.nn.Parameter(torch.zeros(2))
    records = []
    early = EarlyStopping(lambda: {"eval_loss": next(losses), "eval_reward_acc": 0.5}, records.append, [weight],
                          eval_steps=10, patience=3)
    control = TrainerControl()
    for step in range(1, 61):
        with torch.no_grad():
            weight.fill_(step)  # the "training" moves the weight every step
        early.on_step_end(None, SimpleNamespace(global_step=step), control)
        if control.should_training_stop:
            break
    assert step == 50 and early.stopped_early  # evaluations at 10…50: best at 20, then 3 without a lower loss
    assert [r["eval_best"] for r in records] == [True, True, False, False, False]
    early.on_train_end(None, SimpleNamespace(global_step=50), control)
    assert len(records) == 5  # the last step was an evaluation step: no extra evaluation
    assert weight.tolist() == [20.0, 20.0]
    assert early.summary() == {"best_step": 20, "best_eval_loss": 0.8, "stopped_early": True,
                               "stop_reason": "3 evaluations without improvement"}


def scripted(losses, patience=3):
    """An EarlyStopping over a scripted validation-loss curve, a weight the "training" sets to the step, and its records."""
    losses = iter(losses)
    weight = torch.nn.Parameter(torch.zeros(2))
    records = []
    early = EarlyStopping(lambda: {"eval_loss": next(losses), "eval_reward_acc": 0.5}, records.append, [weight],
                          eval_steps=10, patience=patience)
    return early, weight, records


def run_until_stop(early, weight, last_step=100) -> int:
    control = TrainerControl()
    for step in range(1, last_step + 1):
        with torch.no_grad():
            weight.fill_(step)
        early.on_step_end(None, SimpleNamespace(global_step=step), control)
        if control.should_training_stop:
            break
    early.on_train_end(None, SimpleNamespace(global_step=step), control)
    return step


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_validation_loss_stops_at_once_with_the_best_weights(bad):
    """As Lightning's EarlyStopping (check_finite): the step that sees NaN or inf is the last, whatever the patience,
    and the weights saved are the best finite evaluation's (step 10 here)."""
    early, weight, records = scripted([1.0, bad, 0.5], patience=0)   # patience 0: would never stop early
    assert run_until_stop(early, weight) == 20
    assert weight.tolist() == [10.0, 10.0] and early.stopped_early
    assert [r["eval_best"] for r in records] == [True, False] and len(records) == 2  # no extra final evaluation
    assert early.summary()["stop_reason"] == f"validation loss {bad} at step 20"


def test_a_non_finite_first_validation_loss_fails_the_run():
    from innerdpo_bench.errors import RunFailed

    early, weight, _ = scripted([float("nan")])
    with pytest.raises(RunFailed, match="validation loss became nan at step 10, before any finite one"):
        run_until_stop(early, weight)


def contradicting_rows(path, n=20, fraction=0.2, seed=0):
    """Training pairs, and held-out pairs that are training pairs with chosen and rejected swapped: every step
    that fits the training pairs raises the validation loss."""
    held_out = {r["i"] for r in split_rows([{"i": i} for i in range(n)], fraction, seed)[1]}
    colours = ["red", "blue", "green", "black", "white", "brown", "pink", "grey", "gold", "teal"]
    rows, sources = [], iter(i for i in range(n) if i not in held_out)
    for i in range(n):
        j = i if i not in held_out else next(sources)  # a held-out row copies a training row, swapped
        pair = {"prompt": f"Item {j}: which colour?", "chosen": f"It is {colours[j % 10]}.",
                "rejected": f"It is {colours[(j * 3 + 1) % 10]} now."}
        if i in held_out:
            pair["chosen"], pair["rejected"] = pair["rejected"], pair["chosen"]
        rows.append(pair)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_tiny_run_stops_after_patience_and_saves_the_best_adapter(tmp_path, tiny_model_path):
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from innerdpo_bench.data.pairs import load_pairs
    from innerdpo_bench.models import resolve_base_model
    from innerdpo_bench.train.trainer import build_trainer, train

    data = contradicting_rows(tmp_path / "pairs.jsonl")
    cfg = TrainConfig(method="dpo", base_model="tiny-random", dataset=data, max_steps=40, batch_size=4,
                      effective_batch=4, learning_rate=2e-2, beta=1.0, logging_steps=1, warmup_ratio=0.0,
                      eval_fraction=0.2, eval_steps=2, patience=2, output_dir=str(tmp_path / "run"))
    run = train(cfg, progress=False)
    records = [json.loads(line) for line in (run / rundir.METRICS).read_text().splitlines()]
    evals = [r for r in records if "eval_loss" in r]
    assert [r["step"] for r in evals] == [2, 4, 6]
    assert [r["eval_best"] for r in evals] == [True, False, False]
    assert evals[0]["eval_loss"] < evals[1]["eval_loss"] < evals[2]["eval_loss"]
    assert all(0 <= r["eval_reward_acc"] <= 1 and 0 <= r["eval_pref_acc"] <= 1 for r in evals)
    assert max(r["step"] for r in records if "loss" in r) == 6
    status = rundir.read_status(run)
    assert status["stopped_early"] is True and status["best_step"] == 2 and status["steps"] == 6
    assert json.loads((run / rundir.CONFIG).read_text())["n_eval_rows"] == 4

    # The saved adapter is the step-2 one: loaded into a fresh model it gives the best validation loss again.
    rows, held_out = split_rows(load_pairs(data), cfg.eval_fraction, cfg.seed)
    fresh = build_trainer(cfg.validate(), tmp_path / "check", resolve_base_model("tiny-random"), rows, data,
                          eval_rows=held_out)
    set_peft_model_state_dict(fresh.trainer.model, load_file(str(run / rundir.ADAPTER / "adapter_model.safetensors")))
    again = fresh.early_stopping.evaluate()
    assert again["eval_loss"] == pytest.approx(evals[0]["eval_loss"], abs=1e-5)
    assert again["eval_loss"] != pytest.approx(evals[-1]["eval_loss"], abs=1e-3)
