"""Reward shift: scale the reward by a per-task factor (``-1`` is a sign flip)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import gymnasium as gym

from ..equality import ReprEq
from ..errors import EnvError, choices

__all__ = ["RewardScale"]


class RewardScale(ReprEq):
    """Multiplies every reward by the task parameter ``reward_scale`` (``-1.0`` flips the sign).

    Goal relocation (the other reward shift) is a parameter of the env: MountainCar's
    ``goal_position`` via ``ParamShift``, the MiniGrid rooms' goal via ``GoalShift``.
    """

    KEYS = ("reward_scale",)

    def __init__(self) -> None:
        self.scale = 1.0

    def apply(self, env: gym.Env, params: Mapping[str, Any]) -> None:
        """Read ``params["reward_scale"]``."""
        unknown = [k for k in params if k not in self.KEYS]
        if unknown or "reward_scale" not in params:
            raise EnvError(
                f"RewardScale takes parameters {choices(self.KEYS)}, got {sorted(params)!r}"
            )
        value = params["reward_scale"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise EnvError(f"reward_scale must be a number, got {value!r}")
        self.scale = float(value)

    def reward(self, reward: float) -> float:
        """The scaled reward."""
        return self.scale * float(reward)

    def __repr__(self) -> str:
        return "RewardScale()"
