"""Gradient/weight statistics and one-step gain against manual computations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spectral import (
    SpectralError,
    distance_from_init,
    gradient_norm,
    gradient_stats,
    one_step_gain,
    weight_norm,
)
from tests.spectral.helpers import mse_problem


def test_gradient_norm_and_zero_fraction():
    problem = mse_problem(activation=nn.ReLU)
    with torch.no_grad():
        problem.net[0].bias[:4] = -100.0  # four dead hidden units: their rows get no gradient
    grads = torch.autograd.grad(problem.loss_fn(), problem.params)
    flat = torch.cat([g.reshape(-1) for g in grads])
    stats = gradient_stats(problem.loss_fn, problem.params)
    assert stats.norm == pytest.approx(float(flat.norm()), rel=1e-12)
    assert stats.zero_fraction == pytest.approx(float((flat == 0).double().mean()))
    # 4 units × (5 weights + 1 bias) + their 4 × 12 outgoing weights are exactly zero.
    assert stats.zero_fraction >= (4 * 6 + 4 * 12) / flat.numel()
    assert gradient_norm(problem.loss_fn, problem.net) == stats.norm
    assert all(p.grad is None for p in problem.params)


def test_weight_norm_and_distance_from_init():
    problem = mse_problem()
    init = [p.detach().clone() for p in problem.params]
    flat = torch.cat([p.detach().reshape(-1) for p in problem.params])
    assert weight_norm(problem.params) == pytest.approx(float(flat.norm()), rel=1e-12)
    assert distance_from_init(problem.params, init) == 0.0
    with torch.no_grad():
        problem.params[0].add_(0.5)
    expected = 0.5 * problem.params[0].numel() ** 0.5
    assert distance_from_init(problem.params, init) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(SpectralError, match="init_params"):
        distance_from_init(problem.params, init[:-1])


def test_one_step_gain_matches_manual_step_and_restores_parameters():
    train, fresh = mse_problem(seed=0), mse_problem(seed=0, batch=32)
    fresh.x.normal_(generator=torch.Generator().manual_seed(9))  # a different batch
    net = train.net
    before = [p.detach().clone() for p in net.parameters()]
    gain = one_step_gain(train.loss_fn, net, 0.1, lambda: fresh.loss_of_output(net(fresh.x)))
    # Manual: θ' = θ - 0.1 ∇L_train(θ); gain = L_fresh(θ) - L_fresh(θ').
    grads = torch.autograd.grad(train.loss_fn(), list(net.parameters()))
    stepped = torch.cat(
        [(p - 0.1 * g).detach().reshape(-1) for p, g in zip(net.parameters(), grads, strict=True)]
    )
    theta = torch.cat([b.reshape(-1) for b in before])
    manual = float(fresh.loss_of_flat(theta) - fresh.loss_of_flat(stepped))
    assert gain == pytest.approx(manual, rel=1e-10)
    assert all(torch.equal(p, b) for p, b in zip(net.parameters(), before, strict=True))
    with pytest.raises(SpectralError, match="lr"):
        one_step_gain(train.loss_fn, net, 0.0, train.loss_fn)


def test_one_step_gain_restores_parameters_when_the_eval_loss_raises():
    problem = mse_problem()
    before = [p.detach().clone() for p in problem.params]
    calls = []

    def failing_eval():
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return problem.loss_fn()

    with pytest.raises(RuntimeError, match="boom"):
        one_step_gain(problem.loss_fn, problem.params, 0.5, failing_eval)
    assert all(torch.equal(p, b) for p, b in zip(problem.params, before, strict=True))
