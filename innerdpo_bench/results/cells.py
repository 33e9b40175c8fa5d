"""The results table's cells that come from per-row records, for store runs: metric columns, baseline
significance and the provenance caption, each run's rows loaded through `locate` (what `innerdpo runs` and
the TUI hand to the pure `table.make_table`)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path

from innerdpo_bench.errors import UserError
from innerdpo_bench.evaluation import scoring
from innerdpo_bench.evaluation.audit import WARNING
from innerdpo_bench.evaluation.suites import SHIFTS
from innerdpo_bench.results import locate, stats
from innerdpo_bench.results.compare import Delta, delta_vs_baseline
from innerdpo_bench.results.provenance import CaptionSource, caption, caption_source
from innerdpo_bench.results.table import TABLE_METRICS, TRANSFER, ShiftValues, Significance, finite_or_none
from innerdpo_bench.results.transfer import transfer_report
from innerdpo_bench.rundir import RunPaths
from innerdpo_bench.store import Run

Problems = dict[int, str]   # run id → why its result files cannot be used (one line naming the file)


def _load(run: Run, problems: Problems | None) -> locate.RunRows:
    """`locate.load_run`, noting in `problems` why a done run's files cannot be used before re-raising. A run
    with no eval.json at all is not noted: it has no per-row results to read (a run stored without them)."""
    try:
        return locate.load_run(run)
    except UserError as err:
        if problems is not None and run.status == "done" and run.run_dir and \
                RunPaths(Path(run.run_dir), run.kind).eval_json.exists():
            problems[run.id] = str(err)
        raise


def unreadable(run: Run) -> str | None:
    """Why a done run's eval.json or rows cannot be used (one line naming the file, the field and the command
    that rebuilds it), else None; None for a run that is not done or has no eval.json (see `_load`)."""
    problems: Problems = {}
    try:
        _load(run, problems)
    except UserError:
        pass
    return problems.get(run.id)


def metric_columns(run: Run, metric: str = "acc", problems: Problems | None = None) -> dict[str, float | None]:
    """{shift: value} for every shift of SHIFTS, for a results-table row; None where the run has no value.

    acc, acc_sum: the harness's accuracy (store results; equal to the rows' by `innerdpo rescore`);
    reward_acc, reward_acc_sum: implicit-reward accuracy per token / summed (None for a base model);
    transfer: gain(shift) / gain(in_domain) with gain = acc − base acc (None where undefined).
    A run without per-row records (or with unusable ones) gives None everywhere rather than an error, so a
    table still prints; `problems` collects why a done run's files are unusable.
    """
    if metric not in TABLE_METRICS:   # `shift_cells` resolved it once; resolving per run cost 0.15 s at 10,000
        metric = scoring.resolve_metric(metric, TABLE_METRICS, kind="metric")
    empty: dict[str, float | None] = {shift: None for shift in SHIFTS}
    harness_key = scoring.METRICS[metric].harness_key if metric in scoring.METRICS else None
    if harness_key:
        return {shift: finite_or_none(run.results.get(shift, {}).get(harness_key)) for shift in SHIFTS}
    try:
        rows = _load(run, problems)
    except UserError:
        return empty
    if metric == TRANSFER:
        return empty | {entry.shift: entry.transfer for entry in transfer_report(rows, "acc")}
    if not rows.has_adapter:
        return empty
    return empty | {shift: float(r.score(metric).mean()) for shift, r in rows.shifts.items()}


def baseline_deltas(runs: Run | Sequence[Run], baseline: Run | Sequence[Run], metric: str = "acc",
                    resamples: int = stats.RESAMPLES, seed: int = 0,
                    problems: Problems | None = None) -> dict[str, Delta | None]:
    """`compare.delta_vs_baseline` of store runs (a run, or a group's runs pooled) against `baseline` (a run,
    or a group's runs pooled). A group's runs without per-row records yet (seeds still running) are left out
    of the test (the table marks the cell k/n); None everywhere when a side has no run with records. Unusable
    files of a done run are noted in `problems`."""
    metric = scoring.resolve_metric(metric, kind="metric for a baseline delta")
    group = [runs] if isinstance(runs, Run) else list(runs)
    references = [baseline] if isinstance(baseline, Run) else list(baseline)
    reference, members = _loadable(references, problems), _loadable(group, problems)
    if not reference or not members:
        return {shift: None for shift in SHIFTS}
    return delta_vs_baseline(members, reference, metric, resamples, seed)


def _loadable(runs: Sequence[Run], problems: Problems | None) -> list[locate.RunRows]:
    loaded = []
    for run in runs:
        try:
            loaded.append(_load(run, problems))
        except UserError:
            continue
    return loaded


def shift_cells(metric: str = "acc", problems: Problems | None = None) -> ShiftValues:
    """`make_table`'s shift_values for a table metric (UserError with a suggestion for an unknown one)."""
    return functools.partial(metric_columns, metric=scoring.resolve_metric(metric, TABLE_METRICS), problems=problems)


def significance_marks(metric: str = "acc", problems: Problems | None = None) -> Significance | None:
    """`make_table`'s significance for a table metric: per shift, a row's delta from the baseline (runs pooled
    on both sides) with its 95% paired bootstrap interval (`compare.Delta`; None: unknown). None for
    transfer, a ratio of gains that has no paired test."""
    metric = scoring.resolve_metric(metric, TABLE_METRICS)
    if metric == TRANSFER:
        return None

    def significance(runs: Sequence[Run], baseline: Sequence[Run]) -> dict[str, Delta | None]:
        return baseline_deltas(list(runs), list(baseline), metric, problems=problems)

    return significance


def provenance_caption(runs: Sequence[Run | locate.RunRows],
                       provenance_by_run: Mapping[int, Mapping[str, dict]] | None = None, title: str = "Table 1",
                       metric: str = "acc") -> str:
    """`provenance.caption` over store runs (or loaded ones). A store run's shift provenance comes from
    `provenance_by_run` (`Store.all_provenance()`), else its eval.json, which also gives its base model and
    versions; nothing is required to exist."""
    provenance_by_run = provenance_by_run or {}
    sources = [_run_source(item, provenance_by_run) if isinstance(item, Run) else caption_source(item)
               for item in runs]
    return caption(sources, title, metric)


def _run_source(run: Run, provenance_by_run: Mapping[int, Mapping[str, dict]]) -> CaptionSource:
    report = locate.eval_report(run)
    recorded = provenance_by_run.get(run.id) or report.get("provenance") or {}
    base = report.get("base_model") or run.spec.base_model
    return CaptionSource(str(run.id), dict(recorded), report, base)


def below_chance_notes(runs: Sequence[Run]) -> list[str]:
    """One line per (run, shift) whose evaluation the label-orientation audit flagged (`audit.py`: accuracy
    under 0.5 with an exact binomial p < 0.01), for the table's caption; read from the store's results."""
    notes = []
    for run in runs:
        for shift in SHIFTS:
            metrics = run.results.get(shift, {})
            if metrics.get("below_chance"):
                notes.append(f"⚠ run {run.id} ({run.name}), {shift}: acc {metrics.get('acc', float('nan')):.3f} is "
                             f"below chance (exact binomial p = {metrics.get('chance_p', float('nan')):.2g}); {WARNING}.")
    return notes


def test_note(view, metric: str = "acc") -> str:
    """The caption's line on what a baseline table's cells are: the metric, the baseline (a run or a group)
    and the test behind the marks; empty without a baseline."""
    if view.baseline is None:
        return ""
    ids = view.baseline_ids or (view.baseline,)
    who = (f"run {ids[0]}" if len(ids) == 1 else f"the group of run {view.baseline} (runs {', '.join(map(str, ids))},"
           " pooled)")
    name = next((row.values.get("name") for row in view.rows if row.is_baseline), None)
    test = ("no paired test (a ratio of gains)" if metric == TRANSFER else
            "(ns): the 95% paired bootstrap interval over the rows both sides scored includes 0, each side's runs "
            "pooled per row as in `innerdpo compare --group-seeds`; (?): no per-row records to test")
    return (f"Shift cells: Δ {metric} against {who}" + (f" ({name})" if name else "") + f", whose row shows its own "
            f"values; {test}; (k/n): only k of a group's n runs have the value; ± is the sample std over a group's runs.")
