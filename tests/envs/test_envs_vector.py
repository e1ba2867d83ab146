"""Vector envs: every sub-env is on the same task at every step."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs


@pytest.mark.parametrize("autoreset_mode", ["next_step", "same_step"])
def test_sync_all_subenvs_same_task_every_step(autoreset_mode):
    period, n = 300, 4
    vec = envs.make_vector("plasticity/CartPoleDynamics-v0", n, "sync", autoreset_mode=autoreset_mode,
                           period=period, seed=0)
    vec.reset(seed=0)
    rng = np.random.default_rng(0)
    seen = []
    for i in range(1000):
        _, _, term, trunc, info = vec.step(rng.integers(0, 2, n))
        ids = set(info["task_id"].tolist())
        assert len(ids) == 1, (i, info["task_id"])
        seen.append(ids.pop())
    assert sorted(set(seen)) == list(range(14))  # global steps 0..3999, period 300: tasks 0..13
    steps = vec.get_attr("global_step")
    assert len(set(steps)) == 1 and steps[0] == n * 1000
    if autoreset_mode == "next_step":
        # the reported task is the schedule's task of that vector step's global step
        assert seen == [(n * i) // period for i in range(1000)]


def test_vector_physics_identical_across_subenvs_after_switch():
    vec = envs.make_vector("plasticity/CartPoleDynamics-v0", 3, "sync", period=60, seed=2)
    vec.reset(seed=0)
    for _ in range(40):
        vec.step(np.array([0, 1, 0]))
    gravity = vec.get_attr("task_params")
    assert all(g == gravity[0] for g in gravity)
    assert vec.get_attr("task_id") == (2, 2, 2) or len(set(vec.get_attr("task_id"))) == 1
    vec.call("set_task", 5)
    assert vec.get_attr("task_id") == (5, 5, 5)
    vec.close()


def test_async_vector_env():
    vec = envs.make_vector("plasticity/MiniGridHiddenGoal-v0", 2, "async", period=64, seed=0)
    try:
        vec.reset(seed=0)
        rng = np.random.default_rng(0)
        for _ in range(100):
            _, _, _, _, info = vec.step(rng.integers(0, 3, 2))
            assert len(set(info["task_id"].tolist())) == 1
        assert set(vec.get_attr("global_step")) == {200}
        assert info["task_id"][0] == 199 // 64
    finally:
        vec.close()


def test_vector_record_episode_statistics():
    vec = gym.wrappers.vector.RecordEpisodeStatistics(
        envs.make_vector("plasticity/CartPoleRewardFlip-v0", 2, period=100))
    vec.reset(seed=0)
    episodes = 0
    for _ in range(200):
        _, _, _, _, info = vec.step(np.zeros(2, np.int64))
        if "episode" in info:
            episodes += int(info["_episode"].sum())
    assert episodes > 10


def test_numpy_integer_actions_reach_the_env_as_python_ints_with_the_same_trajectory():
    """A vector env hands each sub-env a numpy integer; the stream wrapper passes MiniGrid a
    Python int (its IntEnum comparisons are slow on numpy scalars) and nothing else changes:
    a sub-env stepped with numpy integers and one stepped with ints see the same
    observations, rewards and ends."""
    vec = envs.make_vector("plasticity/MiniGridPermutedView-v0", 2, period=200, seed=3)
    seen = []
    base = vec.envs[0].unwrapped
    original = type(base).step
    base.step = lambda action: (seen.append(type(action)), original(base, action))[1]
    vec.reset(seed=5)
    vec.step(np.array([0, 2]))
    assert seen == [int]

    pair = [envs.make("plasticity/MiniGridPermutedView-v0", period=200, seed=3) for _ in range(2)]
    first = [env.reset(seed=5)[0] for env in pair]
    assert np.array_equal(*first)
    rng = np.random.default_rng(0)
    ends = 0
    for action in rng.integers(0, 3, 600):
        (o1, r1, te1, tr1, _), (o2, r2, te2, tr2, _) = pair[0].step(action), pair[1].step(int(action))
        assert np.array_equal(o1, o2) and (r1, te1, tr1) == (r2, te2, tr2)
        if te1 or tr1:
            ends += 1
            assert np.array_equal(pair[0].reset()[0], pair[1].reset()[0])
    assert ends > 0 and type(action) is np.int64
