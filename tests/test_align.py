"""Align methods: a value table over the registry (a new method without a row fails) and each defining property."""

import math

import pytest
import torch

from innerdpo_bench.methods.align import ALIGN_FUNCTIONS
from innerdpo_bench.methods.catalog import ALIGN_METHODS
from innerdpo_bench.methods.geometry import PrefGeometry

EPS = 1e-5
T = torch.tensor


SIGN0 = math.tanh(1.0)  # learned_sign's σ at initialisation


def geometry(chosen_pi, rejected_pi, chosen_ref=(3.0, 1.0), rejected_ref=(1.0, 1.0), norm_p=1, sign=None):
    """2-D example: the reference preference direction d_ref = (2, 0), u = (1, 0)."""
    return PrefGeometry(T(chosen_pi), T(rejected_pi), T(chosen_ref), T(rejected_ref), norm_p=norm_p, eps=EPS,
                        learned_sign=None if sign is None else T(sign))


PARALLEL = geometry((4.0, 1.0), (1.0, 1.0), sign=(SIGN0, SIGN0))      # d_π = 1.5·d_ref = (3, 0)
ANTI = geometry((1.0, 1.0), (4.0, 1.0), sign=(SIGN0, SIGN0))          # d_π = −1.5·d_ref
ORTHOGONAL = geometry((1.0, 4.0), (1.0, 1.0), sign=(SIGN0, SIGN0))    # d_π = (0, 3) ⟂ d_ref
AT_REFERENCE = geometry((3.0, 1.0), (1.0, 1.0))  # π = ref


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
    "pars_rat": 3.0 / 2.0 - 1.0,
    "pars_rat_log": 10 * math.log(1.5),   # slog(0.5) = log(1.5)
    "pars_rat_topk": 3.0 * 2.0 / 4.0 - 1.0,  # hidden 2: k = 1, the first coordinate
    "learned_sign": 3.0 * SIGN0,
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


@pytest.mark.parametrize("name", ["pars_rat", "pars_rat_log", "pars_rat_topk"])
def test_ratio_methods_are_zero_at_the_reference_and_scale_free(name):
    f = ALIGN_FUNCTIONS[name]
    assert f(AT_REFERENCE).item() == pytest.approx(0.0, abs=1e-6)
    g = PrefGeometry(*(torch.randn(4, 8, generator=torch.Generator().manual_seed(i)) for i in range(4)))
    scaled = PrefGeometry(g.chosen_pi * 7, g.rejected_pi * 7, g.chosen_ref * 7, g.rejected_ref * 7)
    assert torch.allclose(f(g), f(scaled), atol=1e-4)


def test_pars_rat_is_the_ratio_to_the_reference_separation_minus_one():
    f = ALIGN_FUNCTIONS["pars_rat"]
    for k in (-2.0, -0.5, 0.0, 0.5, 3.0):  # d_π = k·d_ref: g = k − 1, and g + 1 has the sign of s
        g = geometry((1.0 + 2 * k, 1.0), (1.0, 1.0))
        assert f(g).item() == pytest.approx(k - 1.0, abs=1e-6)
        assert math.copysign(1, f(g).item() + 1) == math.copysign(1, g.signed_proj.item()) or k == 0
    drift = geometry((4.0, 3.0), (1.0, 1.0))  # PARALLEL plus an orthogonal (0, 2): only the parallel part counts
    assert f(drift).item() == pytest.approx(f(PARALLEL).item())


def test_pars_rat_log_is_the_reference_log_ratio_above_one_and_finite_below():
    f = ALIGN_FUNCTIONS["pars_rat_log"]
    ratios = torch.linspace(-3, 4, 29)
    values = []
    for rho in ratios.tolist():
        g = geometry((1.0 + 2 * rho, 1.0), (1.0, 1.0))  # s/‖d_ref‖ = ρ
        values.append(f(g).item())
        if rho >= 1:
            assert values[-1] == pytest.approx(10 * math.log(rho), abs=1e-5)
        assert math.isfinite(values[-1]) and math.copysign(1, values[-1]) == math.copysign(1, rho - 1) or rho == 1
    assert values == sorted(values)  # monotonic in ρ


def test_pars_rat_log_below_one_is_bounded_where_the_reference_is_not():
    """For 0 < r < 1 ours is −10·log(2 − r), inside (−10·log 2, 0); the reference's 10·log r is −46.05 at r = 0.01.
    r = 0 gives −10·log 2 exactly, r = −1 gives −10·log 3 (the reference: NaN)."""
    f = ALIGN_FUNCTIONS["pars_rat_log"]
    for rho, expected in ((0.5, -10 * math.log(1.5)), (0.01, -10 * math.log(1.99)), (0.0, -10 * math.log(2.0)),
                          (-1.0, -10 * math.log(3.0))):
        g = geometry((1.0 + 2 * rho, 1.0), (1.0, 1.0))  # s/‖d_ref‖ = ρ
        assert f(g).item() == pytest.approx(expected, abs=1e-4), rho
    assert -10 * math.log(2.0) < f(geometry((1.0 + 2 * 1e-3, 1.0), (1.0, 1.0))).item() < 0


def test_direct_projection_is_at_least_the_absolute_signed_projection():
    """Spec §7: ‖d_π ⊙ u‖₁ ≥ |s|. Hand case u = (0.6, 0.8): d_π = (1, −2) gives ⊙ = (0.6, −1.6), so 2.2 ≥ |−1.0|;
    d_π = (1, 2), every term of one sign, gives equality (2.2 = s)."""
    f = ALIGN_FUNCTIONS["direct_projection"]
    mixed = geometry((1.0, -2.0), (0.0, 0.0), chosen_ref=(0.6, 0.8), rejected_ref=(0.0, 0.0))
    assert (f(mixed).item(), mixed.signed_proj.item()) == (pytest.approx(2.2), pytest.approx(-1.0))
    same = geometry((1.0, 2.0), (0.0, 0.0), chosen_ref=(0.6, 0.8), rejected_ref=(0.0, 0.0))
    assert f(same).item() == pytest.approx(2.2) == pytest.approx(same.signed_proj.item())
    generator = torch.Generator().manual_seed(0)
    g = PrefGeometry(*(torch.randn(3, 50, 16, generator=generator) for _ in range(4)))
    assert bool((f(g) >= g.signed_proj.abs() - 1e-6).all())


def test_pars_rat_topk_reads_only_the_reference_top_coordinates():
    f = ALIGN_FUNCTIONS["pars_rat_topk"]
    d_ref = T([5.0, -4.0, 0.1, 0.2, 0.0, 0.0, 0.0, 0.3])  # hidden 8: k = min(100, 8 // 4) = 2 → coordinates 0, 1
    d_pi = T([2.0, -1.0, 3.0, -3.0, 1.0, 1.0, 1.0, 1.0])
    zero = torch.zeros(8)
    g = PrefGeometry(d_pi, zero, d_ref, zero)
    assert f(g).item() == pytest.approx((2 * 5 + 1 * 4) / (25 + 16) - 1, abs=1e-6)
    elsewhere = d_pi.clone()
    elsewhere[2:] = T([-9.0, 9.0, -9.0, 9.0, -9.0, 9.0])
    assert f(PrefGeometry(elsewhere, zero, d_ref, zero)).item() == pytest.approx(f(g).item())
    only_k = T([5.0, -4.0, 0, 0, 0, 0, 0, 0])  # the reference supported on K: pars_rat exactly
    assert f(PrefGeometry(d_pi, zero, only_k, zero)).item() == pytest.approx(
        ALIGN_FUNCTIONS["pars_rat"](PrefGeometry(d_pi, zero, only_k, zero)).item(), abs=1e-6)
    assert f(PrefGeometry(d_pi, zero, d_ref, zero, topk=1)).item() == pytest.approx(2 / 5 - 1, abs=1e-6)


def test_learned_sign_spans_para_signed_and_direct_projection():
    f = ALIGN_FUNCTIONS["learned_sign"]
    base = PrefGeometry(*(torch.randn(5, 6, generator=torch.Generator().manual_seed(i)) for i in range(4)))
    with_sign = lambda sign: PrefGeometry(base.chosen_pi, base.rejected_pi, base.chosen_ref, base.rejected_ref,  # noqa: E731
                                          learned_sign=sign)
    assert torch.allclose(f(with_sign(torch.ones(6))), ALIGN_FUNCTIONS["para_signed"](base), atol=1e-6)
    per_coordinate = base.diff_pi * base.pref_dir
    assert torch.allclose(f(with_sign(per_coordinate.sign())), ALIGN_FUNCTIONS["direct_projection"](base), atol=1e-6)
    flipped = torch.ones(6)
    flipped[2] = -1.0  # flipping one sign reverses that coordinate's share, nothing else
    assert torch.allclose(f(with_sign(flipped)), base.signed_proj - 2 * per_coordinate[:, 2], atol=1e-6)
    theta = torch.ones(6, requires_grad=True)
    f(with_sign(torch.tanh(theta))).sum().backward()
    assert torch.allclose(theta.grad, per_coordinate.sum(0) * (1 - math.tanh(1.0) ** 2), atol=1e-6)
    with pytest.raises(ValueError, match="needs its signs"):
        f(base)


def test_batched_leading_dimensions():
    g = PrefGeometry(torch.randn(3, 5, 8), torch.randn(3, 5, 8), torch.randn(3, 5, 8), torch.randn(3, 5, 8),
                     learned_sign=torch.tanh(torch.randn(3, 1, 8)))
    for name, fn in ALIGN_FUNCTIONS.items():
        assert fn(g).shape == (3, 5), name


def test_slog_has_slope_one_at_exactly_zero():
    from innerdpo_bench.methods.geometry import slog

    x = torch.tensor([0.0, -2.0, 3.0], requires_grad=True)
    slog(x).sum().backward()
    assert x.grad.tolist() == pytest.approx([1.0, 1 / 3, 1 / 4])
