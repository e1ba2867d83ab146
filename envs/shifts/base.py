"""The ``Shift`` protocol and shift composition.

A shift is one kind of change to an environment, parameterised by a task's parameters. The
only required method is ``apply(env, params)``, called by ``NonStationaryWrapper`` whenever a
task starts (``env`` is the env inside the wrapper; use ``env.unwrapped`` for its attributes).

Shifts that change the *interface* (observations, actions, rewards) may also define any of the
optional hooks below; the wrapper looks them up once at construction, so a shift without them
costs nothing per step:

* ``bind(env) -> None``: validate against the env once, before the first ``apply`` (raise
  ``EnvError``).
* ``observation_space(space) -> Space`` / ``action_space(space) -> Space``: the spaces the
  agent sees, given the inner env's.
* ``observation(obs) -> obs``, ``action(action) -> action``, ``reward(reward) -> float``:
  per-step transforms under the current task.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym

from ..equality import ReprEq
from ..errors import EnvError, choices

__all__ = ["Shift", "ComposeShift", "HOOKS"]

#: Optional per-step hooks a shift may define (besides ``apply``).
HOOKS = ("observation", "action", "reward")


@runtime_checkable
class Shift(Protocol):
    """One kind of change: ``apply(env, params)`` makes ``env`` behave as the task ``params``."""

    def apply(self, env: gym.Env, params: Mapping[str, Any]) -> None:
        """Set ``env`` up for the task with parameters ``params``."""
        ...


class ComposeShift(ReprEq):
    """Several shifts at once; each gets the parameters under its own name.

    ``ComposeShift(dyn=ParamShift(), obs=ObservationPermutation())`` takes task parameters
    ``{"dyn": {...}, "obs": {...}}``. Observation transforms run in the given order, action
    transforms in reverse order (the outermost interface is the last observation transform).
    """

    def __init__(self, **shifts: Any):
        if not shifts:
            raise EnvError("ComposeShift needs at least one named shift, got none")
        for name, s in shifts.items():
            if not callable(getattr(s, "apply", None)):
                raise EnvError(f"shift {name!r} ({s!r}) has no apply(env, params) method")
        self.shifts = dict(shifts)
        self._obs = [s.observation for s in shifts.values() if hasattr(s, "observation")]
        self._act = [s.action for s in reversed(shifts.values()) if hasattr(s, "action")]
        self._rew = [s.reward for s in shifts.values() if hasattr(s, "reward")]

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.shifts.items())
        return f"ComposeShift({inner})"

    def bind(self, env: gym.Env) -> None:
        """Bind every sub-shift that has ``bind``."""
        for s in self.shifts.values():
            if hasattr(s, "bind"):
                s.bind(env)

    def observation_space(self, space: gym.Space) -> gym.Space:
        """Chain the sub-shifts' observation spaces."""
        for s in self.shifts.values():
            if hasattr(s, "observation_space"):
                space = s.observation_space(space)
        return space

    def action_space(self, space: gym.Space) -> gym.Space:
        """Chain the sub-shifts' action spaces."""
        for s in self.shifts.values():
            if hasattr(s, "action_space"):
                space = s.action_space(space)
        return space

    def apply(self, env: gym.Env, params: Mapping[str, Any]) -> None:
        """Apply each sub-shift with ``params[name]`` (missing names: that shift is not applied)."""
        unknown = [k for k in params if k not in self.shifts]
        if unknown:
            raise EnvError(f"task parameters {unknown!r} name no shift; shifts: {choices(self.shifts)}")
        for name, s in self.shifts.items():
            if name in params:
                s.apply(env, params[name])

    def observation(self, obs: Any) -> Any:
        """Observation transforms in order."""
        for f in self._obs:
            obs = f(obs)
        return obs

    def action(self, action: Any) -> Any:
        """Action transforms, outermost first."""
        for f in self._act:
            action = f(action)
        return action

    def reward(self, reward: float) -> float:
        """Reward transforms in order."""
        for f in self._rew:
            reward = f(reward)
        return reward
