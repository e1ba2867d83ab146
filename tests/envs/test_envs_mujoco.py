"""Slippery Ant: floor friction shift (skipped with a reason when MuJoCo envs cannot be built)."""

from __future__ import annotations

import numpy as np
import pytest

import envs

pytestmark = pytest.mark.skipif(
    not envs.mujoco_available(), reason=f"MuJoCo stream unavailable: {envs.mujoco_missing_reason()}"
)


def test_friction_changes_dynamics_and_matches_schedule():
    env = envs.make("plasticity/SlipperyAnt-v0", period=10_000, seed=0)
    env.reset(seed=0)
    u = env.unwrapped
    floor = u.model.geom("floor").id
    schedule = env.get_wrapper_attr("schedule")
    # two tasks with clearly different friction
    k = next(k for k in range(1, 40)
             if abs(np.log(schedule.task_params(k)["friction"] / schedule.task_params(0)["friction"])) > 1.5)
    actions = np.random.default_rng(0).uniform(-1, 1, (25, 8)).astype(np.float32)
    traces = []
    for j in (0, k):
        env.get_wrapper_attr("set_task")(j)
        env.reset(seed=0)
        assert u.model.geom_friction[floor, 0] == pytest.approx(schedule.task_params(j)["friction"])
        traces.append(np.array([env.step(a)[0] for a in actions]))
    assert not np.allclose(traces[0], traces[1], atol=1e-3)


def test_friction_shift_on_non_mujoco_env():
    with pytest.raises(envs.EnvError, match="FrictionShift needs a MuJoCo env"):
        envs.make_nonstationary("CartPole-v1", envs.FrictionShift(), envs.CyclicSchedule(10, [{"friction": 1.0}]))


def test_low_friction_matters_below_the_feet_friction():
    # MuJoCo uses the max of two geoms' frictions: without the floor's contact priority, floor
    # frictions below the feet's 1.0 would all behave the same.
    sched = envs.CyclicSchedule(10_000, [{"friction": 0.05}, {"friction": 0.5}])
    env = envs.make_nonstationary("Ant-v5", envs.FrictionShift(), sched)
    actions = np.random.default_rng(0).uniform(-1, 1, (25, 8)).astype(np.float32)
    traces = []
    for j in (0, 1):
        env.set_task(j)
        env.reset(seed=0)
        traces.append(np.array([env.step(a)[0] for a in actions]))
    assert not np.allclose(traces[0], traces[1], atol=1e-3)
