"""Schedules: pure, seeded, periodic."""

from __future__ import annotations

import math

import numpy as np
import pytest

import envs
from envs import (
    Choice,
    CyclicSchedule,
    LogUniform,
    Normal,
    Permutation,
    RandomSchedule,
    RandomSigns,
    StationarySchedule,
    Uniform,
)


def _draws():
    return {
        "g": Uniform(5.0, 15.0),
        "m": LogUniform(0.1, 10.0),
        "c": Choice(["a", "b", "c", "d"]),
        "off": Normal(0.0, 2.0, 3),
        "perm": Permutation(6),
        "sign": RandomSigns(6),
    }


def test_same_seed_same_sequence_any_access_order():
    a = RandomSchedule(100, _draws(), seed=7)
    b = RandomSchedule(100, _draws(), seed=7)
    forward = [a.task_params(k) for k in range(20)]
    backward = [b.task_params(k) for k in reversed(range(20))][::-1]
    assert forward == backward


def test_different_seeds_different_sequences():
    a = [RandomSchedule(100, _draws(), seed=1).task_params(k) for k in range(10)]
    b = [RandomSchedule(100, _draws(), seed=2).task_params(k) for k in range(10)]
    assert all(x["g"] != y["g"] for x, y in zip(a, b, strict=True))
    assert a != b


def test_draws_respect_their_laws():
    s = RandomSchedule(1, _draws(), seed=0)
    tasks = [s.task_params(k) for k in range(400)]
    g = np.array([t["g"] for t in tasks])
    m = np.array([t["m"] for t in tasks])
    assert g.min() >= 5.0 and g.max() < 15.0
    assert m.min() >= 0.1 and m.max() < 10.0
    # log-uniform on [0.1, 10]: log10 is uniform on [-1, 1], median near 1 (not 5 as uniform would give)
    assert abs(np.median(np.log10(m))) < 0.15
    assert {t["c"] for t in tasks} == {"a", "b", "c", "d"}
    for t in tasks[:20]:
        assert sorted(t["perm"]) == list(range(6))
        assert set(t["sign"]) <= {-1.0, 1.0}
        assert len(t["off"]) == 3
    off = np.array([t["off"] for t in tasks])
    assert abs(off.std() - 2.0) < 0.2


def test_periodic_task_at_and_switch_steps():
    s = CyclicSchedule(250, [{"x": 1}, {"x": 2}, {"x": 3}])
    assert [s.task_at(t) for t in (0, 249, 250, 499, 500, 751)] == [0, 0, 1, 1, 2, 3]
    assert s.switch_steps(1000) == [250, 500, 750]
    assert s.switch_steps(1001) == [250, 500, 750, 1000]
    assert [s.task_params(k)["x"] for k in range(7)] == [1, 2, 3, 1, 2, 3, 1]


def test_first_num_tasks_and_distinct():
    s = RandomSchedule(10, {"goal": Choice([(1, 1), (2, 2), (3, 3)])}, seed=3,
                       first={"goal": (9, 9)}, num_tasks=None, distinct=("goal",))
    goals = [s.task_params(k)["goal"] for k in range(50)]
    assert goals[0] == (9, 9)
    assert all(a != b for a, b in zip(goals[:-1], goals[1:], strict=True))
    cyc = RandomSchedule(10, {"x": Uniform(0, 1)}, seed=3, num_tasks=4)
    assert [cyc.task_params(k) for k in range(4)] == [cyc.task_params(k) for k in range(4, 8)]
    assert len({cyc.task_params(k)["x"] for k in range(4)}) == 4


def test_stationary_schedule_never_switches():
    base = RandomSchedule(10, {"x": Uniform(0, 1)}, seed=0)
    s = StationarySchedule(base)
    assert [s.task_at(t) for t in (0, 10, 10_000)] == [0, 0, 0]
    assert s.switch_steps(10_000) == []
    assert s.task_params(3) == base.task_params(3)


def test_loguniform_is_log_uniform_on_bounds():
    d = LogUniform(0.02, 2.0)
    rng = np.random.default_rng(0)
    xs = [d.sample(rng) for _ in range(2000)]
    assert min(xs) >= 0.02 and max(xs) < 2.0
    assert abs(np.mean(np.log(xs)) - 0.5 * (math.log(0.02) + math.log(2.0))) < 0.1


@pytest.mark.parametrize("period", [0, -5, 2.5, "10", True])
def test_bad_period(period):
    with pytest.raises(envs.EnvError, match="period must be a positive integer") as e:
        CyclicSchedule(period, [{"x": 1}])
    assert repr(period) in str(e.value)
    with pytest.raises(envs.EnvError, match="period must be a positive integer"):
        RandomSchedule(period, {"x": Uniform(0, 1)})


def test_empty_task_list():
    with pytest.raises(envs.EnvError, match=r"tasks must be a non-empty list .* got \[\]"):
        CyclicSchedule(10, [])


def test_bad_distributions():
    with pytest.raises(envs.EnvError, match="LogUniform needs 0 < low < high, got low=0"):
        LogUniform(0, 1)
    with pytest.raises(envs.EnvError, match=r"Choice needs a non-empty list of values, got \[\]"):
        Choice([])
    with pytest.raises(envs.EnvError, match=r"distinct names \['y'\] are not drawn; drawn names: 'x'"):
        RandomSchedule(10, {"x": Uniform(0, 1)}, distinct=("y",))
    with pytest.raises(envs.EnvError, match="task index must be a non-negative integer, got -1"):
        CyclicSchedule(10, [{"x": 1}]).task_params(-1)
