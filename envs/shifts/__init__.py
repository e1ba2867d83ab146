"""Shifts: one kind of change each (``apply(env, params)``), plus optional interface hooks."""

from __future__ import annotations

from .base import ComposeShift, Shift
from .observation import (
    ActionPermutation,
    ObservationOffset,
    ObservationPermutation,
    observation_size,
)
from .params import KNOWN_PARAMETERS, ParamShift, valid_parameters
from .reward import RewardScale

__all__ = [
    "Shift",
    "ComposeShift",
    "ParamShift",
    "KNOWN_PARAMETERS",
    "valid_parameters",
    "RewardScale",
    "ObservationPermutation",
    "ObservationOffset",
    "ActionPermutation",
    "observation_size",
]
