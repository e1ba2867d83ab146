"""Every mitigation runs inside the real DQN and PPO on a registered stream, alone and combined.

Budgets are tiny (a few rollouts / update phases) with hyperparameters chosen so that each
method actually fires within them (CBP matures after 20 steps, resets every 500 steps, ...).
"""

from __future__ import annotations

import copy

import pytest
import torch

envs = pytest.importorskip("envs")
agents = pytest.importorskip("agents")
from agents import DQN, PPO, DQNConfig, PPOConfig, ShiftPolicy  # noqa: E402
from agents.mitigations import MITIGATIONS, make_mitigations  # noqa: E402

STREAM = "plasticity/CartPoleDynamics-v0"
# per-method hyperparameters that make the method act within the short budget
ACTIVE = {
    "cbp": {"maturity_threshold": 20, "replacement_rate": 0.02},
    "reset": {"every_steps": 400, "which": "all"},
    "shrink_perturb": {"mode": "periodic", "shrink": 0.9, "every_updates": 1},
    "redo": {"tau": 0.1},
    "er": {"lr": 1e-4, "steps_per_update": 2},
    "l2_er": {"lr": 1e-4, "steps_per_update": 2},
}
DQN_FAST = dict(
    widths=(32, 32),
    learning_starts=100,
    exploration_steps=500,
    train_frequency=4,
    batch_size=32,
    buffer_size=2000,
    target_network_frequency=100,
    update_phase=100,
    seed=3,
)
PPO_FAST = dict(
    widths=(32, 32),
    num_envs=2,
    num_steps=128,
    num_minibatches=2,
    update_epochs=2,
    total_steps=2048,
    seed=3,
)


def _specs(names):
    return [{"name": n, **ACTIVE.get(n, {})} for n in names]


def _build(kind, names):
    if kind == "dqn":
        env = envs.make(STREAM)
        agent = DQN(
            env.observation_space,
            env.action_space,
            DQNConfig(**DQN_FAST),
            make_mitigations(_specs(names)),
        )
        return agent, env, 600
    vec = envs.make_vector(STREAM, 2)
    agent = PPO(
        vec.single_observation_space,
        vec.single_action_space,
        PPOConfig(**PPO_FAST),
        make_mitigations(_specs(names)),
    )
    return agent, vec, 1024


def _params(agent):
    return {
        f"{n}.{k}": v.detach().clone()
        for n, net in agent.networks().items()
        for k, v in net.state_dict().items()
    }


@pytest.mark.parametrize("kind", ["dqn", "ppo"])
@pytest.mark.parametrize("name", sorted(MITIGATIONS))
def test_method_runs_and_checkpoints(kind, name):
    agent, env, budget = _build(kind, [name])
    start = _params(agent)
    result = agent.learn(env, budget)
    assert result.updates > 0
    after = _params(agent)
    assert all(torch.isfinite(v).all() for v in after.values())
    assert any(not torch.equal(start[k], after[k]) for k in start)
    if name == "reset_on_switch":
        head = {n: net.head.weight.detach().clone() for n, net in agent.networks().items()}
        agent.on_task_switch(ShiftPolicy())
        assert all(not torch.equal(head[n], net.head.weight) for n, net in agent.networks().items())
    # the mitigation state travels with the agent's checkpoint and resumes identically
    state = copy.deepcopy(agent.state_dict())
    twin, twin_env, _ = _build(kind, [name])
    twin.load_state_dict(state)
    # both continue on a fresh env (an agent resets an env it has not seen, with its seed)
    agent.learn(_build(kind, [])[1], budget + budget // 2)
    twin.learn(twin_env, budget + budget // 2)
    for key, value in _params(agent).items():
        assert torch.equal(value, _params(twin)[key]), key


@pytest.mark.parametrize("kind", ["dqn", "ppo"])
def test_methods_compose(kind):
    agent, env, budget = _build(kind, ["l2", "er", "layer_norm", "crelu", "ns_adam", "redo"])
    assert agent.config.layer_norm and agent.config.activation == "crelu"
    assert agent.optimizer.param_groups[0]["betas"] == (0.99, 0.99)
    agent.learn(env, budget)
    assert all(torch.isfinite(v).all() for v in _params(agent).values())
