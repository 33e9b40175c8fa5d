"""Which hidden states are read: the layer-spec grammar of `--layers` (spec §4)."""

from __future__ import annotations

import math
import re

from innerdpo_bench.errors import UserError

DEFAULT_LAYERS = "range(0.3,-2)"
_RANGE = re.compile(r"^range\((.*)\)$")


def _number(token: str, spec: str) -> float:
    """A layer token as a number: an integer, or a fraction in (0, 1); UserError naming --layers otherwise."""
    try:
        value = float(token)
    except ValueError:
        raise UserError(f"--layers {spec!r}: {token!r} is not a number") from None
    if not math.isfinite(value) or not (0 < value < 1 or value == int(value)):
        raise UserError(f"--layers {spec!r}: {token!r} must be an integer or a fraction in (0, 1)")
    return value


def _index(token: str, n_blocks: int, spec: str) -> int:
    value = _number(token, spec)
    if 0 < value < 1:
        return math.floor(value * n_blocks)
    value = int(value)
    return n_blocks + value if value < 0 else value


def _tokens(spec: str) -> tuple[list[str], int | None]:
    """(index tokens, range step or None for a comma list) of a spec; UserError for a malformed range."""
    text = spec.replace(" ", "")
    match = _RANGE.match(text)
    if not match:
        tokens = [p for p in text.split(",") if p]
        if not tokens:
            raise UserError(f"--layers {spec!r} names no layer; give a comma list or range(a,b[,step])")
        return tokens, None
    parts = [p for p in match.group(1).split(",") if p]
    if len(parts) not in (2, 3):
        raise UserError(f"--layers {spec!r}: range takes 2 or 3 arguments")
    step = parts[2] if len(parts) == 3 else "1"
    if not step.lstrip("-").isdigit():
        raise UserError(f"--layers {spec!r}: the range step must be an integer, not {step!r}")
    if int(step) == 0:
        raise UserError(f"--layers {spec!r}: range step cannot be 0")
    return parts[:2], int(step)


def check_layer_spec(spec: str) -> str:
    """Check the grammar of a --layers spec before any model is known (at `queue add` and config time); the
    indices themselves are checked against the model's block count by `parse_layers`."""
    tokens, _ = _tokens(spec)
    for token in tokens:
        _number(token, spec)
    return spec


def parse_layers(spec: str, n_blocks: int) -> list[int]:
    """Hidden-state indices for a model with `n_blocks` blocks.

    Index k is `hidden_states[k]`: 0 = embeddings, k = output of block k. The spec is a comma list or
    `range(a,b[,step])` (end exclusive, as Python's range); negative numbers count back from
    `n_blocks`, numbers in (0, 1) are fractions of it (floored). Duplicates are dropped in order.
    Every index must land in [0, n_blocks − 1]. An empty result is returned as is: the caller
    decides (see `resolve_layers`).
    """
    tokens, step = _tokens(spec)
    if step is not None:
        indices = list(range(_index(tokens[0], n_blocks, spec), _index(tokens[1], n_blocks, spec), step))
    else:
        indices = [_index(token, n_blocks, spec) for token in tokens]
    out: list[int] = []
    for idx in indices:
        if not 0 <= idx <= n_blocks - 1:
            raise UserError(f"--layers {spec!r}: index {idx} is outside [0, {n_blocks - 1}] for a {n_blocks}-block model")
        if idx not in out:
            out.append(idx)
    return out


def resolve_layers(spec: str, n_blocks: int) -> tuple[list[int], str | None]:
    """`parse_layers`, with the tiny-model fallback: when the DEFAULT spec yields fewer than two layers
    (2- or 4-block test models), use the last two blocks before the final one. Returns the layers and
    a note to log when the fallback was taken."""
    layers = parse_layers(spec, n_blocks)
    if len(layers) >= 2 or spec.replace(" ", "") != DEFAULT_LAYERS:
        if not layers:
            raise UserError(f"--layers {spec!r} selects no layer of this {n_blocks}-block model")
        return layers, None
    fallback = sorted({max(0, n_blocks - 3), max(0, n_blocks - 2)})
    return fallback, f"--layers {spec} gives {layers} for a {n_blocks}-block model; using {fallback} instead"
