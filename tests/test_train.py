"""Training on the tiny random Llama: every method learns, only adapter/transform weights change, and the run
directory is complete."""

import json
import math

import pytest
import torch

from innerdpo_bench import rundir, runstate
from innerdpo_bench.config import TrainConfig
from innerdpo_bench.data.pairs import load_pairs
from innerdpo_bench.models import resolve_base_model
from innerdpo_bench.train.trainer import build_trainer, train

METHODS = ["dpo", "ipo", "hs-none-InnerDPO", "hs-ether-InnerDPO", "hs-supr-InnerDPO"]


@pytest.fixture(scope="module")
def small_pairs(tmp_path_factory):
    """16 memorisable pairs: a tiny random model can learn them in a few dozen steps."""
    path = tmp_path_factory.mktemp("data") / "pairs.jsonl"
    colours = ["red", "blue", "green", "black", "white", "brown", "pink", "grey"]
    with open(path, "w") as f:
        for i in range(16):
            a, b = colours[i % 8], colours[(i * 3 + 1) % 8]
            f.write(json.dumps({"prompt": f"Item {i}: which colour?", "chosen": f"It is {a}.", "rejected": f"It is {b} now."}) + "\n")
    return str(path)


def fast_config(method, dataset, out, **overrides):
    base = dict(method=method, base_model="tiny-random", dataset=dataset, max_steps=30, batch_size=4,
                effective_batch=4, learning_rate=2e-2, beta=1.0, logging_steps=1, output_dir=str(out),
                warmup_ratio=0.0)
    base.update(overrides)
    return TrainConfig(**base)


@pytest.mark.parametrize("method", METHODS)
def test_thirty_steps_lower_loss_and_raise_pair_accuracy(method, small_pairs, tmp_path, tiny_model_path):
    run = train(fast_config(method, small_pairs, tmp_path / "run"), progress=False)
    records = [json.loads(line) for line in (run / rundir.METRICS).read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert len(steps) == 30
    first, last = steps[:10], steps[-10:]
    mean = lambda rows, key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
    assert mean(last, "loss") < mean(first, "loss")
    assert mean(last, "reward_acc") > mean(first, "reward_acc")


def test_run_directory_is_complete(small_pairs, tmp_path, tiny_model_path):
    run = train(fast_config("hs-ether-InnerDPO", small_pairs, tmp_path / "run", max_steps=3), progress=False)
    assert rundir.read_status(run)["state"] == "complete"
    config = json.loads((run / rundir.CONFIG).read_text())
    assert config["method"] == "hs-ether-InnerDPO" and config["seed"] == 0
    assert config["base_model"] == "tiny-random" and config["base_model_path"] == tiny_model_path
    assert config["dataset_ref"] == small_pairs and config["n_rows"] == 16
    assert (run / "adapter" / "adapter_config.json").is_file()
    assert (run / "adapter" / "adapter_model.safetensors").is_file()
    assert (run / "transforms.json").is_file() and (run / "transforms.safetensors").is_file()
    records = [json.loads(line) for line in (run / rundir.METRICS).read_text().splitlines()]
    record = [r for r in records if "loss" in r][-1]            # the last step's (then the runtime summary)
    assert "train_runtime" in records[-1] and "train_steps_per_second" in records[-1]
    assert all(isinstance(r["time"], str) and r["elapsed_s"] >= 0 for r in records)
    for key in ("loss", "loss_output", "loss_hidden", "ptheta", "rewards_margin", "reward_acc", "pref_acc",
                "align_score", "learning_rate", "grad_norm", "nll_chosen_diff", "cos_pi_ref"):
        assert key in record, key
    assert "step 3" in (run / rundir.TRAIN_LOG).read_text()


@pytest.mark.parametrize("method", ["dpo", "hs-ether-InnerDPO"])
def test_only_adapter_and_transform_weights_change(method, small_pairs, tmp_path, tiny_model_path):
    cfg = fast_config(method, small_pairs, tmp_path / "run", max_steps=4).validate()
    prepared = build_trainer(cfg, tmp_path / "run", resolve_base_model("tiny-random"),
                             load_pairs(small_pairs), small_pairs)
    model = prepared.trainer.model
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "innerdpo_transform" in n for n in trainable)
    prepared.trainer.train()
    for name, param in model.named_parameters():
        changed = not torch.equal(before[name], param.detach())
        if name in trainable and "lora_A" not in name:
            assert changed, f"{name} did not train"
        if name not in trainable:
            assert not changed, f"frozen {name} changed"
    if method == "hs-ether-InnerDPO":
        assert any("innerdpo_transform" in n for n in trainable)


def test_alpha_zero_innerdpo_trains_exactly_like_dpo(small_pairs, tmp_path, tiny_model_path):
    losses = {}
    for method, alpha in (("dpo", 0.25), ("hs-none-InnerDPO", 0.0)):
        run = train(fast_config(method, small_pairs, tmp_path / method, max_steps=5, alpha=alpha), progress=False)
        losses[method] = [record["loss"] for record in map(json.loads, (run / rundir.METRICS).read_text().splitlines())
                          if "loss" in record]
    assert len(losses["dpo"]) == 5
    assert losses["dpo"] == losses["hs-none-InnerDPO"]


def test_same_seed_same_run(small_pairs, tmp_path, tiny_model_path):
    runs = [train(fast_config("hs-ether-InnerDPO", small_pairs, tmp_path / str(i), max_steps=3), progress=False)
            for i in range(2)]
    a, b = ((r / rundir.METRICS).read_text().splitlines() for r in runs)
    clock = ("time", "elapsed_s")   # wall clock: the only fields two runs of one seed may differ in
    strip = lambda lines: [{k: v for k, v in json.loads(x).items() if "runtime" not in k and "per_second" not in k  # noqa: E731
                            and k not in clock} for x in lines]
    assert strip(a) == strip(b)


@pytest.mark.parametrize("method", ["dpo", "hs-ether-InnerDPO", "hs-supr-InnerDPO"])
def test_packed_pairs_train_like_padded_rows(method, small_pairs, tmp_path, tiny_model_path):
    """--pack-prompt (the default) changes the layout, not the numbers: same losses and metrics step by step,
    up to float rounding compounded over 5 steps at a high learning rate. (ETHER at the tiny model's default
    rank 1 scores differences of ~1e-8, where rounding flips signs; rank 16 makes the comparison meaningful.)"""
    extra = {"ether_reduction": 4} if "ether" in method else {}
    logs = {}
    for pack in (True, False):
        run = train(fast_config(method, small_pairs, tmp_path / str(pack), max_steps=5, pack_prompt=pack, **extra),
                    progress=False)
        logs[pack] = [json.loads(line) for line in (run / rundir.METRICS).read_text().splitlines()]
    for packed, padded in zip(logs[True], logs[False], strict=True):
        for key in ("loss", "reward_acc", "logratio_pi"):
            if key in padded:
                assert packed[key] == pytest.approx(padded[key], abs=2e-3), (key, packed, padded)


@pytest.mark.parametrize("method", ["dpo", "hs-ether-InnerDPO"])
def test_gradient_checkpointing_trains_like_keeping_activations(method, small_pairs, tmp_path, tiny_model_path):
    """--gradient-checkpointing recomputes activations in backward: the same steps (the hidden-state hooks
    fire again on recompute, harmlessly), up to float rounding."""
    extra = {"ether_reduction": 4} if "ether" in method else {}
    logs = {}
    for checkpointing in (True, False):
        run = train(fast_config(method, small_pairs, tmp_path / str(checkpointing), max_steps=4,
                                gradient_checkpointing=checkpointing, **extra), progress=False)
        logs[checkpointing] = [json.loads(line) for line in (run / rundir.METRICS).read_text().splitlines()]
    for with_gc, without in zip(logs[True], logs[False], strict=True):
        for key in ("loss", "grad_norm", "reward_acc"):
            if key in without:
                assert with_gc[key] == pytest.approx(without[key], abs=2e-3), (key, with_gc, without)


def test_learned_sign_trains_in_its_own_group_and_is_saved(small_pairs, tmp_path, tiny_model_path):
    from innerdpo_bench.methods.learned_sign import INIT_LOGIT, LearnedSign

    cfg = fast_config("hs-none-InnerDPO", small_pairs, tmp_path / "run", max_steps=3, align_method="learned_sign",
                      learned_sign_lr=0.05)
    run = train(cfg, progress=False)
    saved = LearnedSign.from_logits(*runstate.load_learned_sign(run))
    assert saved.layers == json.loads((run / rundir.CONFIG).read_text())["transform_output_layers"]
    assert saved.logits.shape == (len(saved.layers), 64)
    moved = (saved.logits - INIT_LOGIT).abs()
    assert 0 < moved.max() <= 3 * 0.05 + 1e-6  # Adam: at most about one learning rate per step, 3 steps
    prepared = build_trainer(cfg.validate(), tmp_path / "again", resolve_base_model("tiny-random"),
                             load_pairs(small_pairs), small_pairs)
    groups = [g for g in prepared.trainer.create_optimizer().param_groups if g.get("name") == "learned_sign"]
    assert len(groups) == 1 and groups[0]["lr"] == 0.05 and groups[0]["weight_decay"] == 0.0
    assert groups[0]["params"] == [prepared.learned_sign.logits]


def test_a_reversed_learned_sign_flips_with_its_gradient_reset_every_step_and_clipped(small_pairs, tmp_path,
                                                                                      tiny_model_path):
    """Every sign starts against the preference (θ = −1, σ = −0.76) on a problem where every coordinate prefers
    σ > 0: the adapter barely moves (learning rate 1e-12), so π's states equal the reference's and d_π ⊙ u = d_ref²/‖d_ref‖
    ≥ 0 everywhere. With the gradient reset every step (two micro-batches each) and clipped with the adapter's at
    --max-grad-norm, AdamW at 0.3 (cosine over 12 steps; about one learning rate per step) turns every sign within 8
    steps, and they stay turned."""
    from transformers import TrainerCallback

    steps = 12
    cfg = fast_config("hs-none-InnerDPO", small_pairs, tmp_path / "run", max_steps=steps, align_method="learned_sign",
                      learned_sign_lr=0.3, learning_rate=1e-12, batch_size=2, effective_batch=4, alpha=1.0,
                      max_grad_norm=1e-3, ref_cache="off", logging_steps=steps)
    (tmp_path / "run").mkdir()
    prepared = build_trainer(cfg.validate(), tmp_path / "run", resolve_base_model("tiny-random"),
                             load_pairs(small_pairs), small_pairs)
    trainer, sign = prepared.trainer, prepared.learned_sign.logits
    assert sum(p is sign for p in trainer.model.parameters()) == 1   # attached once: zero_grad and clipping see it
    with torch.no_grad():
        sign.fill_(-1.0)
    seen = {"grad_at_step_start": [], "clip": [], "flipped": []}

    class Watch(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            seen["grad_at_step_start"].append(sign.grad is None or not bool(sign.grad.any()))

        def on_step_end(self, args, state, control, **kwargs):
            seen["flipped"].append(bool((sign > 0).all()))

    clip = trainer._clip_grad_norm

    def watched_clip(model):
        before = sign.grad.norm().item()
        total = clip(model)
        seen["clip"].append((before, sign.grad.norm().item(), float(total)))
        return total

    trainer._clip_grad_norm = watched_clip
    trainer.add_callback(Watch())
    trainer.train()
    assert all(seen["grad_at_step_start"]) and len(seen["grad_at_step_start"]) == steps
    for before, after, total in seen["clip"]:
        assert before > 0 and total > cfg.max_grad_norm          # the signs have gradient; clipping is active
        assert after == pytest.approx(before * cfg.max_grad_norm / total, rel=1e-3)   # scaled with the rest
    first = seen["flipped"].index(True) + 1
    assert first <= 8 and all(seen["flipped"][first - 1:]), seen["flipped"]


# The registry entries added after the seed's week (branch topk, the seed's first note, SimPER, WPO): each trains.
NEW_ENTRIES = {
    "pars_rat": dict(method="hs-none-InnerDPO", align_method="pars_rat"),
    "pars_rat_log": dict(method="hs-none-InnerDPO", align_method="pars_rat_log"),
    "pars_rat_topk": dict(method="hs-none-InnerDPO", align_method="pars_rat_topk"),
    "learned_sign": dict(method="hs-ether-InnerDPO", align_method="learned_sign"),
    "simper": dict(method="simper"),
    "innerdpo-simper": dict(method="hs-none-InnerDPO", output_loss="simper", align_method="pars_rat"),
    "wpo": dict(method="dpo", wpo=True),
}


@pytest.mark.parametrize("entry", sorted(NEW_ENTRIES))
def test_new_entries_train_on_tiny_random(entry, small_pairs, tmp_path, tiny_model_path):
    """Ten steps: the loss falls and the pairs' reward accuracy rises (first three steps against the last three).
    At 1e-3: the ratio methods' scores swing wildly at the 2e-2 the other tests use on this tiny model."""
    run = train(fast_config(NEW_ENTRIES[entry]["method"], small_pairs, tmp_path / "run", max_steps=10, learning_rate=1e-3,
                            **{k: v for k, v in NEW_ENTRIES[entry].items() if k != "method"}), progress=False)
    steps = [r for r in (json.loads(line) for line in (run / rundir.METRICS).read_text().splitlines()) if "loss" in r]
    mean = lambda rows, key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
    assert len(steps) == 10 and all(math.isfinite(r["loss"]) for r in steps)
    assert mean(steps[-3:], "loss") < mean(steps[:3], "loss"), [r["loss"] for r in steps]
    assert mean(steps[-3:], "reward_acc") > mean(steps[:3], "reward_acc"), [r["reward_acc"] for r in steps]


def test_clamp_bottom_trains_the_output_term_only_below_the_floor(small_pairs, tmp_path, tiny_model_path):
    """pars_rat starts at 0 < T = 1, so with the floor at T every pair's hidden loss is −log σ(T), constant."""
    run = train(fast_config("hs-none-InnerDPO", small_pairs, tmp_path / "run", max_steps=6, align_method="pars_rat",
                            trust_region=1.0, trust_region_form="bottom"), progress=False)
    steps = [r for r in (json.loads(line) for line in (run / rundir.METRICS).read_text().splitlines()) if "loss" in r]
    assert all(r["align_score"] < 1.0 for r in steps)
    assert all(r["loss_hidden"] == pytest.approx(math.log1p(math.exp(-1.0)), abs=1e-6) for r in steps)
    assert steps[-1]["loss_output"] < steps[0]["loss_output"]
