"""`innerdpo doctor`'s run checks: what each file of a finished run claims against what it is.

`examine` reads one run directory and checks every claim one file makes about another:
  * status.json says `complete`; config.json is a readable config; every line of metrics.jsonl is a JSON object;
  * the adapter: a JSON adapter_config.json, weights whose safetensors header parses and fits the file, and whose
    sha256 is the `adapter_sha256` eval.json records (the adapter that was scored);
  * eval.json is valid and scored under the current rule (`report.old_scoring_rule`: older records cannot be
    rescored, only evaluated again); its rows file is there and has the sha256 eval.json records; each shift's `acc`, `acc_sum`
    and `n`, and the coherence numbers, are what the rows give (a second computation of every recorded number).
`check_run` then checks the store's results and provenance against a verified eval.json.

What each outcome's repair does (it never deletes a result):
  * the checkpoint cannot be trusted (status, config.json, adapter): move it aside (`checkpoint.attempt-N`, kept)
    and queue the run again, so a worker trains and scores it anew;
  * the evaluation cannot be trusted (eval.json, its rows): queue the run again, so a worker scores its sound
    checkpoint again (only the evaluation runs);
  * the store disagrees with a verified eval.json: record eval.json's results in the store again;
  * a garbled metrics.jsonl: keep its readable lines, the original moved aside (`metrics.jsonl.garbled`).
A run queued again keeps its recorded results until a worker records new ones (`store.repair.reopen`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from innerdpo_bench import files, rundir
from innerdpo_bench.config.spec import EvalSpec, RunSpec
from innerdpo_bench.doctor.findings import Finding, leftovers, remove
from innerdpo_bench.errors import UserError
from innerdpo_bench.rundir import RunPaths
from innerdpo_bench.store import Run, Store

SAFETENSORS_HEADER_MAX = 100 << 20
SHOWN_DIFFERENCES = 3   # differences a finding names before "and N more"


def eval_settings(spec: RunSpec) -> EvalSpec:
    """A run spec's evaluation settings (suite, limit, samples, checkpoint)."""
    return spec.eval


def _one_line(err: UserError) -> str:
    """A reader's message without its "rebuild it: ..." advice (doctor says what it will do instead)."""
    return str(err).split("; rebuild ")[0]


@dataclass
class Examined:
    """What a run directory's files say, checked against each other (`examine`)."""

    report: dict | None = None                             # eval.json, when it and its rows check out
    retrain: list[str] = field(default_factory=list)       # why its checkpoint cannot be trusted
    reevaluate: list[str] = field(default_factory=list)    # why its evaluation cannot be trusted
    extra: list[Finding] = field(default_factory=list)     # problems with a repair of their own
    miscounted: list[tuple[str, str]] = field(default_factory=list)   # (shift, metric) eval.json records wrongly

    @property
    def verified(self) -> bool:
        return self.report is not None and not self.retrain and not self.reevaluate


def examine(paths: RunPaths) -> Examined:
    """Check one run directory's files against each other (module docstring)."""
    found = Examined()
    if paths.kind == "train_eval":
        checkpoint = paths.checkpoint.root
        status = rundir.read_status(checkpoint)
        if status.get("state") != "complete":
            found.retrain.append(status.get("unreadable") or
                                 f"{paths.checkpoint.status} says {status.get('state')!r}, not 'complete'")
        try:
            rundir.read_config(checkpoint)
        except UserError as err:
            found.retrain.append(_one_line(err))
        found.retrain += adapter_problems(paths.checkpoint.adapter)
        found.extra += _metrics_findings(paths.checkpoint.metrics)
    report = _eval_report(paths.eval_json, found)
    if report is not None and paths.kind == "train_eval" and not found.retrain:
        recorded = report.get("adapter_sha256")
        weights = next((paths.checkpoint.adapter / name for name in rundir.ADAPTER_WEIGHTS
                        if (paths.checkpoint.adapter / name).is_file()), None)
        if recorded and weights is not None and files.sha256_file(weights) != recorded:
            found.retrain.append(f"{weights}'s sha256 is not the adapter_sha256 {paths.eval_json.name} records "
                                 "(the adapter changed after it was scored)")
    found.report = report
    return found


def _eval_report(eval_json: Path, found: Examined) -> dict | None:
    """eval.json when it, its rows file and every number it records from them check out; else None, with why in
    `found.reevaluate` (and the numbers in `found.miscounted`)."""
    from innerdpo_bench.evaluation.evaluate import coherence
    from innerdpo_bench.evaluation.scoring import HARNESS_METRICS, METRICS
    from innerdpo_bench.evaluation.report import old_scoring_rule, read_eval_report
    from innerdpo_bench.results.rowsfile import load_evaluation, rows_path_of

    try:
        rows_path = rows_path_of(eval_json, read_eval_report(eval_json, required=("shifts",)))
        if not rows_path.is_file():
            raise UserError(f"{rows_path} (the per-row records {eval_json.name} names) is missing")
        report, _, rows = load_evaluation(eval_json)
    except UserError as err:
        found.reevaluate.append(_one_line(err))
        return None
    old_rule = old_scoring_rule(report)
    if old_rule:
        found.reevaluate.append(f"{eval_json}: {old_rule}")
        return None
    wrong = []
    for shift, metrics in report["shifts"].items():
        shift_rows = rows.get(shift)
        if shift_rows is None:
            wrong.append(f"{shift} is scored but the rows file has no {shift} rows")
            continue
        recount = {METRICS[name].harness_key: int(shift_rows.score(name).sum()) / len(shift_rows)
                   for name in HARNESS_METRICS}
        recount["n"] = len(shift_rows)
        for key, value in recount.items():
            if key in metrics and metrics[key] != value:
                wrong.append(f"{shift} {key} is {metrics[key]!r}, its rows give {value!r}")
                found.miscounted.append((shift, key))
    if "in_domain" in rows and isinstance(report.get("coherence"), dict):
        shift_rows = rows["in_domain"]
        records = [{"logp_chosen": float(c), "base_logp_chosen": float(b), "n_chosen": int(n)} for c, b, n in
                   zip(shift_rows.logp_chosen, shift_rows.base_logp_chosen, shift_rows.n_chosen)]
        wrong += [f"coherence {key} is {report['coherence'].get(key)!r}, its rows give {value!r}"
                  for key, value in coherence(records).items() if not _same(report["coherence"].get(key), value)]
    if wrong:
        found.reevaluate.append(f"{eval_json} does not match its rows: " + _some(wrong))
        return None
    return report


def _same(a: Any, b: Any) -> bool:
    """Equal values, NaN and None counting as one (the store keeps NaN as NULL)."""
    missing = (lambda v: v is None or (isinstance(v, float) and math.isnan(v)))
    return (missing(a) and missing(b)) or a == b


def _some(items: list[str]) -> str:
    more = len(items) - SHOWN_DIFFERENCES
    return "; ".join(items[:SHOWN_DIFFERENCES]) + (f" (and {more} more)" if more > 0 else "")


def safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file's header cannot be loaded (8-byte length, a JSON object, offsets inside the
    file), or None; reads only the header, so no torch."""
    import os

    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            length = int.from_bytes(handle.read(8), "little")
            if size < 8 or length > min(size - 8, SAFETENSORS_HEADER_MAX):
                return "its header length does not fit the file (truncated?)"
            header = json.loads(handle.read(length))
    except OSError as err:
        return f"cannot be read ({err.strerror or err})"
    except (ValueError, UnicodeDecodeError):
        return "its header is not JSON"
    if not isinstance(header, dict):
        return "its header is not a JSON object"
    ends = [entry["data_offsets"][1] for name, entry in header.items() if name != "__metadata__"
            and isinstance(entry, dict) and isinstance(entry.get("data_offsets"), list) and entry["data_offsets"]]
    if any(not isinstance(end, int) or end > size - 8 - length for end in ends):
        return "a tensor lies past the end of the file (truncated?)"
    return None


def adapter_problems(adapter: Path) -> list[str]:
    if not adapter.is_dir():
        return [f"{adapter} is missing"]
    problems = []
    try:
        json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        problems.append(f"{adapter / 'adapter_config.json'} is missing or not JSON")
    weights = [adapter / name for name in rundir.ADAPTER_WEIGHTS if (adapter / name).is_file()]
    if not weights:
        problems.append(f"{adapter} has no {' or '.join(rundir.ADAPTER_WEIGHTS)}")
    for path in weights:
        problem = safetensors_problem(path) if path.suffix == ".safetensors" else None
        if problem:
            problems.append(f"{path}: {problem}")
    return problems


def _metrics_findings(path: Path) -> list[Finding]:
    """A metrics.jsonl line that is not a JSON object (a garbled disk block, an edit): the training curve has a
    hole; the results do not depend on it. The repair keeps the readable lines."""
    try:
        lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
    except OSError as err:
        return [Finding(f"{path} cannot be read ({err.strerror or err})")]
    good = [line for line in lines if _json_object(line)]
    if len(good) == len(lines):
        return []
    first = next(number for number, line in enumerate(lines, 1) if not _json_object(line))
    aside = path.with_name(path.name + ".garbled")

    def rewrite() -> None:
        path.replace(aside)
        files.atomic_write_text(path, "".join(line + "\n" for line in good))

    return [Finding(f"{path}: {len(lines) - len(good)} of {len(lines)} lines are not JSON records (first: line "
                    f"{first}); the training curve has a hole, the results do not depend on it", None, rewrite,
                    f"keep its {len(good)} readable lines (the file as it is moved to {aside.name})")]


def _json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


# --------------------------------------------------------------------------- a store run


def store_differences(stored: dict[str, dict[str, float]], results: dict[str, dict[str, float]],
                      stored_provenance: dict[str, dict], provenance: dict[str, dict]) -> list[str]:
    """Where the store's results and provenance differ from eval.json's (`results_of` of it), as short phrases."""
    out = [f"{shift} {metric} {stored.get(shift, {}).get(metric, 'missing')!r} in the store, {value!r} in eval.json"
           for shift, metrics in results.items() for metric, value in metrics.items()
           if not _same(stored.get(shift, {}).get(metric), value)]
    return out + [f"{shift}'s provenance" for shift, data in provenance.items() if stored_provenance.get(shift) != data]


def results_for(run_spec: RunSpec, paths: RunPaths, report: dict) -> dict[str, dict[str, float]]:
    """What the worker recorded from this eval.json (`report.results_of`), sample statistics included when the run
    asked for samples and they can be read."""
    from innerdpo_bench.evaluation.report import results_of
    from innerdpo_bench.evaluation.samplefile import sample_columns

    extra = {}
    if eval_settings(run_spec).samples:
        try:
            extra = sample_columns(paths.eval_json)
        except UserError:
            extra = {}
    return results_of(report, extra)


def check_run(run: Run, home: Path, stored_provenance: dict[str, dict]) -> list[Finding]:
    """Findings about one store run's directory: leftovers of killed writes in any run's, and for a done run every
    check of `examine` and the store against eval.json. Queued and running runs are skipped (their files are being
    written); failed and cancelled ones are not expected to hold results."""
    if run.status in ("queued", "running") or not run.run_dir:
        return []
    paths = RunPaths.of(run)
    label = f"run {run.id} ({run.name})"
    if not paths.root.is_dir():
        if run.status != "done":
            return []
        return [Finding(f"{label}: its directory {paths.root} is missing; its results stay in the store (innerdpo "
                        "runs), but compare, rescore and the dashboard's detail need its files", "nothing recreates "
                        f"the files without running it again: innerdpo queue add with the same flags (innerdpo runs "
                        f"--json shows run {run.id}'s spec), or innerdpo queue rm {run.id}")]
    findings = leftovers(paths.root) + leftovers(paths.checkpoint.root)
    tmp_adapter = paths.checkpoint.root / (rundir.ADAPTER + ".tmp")
    if tmp_adapter.is_dir():
        findings.append(Finding(f"leftover {tmp_adapter}: an adapter whose save never finished", None,
                                remove(tmp_adapter), "delete it"))
    if run.status != "done":
        return findings
    found = examine(paths)
    findings += found.extra
    if found.retrain:
        return findings + [Finding(
            f"{label}: " + _some(found.retrain), None, _requeue(home, run, paths, "retrain", found.retrain),
            f"move {paths.checkpoint.root.name}/ aside (kept) and queue run {run.id} again: a worker trains and "
            "scores it anew; its recorded results stay until then")]
    if found.reevaluate:
        held = [f"{shift} {key} {run.results.get(shift, {}).get(key, 'nothing')!r}" for shift, key in found.miscounted]
        return findings + [Finding(
            f"{label}: " + _some(found.reevaluate) + (f" (the store holds {', '.join(held)})" if held else ""),
            "rebuild them: " + _eval_command(run, paths),
            _requeue(home, run, paths, "reevaluate", found.reevaluate),
            f"queue run {run.id} again to score its checkpoint anew (no training); its recorded results stay until "
            "then")]
    results = results_for(run.spec, paths, found.report)
    differences = store_differences(run.results, results, stored_provenance, found.report.get("provenance") or {})
    if differences:
        findings.append(Finding(
            f"{label}: the store's results differ from {paths.eval_json}, which its rows confirm: "
            + _some(differences),
            None, _record(home, run.id, results, found.report.get("provenance") or {}),
            f"record the results of {paths.eval_json.name} (checked against its rows) in the store"))
    return findings


def _eval_command(run: Run, paths: RunPaths) -> str:
    settings = eval_settings(run.spec)
    flags = "".join(f" --{key} {getattr(settings, key)}" for key in ("suite", "limit")
                    if getattr(settings, key) is not None)
    if run.kind == "train_eval":
        return f"innerdpo eval {paths.checkpoint.root}{flags}"
    return f"innerdpo eval {settings.checkpoint}{flags} --output {paths.eval_json}"


def _requeue(home: Path, run: Run, paths: RunPaths, why: str, problems: list[str]) -> Callable[[], None]:
    """Queue `run` again (`store.repair.reopen`); for "retrain", first move its checkpoint aside, as a worker moves
    an unfinished one (`checkpoint.attempt-N`), so the next attempt trains afresh. Noted in worker.log."""
    from innerdpo_bench.store.repair import reopen

    def repair() -> None:
        note = f"innerdpo doctor --repair: queued again to {'train and score' if why == 'retrain' else 'score'} " \
               f"it anew: {'; '.join(problems)}"
        if why == "retrain" and paths.checkpoint.root.exists():
            aside = next(paths.aside(n) for n in range(1, 10_000) if not paths.aside(n).exists())
            paths.checkpoint.root.rename(aside)
            note += f" (its checkpoint moved to {aside.name}/)"
        with Store(home, create=False) as store:
            if not reopen(store, run.id, "done"):
                raise UserError(f"run {run.id} is no longer done; left as it is")
        rundir.append_note(paths.worker_log, note)

    return repair


def _record(home: Path, run_id: int, results: dict, provenance: dict) -> Callable[[], None]:
    def repair() -> None:
        with Store(home, create=False) as store:
            store.record_results(run_id, results, provenance)

    return repair
