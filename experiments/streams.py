"""The runner's view of an ``envs`` stream: build it, read its schedule, save its state.

DQN trains on one env (``envs.make``); PPO on a vector env (``envs.make_vector``) whose
sub-envs share the schedule. Both are gymnasium wrapper stacks around an
``envs.NonStationaryWrapper``; the helpers here find that wrapper so the runner never
depends on how many gymnasium wrappers sit on top.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

import envs
from envs.wrapper import NonStationaryWrapper
from experiments.config import RunConfig

__all__ = ["make_stream", "stream_wrappers", "schedule_of", "get_state", "set_state", "set_task",
           "current_task", "is_vector"]


def is_vector(env: Any) -> bool:
    return isinstance(env, gym.vector.VectorEnv)


def make_stream(config: RunConfig, *, stationary: bool, seed: int, single: bool = False) -> Any:
    """The training (or side-rollout) env of ``config``: a single env for DQN, a vector env
    of ``env.num_envs`` sub-envs for PPO (``single``: a single env for either);
    ``stationary`` keeps it on one task."""
    kwargs = dict(config.env.kwargs)
    kwargs.update(stationary=stationary, seed=seed)
    if config.env.period:  # 0: a stream without a default period decides itself
        kwargs["period"] = config.env.period
    if config.agent.algo == "ppo" and not single:
        return envs.make_vector(config.env.id, config.env.num_envs, **kwargs)
    return envs.make(config.env.id, **kwargs)


def _find(env: Any) -> NonStationaryWrapper:
    inner = env
    while True:
        if isinstance(inner, NonStationaryWrapper):
            return inner
        if not hasattr(inner, "env"):
            raise TypeError(f"{env!r} has no NonStationaryWrapper; build it with envs.make")
        inner = inner.env


def stream_wrappers(env: Any) -> list[NonStationaryWrapper]:
    """The non-stationary wrapper of each sub-env (one for a single env)."""
    if is_vector(env):
        subs = getattr(env, "envs", None)
        if subs is None:
            raise TypeError("the runner needs a synchronous vector env (envs.make_vector mode='sync')")
        return [_find(e) for e in subs]
    return [_find(env)]


def schedule_of(env: Any) -> Any:
    return stream_wrappers(env)[0].schedule


def current_task(env: Any) -> int:
    return int(stream_wrappers(env)[0].task_id)


def get_state(env: Any) -> list[dict[str, Any]]:
    return [w.get_state() for w in stream_wrappers(env)]


def set_state(env: Any, state: list[dict[str, Any]]) -> None:
    for wrapper, s in zip(stream_wrappers(env), state, strict=True):
        wrapper.set_state(s)


def set_task(env: Any, k: int) -> None:
    for wrapper in stream_wrappers(env):
        wrapper.set_task(int(k))
