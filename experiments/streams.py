"""The runner's view of an ``envs`` stream: build it, read its schedule, snapshot its state.

DQN trains on one env (``envs.make``); PPO on a vector env (``envs.make_vector``) whose
sub-envs share the schedule. Both are gymnasium wrapper stacks around an
``envs.NonStationaryWrapper``; the helpers here find that wrapper so the runner never
depends on how many gymnasium wrappers sit on top.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import gymnasium as gym
from gymnasium.utils import EzPickle

import envs
from envs.wrapper import NonStationaryWrapper
from experiments.config import RunConfig

__all__ = ["make_stream", "stream_wrappers", "schedule_of", "set_task", "current_task",
           "is_vector", "snapshot", "restore"]


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
        # lean: SyncVectorEnv's stepping without per-step infos, which nothing here reads
        # (tested step for step equal; benchmarks/bench_envs.py: its cost per sub-env step)
        return envs.make_vector(config.env.id, config.env.num_envs, "lean", **kwargs)
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


def set_task(env: Any, k: int) -> None:
    for wrapper in stream_wrappers(env):
        wrapper.set_task(int(k))


def _rebuild(cls: type, state: dict[str, Any]) -> Any:
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj


class _StatePickler(pickle.Pickler):
    """Pickles envs by their state. Gymnasium's ``EzPickle`` envs (MuJoCo) pickle as their
    constructor arguments, i.e. re-made fresh; here they keep their ``__dict__`` (simulator
    data, RNG, counters) like every other object."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, EzPickle) and isinstance(obj, gym.Env):
            return _rebuild, (type(obj), obj.__dict__)
        return NotImplemented


def snapshot(env: Any) -> bytes:
    """The complete state of a stream: the simulator, every wrapper's counters (time limit,
    task, schedule), the env RNGs and a vector env's autoreset flags, so :func:`restore`
    continues exactly where ``env`` stands, mid-episode included. Needs a single env or a
    synchronous vector env (an async one lives in other processes)."""
    if is_vector(env) and not isinstance(env, gym.vector.SyncVectorEnv):
        raise TypeError(f"{type(env).__name__} cannot be checkpointed exactly: its sub-envs "
                        "live in worker processes; use a synchronous vector env (mode='sync')")
    buffer = io.BytesIO()
    _StatePickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(env)
    return buffer.getvalue()


def restore(data: bytes) -> Any:
    """The env saved by :func:`snapshot`, in the state it had then."""
    return pickle.loads(data)  # noqa: S301 -- our own checkpoint
