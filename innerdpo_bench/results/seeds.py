"""Runs that differ only by seed: the one grouping key, shared by the results table, compare and plot."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
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
    run kind and method always split groups (a dpo run and a base model both lack `alpha`, but are no group), so
    does what a run was trained on and scored with (`experiment_identity`: data, base model, suite, row limit), and
    a run without a key's value groups with the others without it. Groups in order of their first run."""
    from innerdpo_bench.results import columns

    keys = list(keys)
    groups: dict[str, list[Run]] = {}
    for run in runs:
        identity = [run.kind, columns.method_of(run), experiment_identity(run),
                    *(columns.value(run, key) for key in keys)]
        groups.setdefault(json.dumps(identity, sort_keys=True, default=str), []).append(run)
    return list(groups.values())


IDENTITY = ("dataset", "max_rows", "base_model", "suite", "limit")   # what a group never mixes


def experiment_identity(run: Run) -> dict[str, object]:
    """What a run was trained on and scored with: its data, base model (an eval-only run: its checkpoint), suite
    and row limit. Runs that differ in it are no group, whatever else they share."""
    train, evaluation = run.spec.train, run.spec.eval
    return {"dataset": train.dataset if train else None, "max_rows": train.max_rows if train else None,
            "base_model": run.spec.base_model, "suite": evaluation.suite, "limit": evaluation.limit}


def told_apart(groups: list[Sequence[Run]], names: list[str]) -> list[str]:
    """The groups' names, those that are equal with what differs between them (`experiment_identity`) added,
    e.g. `dpo data=custom.jsonl` beside `dpo data=mini:in_domain`."""
    from innerdpo_bench.config.naming import label

    identities = [experiment_identity(group[0]) for group in groups]
    by_name: dict[str, list[dict[str, object]]] = {}
    for name, identity in zip(names, identities):
        by_name.setdefault(name, []).append(identity)
    out = []
    for name, identity in zip(names, identities):
        twins = by_name[name]
        differ = [key for key in IDENTITY if len({repr(twin[key]) for twin in twins}) > 1]
        out.append(" ".join([name, *(f"{label(key)}={str(identity[key]).rsplit('/', 1)[-1]}"
                                     for key in differ)]))
    return out

