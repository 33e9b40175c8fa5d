"""What a config field knows about itself (`opt`: help, --help panel, display label, when it applies, its role) and
the one rule by which a value given as text or JSON becomes the field's type (`coerce`).

Roles (what a field's value says about a run):
  * `experiment`: it changes what is learned; a display name shows it where it differs from the method's default;
  * `setup`: where and how the run is set up (base model, data, seed, steps, batch sizes, lengths, device, precision,
    logging): it changes the numbers but not the method; a display name shows it only when a sweep varies it;
  * `bookkeeping`: where a run logs and how often it checkpoints, never what it trains: it may differ between
    the attempts of one run (`train.resume.check_same_run`), and runs that differ only in it are the same run.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from innerdpo_bench.errors import UserError
from innerdpo_bench.typecheck import describe, json_type

ROLES = ("experiment", "setup", "bookkeeping")
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


@dataclass(frozen=True)
class FieldInfo:
    """A field's metadata: `help` (its --help line), `group` (the --help panel and the dashboard's form section),
    `label` (how a display name shows it, e.g. α; default the field name), `applies` (given the config, whether
    the field changes anything for that run: `ether_blocks` only for the ETHER transform; None: always), `role`
    (see the module docstring) and `reference` (the frozen reference's outputs depend on it, so the reference
    cache's key does)."""

    help: str
    group: str = "Training"
    label: str | None = None
    applies: Callable[[Any], bool] | None = None
    role: str = "experiment"
    reference: bool = False
    bounds: Bounds | None = None
    usual: tuple[float, float] | None = None   # outside: queued, with a warning that the value is unusual


@dataclass(frozen=True)
class Bounds:
    """The values a number field accepts (`TrainConfig.validate` refuses others): `low`/`high`, each inclusive
    unless `*_open`; None: unbounded on that side. Every float field must also be finite."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def problem(self, value: float) -> str | None:
        """Why `value` is outside, as the end of a sentence ("must be ..."); None inside."""
        below = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        above = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if not (below or above):
            return None
        if self.high is None:
            return "must be positive" if self.low == 0 and self.low_open else f"must be at least {_number(self.low)}"
        left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
        return f"must be in {left}{_number(self.low)}, {_number(self.high)}{right}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def opt(default: Any, help: str, group: str = "Training", *, label: str | None = None,
        applies: Callable[[Any], bool] | None = None, role: str = "experiment", reference: bool = False,
        bounds: Bounds | None = None, usual: tuple[float, float] | None = None):
    """A config field with its metadata (`FieldInfo`)."""
    assert role in ROLES, role
    return field(default=default, metadata={"info": FieldInfo(help, group, label, applies, role, reference, bounds,
                                                              usual)})


AT_LEAST_1 = Bounds(1)
AT_LEAST_0 = Bounds(0)
POSITIVE = Bounds(0, low_open=True)


@functools.cache
def hints(config_class: type) -> dict[str, Any]:
    """Field name → type hint, resolved once per class."""
    return typing.get_type_hints(config_class)


@functools.lru_cache(maxsize=4096)
def field_name(key: Any) -> str:
    """`align-method`, `--align-method` or `align_method` → `align_method`."""
    return str(key).strip().lstrip("-").replace("-", "_")


def coerce(hint: Any, value: Any, key: str, where: str, text: bool = False) -> Any:
    """`value` as a field of type `hint` takes it, by one rule for every source (a --config file, a sweep file or
    cell, the dashboard's form, `queue add`):

      * a value of the field's own JSON type is taken as it is; an integer is a float (made one, so config.json is
        the same whichever way it came), a boolean is no number;
      * with `text` (the value was typed: the command line's --grid values, the form's inputs), a string is
        parsed as the field's type: numbers, booleans as true/false/yes/no/on/off/1/0, and "none"/"null" where the
        field may be null; from a file, `"3"` is no integer;
      * a float field also takes a string in scientific notation from a file (YAML 1.1 reads `1e-4` as a string).

    UserError naming `where` and the key otherwise. Finite-ness and bounds are `TrainConfig.validate`'s."""
    target, nullable = _target(hint)
    kind = type(value)
    if kind is target or (value is None and nullable):   # the common case first: a spec holds 50 of these
        return value
    if kind is int and target is float:
        return float(value)
    if isinstance(value, target) and kind is not bool:   # a str or int subclass
        return value
    if isinstance(value, str) and target is not str and (text or target is float):
        parsed = _parse_text(target, value.strip(), nullable and text)
        if parsed is not _INVALID:
            return parsed
    raise UserError(f"{where}: {key!r} must be {describe(hint)}, not {json_type(value)} {value!r}")


_INVALID = object()


@functools.cache
def _target(hint: Any) -> tuple[type, bool]:
    """(the type a field holds, whether it may be null): `int | None` → (int, True)."""
    arms = [arm for arm in typing.get_args(hint) if arm is not type(None)] or [hint]
    return arms[0], type(None) in typing.get_args(hint)


def _parse_text(target: type, text: str, nullable: bool) -> Any:
    if nullable and text.lower() in ("none", "null"):
        return None
    try:
        if target is bool:
            return text.lower() in _TRUE if text.lower() in _TRUE + _FALSE else _INVALID
        if target is int:
            return int(text)
        if target is float:
            return float(text)
    except ValueError:
        return _INVALID
    return _INVALID
