"""MuJoCo floor-friction shift (a Slippery-Ant analogue, Dohare et al. 2024). Needs ``mujoco``.

``mujoco`` is imported lazily: importing ``envs`` never needs it, and the Slippery-Ant stream is
registered only when ``mujoco_available()``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

import gymnasium as gym

from .equality import ReprEq
from .errors import EnvError, choices

__all__ = ["FrictionShift", "mujoco_available", "mujoco_missing_reason"]


def mujoco_missing_reason() -> str | None:
    """None if gymnasium's MuJoCo envs can be built here, else why not (for skips and errors).

    Looks the modules up without importing them (importing mujoco costs ~0.2 s at every
    ``import envs``).
    """
    if importlib.util.find_spec("mujoco") is None:
        return "mujoco is not installed; install the 'mujoco' extra"
    if importlib.util.find_spec("imageio") is None:
        return "gymnasium's MuJoCo envs need imageio, which is not installed; pip install 'gymnasium[mujoco]'"
    return None


def mujoco_available() -> bool:
    """True when gymnasium's MuJoCo envs can be built."""
    return mujoco_missing_reason() is None


class FrictionShift(ReprEq):
    """Sets the sliding friction of one geom (default ``"floor"``): task parameter ``friction``.

    MuJoCo combines the two geoms of a contact by taking the *maximum* friction, so lowering
    the floor's friction alone would change nothing (the feet have 1.0). The floor geom is
    therefore given a higher ``geom_priority``, which makes its friction the one used for
    every contact with it.
    """

    def __init__(self, geom: str = "floor"):
        self.geom = geom

    def bind(self, env: gym.Env) -> None:
        """Find the geom in the env's MuJoCo model; give it contact priority."""
        model = getattr(env.unwrapped, "model", None)
        if model is None or not hasattr(model, "geom_friction"):
            raise EnvError(f"FrictionShift needs a MuJoCo env (with .model), got {type(env.unwrapped).__name__}")
        names = [model.geom(i).name for i in range(model.ngeom)]
        if self.geom not in names:
            raise EnvError(f"geom {self.geom!r} not in the model; geoms: {choices(n for n in names if n)}")
        self._id = names.index(self.geom)
        model.geom_priority[self._id] = int(model.geom_priority.max()) + 1

    def apply(self, env: gym.Env, params: Mapping[str, Any]) -> None:
        """Set ``geom_friction[geom, 0] = params["friction"]``."""
        if not hasattr(self, "_id"):
            self.bind(env)
        if set(params) != {"friction"}:
            raise EnvError(f"FrictionShift takes parameters {choices(('friction',))}, got {sorted(params)!r}")
        value = params["friction"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise EnvError(f"friction must be a non-negative number, got {value!r}")
        env.unwrapped.model.geom_friction[self._id, 0] = float(value)

    def __repr__(self) -> str:
        return f"FrictionShift(geom={self.geom!r})"
