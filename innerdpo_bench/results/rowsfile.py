"""The rows file `innerdpo eval` writes beside eval.json, parsed into numpy arrays per shift and cached.

One record per row per shift (`ROW_FIELDS`): the adapter's and the base model's summed log-probs of chosen
and rejected, their token counts, the row id and the harness's verdict. Files are cached by path, size and
modification time, so reading the same file again (a table redrawn every second) costs a `stat`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from innerdpo_bench import rundir, scoring
from innerdpo_bench.errors import UserError
from innerdpo_bench.evalreport import read_eval_report
from innerdpo_bench.suites import SHIFTS

ROW_FIELDS = ("shift", "row_id", "logp_chosen", "logp_rejected", "n_chosen", "n_rejected", "base_logp_chosen",
              "base_logp_rejected", "correct")
FileStamp = tuple[str, int, int]     # (path, size, mtime_ns): a cache key that changes when the file does


@dataclass(frozen=True)
class ShiftRows:
    """One shift's rows, in file order; every array has shape [rows]. `keys` are the row ids made unique
    (`<row_id>#k` for the k-th repeat of a pair); `correct` is the harness's verdict (the `acc` rule)."""

    keys: np.ndarray
    logp_chosen: np.ndarray
    logp_rejected: np.ndarray
    n_chosen: np.ndarray
    n_rejected: np.ndarray
    base_logp_chosen: np.ndarray
    base_logp_rejected: np.ndarray
    correct: np.ndarray

    def __len__(self) -> int:
        return len(self.keys)

    @functools.cached_property
    def position(self) -> dict[str, int]:
        """key → row index (a dict lookup matches rows 20x faster than sorting string arrays)."""
        return {key: index for index, key in enumerate(self.keys.tolist())}

    def score(self, metric: str) -> np.ndarray:
        """Per-row correctness under a metric of `scoring.METRICS` (or an alias); bool [rows]."""
        return scoring.lookup(metric).score(self)

    def base_score(self, metric: str) -> np.ndarray:
        """Per-row correctness of the base model (adapter off) under a reference-free metric (acc, acc_sum)."""
        name = scoring.resolve_metric(metric, scoring.BASE_METRICS, kind="base-model metric")
        return scoring.METRICS[name].score(scoring.base_model_pair(self))

    def take(self, index: np.ndarray) -> ShiftRows:
        return ShiftRows(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))


# --------------------------------------------------------------------------- cached readers


def file_stamp(path: Path) -> FileStamp | None:
    """The cache key of a file, None when it is missing."""
    try:
        info = path.stat()
    except OSError:
        return None
    return str(path), info.st_size, info.st_mtime_ns


def read_json(path: Path) -> dict | None:
    """A JSON object file, None when it is missing, unreadable or not an object (cached)."""
    stamp = file_stamp(path)
    return None if stamp is None else _read_json_cached(stamp)


@functools.lru_cache(maxsize=4096)
def _read_json_cached(stamp: FileStamp) -> dict | None:
    try:
        data = json.loads(Path(stamp[0]).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def rows_path_of(eval_path: Path, report: Mapping[str, Any]) -> Path:
    """The rows file eval.json names (`rows_file`), else `<stem>_rows.jsonl` beside it."""
    return eval_path.with_name(report["rows_file"]) if report.get("rows_file") else rundir.rows_path_for(eval_path)


def load_evaluation(eval_path: Path) -> tuple[dict, Path, dict[str, ShiftRows]]:
    """(eval.json, rows file path, rows per shift in SHIFTS order); UserError when either file is unusable."""
    report = read_eval_report(eval_path)
    rows_path = rows_path_of(eval_path, report)
    stamp = file_stamp(rows_path)
    if stamp is None:
        raise UserError(f"{eval_path} has no per-row records ({rows_path.name} is missing beside it; evals before "
                        "per-row records were written need innerdpo eval again)")
    return report, rows_path, _parse_rows(stamp)


# --------------------------------------------------------------------------- parsing


@functools.lru_cache(maxsize=256)
def _parse_rows(stamp: FileStamp) -> dict[str, ShiftRows]:
    path = Path(stamp[0])
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    try:  # one C-level parse of the whole file: 3x faster than json.loads per line
        records = json.loads("[" + ",".join(lines) + "]")
    except json.JSONDecodeError:
        records = [_parse_line(path, number, line) for number, line in enumerate(lines, 1)]
    by_shift: dict[str, list[dict]] = {}
    required = set(ROW_FIELDS)
    for number, record in enumerate(records, 1):
        if not (isinstance(record, dict) and required <= record.keys()):
            missing = [name for name in ROW_FIELDS if not isinstance(record, dict) or name not in record]
            raise UserError(f"{path} line {number} lacks {missing[0]!r} (per-row records need "
                            f"{', '.join(ROW_FIELDS)}); re-run innerdpo eval")
        by_shift.setdefault(record["shift"], []).append(record)
    order = [*SHIFTS, *sorted(set(by_shift) - set(SHIFTS))]
    return {shift: _shift_rows(by_shift[shift]) for shift in order if shift in by_shift}


def _parse_line(path: Path, number: int, line: str) -> dict:
    try:
        return json.loads(line)
    except json.JSONDecodeError as err:
        raise UserError(f"{path} line {number} is not valid JSON ({err.msg}); re-run innerdpo eval") from None


def _unique_keys(row_ids: list[str]) -> np.ndarray:
    seen: dict[str, int] = {}
    keys = []
    for row_id in row_ids:
        repeat = seen.get(row_id, 0)
        seen[row_id] = repeat + 1
        keys.append(row_id if repeat == 0 else f"{row_id}#{repeat}")
    return np.array(keys)


def _shift_rows(records: list[dict]) -> ShiftRows:
    arrays = {"keys": _unique_keys([r["row_id"] for r in records]),
              "correct": np.array([r["correct"] for r in records], dtype=bool)}
    for name in ("logp_chosen", "logp_rejected", "base_logp_chosen", "base_logp_rejected"):
        arrays[name] = np.array([r[name] for r in records], dtype=float)
    for name in ("n_chosen", "n_rejected"):
        arrays[name] = np.array([r[name] for r in records], dtype=np.int64)
    for array in arrays.values():
        array.setflags(write=False)  # cached and shared: nobody may change them
    return ShiftRows(**arrays)
