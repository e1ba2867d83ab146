"""Tiny runs shared by the experiments tests (CartPole/MiniGrid streams, a few thousand steps)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from experiments.config import apply_overrides, from_dict

# DQN on CartPole: 3 tasks of 600 steps, learning from step 100, cheap probes.
DQN_RUN: dict[str, Any] = {
    "experiment": {"steps": 1800, "log_every": 200, "checkpoint_every": 600},
    "env": {"id": "plasticity/CartPoleDynamics-v0", "period": 600},
    "agent": {"algo": "dqn", "learning_starts": 100, "buffer_size": 2000, "batch_size": 32,
              "train_frequency": 2, "exploration_steps": 600, "widths": [32, 32],
              "target_network_frequency": 100, "update_phase": 200},
    "probes": {"metrics": ["hessian_top", "features", "gradient", "weights"], "batch_size": 64,
               "init_rollout_steps": 64},
    "logging": {"tensorboard": False, "progress": "off"},
}

# PPO on the MiniGrid hidden-goal stream: 4 tasks of 512 steps (2 rollouts of 4 x 64).
PPO_RUN: dict[str, Any] = {
    "experiment": {"steps": 2048, "log_every": 256, "checkpoint_every": 1024},
    "env": {"id": "plasticity/MiniGridHiddenGoal-v0", "period": 512, "num_envs": 4},
    "agent": {"algo": "ppo", "num_steps": 64, "anneal_lr": False, "widths": [32, 32]},
    "probes": {"metrics": ["hessian_top", "features", "gradient", "weights"], "batch_size": 64,
               "init_rollout_steps": 64},
    "logging": {"tensorboard": False, "progress": "off"},
}


#: Overrides that make DQN_RUN a run of a few hundred steps: no shift (a shifting run must
#: outlast its first task) and epsilon decayed within the run.
SHORT_DQN: dict[str, Any] = {"experiment.reference": "stationary", "agent.exploration_steps": 100}


def make_config(base: dict[str, Any], out: Path, **overrides: Any):
    data = apply_overrides(base, {"experiment.out": str(out), **overrides})
    return from_dict(data)


@pytest.fixture
def dqn_config(tmp_path):
    return lambda **kw: make_config(DQN_RUN, tmp_path / "dqn", **kw)


@pytest.fixture
def ppo_config(tmp_path):
    return lambda **kw: make_config(PPO_RUN, tmp_path / "ppo", **kw)
