"""A preallocated ring replay buffer with n-step returns computed at sampling time.

Storage is one numpy array per field (``obs`` and ``next_obs`` keep the observation
space's dtype, so MiniGrid's uint8 grids stay one byte per entry): memory is the raw size
of the stored 1-step transitions (:attr:`ReplayBuffer.nbytes`), with no per-transition
Python objects. n-step targets are built when a batch is drawn, so ``n_step`` and
``gamma`` never change what is stored and a flush or resize is trivial.

For a sampled index ``i`` the n-step window is the transitions ``i, i+1, ..., i+k-1``
with ``k <= n`` stopping after the first transition that ended an episode (terminated or
truncated) or at the newest stored transition. The batch then holds

    rewards   = sum_{j<k} gamma^j r_{i+j}
    next_obs  = s'_{i+k-1}                       (the state to bootstrap from)
    discounts = gamma^k * (1 - terminated_{i+k-1})

so the TD target is ``rewards + discounts * max_a Q_target(next_obs, a)`` for any n
(a truncated episode still bootstraps, a terminated one does not).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from agents.base import AgentError, Batch


class ReplayBuffer:
    """Ring buffer of ``capacity`` transitions ``(s, a, r, s', terminated, truncated)``."""

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype | type = np.float32,
        n_step: int = 1,
        gamma: float = 0.99,
    ) -> None:
        if capacity <= 0:
            raise AgentError(f"replay capacity must be a positive integer, got {capacity!r}")
        if n_step <= 0:
            raise AgentError(f"n_step must be a positive integer, got {n_step!r}")
        self.capacity = int(capacity)
        self.n_step = int(n_step)
        self.gamma = float(gamma)
        self.obs = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.next_obs = np.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.actions = np.zeros(capacity, dtype=np.int64)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.bool_)
        self.ends = np.zeros(capacity, dtype=np.bool_)  # terminated or truncated
        self.pos = 0
        self.size = 0
        self._powers = self.gamma ** np.arange(self.n_step + 1, dtype=np.float64)

    def __len__(self) -> int:
        return self.size

    @property
    def nbytes(self) -> int:
        """Bytes held by the storage arrays (what a checkpoint of the buffer costs)."""
        arrays = (self.obs, self.next_obs, self.actions, self.rewards, self.terminated, self.ends)
        return sum(a.nbytes for a in arrays)

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: int,
        reward: float,
        terminated: bool,
        truncated: bool,
    ) -> None:
        """Store one transition; ``next_obs`` is the true successor (the final obs at an end)."""
        p = self.pos
        self.obs[p] = obs
        self.next_obs[p] = next_obs
        self.actions[p] = action
        self.rewards[p] = reward
        self.terminated[p] = terminated
        self.ends[p] = terminated or truncated
        self.pos = (p + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def clear(self) -> None:
        """Forget every transition (the arrays are kept for reuse)."""
        self.pos = 0
        self.size = 0

    def sample(self, batch_size: int, rng: np.random.Generator) -> Batch:
        """``batch_size`` transitions drawn uniformly with replacement using ``rng``."""
        if self.size == 0:
            raise AgentError("cannot sample from an empty replay buffer")
        return self.gather(rng.integers(0, self.size, size=batch_size))

    def gather(self, idx: np.ndarray) -> Batch:
        """The n-step batch for stored indices ``idx`` (see the module docstring)."""
        if self.n_step == 1:
            rewards = self.rewards[idx].astype(np.float32)
            last = idx
            discounts = self.gamma * ~self.terminated[last]
        else:
            offsets = np.arange(self.n_step)
            window = (idx[:, None] + offsets) % self.capacity
            newer = (self.pos - 1 - idx) % self.capacity  # transitions stored after idx
            ends = self.ends[window]
            ended_before = (np.cumsum(ends, axis=1) - ends) > 0
            include = (offsets[None, :] <= newer[:, None]) & ~ended_before
            k = include.sum(axis=1)
            rewards = (self.rewards[window] * self._powers[: self.n_step] * include).sum(axis=1)
            last = window[np.arange(len(idx)), k - 1]
            discounts = self._powers[k] * ~self.terminated[last]
        return {
            "obs": torch.from_numpy(self.obs[idx]).float(),
            "actions": torch.from_numpy(self.actions[idx]),
            "rewards": torch.from_numpy(np.asarray(rewards, dtype=np.float32)),
            "next_obs": torch.from_numpy(self.next_obs[last]).float(),
            "discounts": torch.from_numpy(np.asarray(discounts, dtype=np.float32)),
        }

    def state_dict(self) -> dict[str, Any]:
        n = self.size
        # Only the filled part is saved; positions are kept so sampling resumes identically.
        return {
            "capacity": self.capacity,
            "pos": self.pos,
            "size": n,
            **{f: getattr(self, f)[:n].copy() for f in self._FIELDS},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["capacity"] != self.capacity:
            raise AgentError(
                f"replay checkpoint capacity {state['capacity']} != buffer_size {self.capacity}"
            )
        n = state["size"]
        for f in self._FIELDS:
            getattr(self, f)[:n] = state[f]
        self.pos = state["pos"]
        self.size = n

    _FIELDS = ("obs", "next_obs", "actions", "rewards", "terminated", "ends")
