"""Bad input: each raises envs.EnvError naming the bad value and the valid choices."""

from __future__ import annotations

import gymnasium as gym
import pytest

import envs
from envs import CyclicSchedule, EnvError, make_nonstationary


def _one(params):
    return CyclicSchedule(10, [params])


def test_env_error_is_a_value_error():
    assert issubclass(EnvError, ValueError)


def test_unknown_env_id():
    with pytest.raises(EnvError, match=r"unknown gymnasium env id 'CartPole-v9'; close matches: .*CartPole-v1"):
        make_nonstationary("CartPole-v9", envs.ParamShift(), _one({"gravity": 1.0}))


def test_unknown_stream_id_lists_streams():
    with pytest.raises(EnvError, match=r"unknown stream id 'plasticity/Nope-v0'; registered streams: .*'plasticity/CartPoleDynamics-v0'.*'plasticity/MiniGridHiddenGoal-v0'"):
        envs.make("plasticity/Nope-v0")
    with pytest.raises(EnvError, match="unknown stream id 'plasticity/Nope-v0'"):
        envs.make_vector("plasticity/Nope-v0", 2)


def test_unknown_parameter_name_lists_valid_names():
    with pytest.raises(EnvError, match=r"CartPoleEnv has no shiftable parameter 'wind'; valid names: 'gravity', 'masscart', 'masspole', 'length', 'force_mag'"):
        make_nonstationary("CartPole-v1", envs.ParamShift(), _one({"wind": 1.0}))


def test_parameter_of_another_env():
    # 'g' is Pendulum's gravity; CartPole calls it 'gravity'
    with pytest.raises(EnvError, match=r"CartPoleEnv has no shiftable parameter 'g'; valid names: .*'gravity'"):
        make_nonstationary("CartPole-v1", envs.ParamShift(), _one({"g": 9.8}))
    with pytest.raises(EnvError, match=r"PendulumEnv has no shiftable parameter 'gravity'; valid names: 'g', 'm', 'l'"):
        make_nonstationary("Pendulum-v1", envs.ParamShift(), _one({"gravity": 9.8}))


def test_non_positive_period_through_a_stream():
    with pytest.raises(EnvError, match="period must be a positive integer number of env steps, got 0"):
        envs.make("plasticity/CartPoleDynamics-v0", period=0)
    with pytest.raises(EnvError, match="period must be a positive integer number of env steps, got -3"):
        envs.make("plasticity/MiniGridHiddenGoal-v0", period=-3)


def test_empty_task_list():
    with pytest.raises(EnvError, match=r"tasks must be a non-empty list of parameter mappings, got \[\]"):
        make_nonstationary("CartPole-v1", envs.RewardScale(), CyclicSchedule(10, []))


def test_permutation_on_unsupported_space():
    minigrid_raw = gym.make("MiniGrid-Empty-8x8-v0")  # Dict observation
    with pytest.raises(EnvError, match=r"ObservationPermutation needs a Box or Discrete observation space, got Dict; valid: 'Box', 'Discrete'"):
        make_nonstationary(minigrid_raw, envs.ObservationPermutation(), _one({"obs_perm": (0,)}))
    multi = gym.make("MiniGrid-Empty-8x8-v0")
    multi.action_space = gym.spaces.MultiDiscrete([2, 2])
    with pytest.raises(EnvError, match=r"ActionPermutation needs a Discrete or 1-D Box action space, got MultiDiscrete; valid: 'Box', 'Discrete'"):
        make_nonstationary(multi, envs.ActionPermutation(), _one({"action_perm": (0, 1)}))


def test_bad_permutation_value():
    with pytest.raises(EnvError, match=r"\(0, 0, 1, 2\) is not a permutation of range\(4\)"):
        make_nonstationary("CartPole-v1", envs.ObservationPermutation(), _one({"obs_perm": (0, 0, 1, 2)}))


@pytest.mark.parametrize("shift", [envs.GoalShift(), envs.LayoutShift(), envs.ViewPermutation()])
def test_minigrid_shift_on_non_minigrid_env(shift):
    with pytest.raises(EnvError, match=r"needs a MiniGrid env \(a minigrid.MiniGridEnv\), got 'CartPole-v1'"):
        make_nonstationary("CartPole-v1", shift, _one({"goal": (1, 2)}))


def test_goal_shift_on_minigrid_without_movable_goal():
    with pytest.raises(EnvError, match=r"GoalShift needs a MiniGrid env with a set_goal\(\) method .* got EmptyEnv"):
        make_nonstationary("MiniGrid-Empty-8x8-v0", envs.GoalShift(), _one({"goal": (1, 2)}))


def test_bad_goal_cell_lists_valid_cells():
    with pytest.raises(EnvError, match=r"goal \(0, 0\) is not a valid goal cell; valid cells: \[\(2, 1\)"):
        envs.RoomEnv(goal=(0, 0))


def test_bad_switch_at_and_vector_options():
    with pytest.raises(EnvError, match=r"switch_at='later' is not one of 'reset', 'step', 'truncate'"):
        envs.make("plasticity/CartPoleRewardFlip-v0", switch_at="later")
    with pytest.raises(EnvError, match=r"mode='threads' is not one of 'sync', 'lean', 'async'"):
        envs.make_vector("plasticity/CartPoleRewardFlip-v0", 2, "threads")
    with pytest.raises(EnvError, match="num_envs must be a positive integer, got 0"):
        envs.make_vector("plasticity/CartPoleRewardFlip-v0", 0)


def test_unknown_stream_option_lists_options():
    with pytest.raises(EnvError, match=r"plasticity/CartPoleDynamics-v0 has no option 'perod'; valid options: 'period', 'stationary'"):
        envs.make("plasticity/CartPoleDynamics-v0", perod=10)


def test_bad_task_index_and_state():
    env = envs.make("plasticity/CartPoleDynamics-v0")
    with pytest.raises(EnvError, match="task index must be a non-negative integer, got -1"):
        env.get_wrapper_attr("set_task")(-1)
    with pytest.raises(EnvError, match=r"state is missing \['scheduled_task'\]; expected keys 'global_step', 'task_id', 'scheduled_task'"):
        env.get_wrapper_attr("set_state")({"global_step": 3, "task_id": 0})


def test_reward_shift_wrong_parameter():
    with pytest.raises(EnvError, match=r"RewardScale takes parameters 'reward_scale', got \['scale'\]"):
        make_nonstationary("CartPole-v1", envs.RewardScale(), _one({"scale": -1.0}))
