from __future__ import annotations

import copy
import math

import pytest
import torch
from scipy import stats

from agents.base import AgentError, ShiftPolicy
from agents.mitigations import Reset, ResetOnSwitch
from tests.agents.mitigations.mitigation_fakes import FakeAgent as make_agent
from tests.agents.mitigations.mitigation_fakes import FakeConfig as fake_config
from tests.agents.mitigations.mitigation_fakes import make_obs_batch

obs_batch = make_obs_batch()


def _scramble(agent, obs):
    for _ in range(3):
        agent.train_step(obs)
    with torch.no_grad():
        for p in agent.nets["q"].parameters():
            p.mul_(5.0).add_(0.3)  # far from the initial distribution


def _uniform_pvalue(w: torch.Tensor, bound: float) -> float:
    return stats.kstest(
        w.detach().flatten().numpy(), stats.uniform(loc=-bound, scale=2 * bound).cdf
    ).pvalue


def test_periodic_head_reset_restores_the_initial_distribution_and_adam_state():
    reset = Reset(every_steps=1000, which="head")
    agent = make_agent(config=fake_config(widths=(64, 64)), mitigations=[reset], out_dim=64)
    _scramble(agent, obs_batch["obs"])
    net = agent.nets["q"]
    hidden_before = [p.detach().clone() for p in net.hidden.parameters()]
    agent.global_step = 999
    agent.update_phase(obs_batch)
    assert net.head.weight.abs().max() > 0.5  # not yet due: still scrambled
    agent.global_step = 1000
    agent.update_phase(obs_batch)
    bound = 1 / math.sqrt(64)
    assert _uniform_pvalue(net.head.weight, bound) > 1e-3
    assert (
        _uniform_pvalue(torch.cat([p.flatten() for p in (net.head.weight, net.head.bias)]), bound)
        > 1e-3
    )
    assert all(
        torch.equal(a, b) for a, b in zip(hidden_before, net.hidden.parameters(), strict=True)
    )
    state = agent.optimizer.state[net.head.weight]
    assert state["exp_avg"].abs().sum() == 0 and float(state["step"]) == 0
    assert agent.optimizer.state[net.hidden[0].linear.weight]["exp_avg"].abs().sum() > 0
    assert reset.next_at == 2000


def test_full_orthogonal_reset_gives_orthogonal_rows_again():
    reset = Reset(every_steps=10, which="all", reset_optimizer=False)
    agent = make_agent(config=fake_config(widths=(8, 8), init="orthogonal"), mitigations=[reset])
    _scramble(agent, obs_batch["obs"])
    agent.global_step = 25
    agent.update_phase(obs_batch)
    net = agent.nets["q"]
    for block in net.hidden:  # orthogonal init: W W^T = gain^2 I (rows <= cols) or W^T W
        w = block.linear.weight.detach()
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        torch.testing.assert_close(gram, 2.0 * torch.eye(gram.shape[0]), atol=1e-5, rtol=0)
        assert torch.all(block.linear.bias == 0)
    assert reset.next_at == 30  # the missed multiple 20 is skipped, not replayed


def test_reset_layer_list_and_unknown_layer():
    reset = Reset(every_steps=1, which=["hidden.1"])
    agent = make_agent(mitigations=[reset])
    _scramble(agent, obs_batch["obs"])
    head = agent.nets["q"].head.weight.detach().clone()
    agent.global_step = 1
    agent.update_phase(obs_batch)
    assert torch.equal(agent.nets["q"].head.weight, head)
    assert agent.nets["q"].hidden[1].linear.weight.abs().max() <= 0.25  # 1/sqrt(16)
    with pytest.raises(AgentError, match="has no layer 'hidden.5'"):
        make_agent(mitigations=[Reset(which=["hidden.5"])])
    with pytest.raises(AgentError, match="which"):
        Reset(which=["layer3"])


def test_reset_on_switch_is_an_oracle_acting_only_on_switch():
    oracle = ResetOnSwitch()
    assert oracle.oracle and not Reset.oracle
    agent = make_agent(mitigations=[oracle])
    _scramble(agent, obs_batch["obs"])
    agent.global_step = 10**6
    agent.update_phase(obs_batch)
    assert agent.nets["q"].head.weight.abs().max() > 0.5
    state_before = agent.optimizer.state[agent.nets["q"].head.weight]["exp_avg"].clone()
    oracle.on_task_switch(agent)
    assert agent.nets["q"].head.weight.abs().max() <= 0.25
    # default: moments kept (the ShiftPolicy resets the whole optimiser if asked)
    assert torch.equal(agent.optimizer.state[agent.nets["q"].head.weight]["exp_avg"], state_before)


def test_reset_on_switch_of_one_network_leaves_the_others():
    """networks = ["actor"] resets the policy head only (the PPO policy-head oracle arm)."""
    from agents import PPO, PPOConfig
    from tests.agents.conftest import cartpole_vec

    envs = cartpole_vec(2)
    agent = PPO(envs.single_observation_space, envs.single_action_space,
                PPOConfig(total_steps=10_000, num_envs=2, actor_head_gain=1.0),
                [ResetOnSwitch(networks=["actor"])])
    agent.learn(envs, 512)
    with torch.no_grad():
        for net in (agent.actor, agent.critic):
            net.head.weight.add_(3.0)
    critic, actor_hidden = copy.deepcopy(agent.critic), copy.deepcopy(agent.actor.hidden)
    agent.on_task_switch(ShiftPolicy())
    assert agent.actor.head.weight.abs().max() < 3.0
    assert all(torch.equal(p, q) for p, q in zip(critic.parameters(), agent.critic.parameters(),
                                                  strict=True))
    assert all(torch.equal(p, q) for p, q in zip(actor_hidden.parameters(),
                                                  agent.actor.hidden.parameters(), strict=True))
    with pytest.raises(AgentError, match="no network 'policy'.*actor, critic"):
        PPO(envs.single_observation_space, envs.single_action_space,
            PPOConfig(total_steps=10_000, num_envs=2), [ResetOnSwitch(networks=["policy"])])
    with pytest.raises(AgentError, match="invalid networks=3"):
        ResetOnSwitch(networks=3)


def test_reset_state_round_trip():
    reset = Reset(every_steps=5, which="all")
    agent = make_agent(mitigations=[reset])
    agent.global_step = 7
    agent.update_phase(obs_batch)
    state = reset.state_dict()
    other = Reset(every_steps=5, which="all")
    make_agent(mitigations=[other])
    other.load_state_dict(state)
    assert other.next_at == 10
    assert torch.equal(other.generator.get_state(), reset.generator.get_state())
