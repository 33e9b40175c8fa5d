"""The reference-pass cache (issue 20): cached reference values equal the live pass, training from the cache equals
training without it, every input of the key misses when changed, damaged files are rebuilt, two builders at once
leave one good file, and `innerdpo cache ls|clear` shows and frees them."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from innerdpo_bench import rundir
from innerdpo_bench.cli.main import app
from innerdpo_bench.config import TrainConfig
from innerdpo_bench.data.pairs import load_pairs
from innerdpo_bench.models.forward import forward_pass
from innerdpo_bench.train import refcache
from innerdpo_bench.train.trainer import build_trainer, train

METHODS = ["dpo", "hs-none-InnerDPO", "hs-supr-InnerDPO"]
ROWS = 12


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """A workspace of this test's own: its reference caches start empty (cache_root → HOME/cache/refs)."""
    monkeypatch.setenv("INNERDPO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def config(tmp_path, method="dpo", name="run", **overrides):
    fields = dict(method=method, base_model="tiny-random", dataset="mini:train", max_rows=ROWS, max_steps=5,
                  batch_size=4, effective_batch=4, learning_rate=1e-3, logging_steps=1, warmup_ratio=0.0,
                  output_dir=str(tmp_path / name), ref_cache="on")
    fields.update(overrides)
    return TrainConfig(**fields).validate()


def prepare(cfg, tmp_path, base_path):
    return build_trainer(cfg, tmp_path / "prep", base_path, load_pairs("mini:train", ROWS), "mini:train")


def log_of(run):
    return (run / rundir.TRAIN_LOG).read_text()


@pytest.mark.parametrize("pack", [True, False], ids=["packed", "padded"])
@pytest.mark.parametrize("method", METHODS)
def test_cached_reference_values_equal_the_live_pass(method, pack, home, tmp_path, tiny_model_path):
    trainer = prepare(config(tmp_path, method, pack_prompt=pack), tmp_path, tiny_model_path).trainer
    assert trainer.ref_cache is not None
    batches = list(trainer.get_train_dataloader())
    assert batches and all("ref_index" in batch for batch in batches)
    peft_model = trainer.model
    for batch in batches:
        logp, n_tokens, pooled = trainer.ref_cache.lookup(batch["ref_index"], "cpu")
        with torch.no_grad(), peft_model.disable_adapter():
            live = forward_pass(peft_model, batch, trainer.layers)
        torch.testing.assert_close(logp, live.logp_sum, atol=1e-5, rtol=0)
        assert torch.equal(n_tokens, live.n_tokens)
        if method == "dpo":
            assert pooled is None
        else:
            live_pooled = trainer._pooled(live)  # the transform's pooling of the live token-level states
            assert pooled.shape == live_pooled.shape
            torch.testing.assert_close(pooled, live_pooled, atol=1e-5, rtol=0)


def adapter_weights(run):
    return load_file(str(run / rundir.ADAPTER / "adapter_model.safetensors"))


@pytest.mark.parametrize("method", METHODS)
def test_five_steps_from_the_cache_equal_five_live_steps(method, home, tmp_path, tiny_model_path):
    live = train(config(tmp_path, method, "live", ref_cache="off"), progress=False)
    cached = train(config(tmp_path, method, "cached"), progress=False)
    again = train(config(tmp_path, method, "again"), progress=False)
    assert "reference cache off" in log_of(live)
    assert "reference cache built" in log_of(cached) and "reference cache hit" in log_of(again)
    for run in (cached, again):
        a, b = adapter_weights(live), adapter_weights(run)
        assert a.keys() == b.keys()
        assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
        steps = lambda r: [json.loads(line) for line in (r / rundir.METRICS).read_text().splitlines()]  # noqa: E731
        for x, y in zip(steps(live), steps(run), strict=True):
            if "loss" in x:
                assert y["loss"] == pytest.approx(x["loss"], abs=1e-6)


def test_ether_keeps_the_live_reference_and_says_so(home, tmp_path, tiny_model_path):
    prepared = prepare(config(tmp_path, "hs-ether-InnerDPO", max_steps=1), tmp_path, tiny_model_path)
    assert prepared.trainer.ref_cache is None
    run = train(config(tmp_path, "hs-ether-InnerDPO", max_steps=1), progress=False)
    assert "reference cache not used for hs-ether-InnerDPO" in log_of(run)
    assert not list(refcache.cache_root().glob("*.safetensors"))


def test_auto_builds_only_for_a_run_that_sees_every_pair(home, tmp_path, tiny_model_path):
    short = train(config(tmp_path, "dpo", "short", max_steps=2, ref_cache="auto"), progress=False)  # 8 of 12 pairs
    assert "reference cache not built: this run sees 8 pairs, fewer than the 12" in log_of(short)
    long = train(config(tmp_path, "dpo", "long", max_steps=3, ref_cache="auto"), progress=False)
    assert "reference cache built" in log_of(long)
    short_again = train(config(tmp_path, "dpo", "short2", max_steps=2, ref_cache="auto"), progress=False)
    assert "reference cache hit" in log_of(short_again)  # an existing cache is always used


def key_of(cfg, tmp_path, base_path):
    return prepare(cfg, tmp_path, base_path).trainer.ref_cache.key


def test_every_input_of_the_key_misses_when_changed(home, tmp_path, tiny_model_path):
    method = "hs-none-InnerDPO"
    first = key_of(config(tmp_path, method), tmp_path, tiny_model_path)
    assert key_of(config(tmp_path, method, seed=3), tmp_path, tiny_model_path) == first  # same pairs, other order
    # a sweep over the loss's knobs shares one cache: they act after the reference pass
    assert key_of(config(tmp_path, method, align_method="logodds", alpha=1.0, beta=0.5), tmp_path,
                  tiny_model_path) == first
    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_path, copy)
    assert key_of(config(tmp_path, method, base_model=str(copy)), tmp_path, str(copy)) == first  # same bytes
    weights = copy / "model.safetensors"
    tensors = load_file(str(weights))
    name = next(iter(tensors))
    tensors[name] = tensors[name] + 1e-3
    save_file(tensors, str(weights), metadata={"format": "pt"})
    changed = {
        "another base": key_of(config(tmp_path, method, base_model=str(copy)), tmp_path, str(copy)),
        "another layer spec": key_of(config(tmp_path, method, layers="1,3"), tmp_path, tiny_model_path),
        "another max length": key_of(config(tmp_path, method, max_length=40, max_prompt_length=20), tmp_path,
                                     tiny_model_path),
        "another dtype": key_of(config(tmp_path, method, precision="bf16"), tmp_path, tiny_model_path),
        "another transform": key_of(config(tmp_path, "hs-supr-InnerDPO"), tmp_path, tiny_model_path),
        "output-only": key_of(config(tmp_path, "dpo"), tmp_path, tiny_model_path),
    }
    assert first not in changed.values(), changed
    assert len(set(changed.values())) == len(changed)
    assert len(list(refcache.cache_root().glob("*.safetensors"))) == 1 + len(changed)


def test_a_damaged_cache_file_is_rebuilt_with_a_log_line(home, tmp_path, tiny_model_path):
    first = train(config(tmp_path, "hs-supr-InnerDPO", "first", max_steps=1), progress=False)
    (path,) = refcache.cache_root().glob("*.safetensors")
    good = path.read_bytes()
    good_tensors = {k: v.clone() for k, v in load_file(str(path)).items()}
    path.write_bytes(good[: len(good) // 2])  # truncated
    second = train(config(tmp_path, "hs-supr-InnerDPO", "second", max_steps=1), progress=False)
    assert f"reference cache {path} unusable: unreadable" in log_of(second)
    assert "reference cache built" in log_of(second)
    rebuilt = {k: v.clone() for k, v in load_file(str(path)).items()}  # the same tensors again (the header's key order may differ)
    assert rebuilt.keys() == good_tensors.keys() and all(torch.equal(rebuilt[k], good_tensors[k]) for k in rebuilt)
    damaged = bytearray(good)
    damaged[-3] ^= 0xFF  # a flipped bit in the tensor data: still loads, fails the checksum
    path.write_bytes(bytes(damaged))
    third = train(config(tmp_path, "hs-supr-InnerDPO", "third", max_steps=1), progress=False)
    assert "checksum does not match" in log_of(third) and "reference cache built" in log_of(third)
    key = json.loads((first / rundir.CONFIG).read_text())["ref_cache_key"]
    identity = json.loads(refcache.read_header(path)["identity"])
    cache, problem = refcache.load(path, key, identity)
    assert cache is not None and problem is None


def test_two_builders_at_once_leave_one_valid_file(home, tmp_path, tiny_model_path):
    env = {**os.environ, "INNERDPO_HOME": str(home)}
    procs = [subprocess.Popen([sys.executable, "-m", "innerdpo_bench", "train", "hs-none-InnerDPO", "--base-model",
                               "tiny-random", "--dataset", "mini:train", "--max-rows", str(ROWS), "--max-steps", "1",
                               "--batch-size", "4", "--effective-batch", "4", "--ref-cache", "on", "--quiet",
                               "--output-dir", str(tmp_path / f"run{i}")], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
    for proc in procs:
        out, _ = proc.communicate()
        assert proc.returncode == 0, out
    root = refcache.cache_root(str(home))
    files = list(root.glob("*.safetensors"))
    assert len(files) == 1 and not list(root.glob("*.tmp"))
    logs = [log_of(tmp_path / f"run{i}") for i in range(2)]
    assert sum("reference cache built" in text for text in logs) == 1  # the lock: the second waited, then hit
    assert sum("reference cache hit" in text for text in logs) == 1
    meta = refcache.read_header(files[0])
    cache, problem = refcache.load(files[0], meta["key"], json.loads(meta["identity"]))
    assert cache is not None and problem is None


def test_cache_ls_and_clear(home, tmp_path, tiny_model_path):
    runner = CliRunner()
    empty = runner.invoke(app, ["cache", "ls", "--home", str(home)])
    assert empty.exit_code == 0 and "no reference caches" in empty.output
    train(config(tmp_path, "hs-none-InnerDPO", max_steps=1), progress=False)
    listed = runner.invoke(app, ["cache", "ls", "--home", str(home), "--json"])
    assert listed.exit_code == 0, listed.output
    (entry,) = json.loads(listed.output)["entries"]
    (path,) = refcache.cache_root(str(home)).glob("*.safetensors")
    assert entry["bytes"] == path.stat().st_size and entry["pairs"] == ROWS
    assert entry["transform"] == "none" and entry["dtype"] == "float32" and entry["layers"]
    table = runner.invoke(app, ["cache", "ls", "--home", str(home)])
    assert entry["key"] in table.output and "1 caches" in table.output
    cleared = runner.invoke(app, ["cache", "clear", "--home", str(home)])
    assert cleared.exit_code == 0 and "removed 1 reference caches" in cleared.output
    assert not path.exists()


def test_size_formula_matches_the_file(home, tmp_path, tiny_model_path):
    """The formula the notes extrapolate with: the file is its tensors plus a header of a few KB."""
    trainer = prepare(config(tmp_path, "hs-none-InnerDPO"), tmp_path, tiny_model_path).trainer
    (path,) = refcache.cache_root().glob("*.safetensors")
    layers, hidden = trainer.ref_cache.tensors["pooled"].shape[2:]
    tensors = refcache.size_bytes(ROWS, layers, hidden)
    assert trainer.ref_cache.nbytes == tensors
    assert 0 < path.stat().st_size - tensors < 16 << 10
