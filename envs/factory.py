"""``make_nonstationary``: wrap any gymnasium env id or instance with any shift and schedule."""

from __future__ import annotations

import difflib
from typing import Any

import gymnasium as gym

from .errors import EnvError
from .schedules import Schedule, StationarySchedule
from .wrapper import NonStationaryWrapper

__all__ = ["make_nonstationary", "make_base_env"]


def make_base_env(env_id: str, **make_kwargs: Any) -> gym.Env:
    """``gymnasium.make(env_id, **make_kwargs)``, with ``EnvError`` naming close ids when unknown."""
    if not isinstance(env_id, str):
        raise EnvError(f"env id must be a string, got {env_id!r}")
    if env_id not in gym.registry:
        ids = sorted(gym.registry)
        close = difflib.get_close_matches(env_id, ids, n=8, cutoff=0.5)
        hint = f"close matches: {', '.join(close)}" if close else f"registered ids include: {', '.join(ids[:20])}, ..."
        raise EnvError(f"unknown gymnasium env id {env_id!r}; {hint}")
    make_kwargs.setdefault("disable_env_checker", True)  # the outer make checks the stream
    return gym.make(env_id, **make_kwargs)


def make_nonstationary(
    env: str | gym.Env,
    shift: Any,
    schedule: Schedule,
    *,
    switch_at: str = "reset",
    stationary: bool = False,
    vector_size: int = 1,
    autoreset_mode: str | None = None,
    **make_kwargs: Any,
) -> NonStationaryWrapper:
    """Make ``env`` (a gymnasium id or an env instance) switch tasks on ``schedule``.

    Plug in a new environment without editing this package::

        class Wind:                                   # a user shift: one method
            def apply(self, env, params):
                env.unwrapped.force_mag = 10.0 + params["wind"]

        env = envs.make_nonstationary(
            "CartPole-v1", shift=Wind(),
            schedule=envs.RandomSchedule(10_000, {"wind": envs.Uniform(-5, 5)}, seed=0))

    Args:
        env: a gymnasium env id (made with ``gymnasium.make(env, **make_kwargs)``) or an env.
        shift: an object with ``apply(env, params)`` (and optionally the interface hooks of
            ``envs.shifts.base``).
        schedule: ``CyclicSchedule``, ``RandomSchedule`` or any object with ``task_params``,
            ``task_at`` and ``switch_steps``.
        switch_at: ``"reset"`` (default), ``"step"`` or ``"truncate"``; see
            ``NonStationaryWrapper``.
        stationary: the control arm: task 0 forever, no switch (``set_task`` still works).
        vector_size: the number of sub-envs when used inside a vector env (``make_vector``
            sets it): each local step counts this many global steps.
        autoreset_mode: the surrounding vector env's autoreset mode (``make_vector`` sets it).
        **make_kwargs: passed to ``gymnasium.make`` when ``env`` is an id.

    Returns:
        The ``NonStationaryWrapper`` (task 0 already applied).

    Raises:
        EnvError: unknown env id, bad ``switch_at`` / ``vector_size``, a shift that does not
            fit the env (its message names the bad value and the valid choices).
    """
    if isinstance(env, str):
        env = make_base_env(env, **make_kwargs)
    elif make_kwargs:
        raise EnvError(f"make_kwargs {sorted(make_kwargs)!r} only apply when env is an id, got an env instance")
    elif not isinstance(env, gym.Env):
        raise EnvError(f"env must be a gymnasium env id or a gymnasium.Env, got {env!r}")
    if stationary:
        schedule = StationarySchedule(schedule)
    return NonStationaryWrapper(
        env, shift, schedule, switch_at=switch_at, vector_size=vector_size,
        autoreset_mode=autoreset_mode,
    )
