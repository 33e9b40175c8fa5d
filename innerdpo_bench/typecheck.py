"""Check values read from JSON files (eval.json, `train --config`) against the type hints that describe them."""

from __future__ import annotations

import functools
import types
import typing
from typing import Any, Union

Mismatch = tuple[str, Any, Any]   # (where, e.g. "shifts.in_domain.acc"; the hint there; the value there)


def mismatch(value: Any, hint: Any, where: str = "") -> Mismatch | None:
    """The first place where a JSON value does not fit `hint`, else None. Understood: plain types (an int is a
    float, a bool is no number), `X | None`, `dict[K, V]`, `list[X]`, a TypedDict (the keys present; others
    are not checked) and Any."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return None
    if origin in (Union, types.UnionType):
        arms = typing.get_args(hint)
        if any(mismatch(value, arm) is None for arm in arms):
            return None
        others = [arm for arm in arms if arm is not type(None)]
        if len(others) == 1 and _is_container(others[0]) and value is not None:  # say where inside it
            return mismatch(value, others[0], where)
        return where, hint, value
    if _is_container(hint):
        if not isinstance(value, origin or dict):
            return where, hint, value
        for key, item, item_hint in _members(value, hint):
            found = mismatch(item, item_hint, f"{where}.{key}" if where else str(key))
            if found is not None:
                return found
        return None
    if hint is float:
        fits = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif hint is int:
        fits = isinstance(value, int) and not isinstance(value, bool)
    else:
        fits = value is None if hint is type(None) else isinstance(value, hint)
    return None if fits else (where, hint, value)


def _is_container(hint: Any) -> bool:
    return typing.get_origin(hint) in (dict, list) or typing.is_typeddict(hint)


def _members(value: dict | list, hint: Any) -> list[tuple[Any, Any, Any]]:
    """(key, value, hint) of each member of a container that its hint constrains."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is list:
        return [(index, item, args[0] if args else Any) for index, item in enumerate(value)]
    if typing.get_origin(hint) is dict:
        return [(key, item, args[1] if args else Any) for key, item in value.items()]
    hints = _hints(hint)  # a TypedDict: the keys it names
    return [(key, item, hints[key]) for key, item in value.items() if key in hints]


@functools.lru_cache(maxsize=64)
def _hints(schema: Any) -> dict[str, Any]:
    return typing.get_type_hints(schema)


def describe(hint: Any) -> str:
    """`int | None` → "an integer or null": how a message names the expected type."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        return " or ".join(describe(arm) for arm in typing.get_args(hint))
    if typing.is_typeddict(hint) or typing.get_origin(hint) is dict or hint is dict:
        return "an object"
    if typing.get_origin(hint) is list or hint is list:
        return "a list"
    names = {str: "a string", int: "an integer", float: "a number", bool: "a boolean", type(None): "null"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def json_type(value: Any) -> str:
    """How a message names a JSON value's type: "a string", "a number", "null", ..."""
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
