"""MiniGrid rooms whose goal cell or wall gap can be moved between tasks, with tensor observations.

``RoomEnv`` is a ``MiniGridEnv`` built for the shift streams:

* a square room (``size`` × ``size`` including the outer wall), a fixed agent start;
* a goal cell, visible (a MiniGrid ``Goal`` tile, seen in the egocentric view) or hidden
  (no tile: reaching the cell still pays ``1 - 0.9 * t / max_steps`` and ends the episode,
  but nothing in any observation depends on where it is);
* optionally a vertical wall through the middle column with one gap (the layout);
* observation ``"onehot"`` (x, y and direction one-hot, float32; computed from the agent's
  pose without rendering the view, which makes stepping ~3× faster), ``"image"`` (the
  egocentric 7×7×3 uint8 view) or ``"flat"`` (that view flattened to 147 float32);
* actions ``{left, right, forward}`` (``Discrete(3)``) by default, or all 7 MiniGrid actions.

``set_goal((x, y))`` and ``set_gap(row)`` move the goal / the gap; they take effect at once
(the grid is edited in place) and persist across resets.

The room implements both optional probe hooks of a stream (docs/architecture.md, "probe
hooks"): ``probe_transitions()`` enumerates every (pose, action) transition of the current
task, and ``optimal_action_values(gamma)`` gives the exact optimal action values of the
current goal at every pose, by breadth-first search over poses.
"""

from __future__ import annotations

import copy
from collections import deque
from typing import Any

import numpy as np
from gymnasium import spaces
from minigrid.core.grid import Grid
from minigrid.core.mission import MissionSpace
from minigrid.core.world_object import Goal, Wall
from minigrid.minigrid_env import MiniGridEnv

from ..errors import EnvError, choices

__all__ = ["RoomEnv", "OBSERVATION_MODES"]

OBSERVATION_MODES = ("onehot", "image", "flat")


def _mission() -> str:
    return "reach the goal"


class RoomEnv(MiniGridEnv):
    """A MiniGrid room with a movable (optionally hidden) goal and an optional wall with a gap.

    Args:
        size: grid side including the outer wall (interior ``size - 2``).
        agent_start: the agent's start cell ``(x, y)``; ``agent_start_dir``: 0=east, 1=south,
            2=west, 3=north.
        goal: the goal cell ``(x, y)`` (interior, not the start, not a wall).
        goal_visible: draw the goal tile (seen in image/flat observations) or keep it hidden.
        gap: if not None, a wall fills column ``size // 2`` except row ``gap``.
        obs: ``"onehot"``, ``"image"`` or ``"flat"`` (see the module docstring).
        three_actions: restrict actions to ``{0: left, 1: right, 2: forward}``.
        max_steps: episode length before truncation; default ``4 * (size - 2) ** 2``.
    """

    def __init__(
        self,
        size: int = 8,
        agent_start: tuple[int, int] = (1, 1),
        agent_start_dir: int = 0,
        goal: tuple[int, int] = (6, 6),
        goal_visible: bool = True,
        gap: int | None = None,
        obs: str = "image",
        three_actions: bool = True,
        max_steps: int | None = None,
        render_mode: str | None = None,
    ):
        if obs not in OBSERVATION_MODES:
            raise EnvError(f"obs={obs!r} is not one of {choices(OBSERVATION_MODES)}")
        if not isinstance(size, int) or size < 5:
            raise EnvError(f"size must be an int >= 5, got {size!r}")
        if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int)
                                      or max_steps <= 0):
            raise EnvError(f"max_steps must be a positive integer (episode length) or None, "
                           f"got {max_steps!r}")
        self.agent_start = tuple(agent_start)
        self.agent_start_dir = agent_start_dir
        self.goal_visible = goal_visible
        self.obs_mode = obs
        self.wall_x = size // 2
        self.gap = None
        self.goal = None
        self._hole: tuple[int, int] | None = None  # a wall cell set_gap left open under the agent
        self._views: dict[tuple, np.ndarray] = {}  # egocentric views by (layout, pose)
        super().__init__(
            mission_space=MissionSpace(mission_func=_mission),
            grid_size=size,
            max_steps=max_steps if max_steps is not None else 4 * (size - 2) ** 2,
            see_through_walls=False,
            render_mode=render_mode,
        )
        if three_actions:
            self.action_space = spaces.Discrete(3)
        if obs == "onehot":
            self.observation_space = spaces.Box(0.0, 1.0, (2 * size + 4,), np.float32)
        elif obs == "image":
            self.observation_space = spaces.Box(0, 255, (7, 7, 3), np.uint8)
        else:
            self.observation_space = spaces.Box(0.0, 255.0, (147,), np.float32)
        if gap is not None:
            self.set_gap(gap)
        self.set_goal(goal)
        if not self._free(self.agent_start):
            raise EnvError(f"agent_start {agent_start!r} is not a free interior cell")

    # ------------------------------------------------------------ geometry
    def interior_cells(self) -> list[tuple[int, int]]:
        """Free interior cells (not the outer wall, not the middle wall except its gap)."""
        return [
            (x, y)
            for y in range(1, self.height - 1)
            for x in range(1, self.width - 1)
            if self._free((x, y))
        ]

    def _free(self, cell: tuple[int, int]) -> bool:
        x, y = cell
        if not (1 <= x < self.width - 1 and 1 <= y < self.height - 1):
            return False
        return self.gap is None or x != self.wall_x or y == self.gap

    def goal_cells(self) -> list[tuple[int, int]]:
        """Cells a goal may occupy: free interior cells other than the start (and the gap)."""
        return [
            c for c in self.interior_cells()
            if c != self.agent_start and (self.gap is None or c[0] != self.wall_x)
        ]

    def set_goal(self, goal: Any) -> None:
        """Move the goal to ``goal = (x, y)`` now (and for every later episode)."""
        try:
            cell = (int(goal[0]), int(goal[1]))
            ok = len(goal) == 2
        except (TypeError, ValueError, IndexError):
            ok = False
        if not ok or cell not in self.goal_cells():
            raise EnvError(f"goal {goal!r} is not a valid goal cell; valid cells: {self.goal_cells()}")
        old, self.goal = self.goal, cell
        if self.goal_visible and getattr(self, "agent_pos", None) not in (None, (-1, -1)):
            if old is not None:
                self.grid.set(*old, None)
            self.grid.set(*cell, Goal())

    def set_gap(self, gap: Any) -> None:
        """Move the gap of the middle wall to row ``gap`` now (and for every later episode)."""
        rows = list(range(1, self.height - 1))
        if isinstance(gap, bool) or not isinstance(gap, (int, np.integer)) or int(gap) not in rows:
            raise EnvError(f"gap {gap!r} is not a valid row; valid rows: {rows}")
        if self.goal is not None and self.goal[0] == self.wall_x:
            raise EnvError(f"the goal {self.goal} lies in the wall column x={self.wall_x}")
        self.gap = int(gap)
        self._hole = None
        if getattr(self, "agent_pos", None) not in (None, (-1, -1)):
            for y in rows:
                # Leave the agent's own cell open: a wall under the agent would trap it.
                under_agent = (self.wall_x, y) == tuple(self.agent_pos)
                if under_agent and y != self.gap:
                    self._hole = (self.wall_x, y)
                blocked = y != self.gap and not under_agent
                self.grid.set(self.wall_x, y, Wall() if blocked else None)

    def _gen_grid(self, width: int, height: int) -> None:
        self.grid = Grid(width, height)
        self.grid.wall_rect(0, 0, width, height)
        if self.gap is not None:
            for y in range(1, height - 1):
                if y != self.gap:
                    self.grid.set(self.wall_x, y, Wall())
        if self.goal_visible:
            self.grid.set(*self.goal, Goal())
        self.agent_pos = self.agent_start
        self.agent_dir = self.agent_start_dir
        self.mission = _mission()
        self._hole = None

    # ------------------------------------------------------------ probe hooks
    def _pose_table(self) -> dict[str, Any]:
        """Every non-terminal pose (free cell other than the goal, 4 directions) and, per
        action, the env's own step from it: next pose index (-1 when the step ends the
        episode), reward, termination, observations. Stepped on a copy of the room from
        ``step_count = 0``, so the goal's reward is the one of an episode's first step."""
        room = copy.deepcopy(self)
        room.render_mode = None
        room.reset(seed=0)
        poses = [(cell, d) for cell in self.interior_cells() if cell != self.goal for d in range(4)]
        index = {pose: i for i, pose in enumerate(poses)}
        n_actions = int(self.action_space.n)
        obs, next_obs, nxt, rewards, terminated = [], [], [], [], []
        for cell, d in poses:
            row_next, row_reward, row_term, row_obs = [], [], [], []
            for a in range(n_actions):
                room.agent_pos, room.agent_dir, room.step_count = cell, d, 0
                if a == 0:
                    obs.append(room.gen_obs())
                o, r, term, _, _ = room.step(a)
                pose = (tuple(int(v) for v in room.agent_pos), int(room.agent_dir))
                row_next.append(-1 if term else index[pose])
                row_reward.append(float(r))
                row_term.append(bool(term))
                row_obs.append(o)
            nxt.append(row_next)
            rewards.append(row_reward)
            terminated.append(row_term)
            next_obs.append(row_obs)
        return {"obs": np.stack(obs), "next": np.array(nxt), "rewards": np.array(rewards),
                "terminated": np.array(terminated), "next_obs": np.array(next_obs)}

    def probe_transitions(self) -> dict[str, np.ndarray]:
        """Fixed probe data: every (pose, action) transition of the current task.

        ``obs``/``next_obs`` (observations), ``actions`` (int64), ``rewards`` (float32),
        ``terminated`` (bool), one row per non-terminal pose and action (poses in
        :meth:`interior_cells` order, directions 0-3, actions 0..n-1); the goal pays the
        reward of an episode's first step. Identical for every agent, arm and seed that
        sees this goal and layout.
        """
        table = self._pose_table()
        n_poses, n_actions = table["next"].shape
        return {
            "obs": np.repeat(table["obs"], n_actions, axis=0),
            "actions": np.tile(np.arange(n_actions, dtype=np.int64), n_poses),
            "rewards": table["rewards"].reshape(-1).astype(np.float32),
            "next_obs": table["next_obs"].reshape(n_poses * n_actions, *table["obs"].shape[1:]),
            "terminated": table["terminated"].reshape(-1),
        }

    def optimal_action_values(self, gamma: float) -> dict[str, np.ndarray]:
        """Exact optimal action values of the current goal at every non-terminal pose.

        With ``n(s, a)`` the fewest steps to the goal when taking ``a`` in pose ``s`` and
        acting optimally after (breadth-first search over poses), an episode that starts in
        ``s`` earns ``Q*(s, a) = gamma^(n-1) * (1 - 0.9 * n / max_steps)`` (0 if the goal is
        out of reach within ``max_steps``): the reward only falls with time and discounting
        only shrinks it, so the shortest path is optimal. Returns ``obs`` (one row per pose,
        the order of :meth:`probe_transitions`) and ``action_values`` ``(poses, actions)``.
        """
        if not 0.0 <= gamma <= 1.0:
            raise EnvError(f"gamma must be in [0, 1], got {gamma!r}")
        table = self._pose_table()
        nxt, rewards = table["next"], table["rewards"]
        steps = np.full(nxt.shape[0], np.inf)  # fewest steps from each pose to the goal
        queue = deque()
        predecessors: list[list[int]] = [[] for _ in range(nxt.shape[0])]
        for s, row in enumerate(nxt):
            for a, t in enumerate(row):
                if t < 0 and rewards[s, a] > 0:
                    if steps[s] == np.inf:
                        steps[s] = 1
                        queue.append(s)
                elif t >= 0:
                    predecessors[t].append(s)
        while queue:
            t = queue.popleft()
            for s in predecessors[t]:
                if steps[s] == np.inf:
                    steps[s] = steps[t] + 1
                    queue.append(s)
        reached = (nxt < 0) & (rewards > 0)
        n = np.where(reached, 1.0, 1.0 + steps[np.maximum(nxt, 0)])
        n = np.where((nxt < 0) & ~reached, np.inf, n)
        q = np.where(n <= self.max_steps,
                     gamma ** (n - 1) * (1.0 - 0.9 * n / self.max_steps), 0.0)
        return {"obs": table["obs"], "action_values": q.astype(np.float32)}

    # ------------------------------------------------------------ dynamics
    def step(self, action):
        """MiniGrid's step, plus the hidden goal's reward and termination."""
        obs, reward, terminated, truncated, info = super().step(action)
        if not self.goal_visible and not terminated and tuple(self.agent_pos) == self.goal:
            reward, terminated = self._reward(), True
        return obs, reward, terminated, truncated, info

    def gen_obs(self):
        """The tensor observation; ``"onehot"`` reads the pose only (no view rendering).

        The egocentric view is a function of the grid and the pose only (nothing can be
        carried in this room), and the grid of a room is fixed by its layout key (visible
        goal, gap, a wall cell left open under the agent), so each view is rendered once per
        (layout, pose) and then read from a cache: rendering was ~40% of a DQN step."""
        if self.obs_mode == "onehot":
            w, h = self.width, self.height
            out = np.zeros(w + h + 4, np.float32)
            x, y = self.agent_pos
            out[x] = 1.0
            out[w + y] = 1.0
            out[w + h + self.agent_dir] = 1.0
            return out
        key = (self.goal if self.goal_visible else None, self.gap, self._hole,
               tuple(int(v) for v in self.agent_pos), int(self.agent_dir))
        view = self._views.get(key)
        if view is None:
            image = super().gen_obs()["image"]
            view = self._views[key] = (image if self.obs_mode == "image"
                                       else image.reshape(-1).astype(np.float32))
        return view.copy()
