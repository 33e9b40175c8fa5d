"""The eval.json schema (`EvalReport`), which `evaluate` writes and every reader loads through `read_eval_report`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypedDict

from innerdpo_bench.errors import UserError
from innerdpo_bench.typecheck import describe, json_type, mismatch

# metric → value for one shift or the aggregate: acc, acc_stderr, acc_sum, ... (`evaluate.METRICS`) and n; a
# shift also has the label-orientation audit (`audit.py`): below_chance (bool) and chance_p (exact binomial p)
ShiftMetrics = dict[str, float | bool | None]


class BaseScores(TypedDict, total=False):
    """The base model (adapter off) on the same rows."""

    shifts: dict[str, ShiftMetrics]
    aggregate: ShiftMetrics


class Coherence(TypedDict, total=False):
    """Per-token NLL of the in_domain chosen completions, and its ratio and difference to the base model's."""

    nll: float | None
    base_nll: float | None
    nll_ratio: float | None
    nll_diff: float | None


class CacheInfo(TypedDict, total=False):
    """The whole-evaluation cache entry this report is (`hit`) or was stored as."""

    hit: bool
    key: str
    rows_sha256: str
    computed_at: str | None         # a hit: when the cached numbers were computed
    computed_seconds: float | None


class ScoreCacheUse(TypedDict, total=False):
    hits: int
    misses: int
    file: str


class EvalReport(TypedDict, total=False):
    """The content of eval.json. `evaluate` writes every key; readers `.get` what older files may lack."""

    checkpoint: str                 # the run directory, adapter directory or model evaluated
    kind: str                       # run | adapter | model (`checkpoint.Checkpoint.kind`)
    base_model: str
    base_model_path: str
    adapter: str | None
    method: str | None              # "none" for a base model, None for a bare adapter
    display_name: str | None
    seed: int | None
    suite: str
    data_dir: str | None
    limit: int                      # rows per shift asked for
    sample: str                     # first | random
    sample_seed: int | None
    apply_chat_template: bool
    transforms_applied: bool        # always False: transforms shape training only
    device: str
    dtype: str
    batch_size: int | str
    versions: dict[str, str | None]
    timestamp: str
    seconds: float
    score_cache: dict[str, ScoreCacheUse]
    shifts: dict[str, ShiftMetrics]
    skipped_shifts: dict[str, str]  # shift → why it was not scored
    aggregate: ShiftMetrics
    base: BaseScores
    coherence: Coherence
    provenance: dict[str, dict[str, Any]]   # shift → `suites.provenance`
    rows_file: str                  # the per-row records, beside eval.json (`rundir.write_eval_pair`)
    rows_sha256: str                # their sha256: a reader checks it before using them
    adapter_sha256: str | None
    harness: dict[str, Any]         # lm-eval's own record, minus samples
    cache: CacheInfo


def read_eval_report(path: str | Path, required: Iterable[str] = ()) -> EvalReport:
    """eval.json at `path`, its keys checked against `EvalReport`; UserError naming the file when it is missing,
    not JSON, not an object, lacks a `required` key, or holds a key of the wrong type."""
    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} is missing") from None
    except OSError as err:
        raise UserError(f"cannot read {path} ({err.strerror or err})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not valid JSON ({getattr(err, 'msg', err)}); rebuild it: "
                        f"{rebuild_command(path)}") from None
    except RecursionError:
        raise UserError(f"{path} is nested too deeply to be an eval.json; rebuild it: {rebuild_command(path)}") from None
    if not isinstance(report, dict):
        raise UserError(f"{path} holds {json_type(report)}, not an eval.json object; rebuild it: "
                        f"{rebuild_command(path)}")
    for key in required:
        if key not in report:
            raise UserError(f"{path} has no {key!r}; rebuild it: {rebuild_command(path, report)}")
    wrong = mismatch(report, EvalReport)
    if wrong is not None:
        where, hint, value = wrong
        raise UserError(f"{path}: {where!r} must be {describe(hint)}, not {json_type(value)}; rebuild it: "
                        f"{rebuild_command(path, report)}")
    return report


def results_of(report: EvalReport, extra: dict[str, dict] | None = None) -> dict[str, dict[str, float]]:
    """What the store records for an eval.json: each shift's metrics and the coherence section (and `extra`, the
    sample statistics), numbers only, None as NaN. The worker records it; `innerdpo doctor` checks the store
    against it and records it again."""
    sections = {**report["shifts"], "coherence": report.get("coherence") or {}, **(extra or {})}
    return {shift: {metric: float("nan") if value is None else value for metric, value in metrics.items()
                    if value is None or isinstance(value, (int, float))}  # coherence may hold more
            for shift, metrics in sections.items()}


def old_scoring_rule(report: dict) -> str | None:
    """Why an eval.json's numbers were not computed under the current scoring rule (`suites.SCORING_RULE`, recorded in
    each shift's provenance), or None. Such records cannot be rescored: their rows hold the old token counts and
    log-probs (scoring rule v1 counted a chat template's newline as a completion token), so they must be evaluated
    again."""
    from innerdpo_bench.evaluation.suites import SCORING_RULE

    provenance = report.get("provenance")
    rules = {p.get("scoring_rule") for p in provenance.values() if isinstance(p, dict)} \
        if isinstance(provenance, dict) and provenance else {None}
    if rules == {SCORING_RULE}:
        return None
    return ("it was scored under an older rule (before scoring rule v2 a chat template's newline after the prompt "
            "was scored as a completion token), so its numbers differ from current ones and rescore cannot fix them")


def rebuild_command(path: str | Path, report: Any = None) -> str:
    """The command that writes eval.json at `path` and its rows again: `innerdpo eval CHECKPOINT --suite S
    --limit N --output PATH`, from what `report` recorded (CHECKPOINT when it does not say)."""
    report = report if isinstance(report, dict) else {}
    words = ["innerdpo eval", str(report.get("checkpoint") or "CHECKPOINT")]
    if isinstance(report.get("data_dir"), str):
        words += ["--data-dir", report["data_dir"]]
    elif isinstance(report.get("suite"), str):
        words += ["--suite", report["suite"]]
    if isinstance(report.get("limit"), int):
        words += ["--limit", str(report["limit"])]
    if report.get("sample") == "random":
        words += ["--sample", "random", "--sample-seed", str(report.get("sample_seed"))]
    return " ".join([*words, "--output", str(path)])
