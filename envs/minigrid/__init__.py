"""MiniGrid rooms, tensor observation wrappers and MiniGrid shifts."""

from __future__ import annotations

from .observations import FlatViewObs, ImageObs, OneHotPoseObs
from .rooms import OBSERVATION_MODES, RoomEnv
from .shifts import GoalShift, LayoutShift, ViewPermutation

__all__ = [
    "RoomEnv",
    "OBSERVATION_MODES",
    "ImageObs",
    "FlatViewObs",
    "OneHotPoseObs",
    "GoalShift",
    "LayoutShift",
    "ViewPermutation",
]
