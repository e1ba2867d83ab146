"""probes.networks: which probe targets a run measures (actor_critic opt-in), and the
Gauss-Newton group on the targets that offer it."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import experiments
import spectral
from agents.dqn import DQN, DQNConfig
from agents.ppo import PPO, PPOConfig
from experiments.errors import ConfigError
from experiments.resolve import DEFAULT_PROBE_NETWORKS, PROBE_NETWORKS, resolve
from experiments.rundir import read_jsonl


def test_probe_networks_are_the_agents_probe_targets():
    obs, actions = gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2)
    agents = {"dqn": DQN(obs, actions, DQNConfig(buffer_size=200)), "ppo": PPO(obs, actions, PPOConfig())}
    for algo, agent in agents.items():
        assert tuple(t.name for t in agent.probe_targets()) == PROBE_NETWORKS[algo]
        assert set(DEFAULT_PROBE_NETWORKS[algo]) <= set(PROBE_NETWORKS[algo])


def test_default_and_bad_networks(dqn_config, ppo_config):
    assert resolve(ppo_config()).probes.networks == ["policy", "value"]
    assert resolve(dqn_config()).probes.networks == ["q"]
    with pytest.raises(ConfigError, match="'policy', 'value', 'actor_critic'"):
        resolve(ppo_config(**{"probes.networks": ["q"]}))
    with pytest.raises(ConfigError, match="valid choices: 'q'"):
        resolve(dqn_config(**{"probes.networks": ["actor_critic"]}))


def test_actor_critic_rows_and_gauss_newton_density(ppo_config):
    config = ppo_config(**{
        "experiment.steps": 1024, "experiment.checkpoint_every": 0,
        "probes.networks": ["policy", "value", "actor_critic"],
        "probes.metrics": ["hessian_top", "ggn_density"], "probes.slq_every_n_shifts": 1,
        "probes.slq_phases": ["pre", "init"], "probes.settings": {"slq_iters": 10},
    })  # fmt: skip
    probes = list(read_jsonl(experiments.run(config).run_dir / "probes.jsonl"))
    assert [(p["phase"], p["network"]) for p in probes] == [
        (phase, net) for phase in ("pre", "init") for net in ("policy", "value", "actor_critic")
    ]
    for row in probes:
        assert row["hessian/top_1"] > 0
        if row["network"] == "actor_critic":  # no Gauss-Newton form: the group is skipped
            assert not any(k.startswith("ggn/") for k in row)
        else:
            assert row["ggn/slq_min"] > -1e-6 * row["ggn/slq_max"]  # PSD
            assert np.isfinite(row["ggn/eps_resolution"])
    # The full loss's top eigenvalue is the larger of the two networks' (block diagonal).
    for phase in ("pre", "init"):
        top = {p["network"]: p["hessian/top_1"] for p in probes if p["phase"] == phase}
        assert top["actor_critic"] == pytest.approx(max(top["policy"], top["value"]), rel=0.05)


def test_dqn_gauss_newton_form_is_of_the_td_loss():
    env = gym.make("CartPole-v1")
    agent = DQN(env.observation_space, env.action_space, DQNConfig(buffer_size=200, widths=(16,)))
    batch = agent.collect(env, 64, seed=0)
    (target,) = agent.probe_targets()
    output_fn, output_loss = target.ggn(batch)
    # The same loss as a function of Q(s, ·), so G = Jᵀ H_L J is the TD loss's Gauss-Newton.
    assert output_loss(output_fn()).item() == pytest.approx(target.loss(batch).item(), rel=1e-6)
    dense = spectral.GGNOperator(output_fn, target.module, output_loss).to_dense()
    assert torch.linalg.eigvalsh(dense)[0] > -1e-6 * torch.linalg.eigvalsh(dense)[-1]  # PSD
