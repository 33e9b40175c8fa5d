"""The --layers grammar (spec §4)."""

import pytest

from innerdpo_bench.errors import UserError
from innerdpo_bench.methods.layers import DEFAULT_LAYERS, check_layer_spec, parse_layers, resolve_layers


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


@pytest.mark.parametrize("spec, message", [
    ("inf", "integer or a fraction"), ("nan", "integer or a fraction"), ("-inf,2", "integer or a fraction"),
    ("range(0,2,x)", "step must be an integer"), ("range(0,2,1.5)", "step must be an integer"),
    ("range(0,inf)", "integer or a fraction"), (" , ", "names no layer"), ("range(1,4,0)", "cannot be 0"),
])
def test_the_grammar_is_checked_before_any_model_is_known(spec, message):
    """What `queue add` and config validation check: a spec that no model could accept, named as --layers."""
    with pytest.raises(UserError, match=message) as caught:
        check_layer_spec(spec)
    assert "--layers" in str(caught.value)
    with pytest.raises(UserError, match=message):
        parse_layers(spec, 10)


@pytest.mark.parametrize("spec", [DEFAULT_LAYERS, "1,3,-1", "range(2,8,2)", "range(0.5, -1)", "range(8,2,-2)"])
def test_good_specs_pass_the_early_check(spec):
    assert check_layer_spec(spec) == spec


def test_queue_add_refuses_a_bad_layer_spec_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from innerdpo_bench.cli.main import app

    result = CliRunner().invoke(app, ["queue", "add", "hs-none-InnerDPO", "--layers", "inf", "--home", str(tmp_path)])
    assert result.exit_code == 2 and result.output.startswith("error: --layers 'inf'"), result.output
