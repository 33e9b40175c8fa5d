"""Runs that differ only by seed: the one grouping key, shared by the results table, compare and plot."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, TypeVar

from innerdpo_bench.store import Run

if TYPE_CHECKING:
    from innerdpo_bench.results.records import RunRows

RunOrRows = TypeVar("RunOrRows")


def seed_group_key(run: Run | RunRows) -> str:
    """Everything that defines a run except its seed: a store run's kind and spec without its seed, display
    name (derived from the rest), sweep id (the same run queued by two sweeps is one group) and
    bookkeeping options (checkpoints, trackers, reference cache); for a run directory outside the store, its
    training config (less seed, device and bookkeeping) plus the eval suite and row limit. Runs with equal keys
    differ only by seed."""
    from innerdpo_bench.config import TrainConfig

    bookkeeping = TrainConfig.names(role="bookkeeping")
    store_run = run if isinstance(run, Run) else run.run
    if store_run is not None:
        spec = store_run.spec
        if spec.train is not None:
            defaults = TrainConfig()
            spec = spec.replace(train=dataclasses.replace(spec.train, seed=0, **{
                name: getattr(defaults, name) for name in bookkeeping}))
        return json.dumps([store_run.kind, spec.replace(name="", sweep=None).to_json()], sort_keys=True, default=str)
    fields = set(TrainConfig.names()) - {"seed", "device", *bookkeeping}
    config = {key: value for key, value in run.config.items() if key in fields}
    identity = {key: run.report.get(key) for key in ("method", "base_model", "suite", "limit", "data_dir")}
    if not config:
        identity["checkpoint"] = run.report.get("checkpoint")
    return json.dumps([config, identity], sort_keys=True, default=str)


def group_by_seed(runs: Iterable[RunOrRows]) -> list[list[RunOrRows]]:
    """Runs (store runs or loaded rows) that differ only by seed, together; groups in order of their first run."""
    groups: dict[str, list[RunOrRows]] = {}
    for run in runs:
        groups.setdefault(seed_group_key(run), []).append(run)
    return list(groups.values())


def group_by_keys(runs: Iterable[Run], keys: Iterable[str]) -> list[list[Run]]:
    """Store runs with equal values of `keys` (any table column or config key, `columns.value`), together; the
    run kind and method always split groups (a dpo run and a base model both lack `alpha`, but are no group),
    and a run without a key's value groups with the others without it. Groups in order of their first run."""
    from innerdpo_bench.results import columns

    keys = list(keys)
    groups: dict[str, list[Run]] = {}
    for run in runs:
        identity = [run.kind, columns.method_of(run), *(columns.value(run, key) for key in keys)]
        groups.setdefault(json.dumps(identity, sort_keys=True, default=str), []).append(run)
    return list(groups.values())
