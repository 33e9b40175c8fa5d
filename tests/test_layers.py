"""The --layers grammar (spec §4)."""

import pytest

from innerdpo_bench.errors import UserError
from innerdpo_bench.methods.layers import DEFAULT_LAYERS, parse_layers, resolve_layers


@pytest.mark.parametrize("n_blocks, first, last", [(28, 8, 25), (30, 9, 27)])
def test_default_range_matches_spec(n_blocks, first, last):
    assert parse_layers(DEFAULT_LAYERS, n_blocks) == list(range(first, last + 1))


@pytest.mark.parametrize("spec, expected", [
    ("1,3,3,-1", [1, 3, 9]),
    ("range(2,8,2)", [2, 4, 6]),
    ("range(0.5, -1)", [5, 6, 7, 8]),
    ("0", [0]),
])
def test_grammar(spec, expected):
    assert parse_layers(spec, 10) == expected


@pytest.mark.parametrize("spec, message", [
    ("12", "outside"), ("range(1)", "2 or 3"), ("a,b", "not a number"), ("1.5", "integer or a fraction"),
    ("range(1,4,0)", "cannot be 0"),
])
def test_bad_specs(spec, message):
    with pytest.raises(UserError, match=message):
        parse_layers(spec, 10)


def test_tiny_models_fall_back_to_last_two_blocks_before_final():
    layers, note = resolve_layers(DEFAULT_LAYERS, 4)
    assert layers == [1, 2] and "using [1, 2]" in note


def test_explicit_empty_selection_is_an_error():
    with pytest.raises(UserError, match="selects no layer"):
        resolve_layers("range(3,3)", 10)
