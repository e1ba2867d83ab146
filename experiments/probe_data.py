"""Fixed probe data: one dataset per task, the same for every arm and seed that sees it.

On-policy probe batches (the agent's replay sample, its side rollout) differ between arms,
so a probe taken on them mixes "the network changed" with "the data changed". The fixed
data of a task depends on the task only:

1. **Stream hook** (small MDPs): if the stream's base env (``env.unwrapped``) has
   ``probe_transitions() -> {obs, actions, rewards, next_obs, terminated}`` (numpy arrays,
   one row per transition), that is the task's data -- ``envs.minigrid.RoomEnv`` returns
   every (pose, action) transition of the room.
2. **Otherwise** ``steps`` transitions of a uniform-random behaviour policy, the env reset
   and the actions drawn from a seed that is a hash of the task's parameters, so two runs
   (any arm, any seed) on a task with the same parameters get identical data.

Exact targets (optional hook): a base env with ``optimal_action_values(gamma) ->
{obs, action_values}`` gives the true optimal action values of the current task; the
``trainability`` probe then also fits those (``RoomEnv`` has it: search over poses).

Everything here runs on the prober's own env (a stationary copy of the stream set to the
task), never on the training env.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from envs import EnvError
from experiments import streams

__all__ = ["data_seed", "fixed_transitions", "optimal_action_values"]

KEYS = ("obs", "actions", "rewards", "next_obs", "terminated")


def data_seed(task_params: Mapping[str, Any]) -> int:
    """A seed that is a function of the task's parameters only (their canonical JSON)."""
    text = json.dumps(dict(task_params), sort_keys=True, default=repr)
    return zlib.crc32(("fixed-probe-data:" + text).encode())


def _base(env: Any) -> Any:
    return streams.stream_wrappers(env)[0].unwrapped


def fixed_transitions(env: Any, steps: int) -> dict[str, Tensor]:
    """The fixed probe data of the task ``env`` (a single-env stream) is set to.

    Returns float32 ``rewards`` / ``terminated`` (0 or 1), raw observations and actions as
    tensors, one row per transition.
    """
    hook = getattr(_base(env), "probe_transitions", None)
    data = hook() if callable(hook) else _random_policy(env, steps)
    missing = [k for k in KEYS if k not in data]
    if missing:
        raise EnvError(f"probe_transitions() of {type(_base(env)).__name__} lacks {missing}; "
                        f"it must return {', '.join(KEYS)}")
    out = {k: _host(data[k]) for k in KEYS}
    out["rewards"] = out["rewards"].float()
    out["terminated"] = out["terminated"].float()
    return out


def _random_policy(env: Any, steps: int) -> dict[str, np.ndarray]:
    seed = data_seed(streams.stream_wrappers(env)[0].task_params)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    rows: dict[str, list] = {k: [] for k in KEYS}
    for _ in range(steps):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(KEYS, (obs, action, reward, next_obs, terminated), strict=True):
            rows[key].append(value)
        obs = env.reset()[0] if terminated or truncated else next_obs
    return {k: np.stack([np.asarray(v) for v in values]) for k, values in rows.items()}


def optimal_action_values(env: Any, gamma: float) -> tuple[Tensor, Tensor] | None:
    """``(obs, Q*)`` of the current task from the stream's hook, or None without one."""
    hook = getattr(_base(env), "optimal_action_values", None)
    if not callable(hook):
        return None
    data = hook(gamma)
    return _host(data["obs"]), _host(data["action_values"]).float()


def _host(values: Any) -> Tensor:
    """Host-side data as a CPU tensor (never torch's default device); the prober moves
    what it feeds a network to that network's device."""
    return torch.from_numpy(np.ascontiguousarray(values))
