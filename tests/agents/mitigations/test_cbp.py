from __future__ import annotations

import copy

import pytest
import torch

from agents.mitigations import ContinualBackprop
from tests.agents.mitigations.mitigation_fakes import FakeAgent as make_agent
from tests.agents.mitigations.mitigation_fakes import make_obs_batch

obs_batch = make_obs_batch()


def test_utility_is_running_average_of_activation_times_outgoing_weights():
    cbp = ContinualBackprop(decay=0.9)
    agent = make_agent(mitigations=[cbp], optimizer="sgd")
    agent.optimizer.param_groups[0]["lr"] = 0.0
    net, obs = agent.nets["q"], obs_batch["obs"][:50]
    with torch.no_grad():
        h0 = net.hidden[0](obs)
        h1 = net.hidden[1](h0)
    expected0 = 0.1 * h0.abs().mean(0) * net.hidden[1].linear.weight.abs().sum(0)
    expected1 = 0.1 * h1.abs().mean(0) * net.head.weight.abs().sum(0)
    agent.train_step(obs)
    torch.testing.assert_close(cbp.utility["q.hidden.0"], expected0)
    torch.testing.assert_close(cbp.utility["q.hidden.1"], expected1)
    with torch.no_grad():
        net(obs * 3)  # acting/probing without gradients does not count
    agent.train_step()  # no forward with gradients before this step: no new evidence
    torch.testing.assert_close(cbp.utility["q.hidden.0"], expected0)
    assert torch.all(cbp.age["q.hidden.0"] == 2)


def test_replaces_lowest_utility_mature_units_and_no_immature_ones():
    cbp = ContinualBackprop(replacement_rate=0.25, maturity_threshold=100)
    agent = make_agent(mitigations=[cbp])
    width = 16
    immature = [0, 1, 2, 3, 4, 5, 6, 7]  # lowest utilities, but too young
    mature = list(range(8, 16))
    utility = torch.zeros(width)
    utility[immature] = torch.arange(8.0)  # 0..7
    utility[mature] = torch.tensor([900.0, 300.0, 800.0, 200.0, 700.0, 600.0, 500.0, 400.0])
    age = torch.zeros(width, dtype=torch.long)
    age[immature] = 50
    age[mature] = 1000
    state = cbp.state_dict()
    state["utility"]["q.hidden.0"] = utility
    state["age"]["q.hidden.0"] = age
    cbp.load_state_dict(state)
    net = agent.nets["q"]
    w_in = net.hidden[0].linear.weight.detach().clone()
    agent.train_step(obs_batch["obs"][:32])
    replaced = sorted(cbp.last_replaced["q.hidden.0"].tolist())
    assert replaced == [9, 11]  # 0.25 * 8 eligible = 2 units: utilities 300 and 200
    assert torch.all(net.hidden[1].linear.weight[:, replaced] == 0)
    assert torch.all(cbp.age["q.hidden.0"][replaced] == 0)
    assert torch.all(cbp.utility["q.hidden.0"][replaced] == 0)
    assert torch.all(cbp.age["q.hidden.0"][immature] == 51)
    kept = [j for j in range(width) if j not in replaced]
    assert torch.all(net.hidden[1].linear.weight[:, kept] != 0)
    assert (net.hidden[0].linear.weight[kept] - w_in[kept]).abs().max() < 1e-2  # one Adam step
    assert cbp.last_replaced["q.hidden.1"].numel() == 0  # no mature units there


def test_fractional_replacements_accumulate():
    cbp = ContinualBackprop(replacement_rate=0.1, maturity_threshold=0)
    agent = make_agent(config=None, mitigations=[cbp])
    counts = []
    for _ in range(10):
        agent.train_step()
        counts.append(int(cbp.last_replaced["q.hidden.0"].numel()))
    # 16 eligible units * 0.1 = 1.6 per step, minus the replaced (age reset to 0 -> age 1 > 0 next step)
    assert sum(counts) == pytest.approx(16, abs=1)
    assert set(counts) <= {1, 2}


def test_state_round_trip():
    cbp = ContinualBackprop(replacement_rate=0.05, maturity_threshold=2)
    agent = make_agent(mitigations=[cbp])
    for _ in range(5):
        agent.train_step(obs_batch["obs"][:32])
    state = cbp.state_dict()
    other_cbp = ContinualBackprop(replacement_rate=0.05, maturity_threshold=2)
    other = make_agent(mitigations=[other_cbp])
    other.nets["q"].load_state_dict(agent.nets["q"].state_dict())
    # deepcopy: Optimizer.load_state_dict would otherwise share the moment tensors
    other.optimizer.load_state_dict(copy.deepcopy(agent.optimizer.state_dict()))
    other_cbp.load_state_dict(state)
    for _ in range(20):
        agent.train_step(obs_batch["obs"][:32])
        other.train_step(obs_batch["obs"][:32])
    for key in cbp.utility:
        assert torch.equal(cbp.utility[key], other_cbp.utility[key])
        assert torch.equal(cbp.age[key], other_cbp.age[key])
    for a, b in zip(agent.nets["q"].parameters(), other.nets["q"].parameters(), strict=True):
        assert torch.equal(a, b)
