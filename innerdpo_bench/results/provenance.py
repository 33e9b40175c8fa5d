"""Where a score comes from: data labels, per-shift provenance of a loaded run, the adapter checksum, captions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from innerdpo_bench import rundir
from innerdpo_bench.evaluation import scoring
from innerdpo_bench.evaluation.suites import SHIFTS
from innerdpo_bench.rundir import TrainPaths

if TYPE_CHECKING:
    from innerdpo_bench.results.records import RunRows

MINI_DATASET = "innerdpo_bench.data.mini"   # how suites.provenance names the mini suite


def data_label(prov: Mapping[str, Any]) -> str:
    """`dataset:config#split@revision`, each part only when known (the mini suite: `mini:<split>`)."""
    if prov.get("dataset") == MINI_DATASET:
        return f"mini:{prov.get('split')}"
    text = str(prov.get("dataset"))
    if prov.get("config"):
        text += f":{prov['config']}"
    if prov.get("split"):
        text += f"#{prov['split']}"
    if prov.get("revision"):
        text += f"@{prov['revision']}"
    return text


def adapter_checksum(rows: RunRows) -> str | None:
    """sha256 of the adapter's adapter_model.safetensors: eval.json's `adapter_sha256` if it has one, else
    computed from the adapter eval.json names (or `adapter/` beside eval.json, if the run moved).
    None for a base model or when the file is gone."""
    if rows.report.get("adapter_sha256"):
        return rows.report["adapter_sha256"]
    if not rows.has_adapter:
        return None
    for directory in (Path(rows.report["adapter"]), TrainPaths(rows.eval_path.parent).adapter):
        checksum = rundir.adapter_sha256(directory)
        if checksum is not None:
            return checksum
    return None


def provenance(rows: RunRows) -> dict[str, dict[str, Any]]:
    """Per shift, where its score comes from: dataset, config, split, revision (None when unknown), N (rows
    in the rows file), the scoring rules, base model, adapter checksum, suite, row limit and versions."""
    recorded = rows.report.get("provenance") or {}
    checksum = adapter_checksum(rows)
    out = {}
    for shift, shift_rows in rows.shifts.items():
        prov = recorded.get(shift) or {}
        out[shift] = {
            "dataset": prov.get("dataset"), "config": prov.get("config"), "split": prov.get("split"),
            "revision": prov.get("revision"), "data": data_label(prov) if prov else None, "n": len(shift_rows),
            "scoring_rule": prov.get("scoring_rule"),
            "scoring_rules": {name: metric.rule for name, metric in scoring.METRICS.items()},
            "base_model": rows.base_model, "adapter": rows.report.get("adapter"), "adapter_sha256": checksum,
            "suite": rows.report.get("suite"), "limit": rows.report.get("limit"),
            "versions": rows.report.get("versions") or {}, "eval_json": str(rows.eval_path),
            "rows_file": str(rows.rows_path),
        }
    return out


# --------------------------------------------------------------------------- captions


@dataclass(frozen=True)
class CaptionSource:
    """One run of a caption: its label, {shift: provenance}, its eval.json ({} if none) and base model."""

    label: str
    recorded: Mapping[str, Mapping[str, Any]]
    report: Mapping[str, Any]
    base_model: str | None


def caption_source(rows: RunRows) -> CaptionSource:
    return CaptionSource(rows.ident, dict(rows.report.get("provenance") or {}), rows.report, rows.base_model)


def _long_rows(prov: dict[str, Any]) -> str:
    """What the model's context did to a shift's rows (`evaluate`'s `truncated`/`skipped` counts), or ""."""
    counts = [f"{prov[key]} {word}" for key, word in (("truncated", "prompts cut"), ("skipped", "skipped"))
              if isinstance(prov.get(key), int) and prov[key] > 0]
    return f"{', '.join(counts)}: longer than the model's context" if counts else ""


def caption(sources: Sequence[CaptionSource], title: str = "Table 1", metric: str = "acc") -> str:
    """A caption naming the data behind each column of a results table over `sources`:

        Table 1: Accuracy per preference shift (mean per-token log-prob of chosen > rejected (strict)) of 3
        runs on base model tiny-random (lm_eval 0.4.13, innerdpo_bench 0.1.0), made up of:
        - in_domain: mini:in_domain, N=16
        - orthogonal: medical:reward#test, N=7 (1 skipped: longer than the model's context)
        - ...
        Scoring rule: ...

    A shift whose data differ between runs lists each source with its runs' labels; a source without
    provenance is not counted.
    """
    if metric == "transfer":  # the table's extra metric (`table.TRANSFER`): a ratio of acc gains
        what = "Normalised transfer"
        rule = f"gain(shift) / gain(in_domain), gain = acc − base acc, acc = {scoring.lookup('acc').rule}"
    else:
        what, rule = scoring.lookup(metric).axis_label.capitalize(), scoring.lookup(metric).rule
    sources_by_shift: dict[str, dict[tuple[str, Any], list[str]]] = {}
    rules: dict[str, None] = {}
    base_models: dict[str, None] = {}
    versions: dict[str, dict[str, None]] = {}
    counted = 0
    for source in sources:
        if not source.recorded:
            continue
        counted += 1
        for shift in sorted(source.recorded, key=lambda s: SHIFTS.index(s) if s in SHIFTS else len(SHIFTS)):
            prov = source.recorded[shift]
            key = (data_label(prov), prov.get("rows", prov.get("n")), _long_rows(prov))
            sources_by_shift.setdefault(shift, {}).setdefault(key, []).append(source.label)
            if prov.get("scoring_rule"):
                rules[prov["scoring_rule"]] = None
        if source.base_model:
            base_models[str(source.base_model)] = None
        for package in ("lm_eval", "innerdpo_bench"):
            if (source.report.get("versions") or {}).get(package):
                versions.setdefault(package, {})[source.report["versions"][package]] = None
    if not sources_by_shift:
        return f"{title}: no run in the table has been evaluated yet, so no data to cite.\n"
    version_text = ", ".join(f"{package} {'/'.join(found)}" for package, found in versions.items())
    base_text = f" on base model {', '.join(base_models)}" if base_models else ""
    head = (f"{title}: {what} per preference shift ({rule}) of {counted} run{'s' if counted != 1 else ''}"
            f"{base_text}" + (f" ({version_text})" if version_text else "") + ", made up of:")
    lines = [head]
    for shift, by_source in sources_by_shift.items():
        parts = []
        for (data, n, long_rows), labels in by_source.items():
            text = (f"{data}, N={n}" if n is not None else data) + (f" ({long_rows})" if long_rows else "")
            if len(by_source) > 1:
                text += f" (run{'s' if len(labels) > 1 else ''} {', '.join(labels)})"
            parts.append(text)
        lines.append(f"- {shift}: " + "; ".join(parts))
    if rules:
        lines.append("Scoring rule: " + " | ".join(rules))
    return "\n".join(lines) + "\n"
