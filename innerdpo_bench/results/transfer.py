"""How much of a run's in-domain gain carries over to each shift, from its loaded rows (pure).

gain(s) = acc(adapter, s) − acc(base, s) on the same rows, the base being the same model with the adapter
off; normalised transfer and GENIES' differential elicitation are `stats.normalised_transfer` and
`stats.differential_elicitation`. A shift's target is a run trained on that shift's own evaluation data,
matched by the data keys below.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from innerdpo_bench.errors import UserError
from innerdpo_bench.evaluation import scoring
from innerdpo_bench.results import stats
from innerdpo_bench.results.compare import align
from innerdpo_bench.results.provenance import MINI_DATASET

if TYPE_CHECKING:
    from innerdpo_bench.results.records import RunRows

DataKey = tuple   # ("mini", split) | ("file", absolute path) | ("hub", dataset, config)


@dataclass(frozen=True)
class ShiftTransfer:
    """One shift of `transfer_report`: accuracies, gain over the base model, normalised transfer, and GENIES'
    differential elicitation against the best store run trained on the shift's own data (if any)."""

    shift: str
    n: int
    acc: float
    base_acc: float
    gain: float
    transfer: float | None
    target_run: str | None = None              # the best run trained on this shift's data
    target_acc: float | None = None            # its accuracy on the rows it shares with this run
    target_n: int | None = None                # those shared rows
    differential_elicitation: float | None = None


def train_data_key(dataset: str | None) -> DataKey | None:
    """What a training --dataset names, comparable with `eval_data_key` (the split is ignored)."""
    if not dataset:
        return None
    from innerdpo_bench.data.pairs import parse_dataset

    try:
        ref = parse_dataset(str(dataset))
    except UserError:
        return None
    if ref.kind == "mini":
        return ("mini", ref.path)
    if ref.kind == "file":
        return ("file", str(Path(ref.path).resolve()))
    return ("hub", ref.path, ref.config)


def eval_data_key(prov: Mapping[str, Any] | None) -> DataKey | None:
    """What an eval.json shift's provenance says it was scored on, comparable with `train_data_key`."""
    if not prov or not prov.get("dataset"):
        return None
    if prov["dataset"] == MINI_DATASET:
        return ("mini", prov.get("split"))
    if prov.get("split") is None:  # a file of a data directory
        return ("file", str(Path(prov["dataset"]).resolve()))
    return ("hub", prov["dataset"], prov.get("config"))


def transfer_report(rows: RunRows, metric: str = "acc", candidates: Sequence[RunRows] = ()) -> list[ShiftTransfer]:
    """Gains, normalised transfer and differential elicitation per shift of one run.

    `candidates` are other runs (typically `locate.target_candidates`); those trained on a shift's
    evaluation dataset (same dataset and config; any split) with the same base model are that shift's
    targets, scored on whichever of their shifts used that dataset. Differential elicitation uses the
    best target, all three accuracies taken on the rows this run and the target share.
    """
    metric = scoring.resolve_metric(metric, scoring.BASE_METRICS)
    acc = {shift: float(r.score(metric).mean()) for shift, r in rows.shifts.items()}
    base_acc = {shift: float(r.base_score(metric).mean()) for shift, r in rows.shifts.items()}
    transfer = stats.normalised_transfer(acc, base_acc)
    recorded = rows.report.get("provenance") or {}
    out = []
    for shift, shift_rows in rows.shifts.items():
        best = _best_target(rows, shift, eval_data_key(recorded.get(shift)), metric, candidates)
        entry = ShiftTransfer(shift, len(shift_rows), acc[shift], base_acc[shift], acc[shift] - base_acc[shift],
                              transfer[shift])
        if best is not None:
            target, target_acc, own_acc, own_base, shared = best
            entry = dataclasses.replace(entry, target_run=target.ident, target_acc=target_acc, target_n=shared,
                                        differential_elicitation=stats.differential_elicitation(own_acc, own_base,
                                                                                                target_acc))
        out.append(entry)
    return out


def _best_target(rows: RunRows, shift: str, data_key: DataKey | None, metric: str,
                 candidates: Sequence[RunRows]) -> tuple[RunRows, float, float, float, int] | None:
    """(target, its acc, this run's acc, base acc, shared rows) for the best candidate trained on `data_key`."""
    if data_key is None:
        return None
    best = None
    for candidate in candidates:
        if train_data_key(candidate.train_dataset) != data_key or candidate.base_model != rows.base_model:
            continue
        for their_shift, prov in (candidate.report.get("provenance") or {}).items():
            if eval_data_key(prov) != data_key or their_shift not in candidate.shifts:
                continue
            own, theirs = rows.shifts[shift], candidate.shifts[their_shift]
            own_index, their_index = align([own, theirs])
            if len(own_index) == 0:
                continue
            target_acc = float(theirs.score(metric)[their_index].mean())
            if best is None or target_acc > best[1]:
                best = (candidate, target_acc, float(own.score(metric)[own_index].mean()),
                        float(own.base_score(metric)[own_index].mean()), len(own_index))
    return best
