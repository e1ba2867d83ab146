"""Probe targets on fixed (off-policy) data: the policy's fixed loss has the Fisher as its
Hessian, the Q loss is the training TD loss with 1-step discounts, the value loss is
semi-gradient TD(0), and a fresh twin is a new draw of the same architecture."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from agents import AgentError
from agents.base import ProbeTarget
from agents.distributions import CategoricalPolicy, GaussianPolicy
from agents.dqn import DQN, DQNConfig
from agents.ppo import PPO, PPOConfig

OBS = spaces.Box(-1.0, 1.0, (3,), np.float32)


def transitions(n: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randn(n, 3, generator=g), "actions": torch.randint(0, 2, (n,), generator=g),
            "rewards": torch.randn(n, generator=g), "next_obs": torch.randn(n, 3, generator=g),
            "terminated": (torch.rand(n, generator=g) < 0.3).float()}


def dense_hessian(loss_of_flat, flat: torch.Tensor) -> torch.Tensor:
    return torch.autograd.functional.hessian(loss_of_flat, flat)


def test_categorical_fisher_loss_is_zero_with_the_fisher_as_hessian():
    """For logits = W x: KL(p0 || softmax(Wx)) at W0 is 0 with zero gradient, and its
    Hessian equals the Fisher E_s sum_a p_a g_a g_a^T, g_a = d log p_a / dW."""
    x = torch.randn(5, 3, dtype=torch.float64)
    w0 = torch.randn(4 * 3, dtype=torch.float64)
    policy = CategoricalPolicy()

    def loss(flat):
        logits = x @ flat.reshape(4, 3).T
        # p0 is the distribution at w0, held fixed (what fisher_loss's detach does at w0)
        log_p0 = torch.log_softmax(x @ w0.reshape(4, 3).T, -1)
        return (log_p0.exp() * (log_p0 - torch.log_softmax(logits, -1))).sum(-1).mean()

    w = w0.clone().requires_grad_(True)
    value = policy.fisher_loss(x @ w.reshape(4, 3).T).mean()
    (grad,) = torch.autograd.grad(value, w)
    assert value.item() == pytest.approx(0.0, abs=1e-12) and grad.abs().max() < 1e-12
    fisher = torch.zeros(12, 12, dtype=torch.float64)
    for s in range(5):
        logp = torch.log_softmax(x[s] @ w0.reshape(4, 3).T, -1)
        for a in range(4):
            g = torch.autograd.functional.jacobian(
                lambda f, s=s, a=a: torch.log_softmax(x[s] @ f.reshape(4, 3).T, -1)[a], w0)
            fisher += logp[a].exp() * torch.outer(g, g) / 5
    hessian = dense_hessian(loss, w0)
    assert torch.allclose(hessian, fisher, atol=1e-10)
    # and fisher_loss's own Hessian (p0 detached at the current point) is the same matrix
    def own(flat):
        return policy.fisher_loss(x @ flat.reshape(4, 3).T).mean()
    hv = torch.autograd.functional.hvp(own, w0, torch.ones(12, dtype=torch.float64))[1]
    assert torch.allclose(hv, fisher @ torch.ones(12, dtype=torch.float64), atol=1e-10)


def test_gaussian_fisher_loss_is_zero_with_the_fisher_as_hessian():
    """Diagonal Gaussian N(mu, sigma^2): the Fisher of (mu, log sigma) is diag(1/sigma^2, 2)."""
    log_std = torch.nn.Parameter(torch.tensor([0.3], dtype=torch.float64))
    policy = GaussianPolicy(log_std)
    mean = torch.tensor([[0.5]], dtype=torch.float64, requires_grad=True)
    value = policy.fisher_loss(mean).sum()
    grads = torch.autograd.grad(value, [mean, log_std], create_graph=True)
    assert value.item() == pytest.approx(0.0, abs=1e-12)
    assert all(g.abs().max() < 1e-12 for g in grads)
    d_mean = torch.autograd.grad(grads[0].sum(), [mean, log_std], retain_graph=True)
    d_std = torch.autograd.grad(grads[1].sum(), [mean, log_std])
    hessian = torch.tensor([[d_mean[0].item(), d_mean[1].item()], [d_std[0].item(), d_std[1].item()]],
                           dtype=torch.float64)
    sigma2 = float(torch.exp(2 * log_std.detach()))
    assert torch.allclose(hessian, torch.tensor([[1 / sigma2, 0.0], [0.0, 2.0]], dtype=torch.float64))


def test_dqn_fixed_loss_is_the_td_loss_with_one_step_discounts():
    agent = DQN(OBS, spaces.Discrete(2), DQNConfig(widths=(8,), gamma=0.9, batch_size=4,
                                                   buffer_size=8, learning_starts=0))
    (target,) = agent.probe_targets()
    batch = transitions()
    expected, _ = agent.td_loss({**batch, "discounts": 0.9 * (1 - batch["terminated"])})
    assert target.fixed_loss(batch).item() == pytest.approx(expected.item(), rel=1e-6)
    assert torch.equal(target.observe(batch["obs"]), batch["obs"])  # DQN: no normaliser


def test_ppo_fixed_value_loss_is_semi_gradient_td0():
    agent = PPO(OBS, spaces.Discrete(2), PPOConfig(widths=(8,), num_envs=1, num_steps=4, gamma=0.9))
    policy_target, value_target = agent.probe_targets()[:2]
    batch = transitions()
    with torch.no_grad():
        v, v_next = agent.critic(batch["obs"]).squeeze(-1), agent.critic(batch["next_obs"]).squeeze(-1)
    td = batch["rewards"] + 0.9 * (1 - batch["terminated"]) * v_next
    loss = value_target.fixed_loss(batch)
    assert loss.item() == pytest.approx(0.5 * 0.5 * (v - td).square().mean().item(), rel=1e-5)
    grads = torch.autograd.grad(loss, list(agent.critic.parameters()))
    # semi-gradient: the gradient is that of 0.25 (V(s) - fixed target)^2
    v_live = agent.critic(batch["obs"]).squeeze(-1)
    ref = torch.autograd.grad(0.25 * (v_live - td).square().mean(), list(agent.critic.parameters()))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, ref, strict=True))
    assert policy_target.fixed_loss(batch).item() == pytest.approx(0.0, abs=1e-6)


def test_ppo_observe_applies_the_normaliser_without_updating_it():
    agent = PPO(OBS, spaces.Discrete(2), PPOConfig(widths=(8,), num_envs=1, num_steps=4,
                                                   normalize_observation=True))
    rms = agent.obs_normalizer.rms
    rms.mean[:] = 1.0
    count = float(rms.count)
    target = agent.probe_targets()[0]
    x = torch.randn(4, 3)
    out = target.observe(x)
    assert not torch.allclose(out, x) and float(rms.count) == count


def test_fresh_module_is_a_new_draw_of_the_same_architecture():
    agent = PPO(OBS, spaces.Discrete(2), PPOConfig(widths=(8, 8), num_envs=1, num_steps=4))
    policy_target = agent.probe_targets()[0]
    before = [p.detach().clone() for p in agent.actor.parameters()]
    a = policy_target.fresh_module(torch.Generator().manual_seed(11))
    b = policy_target.fresh_module(torch.Generator().manual_seed(11))
    c = policy_target.fresh_module(torch.Generator().manual_seed(12))
    shapes = [p.shape for p in agent.actor.parameters()]
    assert [p.shape for p in a.parameters()] == shapes
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a.hidden[0].linear.weight, c.hidden[0].linear.weight)
    assert not torch.equal(a.hidden[0].linear.weight, agent.actor.hidden[0].linear.weight)
    assert all(torch.equal(p, q) for p, q in zip(before, agent.actor.parameters(), strict=True))
    plain = ProbeTarget("x", torch.nn.Linear(2, 2).requires_grad_(False), {}, lambda b: b, None, None)
    plain.module.reset_parameters = None  # a module without reset_parameters(generator)
    with pytest.raises(AgentError, match="has no reset_parameters"):
        plain.fresh_module(torch.Generator())
