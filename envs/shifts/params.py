"""Parameter shift: set physical attributes of ``env.unwrapped`` by name, keeping derived ones consistent."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym
from gymnasium.envs.classic_control import (
    AcrobotEnv,
    CartPoleEnv,
    Continuous_MountainCarEnv,
    MountainCarEnv,
    PendulumEnv,
)

from ..equality import ReprEq
from ..errors import EnvError, choices

__all__ = ["ParamShift", "KNOWN_PARAMETERS", "valid_parameters"]


def _cartpole_derived(env: Any) -> None:
    # CartPole caches these two products in __init__; step() reads the cached values.
    env.total_mass = env.masspole + env.masscart
    env.polemass_length = env.masspole * env.length


#: Shiftable attributes of the classic-control envs (class -> names, derived-quantity updater).
KNOWN_PARAMETERS: dict[type, tuple[tuple[str, ...], Callable[[Any], None] | None]] = {
    CartPoleEnv: (("gravity", "masscart", "masspole", "length", "force_mag"), _cartpole_derived),
    AcrobotEnv: (
        (
            "LINK_LENGTH_1", "LINK_LENGTH_2", "LINK_MASS_1", "LINK_MASS_2",
            "LINK_COM_POS_1", "LINK_COM_POS_2", "LINK_MOI",
        ),
        None,
    ),
    MountainCarEnv: (("force", "gravity", "goal_position"), None),
    Continuous_MountainCarEnv: (("power", "goal_position"), None),
    PendulumEnv: (("g", "m", "l", "max_torque"), None),
}


def _generic_parameters(env: Any) -> tuple[str, ...]:
    # Any other env: its public numeric scalar attributes are fair game.
    return tuple(
        sorted(
            name
            for name, value in vars(env).items()
            if not name.startswith("_")
            and isinstance(value, (int, float))
            and not isinstance(value, bool)
        )
    )


def valid_parameters(env: gym.Env) -> tuple[str, ...]:
    """Names a ``ParamShift`` may set on ``env.unwrapped``."""
    base = env.unwrapped
    for cls, (names, _) in KNOWN_PARAMETERS.items():
        if type(base) is cls:
            return names
    return _generic_parameters(base)


class ParamShift(ReprEq):
    """Sets attributes of ``env.unwrapped`` from the task parameters, e.g. ``{"gravity": 12.0}``.

    Valid names are listed in ``KNOWN_PARAMETERS`` for CartPole (gravity, masscart, masspole,
    length, force_mag; total_mass and polemass_length are recomputed), Acrobot (link masses,
    lengths, centre-of-mass positions, moment of inertia), MountainCar (force, gravity,
    goal_position: moving the goal is a reward shift), MountainCarContinuous (power,
    goal_position) and Pendulum (g, m, l, max_torque). For any other env, the public
    numeric attributes of ``env.unwrapped`` (so a new env needs no edit here). A name not valid
    for the env raises ``EnvError`` listing the valid names.

    Values take effect for the next transition (the classic-control envs read them in ``step``).
    """

    def bind(self, env: gym.Env) -> None:
        """Remember the env's valid names and derived-quantity updater."""
        base = env.unwrapped
        self._names = valid_parameters(env)
        self._derive = next(
            (d for cls, (_, d) in KNOWN_PARAMETERS.items() if type(base) is cls), None
        )

    def apply(self, env: gym.Env, params: Mapping[str, Any]) -> None:
        """Set each named attribute; raise ``EnvError`` for a name the env does not have."""
        if not hasattr(self, "_names"):
            self.bind(env)
        base = env.unwrapped
        for name, value in params.items():
            if name not in self._names:
                raise EnvError(
                    f"{type(base).__name__} has no shiftable parameter {name!r}; "
                    f"valid names: {choices(self._names)}"
                )
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise EnvError(f"parameter {name!r} must be a number, got {value!r}")
            # Keep float attributes float (an int task value must not turn physics integer).
            setattr(base, name, float(value) if isinstance(getattr(base, name), float) else value)
        if self._derive is not None:
            self._derive(base)

    def __repr__(self) -> str:
        return "ParamShift()"
