"""Observation wrappers that turn any MiniGrid env's dict observation into a fixed-shape tensor.

MiniGrid's own ``ImgObsWrapper`` / ``FlatObsWrapper`` do not pass gymnasium's ``check_env``;
these do. (``RoomEnv`` produces the same tensors itself, and its ``"onehot"`` mode skips
rendering the view; ``OneHotPoseObs`` here works on any MiniGrid env but the env still
renders its view each step.)
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import RecordConstructorArgs

from ..errors import EnvError

__all__ = ["ImageObs", "FlatViewObs", "OneHotPoseObs", "require_minigrid"]


def require_minigrid(env: gym.Env, who: str):
    """``env.unwrapped`` if it is a ``MiniGridEnv``, else ``EnvError``."""
    from minigrid.minigrid_env import MiniGridEnv

    base = env.unwrapped
    if not isinstance(base, MiniGridEnv):
        spec = getattr(env, "spec", None)
        name = spec.id if spec is not None else type(base).__name__
        raise EnvError(f"{who} needs a MiniGrid env (a minigrid.MiniGridEnv), got {name!r}")
    return base


class ImageObs(gym.ObservationWrapper, RecordConstructorArgs):
    """The egocentric view ``obs["image"]``: a ``(v, v, 3)`` uint8 Box (v = agent_view_size)."""

    def __init__(self, env: gym.Env):
        RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        base = require_minigrid(env, "ImageObs")
        v = base.agent_view_size
        self.observation_space = spaces.Box(0, 255, (v, v, 3), np.uint8)

    def observation(self, observation):
        """The image array."""
        return observation["image"]


class FlatViewObs(gym.ObservationWrapper, RecordConstructorArgs):
    """The egocentric view flattened to ``v*v*3`` float32 (147 for the default 7×7 view)."""

    def __init__(self, env: gym.Env):
        RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        base = require_minigrid(env, "FlatViewObs")
        v = base.agent_view_size
        self.observation_space = spaces.Box(0.0, 255.0, (v * v * 3,), np.float32)

    def observation(self, observation):
        """The flattened float32 view."""
        return observation["image"].reshape(-1).astype(np.float32)


class OneHotPoseObs(gym.ObservationWrapper, RecordConstructorArgs):
    """One-hot x, one-hot y, one-hot direction: ``width + height + 4`` float32 in [0, 1]."""

    def __init__(self, env: gym.Env):
        RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        base = require_minigrid(env, "OneHotPoseObs")
        self._w, self._h = base.width, base.height
        self.observation_space = spaces.Box(0.0, 1.0, (self._w + self._h + 4,), np.float32)

    def observation(self, observation):
        """Encode the agent's pose (the dict observation is ignored)."""
        base = self.env.unwrapped
        out = np.zeros(self._w + self._h + 4, np.float32)
        x, y = base.agent_pos
        out[x] = 1.0
        out[self._w + y] = 1.0
        out[self._w + self._h + base.agent_dir] = 1.0
        return out
