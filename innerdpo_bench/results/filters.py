"""The results table's --filter grammar: space-separated FIELD OP VALUE terms, all of which must hold.

A field is a fixed column, a registered column (`columns.COLUMNS`: method, kind, sweep, ...) or any config key
found in the runs' specs; a run that lacks the value (a dpo run has no `align_method`) matches no term on
it, `!=` included.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable, Iterable
from typing import Any

from innerdpo_bench.errors import UserError, unknown_choice
from innerdpo_bench.evaluation.suites import SHIFTS
from innerdpo_bench.results import columns
from innerdpo_bench.store import STATUSES, Run

FILTER_HELP = (
    "Space-separated terms, all of which must hold: FIELD:VALUE or FIELD=VALUE (equal; text case-insensitive), "
    "FIELD!=VALUE, FIELD~TEXT (contains), FIELD>N, FIELD>=N, FIELD<N, FIELD<=N. Fields: name, method, status, kind, "
    "seed, id, tag (tag:LABEL holds when the run has that tag), suite, base_model, sweep, a results column (in_domain, difficulty_scaling, moral_transfer, "
    "orthogonal, mean, nll_ratio) or any train flag (alpha, align_method, ...). A run without the value (a dpo "
    "run has no align_method) matches no term on it. Quote a term with spaces: 'name~align=logodds α=1'. "
    "Example: 'method:hs-none-InnerDPO status:done mean>0.6'."
)
_RUN_COLUMNS = ("name", *SHIFTS, "mean", "nll_ratio", "status", "seed", "id")


def _field_value(run: Run, key: str) -> Any:
    """What a filter FIELD reads on a run (see FILTER_HELP)."""
    if key in _RUN_COLUMNS:
        return columns.run_values(run)[key]
    if key == "tag":
        return ",".join(run.tags) or None
    if key == "base_model":
        return run.spec.base_model
    return columns.value(run, key)


_TERM = re.compile(r"(?P<field>[A-Za-z_][A-Za-z0-9_.-]*)(?P<op><=|>=|!=|==|<|>|=|:|~)(?P<value>.+)", re.DOTALL)
_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}
_FIXED_FIELDS = ("name", "status", "seed", "id", "base_model", "tag", *SHIFTS, "mean", "nll_ratio", *columns.COLUMNS)


def _bad_filter(term: str, why: str) -> UserError:
    return UserError(f"bad --filter term {term!r}: {why}. Terms look like method:dpo, status:done, seed:1, "
                     "mean>0.9, nll_ratio<=1.1, name~ether")


def _equal(value: Any, wanted: str) -> bool:
    if value is None:
        return False
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value) == float(wanted)
        except ValueError:
            return False
    return str(value).lower() == wanted.lower()


def parse_filter(expr: str, runs: Iterable[Run] = ()) -> Callable[[Run], bool]:
    """A predicate over runs for a --filter expression (grammar: FILTER_HELP); UserError if malformed.

    Fields are the fixed ones plus every train/eval key found in `runs`' specs, so a misspelt field
    is an error with a suggestion rather than a filter that silently matches nothing.
    """
    try:
        terms = shlex.split(expr or "")
    except ValueError as err:
        raise UserError(f"bad --filter {expr!r}: {err}") from None
    known = set(_FIXED_FIELDS) | columns.config_keys(runs)
    tests: list[Callable[[Run], bool]] = []
    for term in terms:
        match = _TERM.fullmatch(term)
        if match is None:
            raise _bad_filter(term, "expected FIELD, an operator (: = != ~ < <= > >=) and a value")
        name, op, wanted = match["field"].replace("-", "_"), match["op"], match["value"]
        if name not in known:
            raise unknown_choice("--filter field", name, sorted(known))
        if name == "status" and op in (":", "=", "==", "!=") and wanted not in STATUSES:
            raise unknown_choice("status in --filter", wanted, STATUSES)
        if name == "tag" and op in (":", "=", "==", "!="):
            wanted_tag = wanted.lower()
            tests.append(lambda run, wanted_tag=wanted_tag, negate=op == "!=":
                         (wanted_tag in {tag.lower() for tag in run.tags}) != negate)
        elif op in (":", "=", "=="):
            tests.append(lambda run, name=name, wanted=wanted: _equal(_field_value(run, name), wanted))
        elif op == "!=":
            tests.append(lambda run, name=name, wanted=wanted:
                         (value := _field_value(run, name)) is not None and not _equal(value, wanted))
        elif op == "~":
            tests.append(lambda run, name=name, wanted=wanted.lower():
                         _field_value(run, name) is not None and wanted in str(_field_value(run, name)).lower())
        else:
            try:
                threshold = float(wanted)
            except ValueError:
                raise _bad_filter(term, f"{op} needs a number, not {wanted!r}") from None
            if not math.isfinite(threshold):  # nan matches nothing and inf everything or nothing: never meant
                raise _bad_filter(term, f"{op} needs a finite number, not {wanted!r}")
            compare = _COMPARISONS[op]
            tests.append(lambda run, name=name, compare=compare, threshold=threshold:
                         (value := columns.finite_or_none(_field_value(run, name))) is not None and compare(value, threshold))
    return lambda run: all(test(run) for test in tests)
