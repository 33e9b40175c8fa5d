"""The reference path of the hidden term (spec §2): a trainable transform gets gradient through the policy's
and the reference's pooled states alike; transforms without parameters are unaffected."""

import torch
import torch.nn.functional as F

from innerdpo_bench.methods.innerdpo import SideOutputs, hidden_term, preference_loss
from innerdpo_bench.methods.transforms import EtherTransform, IdentityTransform, SupressedHS

from helpers import loss_config

D, LAYERS, PAIRS, TOKENS = 12, (1, 2, 3), 3, 6
ALPHA, BETA_H = 0.5, 1.0


def token_states(seed):
    g = torch.Generator().manual_seed(seed)
    return {layer: torch.randn(2 * PAIRS, TOKENS, D, generator=g, dtype=torch.float64) for layer in LAYERS}


def completion_mask():
    lengths = torch.tensor([6, 4, 5, 3, 6, 2])
    return torch.arange(TOKENS)[None, :] < lengths[:, None]


def output_sides():
    g = torch.Generator().manual_seed(7)
    n = torch.full((2 * PAIRS,), 4)
    return -torch.rand(2 * PAIRS, generator=g) * 5, -torch.rand(2 * PAIRS, generator=g) * 5, n


def ether(ether_type="ether"):
    torch.manual_seed(0)
    transform = EtherTransform(list(LAYERS), D, n_blocks=2, reduction=4, ether_type=ether_type, seed=0).double()
    with torch.no_grad():  # away from init, so every parameter's gradient is generic
        for param in transform.parameters():
            param.add_(0.3 * torch.randn_like(param))
    return transform


def our_loss(transform, pi_states, ref_states, mask, detach_reference=False):
    """The trainer's composition: pool each side through the transform, then `preference_loss`."""
    last = mask.long().cumsum(1).argmax(1)
    pooled = [torch.stack([transform.pool(states, mask, last)[layer] for layer in LAYERS]) for states in (pi_states, ref_states)]
    logp_pi, logp_ref, n = output_sides()
    ref_pooled = pooled[1].detach() if detach_reference else pooled[1]
    loss, _ = preference_loss(SideOutputs(logp_pi, n, pooled[0]), SideOutputs(logp_ref, n, ref_pooled),
                              loss_config(alpha=ALPHA, beta_h=BETA_H))
    return loss


def independent_hidden_loss(transform, pi_states, ref_states, mask):
    """The hidden term written out from the spec with dense matrices: `T(h) = U·P·H·h` at every token of both
    sides, unit-normalise, masked mean, `s = ⟨d_π, d_ref/‖d_ref‖⟩`, mean over layers of `−log σ(β_h·s)`."""
    weights = mask.double() / mask.double().sum(1, keepdim=True)
    losses = []
    for layer in LAYERS:
        module = transform.per_layer[str(layer)]
        dense = module.up.weight @ module.down @ torch.block_diag(*module.block_matrices())  # [d, d]

        def pooled(states):
            t = states[layer] @ dense.T
            return torch.einsum("rt,rtd->rd", weights, t / t.norm(dim=-1, keepdim=True))

        pi, ref = pooled(pi_states), pooled(ref_states)
        d_pi, d_ref = pi[:PAIRS] - pi[PAIRS:], ref[:PAIRS] - ref[PAIRS:]
        s = (d_pi * d_ref / d_ref.norm(dim=-1, keepdim=True)).sum(-1)
        losses.append(-F.logsigmoid(BETA_H * s))
    return ALPHA * torch.stack(losses).mean(0).mean()


def grads(loss, module):
    params = list(module.parameters())
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, params)])


def test_ether_gradient_flows_through_both_paths():
    for ether_type in ("ether", "etherplus", "oft"):
        transform = ether(ether_type)
        pi_states, ref_states, mask = token_states(1), token_states(2), completion_mask()
        ours = grads(our_loss(transform, pi_states, ref_states, mask), transform)
        independent = grads(independent_hidden_loss(transform, pi_states, ref_states, mask), transform)
        detached = grads(our_loss(transform, pi_states, ref_states, mask, detach_reference=True), transform)
        assert torch.allclose(ours, independent, atol=1e-6, rtol=0), (ether_type, (ours - independent).abs().max())
        # the old behaviour (reference states detached) misses the reference path's share of the gradient
        assert (detached - independent).abs().max() > 100 * (ours - independent).abs().max() + 1e-4, ether_type
        assert F.cosine_similarity(detached, independent, dim=0) < 0.999, ether_type


def test_transforms_without_parameters_are_unchanged():
    """`none` and `supr` have no parameters and the reference forward runs under no_grad, so the reference
    states carry no gradient: the policy states' gradients equal those with the reference detached."""
    mask = completion_mask()
    last = mask.long().cumsum(1).argmax(1)
    weight = torch.randn(40, D, dtype=torch.float64)
    for transform in (IdentityTransform(list(LAYERS)), SupressedHS(list(LAYERS), weight, tau=0.0)):
        layers = transform.output_layers
        pi_states = {k: v.requires_grad_(True) for k, v in token_states(1).items()}
        with torch.no_grad():
            ref_pooled = torch.stack([transform.pool(token_states(2), mask, last)[k] for k in layers])
        pooled_pi = torch.stack([transform.pool(pi_states, mask, last)[k] for k in layers])
        results = []
        for ref in (ref_pooled, ref_pooled.detach()):
            loss, _ = hidden_term(pooled_pi, ref, loss_config())
            results.append(torch.autograd.grad(loss.mean(), [pi_states[k] for k in layers], retain_graph=True))
        for a, b in zip(*results):
            assert torch.equal(a, b)
