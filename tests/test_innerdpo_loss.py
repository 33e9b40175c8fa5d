"""The combined InnerDPO objective: α = 0 is exactly DPO/IPO, and the hidden term's knobs do what they say."""

import math

import pytest
import torch

from innerdpo_bench.methods.innerdpo import SideOutputs, hidden_term, preference_loss

from helpers import loss_config


def sides(seed=0, pairs=4, layers=3, hidden=6):
    g = torch.Generator().manual_seed(seed)
    pol = SideOutputs(-torch.rand(2 * pairs, generator=g) * 10, torch.randint(1, 9, (2 * pairs,), generator=g),
                      torch.randn(layers, 2 * pairs, hidden, generator=g))
    ref = SideOutputs(-torch.rand(2 * pairs, generator=g) * 10, pol.n_tokens,
                      torch.randn(layers, 2 * pairs, hidden, generator=g))
    pol.logp_sum.requires_grad_(True)
    pol.pooled.requires_grad_(True)
    return pol, ref


@pytest.mark.parametrize("output_loss", ["dpo", "ipo"])
def test_alpha_zero_equals_output_loss_and_its_gradients(output_loss):
    pol_a, ref_a = sides()
    loss_a, _ = preference_loss(pol_a, ref_a, loss_config(output_loss=output_loss, alpha=0.0))
    loss_a.backward()
    pol_b, ref_b = sides()
    plain = SideOutputs(pol_b.logp_sum, pol_b.n_tokens)  # no hidden states at all
    loss_b, _ = preference_loss(plain, SideOutputs(ref_b.logp_sum, ref_b.n_tokens), loss_config(output_loss=output_loss))
    loss_b.backward()
    assert loss_a.item() == loss_b.item()
    assert torch.equal(pol_a.logp_sum.grad, pol_b.logp_sum.grad)


def test_hidden_term_adds_alpha_times_its_loss():
    pol, ref = sides()
    base, _ = preference_loss(pol, ref, loss_config(alpha=0.0))
    full, metrics = preference_loss(pol, ref, loss_config(alpha=0.5))
    assert full.item() == pytest.approx(base.item() + 0.5 * metrics["loss_hidden"], rel=1e-6)


def test_hidden_loss_at_zero_score_is_log2_for_dpo_family():
    pooled = torch.randn(2, 4, 3)
    loss, scores = hidden_term(pooled, pooled, loss_config(align_method="cosine_cross_model", beta_h=1.0))
    assert torch.allclose(scores, torch.zeros_like(scores), atol=1e-6)
    assert torch.allclose(loss, torch.full((2,), math.log(2)), atol=1e-6)


def test_trust_region_caps_the_reward_for_far_moves():
    ref = torch.zeros(1, 2, 2)
    ref[0, 0] = torch.tensor([1.0, 0.0])  # chosen_ref; rejected_ref = 0 → u = (1, 0)
    far = ref.clone()
    far[0, 0, 0] = 100.0  # s = 100
    near = ref.clone()
    near[0, 0, 0] = 2.0   # s = 2
    cfg = loss_config(trust_region=2.0)
    far_loss, _ = hidden_term(far, ref, cfg)
    near_loss, _ = hidden_term(near, ref, cfg)
    assert far_loss.item() == pytest.approx(near_loss.item())
    free_far, _ = hidden_term(far, ref, loss_config())
    assert free_far.item() < near_loss.item()


def test_trust_region_forms():
    """both: [−T, T]; top: min(g, T); bottom (clamp_bottom): max(g, T), no gradient below T."""
    from innerdpo_bench.methods.innerdpo import trust_clamp

    scores = torch.tensor([-5.0, -1.0, 0.5, 1.0, 3.0], requires_grad=True)
    expected = {"both": [-2.0, -1.0, 0.5, 1.0, 2.0], "top": [-5.0, -1.0, 0.5, 1.0, 2.0], "bottom": [2.0, 2.0, 2.0, 2.0, 3.0]}
    for form, values in expected.items():
        clamped = trust_clamp(scores, loss_config(trust_region=2.0, trust_region_form=form))
        assert clamped.tolist() == values, form
        (grad,) = torch.autograd.grad(clamped.sum(), scores)
        assert grad.tolist() == [float(v == c) for v, c in zip(scores.tolist(), values)], form  # 0 where clamped
    off = trust_clamp(scores, loss_config(trust_region=0.0, trust_region_form="bottom"))
    assert torch.equal(off, scores)


def test_clamp_bottom_gives_no_hidden_gradient_below_the_floor():
    ref = torch.zeros(1, 2, 2)
    ref[0, 0] = torch.tensor([1.0, 0.0])
    policy = ref.clone()
    policy[0, 0, 0] = 1.5  # para_signed s = 1.5 < T
    policy.requires_grad_(True)
    loss, _ = hidden_term(policy, ref, loss_config(trust_region=2.0, trust_region_form="bottom"))
    (grad,) = torch.autograd.grad(loss.sum(), policy)
    assert torch.count_nonzero(grad) == 0
    assert loss.item() == pytest.approx(math.log1p(math.exp(-2.0)))  # −log σ(β_h·T)


def test_layer_reduce_score_averages_scores_before_the_loss():
    pooled_pi, pooled_ref = torch.randn(3, 4, 5), torch.randn(3, 4, 5)
    by_loss, scores = hidden_term(pooled_pi, pooled_ref, loss_config(layer_reduce="loss"))
    by_score, _ = hidden_term(pooled_pi, pooled_ref, loss_config(layer_reduce="score"))
    assert torch.allclose(by_loss, -torch.nn.functional.logsigmoid(scores).mean(0))
    assert torch.allclose(by_score, -torch.nn.functional.logsigmoid(scores.mean(0)))


def test_trust_region_with_layer_reduce_score_clamps_the_layer_mean():
    """Spec §8: with `--layer-reduce score` the trust region clamps the mean score over layers, not each layer.
    Two layers, one pair, d_ref = (1, 0): s = 3 on layer 0 and −1 on layer 1, mean 1; at T = 0.5 the mean is clamped
    to 0.5: loss −log σ(0.5) = 0.47408. Clamping per layer first would give −log σ((0.5 − 0.5)/2) = log 2."""
    ref = torch.zeros(2, 2, 2)
    ref[:, 0] = torch.tensor([1.0, 0.0])          # chosen_ref; rejected_ref = 0
    policy = ref.clone()
    policy[0, 0, 0], policy[1, 0, 0] = 3.0, -1.0  # rejected_π = 0: d_π = (3, 0) and (−1, 0)
    cfg = loss_config(trust_region=0.5, layer_reduce="score")
    loss, scores = hidden_term(policy, ref, cfg)
    assert scores[:, 0].tolist() == pytest.approx([3.0, -1.0])
    assert loss.item() == pytest.approx(math.log1p(math.exp(-0.5)), abs=1e-6)
    per_layer, _ = hidden_term(policy, ref, loss_config(trust_region=0.5, layer_reduce="loss"))
    assert per_layer.item() == pytest.approx((math.log1p(math.exp(-0.5)) + math.log1p(math.exp(0.5))) / 2, abs=1e-6)


def test_nll_term_is_mean_token_nll_of_chosen():
    pol = SideOutputs(torch.tensor([-6.0, -1.0]), torch.tensor([3, 1]))
    ref = SideOutputs(torch.tensor([-6.0, -1.0]), torch.tensor([3, 1]))
    base, _ = preference_loss(pol, ref, loss_config())
    with_nll, metrics = preference_loss(pol, ref, loss_config(nll_weight=0.5))
    assert with_nll.item() == pytest.approx(base.item() + 0.5 * 2.0)
    assert metrics["nll_chosen_pi"] == pytest.approx(2.0)
