"""MiniGrid streams: the goal / layout really moves; visible variants show it; the hidden goal does not."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs import FlatViewObs, ImageObs, OneHotPoseObs, RoomEnv

LEFT, RIGHT, FORWARD = 0, 1, 2


def _path_to(start, start_dir, goal):
    """Actions that walk from ``start`` (facing ``start_dir`` = east) to ``goal``: east first, then south."""
    (x0, y0), (x1, y1) = start, goal
    assert start_dir == 0 and x1 >= x0 and y1 >= y0
    return [FORWARD] * (x1 - x0) + ([RIGHT] + [FORWARD] * (y1 - y0) if y1 > y0 else [])


def test_hidden_goal_moves_every_task_and_pays_only_there():
    env = envs.make("plasticity/MiniGridHiddenGoal-v0", period=100, seed=0)
    schedule = env.get_wrapper_attr("schedule")
    goals = [tuple(schedule.task_params(k)["goal"]) for k in range(12)]
    assert all(a != b for a, b in zip(goals[:-1], goals[1:], strict=True))
    assert len(set(goals)) > 5
    u = env.unwrapped
    assert all(g != (1, 1) and 1 <= g[0] <= 6 and 1 <= g[1] <= 6 for g in goals)
    for k in (0, 1):
        env.get_wrapper_attr("set_task")(k)
        env.reset(seed=0)
        assert u.goal == goals[k]
        actions = _path_to((1, 1), 0, goals[k])
        for i, a in enumerate(actions):
            _, r, term, trunc, _ = env.step(a)
            if i < len(actions) - 1:
                assert r == 0 and not term
        assert term and r == pytest.approx(1 - 0.9 * len(actions) / 144)
    # after the move, walking to task 0's goal pays nothing
    env.reset(seed=0)
    assert env.get_wrapper_attr("task_id") == 1
    rewards = [env.step(a)[1] for a in _path_to((1, 1), 0, goals[0])]
    assert goals[0] != goals[1] and sum(rewards) == 0


def test_hidden_goal_observation_does_not_depend_on_goal():
    env = envs.make("plasticity/MiniGridHiddenGoal-v0")
    assert env.observation_space.shape == (20,) and env.action_space.n == 3
    u = env.unwrapped
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 3, 300)
    cells = u.goal_cells()
    traces = []
    for goal in ((6, 6), (6, 1), (1, 6)):
        u.set_goal(goal)
        obs, _ = env.reset(seed=0)
        trace = [obs]
        for a in actions:
            if tuple(u.front_pos) == goal and a == FORWARD:
                break  # stop before any goal is reached: compare the goal-free part
            trace.append(env.step(a)[0])
        traces.append(np.array(trace))
        # the observation is exactly the one-hot pose: a function of (x, y, dir) only
        x, y = u.agent_pos
        expected = np.zeros(20, np.float32)
        expected[[x, 8 + y, 16 + u.agent_dir]] = 1
        np.testing.assert_array_equal(trace[-1], expected)
    n = min(len(t) for t in traces)
    assert n > 10
    for t in traces[1:]:
        np.testing.assert_array_equal(t[:n], traces[0][:n])
    # and the goal is not on the grid: the rendering has no goal tile either
    assert all(u.grid.get(*c) is None for c in cells)
    # exhaustively: for every goal cell, every pose gives the same observation
    reference = {}
    for goal in cells:
        u.set_goal(goal)
        for x, y in u.interior_cells():
            for d in range(4):
                u.agent_pos, u.agent_dir = (x, y), d
                o = u.gen_obs()
                np.testing.assert_array_equal(reference.setdefault((x, y, d), o), o)
    assert len(reference) == 36 * 4


def test_visible_goal_shift_moves_the_tile_and_the_view_shows_it():
    env = envs.make("plasticity/MiniGridGoalShift-v0", period=100, seed=0)
    schedule = env.get_wrapper_attr("schedule")
    u = env.unwrapped
    # find two consecutive tasks whose goals are both in the start view (facing east from (1, 1): y <= 4)
    k = next(k for k in range(50) if schedule.task_params(k)["goal"][1] <= 4 and schedule.task_params(k + 1)["goal"][1] <= 4)
    obs = []
    for j in (k, k + 1):
        env.get_wrapper_attr("set_task")(j)
        o, _ = env.reset(seed=0)
        goal = tuple(schedule.task_params(j)["goal"])
        assert u.grid.get(*goal).type == "goal"
        assert sum(1 for c in u.goal_cells() if u.grid.get(*c) is not None) == 1
        obs.append(o)
    assert obs[0].shape == (147,) and not np.array_equal(obs[0], obs[1])
    assert (obs[0] == 8).sum() == 1 and (obs[1] == 8).sum() == 1  # object index 8 = goal, in view


def test_visible_goal_moves_mid_episode_with_switch_at_step():
    env = envs.make("plasticity/MiniGridGoalShift-v0", period=3, switch_at="step", seed=1)
    env.reset(seed=0)
    u = env.unwrapped
    first = u.goal
    for _ in range(4):
        env.step(LEFT)
    assert u.goal != first and u.grid.get(*first) is None and u.grid.get(*u.goal).type == "goal"


def test_layout_shift_moves_the_gap():
    env = envs.make("plasticity/MiniGridLayoutShift-v0", period=100, seed=0)
    schedule = env.get_wrapper_attr("schedule")
    u = env.unwrapped
    gaps = [schedule.task_params(k)["gap"] for k in range(10)]
    assert gaps[0] == 4 and all(a != b for a, b in zip(gaps[:-1], gaps[1:], strict=True))
    k = next(k for k in range(1, 50) if schedule.task_params(k)["gap"] <= 3)  # gap 4 -> gap <= 3: both in view
    views = []
    for j in (0, k):
        env.get_wrapper_attr("set_task")(j)
        o, _ = env.reset(seed=0)
        gap = schedule.task_params(j)["gap"]
        col = [u.grid.get(u.wall_x, y) for y in range(1, 8)]
        assert [c is None for c in col] == [y == gap for y in range(1, 8)]
        views.append(o)
    assert not np.array_equal(views[0], views[1])
    # the old gap (row 4) is now walled: a step east from (3, 4) is blocked; under task 0 it passes
    for j, expected in ((k, (3, 4)), (0, (4, 4))):
        env.get_wrapper_attr("set_task")(j)
        env.reset(seed=0)
        u.agent_pos, u.agent_dir = (3, 4), 0
        env.step(FORWARD)
        assert tuple(u.agent_pos) == expected


def test_permuted_view_is_the_scheduled_permutation():
    env = envs.make("plasticity/MiniGridPermutedView-v0", period=100, seed=0)
    o0, _ = env.reset(seed=0)
    env.get_wrapper_attr("set_task")(1)
    o1, _ = env.reset(seed=0)
    perm = np.array(env.get_wrapper_attr("task_params")["obs_perm"])
    assert sorted(perm) == list(range(147)) and not np.array_equal(perm, np.arange(147))
    np.testing.assert_array_equal(o1, o0[perm])
    assert not np.array_equal(o0, o1)


@pytest.mark.parametrize("wrapper, shape, dtype", [
    (ImageObs, (7, 7, 3), np.uint8), (FlatViewObs, (147,), np.float32), (OneHotPoseObs, (20,), np.float32)])
def test_observation_wrappers_pass_check_env(wrapper, shape, dtype):
    env = wrapper(gym.make("MiniGrid-Empty-8x8-v0"))
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs.shape == shape and obs.dtype == dtype and obs in env.observation_space


def test_onehot_pose_wrapper_matches_pose():
    env = OneHotPoseObs(gym.make("MiniGrid-Empty-8x8-v0"))
    env.reset(seed=0)
    for a in (2, 2, 1, 2):
        obs = env.step(a)[0]
    u = env.unwrapped
    assert np.flatnonzero(obs).tolist() == [u.agent_pos[0], 8 + u.agent_pos[1], 16 + u.agent_dir]


@pytest.mark.parametrize("obs", ["onehot", "image", "flat"])
def test_room_env_observation_modes_pass_check_env(obs):
    env = RoomEnv(size=8, goal=(5, 3), obs=obs)
    check_env(env, skip_render_check=True)


def test_rgb_render_of_hidden_goal_room_does_not_show_the_goal():
    env = envs.make("plasticity/MiniGridHiddenGoal-v0", render_mode="rgb_array")
    u = env.unwrapped
    frames = []
    for goal in ((6, 6), (3, 4)):
        u.set_goal(goal)
        env.reset(seed=0)
        frames.append(env.render())
    assert frames[0].shape == (256, 256, 3)
    np.testing.assert_array_equal(frames[0], frames[1])


# ------------------------------------------------------------------ probe hooks
def _pose(obs, size):
    """(x, y, dir) read back from a one-hot pose observation."""
    x, y, d = np.flatnonzero(obs[:size])[0], np.flatnonzero(obs[size:2 * size])[0], np.flatnonzero(obs[2 * size:])[0]
    return int(x), int(y), int(d)


def test_probe_transitions_are_the_env_steps_from_every_pose():
    env = envs.make("plasticity/MiniGridHiddenGoal-v0", seed=3)
    room = env.unwrapped
    data = room.probe_transitions()
    cells = [c for c in room.interior_cells() if c != room.goal]
    assert len(data["obs"]) == len(cells) * 4 * 3 == 420
    poses = {_pose(o, 8) for o in data["obs"]}
    assert poses == {(x, y, d) for (x, y) in cells for d in range(4)}
    # one pose checked against the real env: walk there, then step each action
    gx, gy = room.goal
    beside = (gx - 1, gy)  # facing east, one step west of the goal
    rows = [i for i, o in enumerate(data["obs"]) if _pose(o, 8) == (*beside, 0)]
    assert [int(data["actions"][i]) for i in rows] == [LEFT, RIGHT, FORWARD]
    for i in rows:
        env.reset(seed=0)
        room.agent_pos, room.agent_dir = beside, 0
        obs, r, term, _, _ = env.step(int(data["actions"][i]))
        assert np.array_equal(obs, data["next_obs"][i]) and term == data["terminated"][i]
        assert r == pytest.approx(data["rewards"][i])
    assert data["terminated"].sum() == sum(1 for i in range(420) if data["rewards"][i] > 0)
    assert data["rewards"].max() == pytest.approx(1 - 0.9 / 144)


@pytest.mark.parametrize(("stream", "kwargs"), [("plasticity/MiniGridHiddenGoal-v0", {}),
                                             ("plasticity/MiniGridLayoutShift-v0", {"obs": "onehot"})])
def test_optimal_action_values_are_the_returns_of_the_greedy_walk(stream, kwargs):
    """Acting greedily on Q* from the start reaches the goal in n steps, where Q*(start)
    = gamma^(n-1) (1 - 0.9 n / max_steps); no first action is worth more."""
    env = envs.make(stream, seed=1, **kwargs)
    env.get_wrapper_attr("set_task")(2)
    room, gamma = env.unwrapped, 0.9
    exact = room.optimal_action_values(gamma)
    size = room.width
    q_of = {_pose(o, size): q for o, q in zip(exact["obs"], exact["action_values"], strict=True)}
    assert len(q_of) == len(exact["obs"])
    obs, _ = env.reset(seed=0)
    start_q = q_of[_pose(obs, size)]
    n, r, term = 0, 0.0, False
    while not term and n < 200:
        obs, r, term, _, _ = env.step(int(np.argmax(q_of[_pose(obs, size)])))
        n += 1
    assert term and r == pytest.approx(1 - 0.9 * n / room.max_steps)
    assert start_q.max() == pytest.approx(gamma ** (n - 1) * r, rel=1e-5)
    assert (exact["action_values"] > 0).all() and (exact["action_values"] < 1).all()


@pytest.mark.parametrize("obs", ["image", "flat"])
def test_cached_views_equal_minigrid_rendering_through_goal_and_gap_moves(obs):
    """The view cache returns exactly what MiniGrid renders, pose by pose, while the goal
    and the wall gap move mid-episode (including a gap moved while the agent stands in the
    wall column, which leaves that cell open until the next reset)."""
    from minigrid.minigrid_env import MiniGridEnv

    room = RoomEnv(size=8, goal=(6, 6), goal_visible=True, gap=3, obs=obs, max_steps=40)
    rng = np.random.default_rng(0)
    room.reset(seed=0)
    seen_hole = False
    for t in range(3000):
        if t % 97 == 0:
            room.set_goal(room.goal_cells()[rng.integers(len(room.goal_cells()))])
        if t % 31 == 0 or tuple(room.agent_pos)[0] == room.wall_x and rng.random() < 0.5:
            room.set_gap(int(rng.integers(1, room.height - 1)))
            seen_hole |= room._hole is not None
        o, _, term, trunc, _ = room.step(int(rng.integers(3)))
        image = MiniGridEnv.gen_obs(room)["image"]
        expected = image if obs == "image" else image.reshape(-1).astype(np.float32)
        assert np.array_equal(o, expected), t
        if term or trunc:
            room.reset()
    assert seen_hole and len(room._views) > 50
