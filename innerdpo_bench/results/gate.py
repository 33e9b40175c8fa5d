"""Pass/fail checks of one evaluation for CI (`innerdpo gate`): floors per shift, and drops against a baseline
that count only when a paired test on the same rows says they are real.

Floor, `--min SHIFT=V`: passes when the checkpoint's accuracy on SHIFT is at least V.

Drop, `--max-drop SHIFT=D`: the checkpoint (B) and the baseline (A) are compared on the rows both scored,
matched by row id (`results.compare.compare_shift`). With Δ = acc(B) − acc(A) and drop = −Δ, the check

    fails            when drop > D  and  p ≤ α,   p = McNemar's exact two-sided test on the discordant rows
    is within noise  when drop > D  and  p > α    (reported, passes)
    passes           when drop ≤ D

and reports the 95% paired bootstrap interval of Δ beside p. `all` stands for every shift scored; a named
shift overrides `all`. α holds per check: over four shifts the chance that some unchanged shift fails is up
to 4α (use α/4 for a family-wise α).

Everything here is pure: checks from loaded per-row records (`results.locate.RunRows`) and thresholds, and the
reports (JUnit XML, Markdown, JSON) as strings. `cli/gate.py` evaluates, reads and writes. `--metric` is a
harness metric of `scoring.METRICS` (acc, acc_sum; old spellings accepted).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from innerdpo_bench.errors import UserError, unknown_choice
from innerdpo_bench.evaluation import scoring
from innerdpo_bench.evaluation.suites import SHIFTS
from innerdpo_bench.results import stats
from innerdpo_bench.results.compare import compare_shift

if TYPE_CHECKING:
    from innerdpo_bench.results.records import RunRows

ALL = "all"
METRICS = scoring.HARNESS_METRICS    # what --metric may gate: the harness's own accuracies
MIN, MAX_DROP = "min", "max_drop"
PASS, FAIL, NOISE = "pass", "fail", "within noise"
DEFAULT_ALPHA = 0.05


# --------------------------------------------------------------------------- thresholds


def parse_thresholds(specs: Sequence[str] | None, flag: str) -> dict[str, float]:
    """`["in_domain=0.6", "all=0.5"]` → `{"in_domain": 0.6, "all": 0.5}`; UserError for a malformed spec, an
    unknown shift, a value outside [0, 1] (accuracies and their differences live there) or a repeated shift."""
    out: dict[str, float] = {}
    for spec in specs or ():
        name, sep, text = (part.strip() for part in spec.partition("="))
        if not sep or not name or not text:
            raise UserError(f"{flag} {spec!r}: expected SHIFT=VALUE, e.g. {flag} in_domain=0.6 or {flag} all=0.5")
        if name != ALL and name not in SHIFTS:
            raise unknown_choice(f"shift in {flag}", name, [*SHIFTS, ALL])
        try:
            value = float(text)
        except ValueError:
            raise UserError(f"{flag} {spec!r}: {text!r} is not a number") from None
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise UserError(f"{flag} {spec!r}: the value must be between 0 and 1 (accuracy is a fraction)")
        if name in out:
            raise UserError(f"{flag} names {name} twice ({name}={out[name]:g} and {name}={value:g})")
        out[name] = value
    return out


def check_metric(metric: str) -> str:
    """The public name of a --metric the gate accepts (acc | acc_sum, or an old spelling)."""
    return scoring.resolve_metric(metric, METRICS)


def check_alpha(alpha: float) -> float:
    if not (math.isfinite(alpha) and 0.0 < alpha < 1.0):
        raise UserError(f"--alpha must be between 0 and 1 (exclusive), got {alpha:g}")
    return alpha


def check_plan(floors: Mapping[str, float], max_drops: Mapping[str, float], has_baseline: bool) -> None:
    """UserError for a gate that checks nothing or asks for drops with no baseline (before anything is scored)."""
    if max_drops and not has_baseline:
        raise UserError("--max-drop needs --baseline RUN|EVAL_JSON (the evaluation to measure drops against)")
    if not floors and not has_baseline:
        raise UserError("nothing to check: give --min SHIFT=VALUE and/or --baseline RUN|EVAL_JSON (with --max-drop)")


def per_shift(thresholds: Mapping[str, float], scored: Sequence[str], flag: str, where: str) -> dict[str, float]:
    """{shift: threshold} over `scored` (SHIFTS order): a named shift's own value, else `all`'s. A named shift
    that `where` did not score is a UserError: the check asked for cannot run."""
    for name in thresholds:
        if name != ALL and name not in scored:
            raise UserError(f"{flag} {name}={thresholds[name]:g}: {where} has no {name} rows "
                            f"(scored: {', '.join(scored) or 'none'})")
    return {shift: thresholds[shift] if shift in thresholds else thresholds[ALL]
            for shift in SHIFTS if shift in scored and (shift in thresholds or ALL in thresholds)}


# --------------------------------------------------------------------------- checks


@dataclass(frozen=True)
class Check:
    """One check on one shift. `value` is the checkpoint's accuracy: on all its rows for a floor, on the rows
    shared with the baseline for a drop (so value − baseline = delta there)."""

    shift: str
    kind: str                       # MIN | MAX_DROP
    threshold: float                # the floor, or the largest drop allowed
    value: float
    n: int                          # rows behind `value`
    status: str                     # PASS | FAIL | NOISE
    baseline: float | None = None   # the baseline's accuracy on the same rows
    delta: float | None = None      # value − baseline
    lo: float | None = None         # 95% paired bootstrap interval of delta
    hi: float | None = None
    p: float | None = None          # McNemar exact, two-sided
    b: int | None = None            # rows the baseline gets right and the checkpoint wrong
    c: int | None = None            # rows the checkpoint gets right and the baseline wrong

    @property
    def name(self) -> str:
        return f"{self.shift}.{self.kind}"

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    @property
    def drop(self) -> float | None:
        return None if self.delta is None else -self.delta

    def rule(self) -> str:
        """The check as a condition: `≥ 0.600` or `drop ≤ 0.020`."""
        return f"≥ {self.threshold:.3f}" if self.kind == MIN else f"drop ≤ {self.threshold:.3f}"

    def describe(self, metric: str, alpha: float) -> str:
        """One line on what was measured and why it passed or failed."""
        if self.kind == MIN:
            relation = "≥" if self.status == PASS else "<"
            return f"{metric} {self.value:.4f} {relation} floor {self.threshold:.4f} (N={self.n})"
        head = (f"{metric} {self.value:.4f} vs baseline {self.baseline:.4f}: drop {self.drop:+.4f} "
                f"(95% CI of Δ [{self.lo:+.4f}, {self.hi:+.4f}], McNemar p={_p(self.p)}, b/c={self.b}/{self.c}, "
                f"N={self.n})")
        if self.status == PASS:
            return f"{head} ≤ {self.threshold:.4f}"
        verdict = "significant" if self.status == FAIL else "not significant: within noise"
        return f"{head} > {self.threshold:.4f}, p {'≤' if self.status == FAIL else '>'} α={alpha:g}, {verdict}"

    def to_dict(self) -> dict:
        return {"name": self.name, **dataclasses.asdict(self), "drop": self.drop}


def drop_status(drop: float, max_drop: float, p: float, alpha: float) -> str:
    """FAIL only for a drop that is both larger than allowed and significant; NOISE for a large one that is not."""
    if drop <= max_drop:
        return PASS
    return FAIL if p <= alpha else NOISE


def floor_checks(run: RunRows, floors: Mapping[str, float], metric: str) -> list[Check]:
    checks = []
    for shift, floor in floors.items():
        correct = run.shifts[shift].score(metric)
        value = float(correct.mean())
        checks.append(Check(shift, MIN, floor, value, len(correct), PASS if value >= floor else FAIL))
    return checks


def drop_checks(run: RunRows, baseline: RunRows, max_drops: Mapping[str, float], metric: str,
                alpha: float, resamples: int = stats.RESAMPLES, seed: int = 0) -> list[Check]:
    checks = []
    for shift, max_drop in max_drops.items():
        result = compare_shift([baseline], [run], shift, metric, resamples, seed)  # B = run, A = baseline
        checks.append(Check(shift, MAX_DROP, max_drop, result.acc_b, result.n,
                            drop_status(-result.delta, max_drop, result.p, alpha), baseline=result.acc_a,
                            delta=result.delta, lo=result.lo, hi=result.hi, p=result.p, b=result.b, c=result.c))
    return checks


@dataclass(frozen=True)
class Gate:
    """The verdict: every check, in SHIFTS order (floor before drop), and notes on what was compared."""

    checks: list[Check]
    metric: str
    alpha: float
    checkpoint: str                 # how reports name the checkpoint
    eval_path: str
    baseline: str | None = None     # the baseline's eval.json
    context: dict = field(default_factory=dict)   # suite, limit, sample, sample_seed, cache
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not any(check.failed for check in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if check.failed]

    @property
    def within_noise(self) -> list[Check]:
        return [check for check in self.checks if check.status == NOISE]

    def to_dict(self) -> dict:
        return {"passed": self.passed, "checkpoint": self.checkpoint, "eval_json": self.eval_path,
                "baseline": self.baseline, "metric": self.metric, "rule": scoring.METRICS[self.metric].rule,
                "alpha": self.alpha, **self.context, "notes": self.notes,
                "summary": {"checks": len(self.checks), "failed": len(self.failed),
                            "within_noise": len(self.within_noise)},
                "checks": [check.to_dict() for check in self.checks]}


def run_gate(run: RunRows, floors: Mapping[str, float], max_drops: Mapping[str, float],
             baseline: RunRows | None = None, metric: str = "acc", alpha: float = DEFAULT_ALPHA,
             resamples: int = stats.RESAMPLES, seed: int = 0) -> Gate:
    """Every check of `floors` and (against `baseline`) `max_drops`, as parsed by `parse_thresholds`. With a
    baseline and no --max-drop, every shift gets max drop 0: any significant drop fails."""
    metric = check_metric(metric)
    check_alpha(alpha)
    check_plan(floors, max_drops, baseline is not None)
    scored = list(run.shifts)
    floor_by_shift = per_shift(floors, scored, "--min", run.ident)
    checks = floor_checks(run, floor_by_shift, metric)
    notes = []
    if baseline is not None:
        max_drops = max_drops or {ALL: 0.0}
        drop_by_shift = per_shift(max_drops, scored, "--max-drop", run.ident)
        per_shift({k: v for k, v in max_drops.items() if k != ALL}, list(baseline.shifts), "--max-drop",
                  f"baseline {baseline.ident}")
        for shift in [s for s in drop_by_shift if s not in baseline.shifts]:
            notes.append(f"{shift}: the baseline has no {shift} rows; no drop check")
            del drop_by_shift[shift]
        checks += drop_checks(run, baseline, drop_by_shift, metric, alpha, resamples, seed)
        notes += _comparison_notes(run, baseline, [c for c in checks if c.kind == MAX_DROP])
    order = {shift: i for i, shift in enumerate(SHIFTS)}
    checks.sort(key=lambda c: (order.get(c.shift, len(order)), c.kind != MIN))
    report = run.report
    context = {key: report.get(key) for key in ("suite", "limit", "sample", "sample_seed", "apply_chat_template")}
    context["cache"] = report.get("cache")
    return Gate(checks, metric, alpha, _label(run), str(run.eval_path),
                str(baseline.eval_path) if baseline is not None else None, context, notes)


def _label(run: RunRows) -> str:
    report = run.report
    return str(report.get("checkpoint") or run.ident)


def _comparison_notes(run: RunRows, baseline: RunRows, drops: list[Check]) -> list[str]:
    """What a reader of a drop should know: fewer shared rows than scored, or different scoring settings."""
    notes = []
    for check in drops:
        n_run, n_base = len(run.shifts[check.shift]), len(baseline.shifts[check.shift])
        if check.n < max(n_run, n_base):
            notes.append(f"{check.shift}: compared on the {check.n} rows both scored (checkpoint {n_run}, "
                         f"baseline {n_base})")
    for key in ("suite", "apply_chat_template", "dtype"):
        mine, theirs = run.report.get(key), baseline.report.get(key)
        if mine is not None and theirs is not None and mine != theirs:
            notes.append(f"{key} differs: checkpoint {mine}, baseline {theirs}")
    return notes


# --------------------------------------------------------------------------- reports


def _p(p: float | None) -> str:
    if p is None:
        return "-"
    return f"{p:.2e}" if p < 1e-3 else f"{p:.4f}"


def _num(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


RESULT_LABELS = {PASS: "✅ pass", FAIL: "❌ fail", NOISE: "⚠️ within noise"}


def table_rows(gate: Gate) -> list[list[str]]:
    """shift, value, baseline, delta, 95% CI, p, check, result per check (Markdown and the terminal table)."""
    out = []
    for check in gate.checks:
        ci = "-" if check.lo is None else f"[{_num(check.lo, True)}, {_num(check.hi, True)}]"
        out.append([check.shift, _num(check.value), _num(check.baseline), _num(check.delta, True), ci,
                    _p(check.p), check.rule(), RESULT_LABELS[check.status]])
    return out


TABLE_HEADER = ["shift", "value", "baseline", "delta", "95% CI", "p", "check", "result"]


def _rows_text(context: Mapping) -> str:
    limit = context.get("limit")
    if limit is None:
        return "rows as evaluated"
    if context.get("sample") == "random":
        return f"{limit} random rows per shift (seed {context.get('sample_seed')})"
    return f"first {limit} rows per shift"


def markdown_summary(gate: Gate) -> str:
    """A GitHub-flavoured summary: verdict, what was gated, the table, notes."""
    verdict = "✅ passed" if gate.passed else f"❌ failed ({len(gate.failed)} of {len(gate.checks)} checks)"
    lines = [f"### innerdpo gate {verdict}", ""]
    what = (f"`{gate.checkpoint}` on suite `{gate.context.get('suite')}`, {_rows_text(gate.context)}; "
            f"metric `{gate.metric}` ({scoring.METRICS[gate.metric].rule})")
    if gate.baseline:
        what += f"; baseline `{gate.baseline}`; α = {gate.alpha:g} (McNemar exact, per check)"
    cache = gate.context.get("cache") or {}
    if cache.get("hit"):
        what += f"; cached evaluation `{cache.get('key')}`"
    lines += [what + ".", ""]
    lines.append("| " + " | ".join(TABLE_HEADER) + " |")
    lines.append("|---|---:|---:|---:|---|---:|---|---|")
    for row in table_rows(gate):
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    if gate.within_noise:
        lines += ["", "Within noise: the drop is larger than allowed but McNemar's test on the rows that changed "
                  f"verdict does not reject \"no change\" at α = {gate.alpha:g}; more rows (--limit) would tell."]
    if gate.notes:
        lines += [""] + [f"- {note}" for note in gate.notes]
    return "\n".join(lines) + "\n"


def junit_xml(gate: Gate, seconds: float = 0.0, timestamp: str | None = None) -> str:
    """JUnit XML: <testsuites> holding one <testsuite> with one <testcase> per check, named `<shift>.<kind>`
    (`in_domain.min`, `in_domain.max_drop`); a failed check has a <failure>; every case has the numbers in
    <system-out>; the suite's <properties> say what was gated."""
    import xml.etree.ElementTree as ET

    counts = {"tests": str(len(gate.checks)), "failures": str(len(gate.failed)), "errors": "0", "skipped": "0",
              "time": f"{seconds:.3f}"}
    root = ET.Element("testsuites", {"name": "innerdpo gate", **counts})
    suite = ET.SubElement(root, "testsuite", {"name": f"innerdpo gate {gate.checkpoint}", **counts,
                                              **({"timestamp": timestamp} if timestamp else {})})
    properties = ET.SubElement(suite, "properties")
    for key, value in (("checkpoint", gate.checkpoint), ("eval_json", gate.eval_path), ("baseline", gate.baseline),
                       ("metric", gate.metric), ("alpha", gate.alpha), *gate.context.items()):
        if value is not None:
            text = value.get("key") if isinstance(value, dict) else value
            ET.SubElement(properties, "property", {"name": "cache_key" if key == "cache" else key,
                                                   "value": str(text)})
    for check in gate.checks:
        case = ET.SubElement(suite, "testcase", {"classname": "innerdpo.gate", "name": check.name, "time": "0"})
        line = check.describe(gate.metric, gate.alpha)
        if check.failed:
            failure = ET.SubElement(case, "failure", {"type": check.kind, "message": line})
            failure.text = line
        numbers = {key: value for key, value in check.to_dict().items() if key not in ("name", "shift", "kind")}
        out = ET.SubElement(case, "system-out")
        out.text = f"{check.status}: {line}\n" + " ".join(f"{key}={value}" for key, value in numbers.items()
                                                          if value is not None)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
