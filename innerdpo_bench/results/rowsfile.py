"""The rows file `innerdpo eval` writes beside eval.json, parsed into numpy arrays per shift and cached.

One record per row per shift (`ROW_FIELDS`): the adapter's and the base model's summed log-probs of chosen
and rejected, their token counts, the row id and the harness's verdict. Files are cached by path, size and
modification time, so reading the same file again (a table redrawn every second) costs a `stat`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from innerdpo_bench import rundir
from innerdpo_bench.errors import UserError
from innerdpo_bench.evaluation import scoring
from innerdpo_bench.evaluation.report import read_eval_report, rebuild_command
from innerdpo_bench.evaluation.suites import SHIFTS
from innerdpo_bench.typecheck import describe, json_type

ROW_FIELDS = scoring.ROW_FIELDS
REQUIRED = frozenset(ROW_FIELDS)
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
    except (OSError, ValueError, RecursionError):  # ValueError: not JSON, or not UTF-8
        return None
    return data if isinstance(data, dict) else None


def rows_path_of(eval_path: Path, report: Mapping[str, Any]) -> Path:
    """The rows file eval.json names (`rows_file`), else `<stem>_rows.jsonl` beside it (files before it was named)."""
    return eval_path.with_name(report["rows_file"]) if report.get("rows_file") else rundir.rows_path_for(eval_path)


def expected_sha256(report: Mapping[str, Any]) -> str | None:
    """The rows file's sha256 as eval.json records it: `rows_sha256`, else (files written before it was a
    top-level key) the evaluation cache's `cache.rows_sha256`; None for files older than both."""
    cache = report.get("cache")
    return report.get("rows_sha256") or (cache.get("rows_sha256") if isinstance(cache, dict) else None)


def load_evaluation(eval_path: Path) -> tuple[dict, Path, dict[str, ShiftRows]]:
    """(eval.json, rows file path, rows per shift in SHIFTS order); UserError when either file is unusable: the
    rows file eval.json names is missing, its sha256 is not the one eval.json records (the two come from
    different evaluations), a line is not JSON, lacks a field or holds one of the wrong type. Each message names
    the file and the command that rebuilds the pair (`evalreport.rebuild_command`)."""
    report = read_eval_report(eval_path)
    rows_path = rows_path_of(eval_path, report)
    rebuild = rebuild_command(eval_path, report)
    stamp = file_stamp(rows_path)
    if stamp is None:
        if report.get("rows_file"):
            raise UserError(f"{eval_path} has no per-row records: it names {rows_path.name}, which is missing; "
                            f"rebuild both: {rebuild}")
        raise UserError(f"{eval_path} has no per-row records ({rows_path.name} is missing beside it; evals before "
                        f"per-row records were written need innerdpo eval again: {rebuild})")
    parsed = _parse_rows(stamp, expected_sha256(report), rebuild)
    if isinstance(parsed, str):
        raise UserError(parsed.replace("{eval_path}", str(eval_path)))
    return report, rows_path, parsed


# --------------------------------------------------------------------------- parsing


def _fits(value: Any, hint: type) -> bool:
    if hint is float:
        return type(value) in (float, int)
    return type(value) is hint


@functools.lru_cache(maxsize=256)
def _parse_rows(stamp: FileStamp, sha256: str | None, rebuild: str) -> dict[str, ShiftRows] | str:
    """Rows per shift, or the one-line reason the file is unusable (cached either way: a table redraws every
    second); "{eval_path}" in the reason stands for the eval.json that named the file."""
    path = Path(stamp[0])
    try:
        data = path.read_bytes()
    except OSError as err:
        return f"cannot read {path} ({err.strerror or err})"
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        return (f"{path} does not match {{eval_path}} (its sha256 is not the rows_sha256 eval.json records: the two "
                f"come from different evaluations); rebuild both: {rebuild}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        return f"{path} is not UTF-8 text (byte {err.start}); rebuild it: {rebuild}"
    lines = [line for line in text.splitlines() if line.strip()]
    try:  # one C-level parse of the whole file: 3x faster than json.loads per line
        records = json.loads("[" + ",".join(lines) + "]")
    except (json.JSONDecodeError, RecursionError):
        for number, line in enumerate(lines, 1):
            try:
                json.loads(line)
            except (json.JSONDecodeError, RecursionError) as err:
                return f"{path} line {number} is not valid JSON ({getattr(err, 'msg', err)}); rebuild it: {rebuild}"
        return f"{path} is not valid JSON lines; rebuild it: {rebuild}"
    for number, record in enumerate(records, 1):
        if not (isinstance(record, dict) and REQUIRED <= record.keys()):
            missing = [name for name in ROW_FIELDS if not isinstance(record, dict) or name not in record]
            return (f"{path} line {number} lacks {missing[0]!r} (per-row records need {', '.join(ROW_FIELDS)}); "
                    f"rebuild it: {rebuild}")
    for name, hint in scoring.ROW_TYPES.items():
        bad = next((number for number, record in enumerate(records, 1) if not _fits(record[name], hint)), None)
        if bad is not None:
            return (f"{path} line {bad}: {name!r} must be {describe(hint)}, not {json_type(records[bad - 1][name])}; "
                    f"rebuild it: {rebuild}")
    by_shift: dict[str, list[dict]] = {}
    for record in records:
        by_shift.setdefault(record["shift"], []).append(record)
    order = [*SHIFTS, *sorted(set(by_shift) - set(SHIFTS))]
    return {shift: _shift_rows(by_shift[shift]) for shift in order if shift in by_shift}


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
