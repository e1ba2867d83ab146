"""Dynamics, reward and interface streams really change what the env does, as scheduled."""

from __future__ import annotations

import numpy as np
import pytest

import envs

DYNAMICS = {
    "plasticity/CartPoleDynamics-v0": (np.array([0.01, 0.02, 0.03, -0.02]), [1, 0, 1, 1, 0, 0]),
    "plasticity/AcrobotDynamics-v0": (np.array([0.1, -0.2, 0.3, 0.1]), [0, 2, 2, 1, 0, 2]),
    "plasticity/MountainCarDynamics-v0": (np.array([-0.5, 0.01]), [2, 2, 0, 2, 1, 2]),
    "plasticity/PendulumDynamics-v0": (np.array([0.5, 0.3]), [np.array([1.0], np.float32)] * 3 + [np.array([-2.0], np.float32)] * 3),
}


def _rollout(env, state, actions):
    """Set the unwrapped state, play ``actions``, return the observations."""
    env.unwrapped.state = np.array(state, dtype=np.float64)
    return np.array([env.step(a)[0] for a in actions])


def _first_obs(env, task, state, action):
    """Put ``env`` on ``task``, reset, set the unwrapped ``state`` and return the next observation."""
    env.get_wrapper_attr("set_task")(task)
    env.reset(seed=0)
    env.unwrapped.state = np.array(state, dtype=np.float64)
    return env.step(action)[0]


def _advance_to_next_task(env, period):
    """Take ``period`` steps (resetting when needed), then reset: the new task applies."""
    k = env.get_wrapper_attr("task_id")
    for _ in range(period):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()
    _, info = env.reset()
    assert info["task_id"] == k + 1 and info["task_switched"]
    return info


@pytest.mark.parametrize("stream_id", sorted(DYNAMICS))
def test_dynamics_change_at_switch_and_match_schedule(stream_id):
    state, actions = DYNAMICS[stream_id]
    env = envs.make(stream_id, period=50, seed=4)
    env.action_space.seed(0)
    env.reset(seed=0)
    before = _rollout(env, state, actions)
    env.reset(seed=0)
    again = _rollout(env, state, actions)
    np.testing.assert_array_equal(before, again)  # same task: same transitions
    info = _advance_to_next_task(env, 50)
    after = _rollout(env, state, actions)
    assert not np.allclose(before, after), "observations identical across a dynamics switch"
    schedule = env.get_wrapper_attr("schedule")
    for name, value in schedule.task_params(1).items():
        assert getattr(env.unwrapped, name) == pytest.approx(value)
        assert info["task"][name] == value


def test_cartpole_derived_quantities_follow():
    env = envs.make("plasticity/CartPoleDynamics-v0", period=10, seed=1)
    env.get_wrapper_attr("set_task")(2)
    u = env.unwrapped
    assert u.total_mass == pytest.approx(u.masspole + u.masscart)
    assert u.polemass_length == pytest.approx(u.masspole * u.length)
    assert u.masspole != 0.1


def test_reward_flip_changes_reward_of_same_transition():
    env = envs.make("plasticity/CartPoleRewardFlip-v0", period=20)
    env.reset(seed=0)
    state = [0.0, 0.0, 0.01, 0.0]
    env.unwrapped.state = np.array(state)
    r0 = env.step(1)[1]
    env.get_wrapper_attr("set_task")(1)
    env.reset(seed=0)
    env.unwrapped.state = np.array(state)
    r1 = env.step(1)[1]
    assert r0 == 1.0 and r1 == -1.0


def test_mountaincar_goal_relocation_changes_termination():
    shift = envs.ParamShift()
    sched = envs.CyclicSchedule(10, [{"goal_position": 0.5}, {"goal_position": -0.3}])
    env = envs.make_nonstationary("MountainCar-v0", shift, sched, switch_at="step")
    env.reset(seed=0)
    env.unwrapped.state = np.array([-0.29, 0.02])
    assert env.step(2)[2] is False
    env.set_task(1)
    env.reset(seed=0)
    env.unwrapped.state = np.array([-0.29, 0.02])
    assert env.step(2)[2] is True


def test_permuted_observation_is_the_scheduled_permutation():
    env = envs.make("plasticity/CartPolePermutedObs-v0", period=10, seed=2)
    state = np.array([0.1, -0.2, 0.03, 0.4])
    o0, o1 = _first_obs(env, 0, state, 1), _first_obs(env, 1, state, 1)
    p = env.get_wrapper_attr("task_params")
    perm, sign = np.array(p["obs_perm"]), np.array(p["obs_sign"], np.float32)
    assert sorted(perm) == [0, 1, 2, 3] and not np.array_equal(perm, np.arange(4))
    np.testing.assert_allclose(o1, o0[perm] * sign)  # task 0 is the identity
    assert o1 in env.observation_space


def test_projected_permutation_is_wide_and_fixed_across_tasks():
    env = envs.make("plasticity/CartPolePermutedObs-v0", period=10, seed=2, projection=32)
    assert env.observation_space.shape == (32,)
    state = np.array([0.1, -0.2, 0.03, 0.4])
    o0, o3 = _first_obs(env, 0, state, 1), _first_obs(env, 3, state, 1)
    p = env.get_wrapper_attr("task_params")
    np.testing.assert_allclose(o3, o0[np.array(p["obs_perm"])] * np.array(p["obs_sign"]), rtol=1e-6)
    assert np.linalg.matrix_rank(np.stack([env.step(i % 2)[0] for i in range(8)])) == 4  # image of R^4


def test_observation_offset_is_the_scheduled_offset():
    env = envs.make("plasticity/CartPoleObsOffset-v0", period=10, seed=5)
    state = np.array([0.1, -0.2, 0.03, 0.4])
    o0, o1 = _first_obs(env, 0, state, 0), _first_obs(env, 1, state, 0)
    off = np.array(env.get_wrapper_attr("task_params")["obs_offset"], np.float32)
    np.testing.assert_allclose(o1 - o0, off, rtol=1e-5)
    assert np.abs(off).max() > 0.1


def test_action_permutation_discrete_and_box():
    sched = envs.CyclicSchedule(10, [{"action_perm": (0, 1)}, {"action_perm": (1, 0)}])
    env = envs.make_nonstationary("CartPole-v1", envs.ActionPermutation(), sched)
    state = np.array([0.0, 0.0, 0.01, 0.0])
    push_right = _first_obs(env, 0, state, 1)
    np.testing.assert_array_equal(_first_obs(env, 1, state, 0), push_right)  # agent's 0 is now the env's 1
    box = envs.make_nonstationary(
        "Pendulum-v1", envs.ActionPermutation(),
        envs.CyclicSchedule(10, [{"action_perm": (0,), "action_sign": (1.0,)},
                                 {"action_perm": (0,), "action_sign": (-1.0,)}]))
    a = _first_obs(box, 0, [0.3, 0.0], np.array([1.5], np.float32))
    np.testing.assert_allclose(_first_obs(box, 1, [0.3, 0.0], np.array([-1.5], np.float32)), a)
