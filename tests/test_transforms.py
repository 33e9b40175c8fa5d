"""Hidden-state transforms: ETHER / SupressedHS properties from the spec, pooling, save → load."""

import pytest
import torch

from innerdpo_bench import runstate
from innerdpo_bench.errors import UserError
from innerdpo_bench.methods.pooling import completion_pool, sink_filter
from innerdpo_bench.methods.transforms import (EtherLayer, EtherTransform, SupressedHS, build_transform,
                                               transform_from_state, transform_state)

D = 12


def states(rows=3, tokens=5, layers=(1, 2, 3), seed=0):
    g = torch.Generator().manual_seed(seed)
    return {layer: torch.randn(rows, tokens, D, generator=g) for layer in layers}


def test_ether_householder_is_orthogonal_and_involutory():
    torch.manual_seed(0)
    layer = EtherLayer(D, n_blocks=2, reduction=4, ether_type="ether", seed=0, layer=1)
    for h_block in layer.block_matrices():
        eye = torch.eye(D // 2)
        assert torch.allclose(h_block.T @ h_block, eye, atol=1e-5)
        assert torch.allclose(h_block @ h_block, eye, atol=1e-5)
        assert torch.allclose(h_block, h_block.T, atol=1e-6)


def test_ether_reflection_preserves_norm_and_matches_dense_matrix():
    torch.manual_seed(0)
    layer = EtherLayer(D, n_blocks=3, reduction=4, ether_type="ether", seed=0, layer=1)
    h = torch.randn(7, D)
    reflected = layer.reflect(h)
    assert torch.allclose(reflected.norm(dim=-1), h.norm(dim=-1), atol=1e-5)
    dense = torch.block_diag(*layer.block_matrices())
    assert torch.allclose(reflected, h @ dense.T, atol=1e-5)


@pytest.mark.parametrize("ether_type", ["etherplus", "oft"])
def test_identity_at_init(ether_type):
    layer = EtherLayer(D, n_blocks=2, reduction=4, ether_type=ether_type, seed=0, layer=1)
    for h_block in layer.block_matrices():
        assert torch.allclose(h_block, torch.eye(D // 2), atol=1e-6)


def test_oft_stays_orthogonal_after_an_update():
    layer = EtherLayer(D, n_blocks=2, reduction=4, ether_type="oft", seed=0, layer=1)
    with torch.no_grad():
        layer.a.normal_()
    for h_block in layer.block_matrices():
        assert torch.allclose(h_block.T @ h_block, torch.eye(D // 2), atol=1e-4)


@pytest.mark.parametrize("ether_type", ["ether", "etherplus", "oft"])
def test_ether_output_shape_and_low_rank_form(ether_type):
    torch.manual_seed(0)
    layer = EtherLayer(D, n_blocks=2, reduction=4, ether_type=ether_type, seed=0, layer=1)
    h = torch.randn(2, 5, D)
    out = layer(h)
    assert out.shape == h.shape
    # T(h) = U·P·H·h computed the long way
    expected = layer.up(layer.reflect(h) @ layer.down.T) if ether_type != "oft" else layer.up(
        torch.einsum("bij,...bj->...bi", layer.block_matrices(), h.reshape(2, 5, 2, -1)).reshape(h.shape) @ layer.down.T)
    assert torch.allclose(out, expected, atol=1e-5)


def test_ether_blocks_must_divide_hidden():
    with pytest.raises(UserError, match="must divide the hidden size"):
        EtherLayer(D, n_blocks=5, reduction=4, ether_type="ether", seed=0, layer=1)


def test_ether_projection_depends_on_seed_only():
    a = EtherLayer(D, 2, 4, "ether", seed=3, layer=1)
    b = EtherLayer(D, 2, 4, "ether", seed=3, layer=1)
    c = EtherLayer(D, 2, 4, "ether", seed=4, layer=1)
    assert torch.equal(a.down, b.down) and not torch.equal(a.down, c.down)


@pytest.mark.parametrize("name", ["none", "ether", "supr"])
def test_pool_equals_pooling_the_transformed_states(name):
    torch.manual_seed(0)
    layers = [1, 2, 3]
    transform = build_transform(name, layers, D, torch.randn(20, D), ether_reduction=4, supr_tau=0.0)
    x = states(layers=layers)
    mask = torch.tensor([[0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], dtype=torch.bool)
    last = torch.tensor([3, 4, 4])
    for normalize in (True, False):
        for sinks in (False, True):
            fast = transform.pool(x, mask, last, normalize, sinks)
            slow = {k: completion_pool(v, mask, normalize, sinks) for k, v in transform(x, last).items()}
            assert fast.keys() == slow.keys()
            for layer in fast:
                assert torch.allclose(fast[layer], slow[layer], atol=1e-5), (name, normalize, sinks, layer)


def test_supr_drops_first_layer_and_only_zeroes_entries():
    torch.manual_seed(0)
    transform = SupressedHS([3, 1, 2], torch.randn(20, D), tau=0.1)
    x = states(layers=(1, 2, 3))
    out = transform(x, torch.tensor([4, 4, 4]))
    assert sorted(out) == [2, 3]
    for layer, y in out.items():
        kept = y == x[layer]
        assert torch.all(kept | (y == 0))


def test_supr_mask_matches_hand_computation_with_identity_unembedding():
    # W = I (V = d): z = h, W⁺ = I, so δ_j = h_{l_j} − h_{l_{j−1}} at the last completion token.
    transform = SupressedHS([1, 2], torch.eye(4), tau=0.1)
    h1 = torch.tensor([[[9.0, 9.0, 9.0, 9.0], [0.0, 0.0, 0.0, 0.0]]])  # last completion token is index 0
    h2 = torch.tensor([[[9.5, 8.0, 9.05, 10.0], [1.0, 2.0, 3.0, 4.0]]])
    out = transform({1: h1, 2: h2}, torch.tensor([0]))
    expected_mask = torch.tensor([1.0, 0.0, 0.0, 1.0])  # δ = (0.5, −1, 0.05, 1) > 0.1
    assert torch.equal(out[2], h2 * expected_mask)


def test_supr_needs_two_layers():
    with pytest.raises(UserError, match="at least 2 layers"):
        SupressedHS([1], torch.eye(4))


@pytest.mark.parametrize("name", ["none", "ether", "supr"])
def test_save_and_load_reproduce_the_transform(tmp_path, name):
    torch.manual_seed(0)
    unembed = torch.randn(20, D)
    transform = build_transform(name, [1, 2], D, unembed, ether_reduction=4, ether_type="ether", seed=7)
    if name == "ether":
        with torch.no_grad():
            for p in transform.parameters():
                p.add_(torch.randn_like(p))
    runstate.save_transform(tmp_path, *transform_state(transform))
    loaded = transform_from_state(*runstate.load_transform(tmp_path), unembed)
    x = states(layers=(1, 2))
    last = torch.tensor([4, 4, 4])
    a, b = transform(x, last), loaded(x, last)
    assert a.keys() == b.keys()
    for layer in a:
        assert torch.equal(a[layer], b[layer])


def test_ether_transform_has_parameters_per_layer():
    t = EtherTransform([1, 5], hidden_size=D, reduction=4)
    assert sorted(t.per_layer) == ["1", "5"]
    assert sum(p.numel() for p in t.parameters()) == 2 * (D + D * (D // 4))


def test_pool_masked_mean_of_unit_states():
    s = torch.tensor([[[3.0, 4.0], [0.0, 2.0], [100.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])
    assert torch.allclose(completion_pool(s, mask, normalize=True), torch.tensor([[0.3, 0.9]]))
    assert torch.allclose(completion_pool(s, mask, normalize=False), torch.tensor([[1.5, 3.0]]))


def test_sink_filter_drops_the_outlier_norm():
    norms = torch.tensor([[1.0, 1.0, 1.0, 50.0]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    assert sink_filter(norms, mask).tolist() == [[True, True, True, False]]


def test_supr_projector_equals_the_logit_lens_route():
    """δ through W⁺W equals the spec's W⁺(W h_j − W h_{j−1}) for a tall random unembedding."""
    from innerdpo_bench.methods.transforms import logit_lens_projector

    torch.manual_seed(0)
    w = torch.randn(50, D)
    h_prev, h_next = torch.randn(4, D), torch.randn(4, D)
    via_logits = (h_next @ w.T - h_prev @ w.T) @ torch.linalg.pinv(w).T
    assert torch.allclose((h_next - h_prev) @ logit_lens_projector(w).T, via_logits, atol=1e-4)
