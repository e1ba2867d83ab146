"""``LeanSyncVectorEnv``: gymnasium's ``SyncVectorEnv`` without the per-step info batching.

``SyncVectorEnv.step`` spends most of its own time outside the sub-envs on infos: every
sub-env's info dict (a stream's ``task_id``, ``task``, ``task_switched`` at every step) is
merged into batched arrays with masks, then the observations are concatenated through
the space's generic helpers and deep-copied. The agents read none of those infos (the
runner reads tasks from the wrappers); PPO reads only autoreset's ``final_obs`` in
``same_step`` mode. This subclass steps the sub-envs exactly as ``SyncVectorEnv`` does --
same calls in the same order, same autoreset semantics in every mode, same state
attributes (so a snapshot pickles and restores it like the parent) -- and returns the same
observations, rewards, terminations and truncations; its infos hold only
``final_obs`` / ``final_info`` (with their ``_final_obs`` / ``_final_info`` masks) when a
``same_step`` autoreset happens. Discrete actions reach the sub-envs as Python ints (what
the stream wrapper turns them into anyway). Tested step for step against
``SyncVectorEnv`` (tests/envs/test_envs_vector_lean.py).
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.vector.utils import concatenate, iterate

__all__ = ["LeanSyncVectorEnv"]


class LeanSyncVectorEnv(SyncVectorEnv):
    """A ``SyncVectorEnv`` whose ``step`` skips info batching (see the module docstring);
    ``reset`` is the parent's."""

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if isinstance(self.single_action_space, spaces.Discrete):
            actions_iter = np.asarray(actions).tolist()
        else:
            actions_iter = iterate(self.action_space, actions)
        mode = self.autoreset_mode
        infos: dict[str, Any] = {}
        for i, action in enumerate(actions_iter):
            env = self.envs[i]
            if mode == AutoresetMode.NEXT_STEP and self._autoreset_envs[i]:
                self._env_obs[i], _ = env.reset()
                self._rewards[i] = 0.0
                self._terminations[i] = False
                self._truncations[i] = False
                continue
            if mode == AutoresetMode.DISABLED:
                assert not self._autoreset_envs[i], f"{self._autoreset_envs=}"
            (self._env_obs[i], self._rewards[i], self._terminations[i], self._truncations[i],
             env_info) = env.step(action)
            if mode == AutoresetMode.SAME_STEP and (self._terminations[i] or self._truncations[i]):
                infos = self._add_info(infos, {"final_obs": self._env_obs[i],
                                               "final_info": env_info}, i)
                self._env_obs[i], _ = env.reset()
        if isinstance(self.single_observation_space, spaces.Box):
            np.stack(self._env_obs, out=self._observations)
        else:
            self._observations = concatenate(self.single_observation_space, self._env_obs,
                                             self._observations)
        self._autoreset_envs = np.logical_or(self._terminations, self._truncations)
        obs = self._observations
        if self.copy:
            obs = obs.copy() if isinstance(obs, np.ndarray) else deepcopy(obs)
        return (obs, self._rewards.copy(), self._terminations.copy(), self._truncations.copy(),
                infos)
