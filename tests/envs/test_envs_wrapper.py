"""NonStationaryWrapper semantics: when tasks switch, what info says, external control, resume."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs
from envs import CyclicSchedule, RandomSchedule, Uniform, make_nonstationary


class GravityShift:
    """A user shift: one method, no package edit."""

    def apply(self, env, params):
        env.unwrapped.gravity = params["gravity"]


def _stream(period=10, switch_at="reset", **kw):
    sched = CyclicSchedule(period, [{"gravity": 9.8}, {"gravity": 20.0}, {"gravity": 3.0}])
    return make_nonstationary("CartPole-v1", shift=GravityShift(), schedule=sched, switch_at=switch_at, **kw)


def test_user_shift_plugs_in_and_info_keys_present():
    env = _stream()
    obs, info = env.reset(seed=0)
    assert info["task_id"] == 0 and info["task_switched"] is False and info["task"] == {"gravity": 9.8}
    assert env.task_id == 0 and env.task_params == {"gravity": 9.8}
    assert env.unwrapped.gravity == 9.8
    for _ in range(5):
        _, _, term, trunc, info = env.step(0)
        assert isinstance(info["task_id"], int) and "task_switched" in info and "task" in info


def test_switch_at_reset_happens_at_first_reset_after_period():
    env = _stream(period=10)
    env.reset(seed=0)
    env.unwrapped.theta_threshold_radians = 100.0  # keep the episode running past the switch
    env.unwrapped.x_threshold = 1e9
    for t in range(25):
        _, _, term, trunc, info = env.step(t % 2)
        assert not term
        assert info["task_id"] == 0  # no switch mid-episode by default
        assert env.global_step == t + 1
    assert env.unwrapped.gravity == 9.8
    _, info = env.reset()
    # 25 steps taken: task_at(25) = 2, so the first reset after the due switch applies task 2
    assert info["task_id"] == 2 and info["task_switched"] is True
    assert env.unwrapped.gravity == 3.0
    _, _, _, _, info = env.step(0)
    assert info["task_switched"] is True and info["task_id"] == 2
    _, _, _, _, info = env.step(0)
    assert info["task_switched"] is False


def test_reset_exactly_at_period_switches_and_one_step_earlier_does_not():
    env = _stream(period=10)
    env.reset(seed=0)
    for t in range(9):
        assert not env.step(t % 2)[2]  # alternating pushes: the pole stays up for 9 steps
    assert env.global_step == 9
    assert env.reset()[1]["task_id"] == 0
    env.step(0)
    assert env.global_step == 10
    _, info = env.reset()
    assert info["task_id"] == 1 and env.unwrapped.gravity == 20.0


def test_switch_at_step_is_immediate():
    env = _stream(period=4, switch_at="step")
    env.reset(seed=0)
    ids = [env.step(0)[4]["task_id"] for _ in range(6)]
    assert ids == [0, 0, 0, 0, 1, 1]
    assert env.unwrapped.gravity == 20.0


def test_switch_at_truncate_truncates_exactly_at_the_switch_step():
    env = _stream(period=5, switch_at="truncate")
    env.reset(seed=0)
    outs = [env.step(i % 2) for i in range(5)]
    assert [o[3] for o in outs] == [False] * 4 + [True]
    assert all(o[4]["task_id"] == 0 for o in outs)
    _, info = env.reset()
    assert info["task_id"] == 1 and info["task_switched"]


def test_set_task_and_state_roundtrip():
    env = _stream(period=100)
    env.reset(seed=0)
    env.set_task(2)
    assert env.task_id == 2 and env.unwrapped.gravity == 3.0
    _, _, _, _, info = env.step(0)
    assert info["task_id"] == 2 and info["task_switched"] is True
    # the schedule resumes at its next switch (step 100 -> task 1)
    for _ in range(120):
        if env.step(0)[2]:
            env.reset()
    env.reset()
    assert env.task_id == 1
    state = env.get_state()
    assert state == {"global_step": env.global_step, "task_id": 1, "scheduled_task": 1}
    other = _stream(period=100)
    other.set_state(state)
    assert other.global_step == env.global_step and other.task_id == 1
    assert other.unwrapped.gravity == 20.0


def test_stationary_never_switches():
    env = _stream(period=3, stationary=True)
    env.reset(seed=0)
    for _ in range(50):
        _, _, term, trunc, info = env.step(0)
        assert info["task_id"] == 0
        if term or trunc:
            assert env.reset()[1]["task_id"] == 0
    assert env.unwrapped.gravity == 9.8


def test_vector_size_counts_global_steps():
    env = _stream(period=12, switch_at="step", vector_size=4)
    env.reset(seed=0)
    ids = [env.step(0)[4]["task_id"] for _ in range(4)]
    assert ids == [0, 0, 0, 1]
    assert env.global_step == 16


def test_record_episode_statistics_still_works():
    env = gym.wrappers.RecordEpisodeStatistics(envs.make("plasticity/CartPoleRewardFlip-v0", period=60))
    env.reset(seed=0)
    returns = {}
    while len(returns) < 2:
        _, _, term, trunc, info = env.step(0)
        if term or trunc:
            returns.setdefault(info["task_id"], info["episode"]["r"])
            env.reset()
    assert returns[0] > 0 and returns[1] < 0  # always-left episodes: +len then -len


def test_task_params_independent_of_reset_seed():
    a = envs.make("plasticity/CartPoleDynamics-v0", period=5, seed=3)
    b = envs.make("plasticity/CartPoleDynamics-v0", period=5, seed=3)
    for env, s in ((a, 0), (b, 123)):
        env.reset(seed=s)
        for _ in range(5):
            env.step(0)
        env.reset(seed=s + 1)
    assert a.get_wrapper_attr("task_params") == b.get_wrapper_attr("task_params")
    assert a.get_wrapper_attr("task_id") == 1


def test_wrapper_reachable_through_gymnasium_make_wrappers():
    env = envs.make("plasticity/CartPoleDynamics-v0", period=10)
    env.reset(seed=0)
    env.get_wrapper_attr("set_task")(3)
    assert env.get_wrapper_attr("task_id") == 3
    assert env.unwrapped.gravity == pytest.approx(env.get_wrapper_attr("task_params")["gravity"])


def test_random_schedule_through_make_nonstationary_reproducible():
    def run(seed):
        env = make_nonstationary("CartPole-v1", GravityShift(),
                                 RandomSchedule(3, {"gravity": Uniform(5, 15)}, seed=seed), switch_at="step")
        env.reset(seed=0)
        return [env.step(0)[4]["task"]["gravity"] for _ in range(9)]

    assert run(1) == run(1)
    assert run(1) != run(2)
    g = run(1)
    assert g[0] == g[1] == g[2] and g[3] == g[4] == g[5] and g[0] != g[3]


def test_info_dicts_are_fresh_each_call():
    env = _stream()
    _, i1 = env.reset(seed=0)
    _, _, _, _, i2 = env.step(0)
    assert i1["task"] is not i2["task"]
    i2["task"]["gravity"] = -1.0
    assert env.task_params["gravity"] == 9.8
    assert np.isfinite(env.unwrapped.gravity)


def test_resume_from_state_continues_the_same_task_sequence():
    def play(env, actions, seed):
        env.reset(seed=seed)
        out = []
        for a in actions:
            _, r, term, trunc, info = env.step(int(a))
            out.append((info["task_id"], r))
            if term or trunc:
                env.reset()
        return out

    actions = np.random.default_rng(0).integers(0, 2, 400)
    straight = envs.make("plasticity/CartPoleRewardFlip-v0", period=150, switch_at="truncate")
    play(straight, actions[:200], seed=1)
    state = straight.get_wrapper_attr("get_state")()
    expected = play(straight, actions[200:], seed=2)

    resumed = envs.make("plasticity/CartPoleRewardFlip-v0", period=150, switch_at="truncate")
    resumed.get_wrapper_attr("set_state")(state)
    assert play(resumed, actions[200:], seed=2) == expected
    assert {t for t, _ in expected} == {1, 2}
