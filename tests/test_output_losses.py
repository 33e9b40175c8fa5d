"""DPO/IPO losses: hand-computed values and parity with TRL's DPOTrainer loss code on the same log-probs."""

import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from innerdpo_bench.methods.innerdpo import SideOutputs, hidden_term, preference_loss
from innerdpo_bench.methods.output_losses import dpo_loss, ipo_loss, simper_loss, simper_score_loss, wpo_weights

from helpers import loss_config


def test_dpo_hand_values_two_pairs():
    # ptheta = (lpc - lpr) - (refc - refr): pair 1: (-2 - -4) - (-3 - -3) = 2; pair 2: (-5 - -4) - (-1 - -1) = -1
    policy = SideOutputs(torch.tensor([-2.0, -5.0, -4.0, -4.0]), torch.ones(4))
    ref = SideOutputs(torch.tensor([-3.0, -1.0, -3.0, -1.0]), torch.ones(4))
    loss, metrics = preference_loss(policy, ref, loss_config(output_loss="dpo", beta=0.5, logp_agg="sum"))
    expected = (math.log(1 + math.exp(-1.0)) + math.log(1 + math.exp(0.5))) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert metrics["reward_acc"] == 0.5
    assert metrics["rewards_margin"] == pytest.approx(0.5 * (2 - 1) / 2)


def test_ipo_hand_values_two_pairs():
    policy = SideOutputs(torch.tensor([-2.0, -5.0, -4.0, -4.0]), torch.ones(4))
    ref = SideOutputs(torch.tensor([-3.0, -1.0, -3.0, -1.0]), torch.ones(4))
    loss, _ = preference_loss(policy, ref, loss_config(output_loss="ipo", beta=0.25, logp_agg="sum"))
    # target 1/(2*0.25) = 2: (2-2)^2 = 0, (-1-2)^2 = 9
    assert loss.item() == pytest.approx(4.5)


def test_mean_aggregation_divides_by_token_count():
    policy = SideOutputs(torch.tensor([-4.0, -6.0]), torch.tensor([2, 3]))
    assert policy.logp("mean").tolist() == [-2.0, -2.0]
    assert policy.logp("sum").tolist() == [-4.0, -6.0]


def test_label_smoothing_is_conservative_dpo():
    m = torch.tensor([1.5])
    eps = 0.2
    expected = -(0.8 * math.log(1 / (1 + math.exp(-0.15))) + 0.2 * math.log(1 / (1 + math.exp(0.15))))
    assert dpo_loss(m, 0.1, eps).item() == pytest.approx(expected, abs=1e-6)


def test_zero_margin_gives_log2_for_dpo():
    assert dpo_loss(torch.zeros(3), 0.1).tolist() == pytest.approx([math.log(2)] * 3)
    assert ipo_loss(torch.zeros(1), 0.1).item() == pytest.approx(25.0)


def test_simper_at_identical_policy_and_reference_is_its_hand_value():
    """Chosen: 3 tokens summing to 3·log 0.5; rejected: 2 tokens summing to 2·log 0.25 (per-token means log 0.5,
    log 0.25): loss = 0.25 − 0.5, whatever β, the reference or --logp-agg (SimPER reads the policy's means)."""
    logp = torch.tensor([3 * math.log(0.5), 2 * math.log(0.25)])
    n = torch.tensor([3, 2])
    for beta, agg, ref_logp in ((0.1, "mean", logp), (2.0, "sum", logp), (0.1, "mean", torch.tensor([-1.0, -9.0]))):
        loss, metrics = preference_loss(SideOutputs(logp, n), SideOutputs(ref_logp, n),
                                        loss_config(output_loss="simper", beta=beta, logp_agg=agg))
        assert loss.item() == pytest.approx(0.25 - 0.5, abs=1e-7)
    assert metrics["loss_output"] == pytest.approx(-0.25, abs=1e-7)


def test_simper_raises_chosen_and_lowers_rejected_inverse_perplexity():
    chosen, rejected = torch.tensor([-1.0], requires_grad=True), torch.tensor([-2.0], requires_grad=True)
    simper_loss(chosen, rejected).backward()
    assert chosen.grad.item() == pytest.approx(-math.exp(-1.0))   # descent raises chosen's mean log-prob
    assert rejected.grad.item() == pytest.approx(math.exp(-2.0))  # and lowers rejected's
    assert -1 < simper_loss(torch.tensor([-0.1]), torch.tensor([-5.0])).item() < 0  # within (−1, 1)


def test_simper_hidden_term_is_minus_slog_of_the_score():
    g = torch.tensor([-3.0, 0.0, 2.0], requires_grad=True)
    loss = simper_score_loss(g)
    assert loss.tolist() == pytest.approx([math.log(4.0), 0.0, -math.log(3.0)])
    loss.sum().backward()
    assert g.grad.tolist() == pytest.approx([-1 / 4, -1.0, -1 / 3])  # always rewards a higher score
    ref = torch.zeros(1, 2, 2)
    ref[0, 0] = torch.tensor([1.0, 0.0])  # d_ref = (1, 0)
    policy = ref.clone()
    policy[0, 0, 0] = 3.0                 # s = 3
    loss, scores = hidden_term(policy, ref, loss_config(output_loss="simper", beta_h=5.0))
    assert scores.item() == pytest.approx(3.0) and loss.item() == pytest.approx(-math.log(4.0))


def test_wpo_weights_hand_fixture():
    """lw_c + lw_r = 0 and −6: σ(0) = 0.5, σ(−2) = 0.11920; over their mean 0.30960: 1.61500, 0.38500."""
    weights = wpo_weights(torch.tensor([0.0, -1.0]), torch.tensor([0.0, -5.0]))
    assert weights.tolist() == pytest.approx([0.5 / 0.3096029, 0.1192029 / 0.3096029], rel=1e-5)
    assert weights.mean().item() == pytest.approx(1.0) and not weights.requires_grad


def test_wpo_weights_the_preference_terms_not_the_sft_term():
    logp = torch.tensor([-2.0, -5.0, -4.0, -4.0])
    ref = SideOutputs(torch.tensor([-3.0, -1.0, -3.0, -1.0]), torch.ones(4))
    adjusted = torch.tensor([0.0, -1.0, 0.0, -5.0])  # pair weights as in the hand fixture: 1.615, 0.385
    plain, _ = preference_loss(SideOutputs(logp, torch.ones(4)), ref, loss_config(logp_agg="sum", beta=0.5))
    weighted, metrics = preference_loss(SideOutputs(logp, torch.ones(4), wpo_sum=adjusted), ref,
                                        loss_config(logp_agg="sum", beta=0.5, wpo=True, nll_weight=0.5))
    per_pair = torch.tensor([math.log1p(math.exp(-1.0)), math.log1p(math.exp(0.5))])  # ptheta 2, −1 at β 0.5
    w = wpo_weights(adjusted[:2], adjusted[2:])
    nll_chosen = torch.tensor([2.0, 5.0])
    assert plain.item() == pytest.approx(per_pair.mean().item(), abs=1e-6)
    assert weighted.item() == pytest.approx((w * per_pair + 0.5 * nll_chosen).mean().item(), abs=1e-6)
    assert metrics["wpo_weight_max"] == pytest.approx(w.max().item())


# --------------------------------------------------------------------------- TRL parity

def _trl_loss(per_token_logps, completion_mask, ref_logps, beta, loss_type, log_sum_sq_probs=None):
    """Run TRL's own DPOTrainer._compute_loss on given per-token policy log-probs and reference log-probs; with
    `log_sum_sq_probs` (per token, log Σ_v π(v)²) its WPO weighting (`use_weighting`) is on."""
    from trl import DPOTrainer

    rows, width = completion_mask.shape
    identity = lambda x: x  # noqa: E731
    stub_self = SimpleNamespace(
        model=SimpleNamespace(training=True),
        accelerator=SimpleNamespace(device=torch.device("cpu"), gather_for_metrics=identity, gather=identity),
        aux_loss_enabled=False, ld_alpha=None, precompute_ref_logps=True, f_divergence_type="reverse_kl",
        loss_types=[loss_type], loss_weights=[1.0], beta=beta, use_weighting=log_sum_sq_probs is not None,
        label_smoothing=0.0, _metrics={"train": defaultdict(list)}, _total_train_tokens=0, _tp_size=1,
    )
    outputs = SimpleNamespace(log_probs=per_token_logps, entropy=torch.zeros(rows, width - 1),
                              mean_logits=torch.zeros(rows, width - 1),
                              is_top1=torch.zeros(rows, width - 1, dtype=torch.bool),
                              log_sum_sq_probs=log_sum_sq_probs)
    ref_c, ref_r = ref_logps.chunk(2)
    inputs = {"input_ids": torch.zeros(rows, width, dtype=torch.long), "attention_mask": torch.ones(rows, width),
              "completion_mask": completion_mask, "ref_chosen_logps": ref_c, "ref_rejected_logps": ref_r}
    return DPOTrainer._compute_loss(stub_self, lambda **kw: outputs, inputs, False)


@pytest.mark.parametrize("beta", [0.05, 0.1, 0.5, 2.0])
@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo"])
def test_parity_with_trl(beta, loss_type):
    generator = torch.Generator().manual_seed(int(beta * 100))
    pairs, width = 6, 12
    completion_mask = torch.zeros(2 * pairs, width)
    lengths = torch.randint(2, width - 1, (2 * pairs,), generator=generator)
    for row, n in enumerate(lengths.tolist()):
        completion_mask[row, width - n:] = 1  # completion at the end; the first token is always prompt
    shifted = completion_mask[:, 1:]
    per_token = -torch.rand(2 * pairs, width - 1, generator=generator) * 3 * shifted
    ref_per_token = -torch.rand(2 * pairs, width - 1, generator=generator) * 3 * shifted
    ref_sum = ref_per_token.sum(1)

    trl = _trl_loss(per_token, completion_mask, ref_sum, beta, loss_type)
    ours_cfg = loss_config(output_loss="dpo" if loss_type == "sigmoid" else "ipo", beta=beta,
                          logp_agg="sum" if loss_type == "sigmoid" else "mean")
    n_tokens = shifted.sum(1)
    ours, _ = preference_loss(SideOutputs(per_token.sum(1), n_tokens), SideOutputs(ref_sum, n_tokens), ours_cfg)
    assert ours.item() == pytest.approx(trl.item(), rel=1e-5, abs=1e-6)


def _trl_fixture(seed: int, pairs: int = 6, width: int = 12):
    """Per-token policy and reference log-probs on right-aligned completions of random lengths (the first token is
    always prompt), and a per-token log Σ_v π(v)² in (−2, 0]."""
    generator = torch.Generator().manual_seed(seed)
    completion_mask = torch.zeros(2 * pairs, width)
    for row, n in enumerate(torch.randint(2, width - 1, (2 * pairs,), generator=generator).tolist()):
        completion_mask[row, width - n:] = 1
    shifted = completion_mask[:, 1:]
    per_token = -torch.rand(2 * pairs, width - 1, generator=generator) * 3 * shifted
    ref_per_token = -torch.rand(2 * pairs, width - 1, generator=generator) * 3 * shifted
    square_mass = -torch.rand(2 * pairs, width - 1, generator=generator) * 2   # log Σ_v π(v)² ∈ (−2, 0]
    return completion_mask, shifted, per_token, ref_per_token, square_mass


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_wpo_paper_form_equals_trls_use_weighting(seed):
    """`--wpo --wpo-form paper` is TRL's `use_weighting` (trl 1.16: exp of the summed per-token-mean adjusted log-probs,
    unclamped) on the same log-probs, weights and loss, DPO with summed log-probs."""
    completion_mask, shifted, per_token, ref_per_token, square_mass = _trl_fixture(seed)
    ref_sum = ref_per_token.sum(1)
    trl = _trl_loss(per_token, completion_mask, ref_sum, 0.1, "sigmoid", log_sum_sq_probs=square_mass)
    n_tokens = shifted.sum(1)
    wpo_sum = ((per_token - square_mass) * shifted).sum(1)   # what forward_pass returns with wpo=True
    ours, metrics = preference_loss(SideOutputs(per_token.sum(1), n_tokens, wpo_sum=wpo_sum),
                                    SideOutputs(ref_sum, n_tokens),
                                    loss_config(output_loss="dpo", beta=0.1, logp_agg="sum", wpo=True, wpo_form="paper"))
    assert ours.item() == pytest.approx(trl.item(), rel=1e-5, abs=1e-7)
    lw = wpo_sum / n_tokens
    expected = torch.exp(lw[:6] + lw[6:])
    assert wpo_weights(lw[:6], lw[6:], form="paper").tolist() == pytest.approx(expected.tolist(), rel=1e-6)
    assert metrics["wpo_weight_max"] == pytest.approx(expected.max().item(), rel=1e-6)


def test_wpo_forms_hand_values():
    """lw_c + lw_r = 0 and −6. paper: exp(0) = 1, exp(−6) = 0.0024788, unnormalised; reference: σ(0), σ(−2) over
    their mean (the hand fixture above). The default is the reference form."""
    chosen, rejected = torch.tensor([0.0, -1.0]), torch.tensor([0.0, -5.0])
    assert wpo_weights(chosen, rejected, form="paper").tolist() == pytest.approx([1.0, math.exp(-6.0)], rel=1e-6)
    assert wpo_weights(chosen, rejected).tolist() == wpo_weights(chosen, rejected, form="reference").tolist()
    assert loss_config().wpo_form == "reference"
    with pytest.raises(ValueError, match="unknown WPO form"):
        wpo_weights(chosen, rejected, form="exp")
