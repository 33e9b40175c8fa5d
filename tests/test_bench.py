"""The benchmark scripts run end to end on the tiny model and write their JSON (smoke tests: the numbers
are measured by `make bench`, never asserted here), and their accounting helpers count what they claim."""

import json
import subprocess
import sys

import pytest
import torch

from bench.train_step import batch_tokens, model_flops, non_embedding_parameters
from bench.variants import EXTRA_VARIANTS, OURS, VARIANT_OPTIONS, variant_config
from innerdpo_bench.data.encode import PackedPairCollator, PairCollator, encode_pairs

ROWS = [{"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "A chair, probably, or a table."},
        {"prompt": "What is one plus one?", "chosen": "Two.", "rejected": "Three."}]


def test_packed_batches_count_the_prompt_once(tiny_tokenizer):
    encoded, _ = encode_pairs(tiny_tokenizer, ROWS)
    padded = batch_tokens(PairCollator(tiny_tokenizer.pad_token_id)(encoded))
    packed = batch_tokens(PackedPairCollator(tiny_tokenizer.pad_token_id)(encoded))
    prompts = sum(e["prompt_length"] for e in encoded)
    assert padded == sum(len(e["chosen_ids"]) + len(e["rejected_ids"]) for e in encoded)
    assert packed == padded - prompts


def test_non_embedding_parameters_skip_the_embedding_and_the_adapter(tiny_model_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    embedding = model.get_input_embeddings().weight.numel()
    total = sum(p.numel() for p in model.parameters())  # a tied head is counted once by parameters()
    assert non_embedding_parameters(model) == total - embedding
    lora = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear"))
    assert non_embedding_parameters(lora) == total - embedding
    assert model_flops(10, 3) == 180.0


def test_every_bench_variant_is_a_valid_run_config():
    assert set(VARIANT_OPTIONS) <= set(OURS)
    for variant in OURS + [v for v in EXTRA_VARIANTS if not v.startswith("trl")]:
        cfg = variant_config(variant)
        assert cfg.gradient_checkpointing == variant.endswith("-gc")
        assert cfg.ref_cache == ("on" if variant.endswith("-cached") else "off")  # the baselines run it live
    assert variant_config("hs-none-clamp_bottom").trust_region_form == "bottom"


@pytest.mark.slow
def test_train_step_bench_runs(tmp_path, tiny_model_path):
    out = tmp_path / "train.json"
    proc = subprocess.run([sys.executable, "-m", "bench.train_step", "--model", "tiny-random", "--steps", "5",
                           "--memory-steps", "2", "--paired-steps", "4", "--variants", "trl-dpo,dpo,hs-none-InnerDPO",
                           "--peak-tflops", "1", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(out.read_text())
    assert set(record["results"]) == {"trl-dpo", "dpo", "hs-none-InnerDPO"}
    assert set(record["ratios"]) == {"dpo/trl time", "dpo/trl memory", "hs-none-InnerDPO/dpo time",
                                     "hs-none-InnerDPO/dpo memory"}
    assert record["results"]["dpo"]["tokens_per_step"] < record["results"]["trl-dpo"]["tokens_per_step"]
    assert 0 < record["paired"]["summary"]["dpo"]["mfu"] < 1
    assert "MFU" in proc.stdout


@pytest.mark.slow
def test_eval_throughput_bench_runs(tmp_path, tiny_model_path):
    out = tmp_path / "eval.json"
    proc = subprocess.run([sys.executable, "-m", "bench.eval_throughput", "--model", "tiny-random", "--rows", "3",
                           "--adapters", "2", "--batch-sizes", "8", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(out.read_text())
    assert record["identical_decisions"] is True
    assert len(record["ours_s"]) == len(record["plain_adapter_s"]) == 2 and record["plain_base_s"] > 0
    assert {r["target"] for r in record["ratios"].values()} == {1.3, 2.0, None}


def test_cache_targets_are_derived_as_their_docstring_says():
    """dpo-cached/TRL = dpo standalone × paired ratio / TRL; build / (per-batch saving × batches); sweeps by formula."""
    from bench.cache_targets import cache_ratios

    results = {"trl-dpo": {"step_s": 4.0}, "dpo": {"step_s": 2.0},
               "hs-none-InnerDPO": {"peak_mb_memory_steps": 100.0}, "hs-none-InnerDPO-cached": {"peak_mb_memory_steps": 90.0}}
    medians = {"dpo": 2.0, "ipo": 2.0, "hs-none-InnerDPO": 2.2, "hs-supr-InnerDPO": 2.2,
               "dpo-cached": 1.5, "hs-none-InnerDPO-cached": 1.6, "hs-supr-InnerDPO-cached": 1.6}
    paired = {"warmup": 1, "batches": 4, "times_s": {v: [9.0] + [t] * 3 for v, t in medians.items()},
              "ref_cache_build_s": {"dpo-cached": 1.0, "hs-none-InnerDPO-cached": 1.0, "hs-supr-InnerDPO-cached": 1.0}}
    summary = {v: {"per_batch_ratio_to_dpo": t / 2.0} for v, t in medians.items()}
    ratios = {name: r["value"] for name, r in cache_ratios(results, summary, paired).items()}
    assert ratios["dpo-cached/trl time (dpo standalone x paired ratio)"] == 0.375
    assert ratios["dpo-cached/dpo time"] == 0.75 and ratios["hs-none-InnerDPO-cached/dpo time"] == 0.8
    assert ratios["hs-none-InnerDPO-cached/hs-none-InnerDPO memory"] == 0.9
    assert ratios["dpo-cached build/one epoch of reference passes"] == 0.5          # 1 s / (0.5 s × 4 batches)
    assert ratios["sweep dpo,ipo,hs-none,hs-supr x1 ep (derived)"] == round((4 * 6.2 + 3) / (4 * 8.4), 3)
    assert ratios["sweep 4 hs-none runs x1 ep (derived)"] == round((16 * 1.6 + 1) / (16 * 2.2), 3)


def test_a_paired_only_variant_without_the_paired_run_is_refused(capsys):
    """ipo and dpo-cached are measured only against dpo in the paired run; asking for them without it says so."""
    from bench.train_step import main

    for argv in (["--variants", "dpo-cached"], ["--variants", "dpo,ipo", "--paired-steps", "0"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        assert "run only in the paired run" in capsys.readouterr().err
