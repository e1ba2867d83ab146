"""Non-stationary Gymnasium / MiniGrid streams for studying loss of plasticity.

A *stream* is an env whose task (dynamics, reward or interface) changes on a schedule of
global env steps. Build one from a registered id (``envs.make("plasticity/...")``,
``envs.make_vector(...)``, ``envs.list_streams()``) or from any gymnasium env with
``envs.make_nonstationary(env, shift=..., schedule=...)``. Importing ``envs`` registers the
``plasticity/`` ids with gymnasium. This package imports only gymnasium, minigrid and numpy
(mujoco lazily).
"""

from __future__ import annotations

from .digits import DigitsBandit, PixelPermutation
from .errors import EnvError
from .factory import make_nonstationary
from .minigrid import (
    FlatViewObs,
    GoalShift,
    ImageObs,
    LayoutShift,
    OneHotPoseObs,
    RoomEnv,
    ViewPermutation,
)
from .mujoco_friction import FrictionShift, mujoco_available, mujoco_missing_reason
from .registry import StreamInfo, format_streams, list_streams, make, make_vector, register_stream
from .schedules import (
    Choice,
    CyclicSchedule,
    Distribution,
    LogUniform,
    Normal,
    Permutation,
    RandomSchedule,
    RandomSigns,
    Schedule,
    StationarySchedule,
    Uniform,
)
from .shifts import (
    ActionPermutation,
    ComposeShift,
    ObservationOffset,
    ObservationPermutation,
    ParamShift,
    RewardScale,
    Shift,
    valid_parameters,
)
from .streams import register_builtin_streams
from .vector import LeanSyncVectorEnv
from .wrapper import NonStationaryWrapper

__all__ = [
    "EnvError",
    # building streams
    "make",
    "make_vector",
    "LeanSyncVectorEnv",
    "make_nonstationary",
    "list_streams",
    "format_streams",
    "register_stream",
    "StreamInfo",
    "NonStationaryWrapper",
    # schedules
    "Schedule",
    "CyclicSchedule",
    "RandomSchedule",
    "StationarySchedule",
    "Distribution",
    "Uniform",
    "LogUniform",
    "Choice",
    "Normal",
    "Permutation",
    "RandomSigns",
    # shifts
    "Shift",
    "ComposeShift",
    "ParamShift",
    "valid_parameters",
    "RewardScale",
    "ObservationPermutation",
    "ObservationOffset",
    "ActionPermutation",
    "FrictionShift",
    "mujoco_available",
    "mujoco_missing_reason",
    # permuted digits
    "DigitsBandit",
    "PixelPermutation",
    # MiniGrid
    "RoomEnv",
    "GoalShift",
    "LayoutShift",
    "ViewPermutation",
    "ImageObs",
    "FlatViewObs",
    "OneHotPoseObs",
]

register_builtin_streams()
