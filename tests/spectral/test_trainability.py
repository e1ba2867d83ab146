"""Trainability fits: a network made to lose trainability scores clearly worse than a fresh
one, the same network with its units revived scores like a fresh one, and the probed
network (and whatever listens to its hooks) is never touched."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from spectral import SpectralError, fit_curve, network_copy, standardized

STEPS = 150
DEAD = torch.arange(64) >= 6  # 58 of 64 units per hidden layer


def make_net(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 4))


@pytest.fixture(scope="module")
def task():
    """Random targets: standardised outputs of an independently initialised network."""
    x = torch.randn(128, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = standardized(make_net(99)(x))
    return x, y


def kill_units(net: nn.Sequential) -> nn.Sequential:
    """Most ReLU units of both hidden layers dead on every input (a -100 bias): they pass
    no signal and receive no gradient, so training cannot bring them back."""
    net = copy.deepcopy(net)
    with torch.no_grad():
        for i in (0, 2):
            net[i].bias[DEAD] = -100.0
    return net


def revive_units(net: nn.Sequential, donor: nn.Sequential) -> nn.Sequential:
    """Redraw the dead units' incoming weights and biases from the initial distribution."""
    net = copy.deepcopy(net)
    with torch.no_grad():
        for i in (0, 2):
            net[i].weight[DEAD] = donor[i].weight[DEAD]
            net[i].bias[DEAD] = donor[i].bias[DEAD]
    return net


def test_killed_units_fit_clearly_worse_and_revived_units_like_fresh(task):
    x, y = task
    fresh = fit_curve(make_net(1), x, y, steps=STEPS)
    killed_net = kill_units(make_net(2))
    killed = fit_curve(killed_net, x, y, steps=STEPS)
    revived = fit_curve(revive_units(killed_net, make_net(3)), x, y, steps=STEPS)
    assert fresh.final < 0.25 * fresh.initial  # the budget is enough to fit most of it
    assert killed.final > 5 * fresh.final and killed.auc > 2 * fresh.auc
    assert revived.final < 1.5 * fresh.final and revived.auc < 1.3 * fresh.auc


def test_large_weight_norm_fits_worse_than_fresh(task):
    x, y = task
    net = make_net(1)
    fresh = fit_curve(net, x, y, steps=STEPS)
    big = copy.deepcopy(net)
    with torch.no_grad():
        for p in big.parameters():
            p.mul_(4.0)  # ReLU layers: outputs scale by 4^3 = 64
    inflated = fit_curve(big, x, y, steps=STEPS)
    assert inflated.initial > 20 * fresh.initial
    assert inflated.final > 5 * fresh.final and inflated.auc > 5 * fresh.auc


def test_curve_summaries_and_the_network_is_untouched(task):
    x, y = task
    net = make_net(1)
    calls = []
    net[1].register_forward_hook(lambda *args: calls.append(1))
    before = [p.detach().clone() for p in net.parameters()]
    curve = fit_curve(net, x, y, steps=20, lr=1e-2)
    assert calls == [] and all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    assert all(p.grad is None for p in net.parameters())
    losses = curve.losses
    assert len(losses) == 21 and curve.initial == losses[0] and curve.final == losses[-1]
    with torch.no_grad():  # L_0 is the untrained network's loss
        assert curve.initial == pytest.approx(float((net(x) - y).square().mean()), rel=1e-6)
    trapezoid = (losses[:-1] + losses[1:]).sum() / 2 / 20
    assert curve.auc == pytest.approx(trapezoid) and curve.final < curve.auc < curve.initial
    # deterministic: no random number is drawn
    assert (fit_curve(net, x, y, steps=20, lr=1e-2).losses == losses).all()


def test_kl_fit_reaches_a_softmax_target_and_is_zero_at_it(task):
    x, _ = task
    net = make_net(5)
    with torch.no_grad():
        p = torch.softmax(net(x), dim=-1)
    at_target = fit_curve(net, x, p, steps=1, loss="kl")
    assert at_target.initial == pytest.approx(0.0, abs=1e-6)
    onehot = torch.nn.functional.one_hot(torch.arange(128) % 4, 4).float()
    curve = fit_curve(net, x, onehot, steps=100, lr=1e-2, loss="kl")
    assert curve.final < 0.5 * curve.initial


def test_network_copy_drops_hooks_and_standardized_columns():
    net = make_net(1)
    net[1].register_forward_hook(lambda *args: None)
    twin = network_copy(net)
    assert net[1]._forward_hooks and not twin[1]._forward_hooks
    y = standardized(torch.randn(50, 3) * torch.tensor([0.01, 1.0, 100.0]) + 7.0)
    assert torch.allclose(y.mean(0), torch.zeros(3), atol=1e-5)
    assert torch.allclose(y.std(0), torch.ones(3), atol=1e-5)
    assert torch.equal(standardized(torch.ones(4, 1)), torch.zeros(4, 1))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"steps": 0}, "steps must be a positive integer"),
    ({"steps": 5, "lr": 0.0}, "lr must be > 0"),
    ({"steps": 5, "loss": "huber"}, "unknown fit loss 'huber'; valid choices: mse, kl"),
])
def test_bad_arguments_name_the_value(task, kwargs, match):
    x, y = task
    with pytest.raises(SpectralError, match=match):
        fit_curve(make_net(1), x, y, **kwargs)
    with pytest.raises(SpectralError, match="does not match targets shape"):
        fit_curve(make_net(1), x, y[:, :2], steps=1)
