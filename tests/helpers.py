"""Helpers shared by several test files (fixtures live in conftest.py); test files import from here, never from
each other."""

from __future__ import annotations

import dataclasses

from innerdpo_bench.config import TrainConfig
from innerdpo_bench.methods.loss_config import LossConfig


def loss_config(**overrides) -> LossConfig:
    """The loss config of a default `TrainConfig` (dpo: α = 0) with `overrides`, as a run's `cfg.loss` would be."""
    return dataclasses.replace(TrainConfig().loss, **overrides)
