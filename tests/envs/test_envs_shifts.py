"""Shift building blocks: composition, Discrete observation permutation, generic parameters."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs import ComposeShift, CyclicSchedule, ObservationOffset, ObservationPermutation, ParamShift


def test_compose_param_and_observation_shift():
    shift = ComposeShift(dyn=ParamShift(), obs=ObservationOffset())
    sched = CyclicSchedule(10, [
        {"dyn": {"gravity": 9.8}, "obs": {"obs_offset": (0.0, 0.0, 0.0, 0.0)}},
        {"dyn": {"gravity": 30.0}, "obs": {"obs_offset": (1.0, -1.0, 2.0, 0.5)}},
    ])
    env = envs.make_nonstationary("CartPole-v1", shift, sched)
    state = np.array([0.0, 0.1, 0.05, 0.0])
    env.reset(seed=0)
    env.unwrapped.state = state.copy()
    o0 = env.step(1)[0]
    env.set_task(1)
    env.reset(seed=0)
    env.unwrapped.state = state.copy()
    o1 = env.step(1)[0]
    assert env.unwrapped.gravity == 30.0
    # one Euler step: x does not depend on gravity (pure offset), theta_dot does (offset + physics)
    assert (o1 - o0)[0] == pytest.approx(1.0, rel=1e-5)
    assert abs((o1 - o0)[3] - 0.5) > 1e-3
    with pytest.raises(envs.EnvError, match=r"task parameters \['rew'\] name no shift; shifts: 'dyn', 'obs'"):
        shift.apply(env.env, {"rew": {}})


def test_discrete_observation_permutation_is_a_bijection():
    perm = tuple(int(i) for i in np.random.default_rng(0).permutation(16))
    sched = CyclicSchedule(10, [{"obs_perm": tuple(range(16))}, {"obs_perm": perm}])
    env = envs.make_nonstationary("FrozenLake-v1", ObservationPermutation(), sched, is_slippery=False)
    env.set_task(1)
    obs, _ = env.reset(seed=0)
    assert obs == perm[0]
    obs = env.step(2)[0]  # move right: state 1
    assert obs == perm[1] and obs in env.observation_space


class _Spring(gym.Env):
    """A tiny custom env: position follows x' = x + k * action."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self):
        self.k = 1.0
        self.flag = True
        self.x = 0.0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = 0.0
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.x += self.k * action
        return np.array([self.x], np.float32), 0.0, False, False, {}


def test_param_shift_on_any_env_uses_its_numeric_attributes():
    env = envs.make_nonstationary(_Spring(), ParamShift(), CyclicSchedule(3, [{"k": 1.0}, {"k": 5.0}]),
                                  switch_at="step")
    env.reset(seed=0)
    xs = [env.step(1)[0][0] for _ in range(4)]
    assert xs == [1.0, 2.0, 3.0, 8.0]
    assert envs.valid_parameters(env) == ("k", "x")  # bools are not parameters
    with pytest.raises(envs.EnvError, match=r"_Spring has no shiftable parameter 'flag'; valid names: 'k', 'x'"):
        env.shift.apply(env.env, {"flag": 0.0})
