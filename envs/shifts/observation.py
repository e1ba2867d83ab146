"""Interface shifts: observation permutation / sign flips / offset, a fixed random projection, action permutation.

These change what the agent sees or how its actions map to the env, never the physics. Each
reads its arrays from the task parameters (drawn by the schedule, e.g. ``Permutation(n)``,
``RandomSigns(n)``, ``Normal(0, 2, n)``), converts them once per task, and transforms per
step with one numpy indexing/multiply.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ..equality import ReprEq
from ..errors import EnvError, choices

__all__ = ["ObservationPermutation", "ObservationOffset", "ActionPermutation", "observation_size"]


def _check_keys(owner: str, params: Mapping[str, Any], required: Sequence[str], optional: Sequence[str] = ()) -> None:
    allowed = (*required, *optional)
    bad = [k for k in params if k not in allowed]
    missing = [k for k in required if k not in params]
    if bad or missing:
        raise EnvError(f"{owner} takes parameters {choices(allowed)} ({choices(required)} required), got {sorted(params)!r}")


def _permutation(owner: str, value: Any, n: int) -> np.ndarray:
    perm = np.asarray(value, dtype=np.int64)
    if perm.shape != (n,) or not np.array_equal(np.sort(perm), np.arange(n)):
        raise EnvError(f"{owner}: {value!r} is not a permutation of range({n})")
    return perm


def _vector(owner: str, name: str, value: Any, n: int, dtype: Any) -> np.ndarray:
    arr = np.asarray(value, dtype=dtype)
    if arr.shape != (n,):
        raise EnvError(f"{owner}: {name} must have {n} entries, got {value!r}")
    return arr


def _flat_box(owner: str, space: gym.Space) -> spaces.Box:
    if not isinstance(space, spaces.Box) or len(space.shape) != 1:
        kind = f"{type(space).__name__}{getattr(space, 'shape', '')}"
        raise EnvError(f"{owner} needs a 1-D Box observation space, got {kind}")
    return space


def observation_size(env: gym.Env) -> int:
    """Length of a flat Box observation (or number of values of a Discrete one)."""
    space = env.observation_space
    if isinstance(space, spaces.Discrete):
        return int(space.n)
    return int(np.prod(_flat_box("observation_size", space).shape))


class ObservationPermutation(ReprEq):
    """Permutes (and optionally sign-flips) the observation per task.

    Box observations (1-D): ``obs' = obs[perm] * signs`` with parameters ``obs_perm`` (a
    permutation of the observation indices) and optional ``obs_sign`` (±1 per index).
    Discrete observations: a bijection ``obs' = obs_perm[obs]`` of the values.

    ``projection=m`` first maps a low-dimensional Box observation through a fixed random
    matrix ``W ~ N(0, 1/n)`` of shape ``(m, n)`` (drawn once from ``projection_seed``, the
    same for every task), and permutes the *wide* vector: with CartPole's 4 inputs a
    permutation can be undone by re-weighting a few first-layer weights; permuting a wide
    projection makes the agent re-learn many (the "weak input shift" trap).

    ``sign_flips=False`` forbids ``obs_sign`` and keeps the observation bounds unsigned.
    Other observation spaces raise ``EnvError``.
    """

    def __init__(self, projection: int | None = None, projection_seed: int = 0, sign_flips: bool = True):
        if projection is not None and (isinstance(projection, bool) or not isinstance(projection, int) or projection <= 0):
            raise EnvError(f"projection must be a positive integer width or None, got {projection!r}")
        self.projection = projection
        self.projection_seed = projection_seed
        self.sign_flips = sign_flips
        self._perm: np.ndarray | None = None
        self._sign: np.ndarray | None = None
        self._W: np.ndarray | None = None

    def bind(self, env: gym.Env) -> None:
        """Check the space; draw the fixed projection."""
        space = env.observation_space
        if isinstance(space, spaces.Discrete):
            if self.projection is not None:
                raise EnvError("projection needs a Box observation space, got Discrete")
            self._discrete = True
            self._start = int(space.start)
            self.n = int(space.n)
            return
        if not isinstance(space, spaces.Box):
            raise EnvError(
                f"ObservationPermutation needs a Box or Discrete observation space, got {type(space).__name__}; "
                f"valid: {choices(('Box', 'Discrete'))}"
            )
        _flat_box("ObservationPermutation", space)
        self._discrete = False
        self._dtype = np.float32 if self.projection is not None else space.dtype
        n_in = space.shape[0]
        if self.projection is not None:
            rng = np.random.default_rng(self.projection_seed)
            self._W = (rng.normal(0.0, 1.0, (self.projection, n_in)) / np.sqrt(n_in)).astype(np.float32)
        self.n = self.projection or n_in

    def observation_space(self, space: gym.Space) -> gym.Space:
        """The permuted space: the same bounds for every task (hence the widest)."""
        if self._discrete:
            return space
        if self._W is not None:
            return spaces.Box(-np.inf, np.inf, (self.n,), np.float32)
        low, high = space.low.astype(np.float64), space.high.astype(np.float64)
        bound = float(np.max(np.maximum(np.abs(low), np.abs(high))))
        if self.sign_flips and np.issubdtype(space.dtype, np.floating):
            # Sign flips may be drawn: symmetric bounds so every task's observations fit.
            return spaces.Box(-bound, bound, (self.n,), space.dtype)
        return spaces.Box(float(low.min()), float(high.max()), (self.n,), space.dtype)

    def apply(self, env: gym.Env, params: Mapping[str, Any]) -> None:
        """Read ``obs_perm`` (and ``obs_sign``)."""
        if not hasattr(self, "_discrete"):
            self.bind(env)
        _check_keys("ObservationPermutation", params, ("obs_perm",), ("obs_sign",))
        self._perm = _permutation("ObservationPermutation", params["obs_perm"], self.n)
        self._sign = None
        if "obs_sign" in params and not self._discrete:
            if not self.sign_flips or not np.issubdtype(self._dtype, np.floating):
                raise EnvError(
                    f"obs_sign given, but this ObservationPermutation has sign_flips={self.sign_flips} "
                    f"and observation dtype {self._dtype}; sign flips need sign_flips=True and a float observation"
                )
            self._sign = _vector("ObservationPermutation", "obs_sign", params["obs_sign"], self.n, self._dtype)

    def observation(self, obs: Any) -> Any:
        """Project (if set), permute, sign-flip."""
        if self._discrete:
            return int(self._perm[int(obs) - self._start]) + self._start
        if self._W is not None:
            obs = self._W @ obs
        obs = obs[self._perm]
        if self._sign is not None:
            obs = obs * self._sign
        return obs

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(projection={self.projection}, "
            f"projection_seed={self.projection_seed}, sign_flips={self.sign_flips})"
        )


class ObservationOffset(ReprEq):
    """Adds a fixed per-task offset to a 1-D Box observation: ``obs' = obs + obs_offset``.

    As in the TRAC / C-CHAIN classic-control protocol (offset ~ N(0, 2²) per dimension per
    level, drawn by the schedule with ``Normal(0, 2, n)``). The observation space becomes
    unbounded float32, since an offset may push any bound.
    """

    def bind(self, env: gym.Env) -> None:
        """Check the space is a 1-D Box."""
        self.n = _flat_box("ObservationOffset", env.observation_space).shape[0]
        self._offset = np.zeros(self.n, np.float32)

    def observation_space(self, space: gym.Space) -> gym.Space:
        """Unbounded float32 of the same shape."""
        return spaces.Box(-np.inf, np.inf, (self.n,), np.float32)

    def apply(self, env: gym.Env, params: Mapping[str, Any]) -> None:
        """Read ``obs_offset``."""
        if not hasattr(self, "n"):
            self.bind(env)
        _check_keys("ObservationOffset", params, ("obs_offset",))
        self._offset = _vector("ObservationOffset", "obs_offset", params["obs_offset"], self.n, np.float32)

    def observation(self, obs: Any) -> Any:
        """The offset observation (float32)."""
        return np.asarray(obs, np.float32) + self._offset

    def __repr__(self) -> str:
        return "ObservationOffset()"


class ActionPermutation(ReprEq):
    """Maps the agent's action through a per-task bijection before the env sees it.

    Discrete actions: ``env_action = action_perm[action]``. 1-D Box actions:
    ``env_action = action[action_perm] * action_sign`` (``action_sign`` optional; needs
    bounds equal across dimensions, and symmetric when signs are flipped, so the image of the
    action space is the action space). Other spaces raise ``EnvError``.
    """

    def bind(self, env: gym.Env) -> None:
        """Check the action space."""
        space = env.action_space
        if isinstance(space, spaces.Discrete):
            self._discrete, self.n, self._start = True, int(space.n), int(space.start)
            return
        if isinstance(space, spaces.Box) and len(space.shape) == 1:
            if not (np.all(space.low == space.low[0]) and np.all(space.high == space.high[0])):
                raise EnvError(f"ActionPermutation needs equal bounds on every action dimension, got {space}")
            self._discrete, self.n = False, space.shape[0]
            self._symmetric = bool(np.all(space.low == -space.high))
            return
        raise EnvError(
            f"ActionPermutation needs a Discrete or 1-D Box action space, got {type(space).__name__}; "
            f"valid: {choices(('Box', 'Discrete'))}"
        )

    def apply(self, env: gym.Env, params: Mapping[str, Any]) -> None:
        """Read ``action_perm`` (and ``action_sign`` for Box actions)."""
        if not hasattr(self, "n"):
            self.bind(env)
        _check_keys("ActionPermutation", params, ("action_perm",), ("action_sign",))
        self._perm = _permutation("ActionPermutation", params["action_perm"], self.n)
        self._sign = None
        if "action_sign" in params:
            if self._discrete or not self._symmetric:
                raise EnvError("action_sign needs a Box action space with symmetric bounds")
            self._sign = _vector("ActionPermutation", "action_sign", params["action_sign"], self.n, np.float32)

    def action(self, action: Any) -> Any:
        """The env's action for the agent's ``action``."""
        if self._discrete:
            return int(self._perm[int(action) - self._start]) + self._start
        action = np.asarray(action)[self._perm]
        if self._sign is not None:
            action = action * self._sign.astype(action.dtype, copy=False)
        return action

    def __repr__(self) -> str:
        return "ActionPermutation()"
