"""induced_collapse: the dose is what the fixed data see, dead units cap the Hessian rank,
dose 0 changes nothing, populations act per member."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces
from torch.func import functional_call

from agents.base import AgentError, ShiftPolicy
from agents.dqn import DQN, DQNConfig
from agents.mitigations import InducedCollapse, make_mitigations
from agents.mitigations.induced_collapse import unit_order
from agents.ppo import PPO, PPOConfig
from spectral import FeatureCapture, dead_fraction, saturated_fraction

OBS = spaces.Box(-1.0, 1.0, (5,), np.float32)
ACTIONS = spaces.Discrete(3)


def _data(n=64, seed=0):
    return torch.randn(n, 5, generator=torch.Generator().manual_seed(seed))


def _dqn(dose, widths=(16, 12), activation="relu", layer_norm=False, seeds=None, **kw):
    config = DQNConfig(widths=widths, activation=activation, layer_norm=layer_norm, seed=3,
                       learning_starts=16, batch_size=16, train_frequency=1)
    return DQN(OBS, ACTIONS, config, make_mitigations([{"name": "induced_collapse", "dose": dose, **kw}]),
               seeds=seeds)


def _switch(agent, task, x):
    for m in agent.members:
        for mit in m.mitigations:
            mit.set_task_data(task, x)
    agent.on_task_switch(ShiftPolicy())


def _features(net, x):
    with FeatureCapture(net.layers()) as cap, torch.no_grad():
        net(x)
    return cap


@pytest.mark.parametrize("dose", [0.25, 0.5, 0.75, 0.9])
@pytest.mark.parametrize("layer_norm", [False, True])
def test_relu_dead_fraction_on_the_fixed_data_equals_the_dose(dose, layer_norm):
    agent = _dqn(dose, layer_norm=layer_norm)
    x = _data()
    before = _features(agent.q, x)
    assert all(dead_fraction(phi) == 0 for phi in before.outputs.values())  # a fresh network
    _switch(agent, 1, x)
    after = _features(agent.q, x)
    for name, phi in after.outputs.items():
        width = phi.shape[1]
        assert abs(dead_fraction(phi) - dose) <= 1 / width + 1e-12, name
    report = agent.members[0].mitigations[0].report
    assert report["q.hidden.0"] == round(16 * dose)  # nothing was dead in the first layer
    assert 0 <= report["q.hidden.1"] <= round(12 * dose)  # some die of the first layer's loss
    # the silenced units of the first layer are dead with the margin on every input
    chosen = unit_order(16, "3/1/q/hidden.0")[: round(16 * dose)]
    assert (after.inputs["hidden.0"][:, chosen] <= -0.1 + 1e-5).all()


@pytest.mark.parametrize("dose", [0.25, 0.5, 0.9])
def test_tanh_saturated_fraction_on_the_fixed_data_equals_the_dose(dose):
    agent = _dqn(dose, activation="tanh", saturation_bound=2.5)
    x = _data()
    assert all(saturated_fraction(z, 2.5) == 0 for z in _features(agent.q, x).inputs.values())
    _switch(agent, 1, x)
    for name, z in _features(agent.q, x).inputs.items():
        assert abs(saturated_fraction(z, 2.5) - dose) <= 1 / z.shape[1] + 1e-12, name


def test_units_are_a_seeded_draw_nested_across_doses_and_new_per_task():
    x = _data()

    def dead_units(dose, task):
        agent = _dqn(dose)
        _switch(agent, task, x)
        return {n: set(torch.nonzero((phi == 0).all(0)).flatten().tolist())
                for n, phi in _features(agent.q, x).outputs.items()}

    small, large = dead_units(0.25, 1), dead_units(0.75, 1)
    assert all(small[n] < large[n] for n in small)  # a larger dose silences a superset
    assert dead_units(0.25, 1)["hidden.0"] == small["hidden.0"]  # reproducible
    assert dead_units(0.25, 2)["hidden.0"] != small["hidden.0"]  # another task, other units


def _flat_hessian(net, x, y):
    names = [n for n, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]
    flat0 = torch.cat([p.detach().flatten() for p in net.parameters()]).double()

    def loss(flat):
        params, i = {}, 0
        for n, s in zip(names, shapes, strict=True):
            k = int(np.prod(s))
            params[n] = flat[i:i + k].view(s)
            i += k
        return 0.5 * (functional_call(net, params, (x,)) - y).square().mean()

    net.double()
    return torch.autograd.functional.hessian(loss, flat0), names, shapes


def test_dead_units_cap_the_hessian_rank_as_theorem_6_2_says():
    """Dead units' incoming weights and bias and outgoing columns get zero Hessian rows and
    columns on the data: rank(H) <= P - |those parameters| (counted once)."""
    x = _data(40).double()
    y = torch.randn(40, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    fresh = _dqn(0.5, widths=(8, 6))
    h_before, _, _ = _flat_hessian(fresh.q, x, y)
    agent = _dqn(0.5, widths=(8, 6))
    _switch(agent, 1, x.float())
    net = agent.q
    dead = [(phi == 0).all(0) for phi in _features(net, x.float()).outputs.values()]
    h, names, shapes = _flat_hessian(net, x, y)
    # the parameter mask of dead units' incoming rows, biases and outgoing columns
    masks = {n: torch.zeros(s, dtype=torch.bool) for n, s in zip(names, shapes, strict=True)}
    outgoing = ["hidden.1.linear.weight", "head.weight"]
    for i, d in enumerate(dead):
        masks[f"hidden.{i}.linear.weight"][d] = True
        masks[f"hidden.{i}.linear.bias"][d] = True
        masks[outgoing[i]][:, d] = True
    zeroed = torch.cat([masks[n].flatten() for n in names])
    assert dead[0].sum() == 4 and dead[1].sum() == 3
    assert torch.all(h[zeroed] == 0) and torch.all(h[:, zeroed] == 0)
    tol = 1e-10 * float(torch.linalg.eigvalsh(h).abs().max())
    rank = int((torch.linalg.eigvalsh(h).abs() > tol).sum())
    rank_before = int((torch.linalg.eigvalsh(h_before).abs() > tol).sum())
    bound = h.shape[0] - int(zeroed.sum())
    # P = 5*8+8 + 8*6+6 + 6*3+3 = 123; zeroed: 4*(5+1+6) + 3*(8+1+3) - 4*3 (shared) = 72
    assert h.shape[0] == 123 and int(zeroed.sum()) == 72
    assert rank <= bound < rank_before


def test_dose_zero_is_a_no_op_and_bad_settings_are_refused():
    agent, plain = _dqn(0.0), _dqn(0.0)
    before = {k: v.clone() for k, v in agent.q.state_dict().items()}
    agent.on_task_switch(ShiftPolicy())  # no data needed: nothing to do
    assert all(torch.equal(before[k], v) for k, v in agent.q.state_dict().items())
    assert all(torch.equal(plain.q.state_dict()[k], v) for k, v in agent.q.state_dict().items())
    with pytest.raises(AgentError, match="dose"):
        InducedCollapse(dose=1.0)
    with pytest.raises(AgentError, match="activation"):
        _dqn(0.5, activation="gelu")
    with pytest.raises(AgentError, match="fixed data"):
        _dqn(0.5).on_task_switch(ShiftPolicy())


def test_population_members_are_perturbed_as_single_runs():
    x = _data()
    pop = _dqn(0.5, seeds=[3, 4])
    singles = [_dqn(0.5, seeds=[s]) for s in (3, 4)]
    _switch(pop, 2, x)
    for k, single in enumerate(singles):
        _switch(single, 2, x)
        for key, value in single.q.state_dict().items():
            assert torch.equal(pop.members[k].q.state_dict()[key], value), (k, key)
    assert not torch.equal(pop.members[0].q.hidden[0].linear.bias, pop.members[1].q.hidden[0].linear.bias)


def test_ppo_networks_both_perturbed_through_the_observation_normaliser():
    config = PPOConfig(num_envs=2, num_steps=8, normalize_observation=True, seed=1)
    agent = PPO(OBS, ACTIONS, config, make_mitigations([{"name": "induced_collapse", "dose": 0.5}]))
    x = _data()
    _switch(agent, 1, x)
    report = agent.mitigations[0].report
    assert set(report) == {f"{n}.hidden.{i}" for n in ("actor", "critic") for i in range(2)}
    bound = agent.mitigations[0].saturation_bound
    target = agent.probe_targets()[0]
    for net in agent.networks().values():
        for name, z in _features(net, target.observe(x)).inputs.items():
            assert abs(saturated_fraction(z, bound) - 0.5) <= 1 / z.shape[1] + 1e-12, name
