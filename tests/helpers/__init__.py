"""Helpers shared by several test files: plain functions and constants, by topic in this package's modules (fixtures
live in tests/conftest.py). Test files import from here, never from each other (tests/test_layout.py checks).

    helpers            loss_config: a run's loss config with overrides
    helpers.cli        the CLI in this process (`invoke`) and its one error line (`one_error_line`)
    helpers.evaluation preference pairs a real model gets right, a GENIES folder, the plain lm_eval CLI
    helpers.runs       synthetic evaluated runs: run directories with rows files, done store runs
    helpers.store      store faults: a fake clock, a lost commit, a corrupt page, a small tmpfs
    helpers.tui        the dashboard's Pilot tests: a store of seven runs on a fixed clock, the app, waits, readers
    helpers.worker     the worker with fake stages (FAKE_STAGE, DRIVER) and readers and waits for runs and workers
"""

from __future__ import annotations

import dataclasses

from innerdpo_bench.config import TrainConfig
from innerdpo_bench.methods.loss_config import LossConfig


def loss_config(**overrides) -> LossConfig:
    """The loss config of a default `TrainConfig` (dpo: α = 0) with `overrides`, as a run's `cfg.loss` would be."""
    return dataclasses.replace(TrainConfig().loss, **overrides)
