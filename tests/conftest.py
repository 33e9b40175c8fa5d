"""Shared fixtures: a per-session model cache with the tiny random Llama built once, offline settings."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory):
    """Point INNERDPO_CACHE at a session directory (subprocesses inherit it), unless the caller set one."""
    if "INNERDPO_CACHE" not in os.environ:
        os.environ["INNERDPO_CACHE"] = str(tmp_path_factory.mktemp("innerdpo-cache"))
    return os.environ["INNERDPO_CACHE"]


@pytest.fixture(scope="session")
def tiny_model_path(model_cache):
    from innerdpo_bench.models import ensure_tiny_random

    return str(ensure_tiny_random())


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_path):
    from innerdpo_bench.models import load_tokenizer

    return load_tokenizer(tiny_model_path)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_model_path):
    """A short hs-ether-InnerDPO run on tiny-random, shared by eval tests."""
    from innerdpo_bench.config import TrainConfig
    from innerdpo_bench.train.trainer import train

    out = tmp_path_factory.mktemp("runs") / "ether"
    cfg = TrainConfig(method="hs-ether-InnerDPO", base_model="tiny-random", dataset="mini:train", max_steps=8,
                      batch_size=4, effective_batch=4, learning_rate=5e-3, logging_steps=2, output_dir=str(out),
                      max_rows=64)
    return train(cfg, progress=False)
