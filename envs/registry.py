"""The stream registry: ``register_stream``, ``list_streams``, ``format_streams``, ``make``, ``make_vector``.

A stream is a gymnasium id (namespace ``plasticity/`` for ours) whose entry point is a factory
returning a ``NonStationaryWrapper``. Registering through ``register_stream`` also records a
one-line description and the default period, for ``list_streams`` and the CLI.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv

from .errors import EnvError, choices
from .vector import LeanSyncVectorEnv

__all__ = ["StreamInfo", "register_stream", "list_streams", "format_streams", "make", "make_vector"]

#: ``gymnasium.make`` keywords accepted besides the factory's own.
_MAKE_KEYWORDS = ("max_episode_steps", "disable_env_checker")
_VECTOR_MODES = ("sync", "lean", "async")
_VECTOR_AUTORESET = {"next_step": AutoresetMode.NEXT_STEP, "same_step": AutoresetMode.SAME_STEP}


@dataclass(frozen=True)
class StreamInfo:
    """A registered stream: its id, a one-line description (what shifts, how often), the default period."""

    id: str
    description: str
    default_period: int | None
    factory: Callable[..., gym.Env] = field(repr=False, compare=False)

    def parameters(self) -> tuple[str, ...]:
        """The keyword arguments the stream's factory takes."""
        return tuple(inspect.signature(self.factory).parameters)


_STREAMS: dict[str, StreamInfo] = {}


def register_stream(
    id: str,
    factory: Callable[..., gym.Env],
    *,
    description: str,
    default_period: int | None = None,
) -> StreamInfo:
    """Register ``factory`` as the gymnasium id ``id`` and list it in ``list_streams``.

    ``factory(**kwargs)`` must return a gymnasium env (normally a ``NonStationaryWrapper``,
    e.g. from ``make_nonstationary``); its keyword arguments are the stream's options
    (conventionally ``period``, ``stationary``, ``switch_at``, ``seed``, ``vector_size``,
    ``num_tasks``, ``autoreset_mode``). ``default_period`` defaults to the factory's ``period``
    default. Registering the same id again replaces it.
    """
    if not isinstance(id, str) or "/" not in id:
        raise EnvError(f"stream id must look like 'namespace/Name-v0', got {id!r}")
    if not callable(factory):
        raise EnvError(f"factory must be callable, got {factory!r}")
    if default_period is None:
        p = inspect.signature(factory).parameters.get("period")
        if p is not None and isinstance(p.default, int):
            default_period = p.default
    info = StreamInfo(id=id, description=description, default_period=default_period, factory=factory)
    if id in gym.registry:
        del gym.registry[id]  # a deliberate re-registration: no "overriding" warning
    # No TimeLimit here: the factory's inner env has its own.
    gym.register(id=id, entry_point=factory, max_episode_steps=None)
    _STREAMS[id] = info
    return info


def list_streams() -> list[StreamInfo]:
    """Every registered stream, sorted by id."""
    return [_STREAMS[k] for k in sorted(_STREAMS)]


def format_streams() -> str:
    """A printable table of the registered streams (id, default period, description)."""
    rows = [(s.id, "-" if s.default_period is None else f"{s.default_period:,}", s.description) for s in list_streams()]
    head = ("id", "period", "description")
    w0 = max(len(head[0]), *(len(r[0]) for r in rows)) if rows else len(head[0])
    w1 = max(len(head[1]), *(len(r[1]) for r in rows)) if rows else len(head[1])
    lines = [f"{head[0]:<{w0}}  {head[1]:>{w1}}  {head[2]}"]
    lines += [f"{a:<{w0}}  {b:>{w1}}  {c}" for a, b, c in rows]
    return "\n".join(lines)


def _stream(id: str) -> StreamInfo:
    if id not in _STREAMS:
        raise EnvError(f"unknown stream id {id!r}; registered streams: {choices(sorted(_STREAMS))}")
    return _STREAMS[id]


def _check_kwargs(info: StreamInfo, kwargs: dict[str, Any]) -> None:
    valid = (*info.parameters(), *_MAKE_KEYWORDS)
    bad = [k for k in kwargs if k not in valid]
    if bad:
        raise EnvError(f"{info.id} has no option {', '.join(map(repr, bad))}; valid options: {choices(valid)}")


def make(id: str, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` of a registered stream, with ``EnvError`` for an unknown id or option.

    Find the wrapper's API through gymnasium's wrappers with ``env.get_wrapper_attr``, e.g.
    ``env.get_wrapper_attr("set_task")(3)`` or ``env.get_wrapper_attr("task_id")``.
    """
    info = _stream(id)
    _check_kwargs(info, kwargs)
    return gym.make(id, **kwargs)


def make_vector(
    id: str,
    num_envs: int,
    mode: str = "sync",
    *,
    autoreset_mode: str = "next_step",
    switch_at: str = "truncate",
    **kwargs: Any,
) -> VectorEnv:
    """A vector env of ``num_envs`` copies of a stream that change task at the same global step.

    Every sub-env gets the same schedule seed (so the same tasks), ``vector_size=num_envs``
    (a period counts global env steps: ``num_envs`` per vector step) and
    ``switch_at="truncate"``: at the switch step every sub-env's episode is truncated and the
    reset that follows applies the new task, so all sub-envs report the same ``task_id``.

    Args:
        id: a registered stream id.
        num_envs: number of sub-envs (> 0).
        mode: ``"sync"`` (``SyncVectorEnv``), ``"lean"`` (:class:`envs.vector.LeanSyncVectorEnv`:
            the same stepping without per-step infos, what the runner trains PPO on) or
            ``"async"`` (``AsyncVectorEnv``, one process each).
        autoreset_mode: gymnasium's ``"next_step"`` (default) or ``"same_step"``.
        switch_at: passed to each sub-env (``"truncate"`` keeps them in lockstep).
        **kwargs: stream options (``period``, ``seed``, ``stationary``, ...).

    Use ``vec.get_attr("task_id")`` / ``vec.call("set_task", k)`` to reach the wrappers.
    """
    info = _stream(id)
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs <= 0:
        raise EnvError(f"num_envs must be a positive integer, got {num_envs!r}")
    if mode not in _VECTOR_MODES:
        raise EnvError(f"mode={mode!r} is not one of {choices(_VECTOR_MODES)}")
    if autoreset_mode not in _VECTOR_AUTORESET:
        raise EnvError(f"autoreset_mode={autoreset_mode!r} is not one of {choices(_VECTOR_AUTORESET)}")
    for reserved in ("vector_size",):
        if reserved in kwargs:
            raise EnvError(f"make_vector sets {reserved!r} itself (= num_envs); remove it")
    kwargs = dict(kwargs, vector_size=num_envs, switch_at=switch_at, autoreset_mode=autoreset_mode)
    _check_kwargs(info, kwargs)
    fns = [functools.partial(make, id, **kwargs) for _ in range(num_envs)]
    cls = {"sync": SyncVectorEnv, "lean": LeanSyncVectorEnv, "async": AsyncVectorEnv}[mode]
    return cls(fns, autoreset_mode=_VECTOR_AUTORESET[autoreset_mode])
