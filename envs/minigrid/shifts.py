"""MiniGrid shifts: move the goal, move the wall gap, permute the flattened view."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym

from ..equality import ReprEq
from ..errors import EnvError, choices
from ..shifts.observation import ObservationPermutation
from .observations import require_minigrid

__all__ = ["GoalShift", "LayoutShift", "ViewPermutation"]


def _require_room(env: gym.Env, who: str, method: str):
    base = require_minigrid(env, who)
    if not callable(getattr(base, method, None)):
        raise EnvError(
            f"{who} needs a MiniGrid env with a {method}() method (envs.minigrid.RoomEnv), "
            f"got {type(base).__name__}"
        )
    return base


class GoalShift(ReprEq):
    """Moves the goal cell: task parameter ``goal = (x, y)`` (visible or hidden, per the room).

    Needs an ``envs.minigrid.RoomEnv``; any other env raises ``EnvError``.
    """

    def bind(self, env: gym.Env) -> None:
        """Check the env is a room with a movable goal."""
        _require_room(env, "GoalShift", "set_goal")

    def apply(self, env: gym.Env, params: Mapping[str, Any]) -> None:
        """``env.unwrapped.set_goal(params["goal"])``."""
        base = _require_room(env, "GoalShift", "set_goal")
        if set(params) != {"goal"}:
            raise EnvError(f"GoalShift takes parameters {choices(('goal',))}, got {sorted(params)!r}")
        base.set_goal(params["goal"])

    def __repr__(self) -> str:
        return "GoalShift()"


class LayoutShift(ReprEq):
    """Moves the gap in the room's middle wall: task parameter ``gap`` (a row index).

    Needs an ``envs.minigrid.RoomEnv`` built with ``gap=...``; otherwise ``EnvError``.
    """

    def bind(self, env: gym.Env) -> None:
        """Check the env is a room with a wall."""
        base = _require_room(env, "LayoutShift", "set_gap")
        if base.gap is None:
            raise EnvError("LayoutShift needs a RoomEnv built with a middle wall (gap=<row>), got gap=None")

    def apply(self, env: gym.Env, params: Mapping[str, Any]) -> None:
        """``env.unwrapped.set_gap(params["gap"])``."""
        base = _require_room(env, "LayoutShift", "set_gap")
        if set(params) != {"gap"}:
            raise EnvError(f"LayoutShift takes parameters {choices(('gap',))}, got {sorted(params)!r}")
        base.set_gap(params["gap"])

    def __repr__(self) -> str:
        return "LayoutShift()"


class ViewPermutation(ObservationPermutation):
    """A fixed permutation of the flattened egocentric view per task (Juliani & Ash's "Permute").

    Task parameter ``obs_perm`` (a permutation of ``range(147)``). Needs a MiniGrid env whose
    observation is the flat view (``RoomEnv(obs="flat")`` or ``FlatViewObs``).
    """

    def __init__(self) -> None:
        super().__init__(projection=None, sign_flips=False)

    def bind(self, env: gym.Env) -> None:
        """Check MiniGrid and a flat Box observation."""
        require_minigrid(env, "ViewPermutation")
        super().bind(env)
        if self._discrete:
            raise EnvError("ViewPermutation needs the flat view observation (a 1-D Box), got Discrete")

