"""Align methods: a value table over the registry (a new method without a row fails) and each defining property."""

import math

import pytest
import torch

from innerdpo_bench.methods.align import ALIGN_FUNCTIONS
from innerdpo_bench.methods.catalog import ALIGN_METHODS
from innerdpo_bench.methods.geometry import PrefGeometry

EPS = 1e-5
T = torch.tensor


def geometry(chosen_pi, rejected_pi, chosen_ref=(3.0, 1.0), rejected_ref=(1.0, 1.0), norm_p=1):
    """2-D example: the reference preference direction d_ref = (2, 0), u = (1, 0)."""
    return PrefGeometry(T(chosen_pi), T(rejected_pi), T(chosen_ref), T(rejected_ref), norm_p=norm_p, eps=EPS)


PARALLEL = geometry((4.0, 1.0), (1.0, 1.0))      # d_π = 1.5·d_ref = (3, 0)
ANTI = geometry((1.0, 1.0), (4.0, 1.0))          # d_π = −1.5·d_ref
ORTHOGONAL = geometry((1.0, 4.0), (1.0, 1.0))    # d_π = (0, 3) ⟂ d_ref


def cos(a, b):
    return (a[0] * b[0] + a[1] * b[1]) / (math.hypot(*a) * math.hypot(*b))


# Hand-computed values on PARALLEL: s = 3, a_π = (3, 0), o_π = 0, a_ref = (2, 0), o_ref = 0.
EXPECTED_PARALLEL = {
    "para_signed": 3.0,
    "para_signed_log": math.log(4.0),
    "para_orth_signed": 3.0 - math.log(EPS),
    "para_orth_signed_log": math.log(4.0) - math.log(EPS),
    "logodds": (math.log(3.0) - math.log(EPS)) - (math.log(2.0) - math.log(EPS)),
    "cosine_policy_margin": cos((4, 1), (1, 1)) - cos((3, 1), (1, 1)),
    "cosine_cross_model": cos((4, 1), (3, 1)) - cos((1, 1), (1, 1)),
    "para": math.log(3.0 + EPS),
    "para_orth": math.log(1.5),
    "para_orth2": (3.0 - 2.0) - (0.0 - 0.0),
    "orth": -math.log(EPS),
    "direct_projection": 3.0,
    "direct_projection_log": math.log(4.0 + EPS),
}


def test_value_table_covers_registry():
    assert set(EXPECTED_PARALLEL) == set(ALIGN_FUNCTIONS)


@pytest.mark.parametrize("name", sorted(ALIGN_FUNCTIONS))
def test_value_on_parallel_example(name):
    assert ALIGN_FUNCTIONS[name](PARALLEL).item() == pytest.approx(EXPECTED_PARALLEL[name], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("name", sorted(ALIGN_FUNCTIONS))
def test_every_method_documents_itself(name):
    """The catalog (what users read, torch-free) names every function, and states the formula its docstring does."""
    entry = ALIGN_METHODS[name]
    assert entry.formula.startswith("g =") and entry.when
    assert ALIGN_FUNCTIONS[name].__doc__.rstrip(".") == ALIGN_METHODS[entry.alias_of or name].formula


def test_catalog_names_equal_the_registries():
    from innerdpo_bench.methods import catalog
    from innerdpo_bench.methods.output_losses import OUTPUT_LOSSES

    assert list(catalog.ALIGN_METHODS) == list(ALIGN_FUNCTIONS)
    assert catalog.OUTPUT_LOSS_NAMES == tuple(OUTPUT_LOSSES)
    assert catalog.CURRENT_ALIGN_METHODS[0] == "para_signed"


def test_para_signed_sign_and_magnitude():
    f = ALIGN_FUNCTIONS["para_signed"]
    assert f(PARALLEL).item() == pytest.approx(1.5 * 2.0)  # k·‖d_ref‖₂
    assert f(ANTI).item() == pytest.approx(-3.0)
    assert f(ORTHOGONAL).item() == pytest.approx(0.0, abs=1e-7)


def test_para_signed_log_is_slog_of_para_signed():
    f = ALIGN_FUNCTIONS["para_signed_log"]
    assert f(PARALLEL).item() == pytest.approx(math.log1p(3.0))
    assert f(ANTI).item() == pytest.approx(-math.log1p(3.0))
    assert f(ORTHOGONAL).item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("name", ["para", "direct_projection", "direct_projection_log", "logodds", "para_orth"])
def test_unsigned_methods_ignore_direction(name):
    assert ALIGN_FUNCTIONS[name](PARALLEL).item() == pytest.approx(ALIGN_FUNCTIONS[name](ANTI).item())


def test_orth_prefers_parallel_movement():
    assert ALIGN_FUNCTIONS["orth"](PARALLEL).item() > ALIGN_FUNCTIONS["orth"](ORTHOGONAL).item() + 5


def test_para_orth_signed_penalises_drift():
    drift = geometry((4.0, 3.0), (1.0, 1.0))  # same parallel part as PARALLEL plus (0, 2) off-axis
    for name in ("para_orth_signed", "para_orth_signed_log"):
        assert ALIGN_FUNCTIONS[name](drift).item() < ALIGN_FUNCTIONS[name](PARALLEL).item()


@pytest.mark.parametrize("name", ["cosine_policy_margin", "cosine_cross_model"])
def test_cosines_are_zero_when_policy_equals_reference(name):
    same = geometry((3.0, 1.0), (1.0, 1.0))
    assert ALIGN_FUNCTIONS[name](same).item() == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("name", ["logodds", "para_orth"])
def test_logodds_at_an_exact_zero_norm_is_continuous(name):
    """d_ref = (2, 0, 0) on an axis makes o_ref exactly 0 in floating point; lg(0) = log ε, the same as lg of
    the ~1e-8 that rounding leaves in a rotated copy of the same geometry (module docstring: zero norms)."""
    d_pi_axis = [(2.0, 1.0, 0.0), (1.0, 0.0, 0.0), (3.0, 0.0, 0.0), (1.0, 0.0, 0.0)]  # d_π = (1, 1, 0)
    axis = geometry(*d_pi_axis, norm_p=2)
    assert torch.count_nonzero(axis.orth_ref) == 0
    # (lg 1 − lg 1) − (lg 2 − lg 0): the reference's sign·log(max(|x|, ε)) gave −log 2 here, log ε − log 2 just off 0
    expected = math.log(EPS) - math.log(2.0)
    assert ALIGN_FUNCTIONS[name](axis).item() == pytest.approx(expected, rel=1e-6)
    rotation, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
    rotated = PrefGeometry(*(torch.tensor(v, dtype=torch.float64) @ rotation.T for v in d_pi_axis), norm_p=2, eps=EPS)
    assert rotated.norm(rotated.orth_ref).item() < EPS
    assert ALIGN_FUNCTIONS[name](rotated).item() == pytest.approx(expected, rel=1e-6)


def test_para_orth_is_logodds():
    assert ALIGN_FUNCTIONS["para_orth"] is ALIGN_FUNCTIONS["logodds"]


def test_norm_p_switches_magnitudes():
    # 3-D: d_ref = (2, 0, 0), d_π = (3, 1, 1), so o_π = (0, 1, 1): ‖o_π‖₁ = 2, ‖o_π‖₂ = √2.
    args = ((4.0, 1.0, 1.0), (1.0, 0.0, 0.0), (3.0, 0.0, 0.0), (1.0, 0.0, 0.0))
    l1 = ALIGN_FUNCTIONS["orth"](geometry(*args, norm_p=1)).item()
    l2 = ALIGN_FUNCTIONS["orth"](geometry(*args, norm_p=2)).item()
    assert l1 == pytest.approx(-math.log(2 + EPS))
    assert l2 == pytest.approx(-math.log(math.sqrt(2) + EPS))


def test_batched_leading_dimensions():
    g = PrefGeometry(torch.randn(3, 5, 8), torch.randn(3, 5, 8), torch.randn(3, 5, 8), torch.randn(3, 5, 8))
    for name, fn in ALIGN_FUNCTIONS.items():
        assert fn(g).shape == (3, 5), name
