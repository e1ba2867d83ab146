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
"""

from __future__ import annotations

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
        if getattr(self, "agent_pos", None) not in (None, (-1, -1)):
            for y in rows:
                # Leave the agent's own cell open: a wall under the agent would trap it.
                blocked = y != self.gap and (self.wall_x, y) != tuple(self.agent_pos)
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

    # ------------------------------------------------------------ dynamics
    def step(self, action):
        """MiniGrid's step, plus the hidden goal's reward and termination."""
        obs, reward, terminated, truncated, info = super().step(action)
        if not self.goal_visible and not terminated and tuple(self.agent_pos) == self.goal:
            reward, terminated = self._reward(), True
        return obs, reward, terminated, truncated, info

    def gen_obs(self):
        """The tensor observation; ``"onehot"`` reads the pose only (no view rendering)."""
        if self.obs_mode == "onehot":
            w, h = self.width, self.height
            out = np.zeros(w + h + 4, np.float32)
            x, y = self.agent_pos
            out[x] = 1.0
            out[w + y] = 1.0
            out[w + h + self.agent_dir] = 1.0
            return out
        image = super().gen_obs()["image"]
        if self.obs_mode == "image":
            return image
        return image.reshape(-1).astype(np.float32)
