"""The registered streams: every one passes check_env, lists itself, and honours the common options."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs

STREAM_IDS = [s.id for s in envs.list_streams()]
COMMON_OPTIONS = ("period", "stationary", "switch_at", "seed", "vector_size", "num_tasks")


def test_required_streams_registered():
    required = {
        "plasticity/CartPoleDynamics-v0", "plasticity/AcrobotDynamics-v0", "plasticity/PendulumDynamics-v0",
        "plasticity/CartPoleRewardFlip-v0", "plasticity/CartPolePermutedObs-v0", "plasticity/CartPoleObsOffset-v0",
        "plasticity/MiniGridHiddenGoal-v0", "plasticity/MiniGridGoalShift-v0", "plasticity/MiniGridLayoutShift-v0",
        "plasticity/MiniGridPermutedView-v0", "plasticity/PermutedDigits-v0",
    }
    assert required <= set(STREAM_IDS)
    assert all(i in gym.registry for i in STREAM_IDS)
    assert ("plasticity/SlipperyAnt-v0" in STREAM_IDS) == envs.mujoco_available()


@pytest.mark.parametrize("stream_id", STREAM_IDS)
def test_check_env(stream_id):
    # gymnasium 1.x's check_env warns (does not fail) on a wrapped env; gymnasium.make always wraps
    # (OrderEnforcing, PassiveEnvChecker), and the stream *is* a wrapper, so it is checked as made.
    # Rendering is skipped: it is the base env's, untouched by our wrappers, and needs a display.
    env = envs.make(stream_id)
    check_env(env, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("stream_id", STREAM_IDS)
def test_stream_info_and_common_options(stream_id):
    info = next(s for s in envs.list_streams() if s.id == stream_id)
    assert info.description and "\n" not in info.description
    assert isinstance(info.default_period, int) and info.default_period > 0
    assert set(COMMON_OPTIONS) <= set(info.parameters())
    assert info.factory.__doc__ and str(info.default_period // 1000) in info.factory.__doc__.replace(",", "")


@pytest.mark.parametrize("stream_id", [i for i in STREAM_IDS if "Ant" not in i])
def test_stationary_option_gives_task_zero_forever(stream_id):
    env = envs.make(stream_id, period=5, stationary=True)
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(40):
        _, _, term, trunc, info = env.step(env.action_space.sample())
        assert info["task_id"] == 0
        if term or trunc:
            assert env.reset()[1]["task_id"] == 0
    assert env.get_wrapper_attr("task_params") == env.get_wrapper_attr("schedule").task_params(0)


@pytest.mark.parametrize("stream_id", [i for i in STREAM_IDS if "Ant" not in i])
def test_periodic_switch_on_every_stream(stream_id):
    env = envs.make(stream_id, period=7, switch_at="step", seed=1)
    env.reset(seed=0)
    env.action_space.seed(0)
    ids = []
    for _ in range(21):
        _, _, term, trunc, info = env.step(env.action_space.sample())
        ids.append(info["task_id"])
        if term or trunc:
            env.reset()
    assert ids == [0] * 7 + [1] * 7 + [2] * 7


def test_format_streams_lists_every_id_with_period():
    table = envs.format_streams()
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["id", "period"]
    for s in envs.list_streams():
        line = next(line for line in lines if line.startswith(s.id + " "))
        assert f"{s.default_period:,}" in line and s.description in line


def test_register_stream_without_editing_the_package():
    def my_stream(period: int = 1_000, *, stationary: bool = False, switch_at: str = "reset", seed: int = 0,
                  vector_size: int = 1, num_tasks: int | None = None, autoreset_mode: str | None = None):
        """A user stream: Pendulum whose gravity cycles."""
        return envs.make_nonstationary(
            "Pendulum-v1", envs.ParamShift(), envs.CyclicSchedule(period, [{"g": 10.0}, {"g": 4.0}]),
            switch_at=switch_at, stationary=stationary, vector_size=vector_size, autoreset_mode=autoreset_mode)

    envs.register_stream("mine/PendulumGravity-v0", my_stream, description="Pendulum g 10 <-> 4")
    try:
        assert any(s.id == "mine/PendulumGravity-v0" and s.default_period == 1_000 for s in envs.list_streams())
        env = envs.make("mine/PendulumGravity-v0", period=3, switch_at="step")
        env.reset(seed=0)
        for _ in range(4):
            env.step(np.zeros(1, np.float32))
        assert env.unwrapped.g == 4.0
        check_env(envs.make("mine/PendulumGravity-v0"), skip_render_check=True)
    finally:
        from envs import registry
        registry._STREAMS.pop("mine/PendulumGravity-v0", None)
        gym.registry.pop("mine/PendulumGravity-v0", None)
