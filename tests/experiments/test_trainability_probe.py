"""The trainability probe on networks whose trainability is known: a head scaled x10 (the
features untouched, so the network can learn; only its outputs are large), 58 of 64 ReLU
units dead in each hidden layer (it cannot), and that network re-initialised (it can).

Each probe reading is "how many times fresh's": the raw final-loss ratio, the final
fraction's ratio (``exp`` of its log-ratio) and the feature fit's final ratio. At the
default fitting budget (``ProbeConfig``: 100 Adam steps of 2e-3) the scaled head reads
worse on the raw ratio only, the dead network > 5x on all three, the revived one within
1.5x (a revived network is another fresh draw: 1.5x bounds the spread of two draws' fits).
Seeds 0-19 checked (the slow test); worst cases: scaled raw 2.6x, scaled fraction / feature
1.37x, dead 8.4x, revived 1.44x.
"""

from __future__ import annotations

import math

import pytest
import torch

from agents.base import ProbeTarget
from agents.networks import MLP
from experiments.config import ProbeConfig
from experiments.probing import Prober

WIDTH, DEAD = 64, 58


def network(seed: int) -> MLP:
    # Orthogonal init with a unit head gain: outputs of order 1, so x10 makes them large.
    return MLP(16, 4, (WIDTH, WIDTH), "relu", init="orthogonal", head_gain=1.0,
               generator=torch.Generator().manual_seed(seed))


def scaled_head(seed: int) -> MLP:
    net = network(seed)
    with torch.no_grad():
        net.head.weight.mul_(10.0)
        net.head.bias.mul_(10.0)
    return net


def dead_units(seed: int) -> MLP:
    """58 of each hidden layer's 64 ReLU units negative on every input: no output, no
    gradient, for good."""
    net = network(seed)
    with torch.no_grad():
        for block in net.hidden:
            block.linear.bias[:DEAD] -= 100.0
    return net


def revived(seed: int) -> MLP:
    net = dead_units(seed)
    net.reset_parameters(torch.Generator().manual_seed(10_000 + seed))
    return net


def readings(net: MLP, seed: int) -> dict[str, float]:
    target = ProbeTarget("q", net, net.layers(), lambda b: b, None, lambda b: b)
    obs = torch.randn(256, 16, generator=torch.Generator().manual_seed(100 + seed))
    row = Prober(ProbeConfig(), ["trainability"], seed=seed)._trainability(target, 0, obs, None)
    return row | {"fraction_ratio": math.exp(row["trainability/random_final_fraction_logratio"])}


VIEWS = ("trainability/random_final_ratio", "fraction_ratio", "trainability/features_final_ratio")


def check(seeds) -> None:
    for seed in seeds:
        base = readings(network(seed), seed)
        scaled = readings(scaled_head(seed), seed)
        # the head's scale: its norm x10, its outputs ~x10
        assert scaled["weights/output_layer_norm"] == pytest.approx(
            10 * base["weights/output_layer_norm"], rel=1e-5)
        assert 5 < scaled["outputs/mean_abs"] / base["outputs/mean_abs"] < 20
        assert scaled["trainability/random_final_ratio"] > 1.5, seed  # raw: "worse"
        assert scaled["fraction_ratio"] < 1.5, seed  # fraction: trainable
        assert scaled["trainability/features_final_ratio"] < 1.5, seed  # features: trainable
        dead = readings(dead_units(seed), seed)
        assert all(dead[v] > 5 for v in VIEWS), (seed, {v: dead[v] for v in VIEWS})
        alive = readings(revived(seed), seed)
        assert all(alive[v] < 1.5 for v in VIEWS), (seed, {v: alive[v] for v in VIEWS})


def test_scale_dead_units_and_revival_read_as_they_are():
    check(range(2))


@pytest.mark.slow
def test_scale_dead_units_and_revival_read_as_they_are_over_many_seeds():
    check(range(2, 20))


def test_feature_fit_keeps_the_hidden_layers_and_redraws_the_head():
    net = network(0)
    target = ProbeTarget("q", net, net.layers(), lambda b: b, None, lambda b: b)
    a = target.head_reset_module(torch.Generator().manual_seed(1))
    b = target.head_reset_module(torch.Generator().manual_seed(1))
    assert all(torch.equal(p, q) for p, q in zip(a.hidden.parameters(), net.hidden.parameters(),
                                                 strict=True))
    assert torch.equal(a.head.weight, b.head.weight)  # deterministic in its generator
    assert not torch.equal(a.head.weight, net.head.weight)
    # drawn from the network's own init distribution: orthogonal rows with the head's gain
    torch.testing.assert_close(a.head.weight @ a.head.weight.T, torch.eye(4))
    assert target.output_layer() is net.head
    # the probe's rows are deterministic: the same network, seed and data give the same row
    obs = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    first = Prober(ProbeConfig(trainability_steps=5), ["trainability"], seed=3)._trainability(
        target, 0, obs, None)
    again = Prober(ProbeConfig(trainability_steps=5), ["trainability"], seed=3)._trainability(
        target, 0, obs, None)
    assert first == again
    assert first["trainability/random_final_fraction"] == pytest.approx(
        first["trainability/random_final_loss"] / first["trainability/random_initial_loss"])
    fresh_fraction = (first["trainability/random_final_loss_fresh"]
                      / first["trainability/random_initial_loss_fresh"])
    assert first["trainability/random_final_fraction_logratio"] == pytest.approx(
        math.log(first["trainability/random_final_fraction"] / fresh_fraction))
