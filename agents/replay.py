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

A population of ``members`` runs keeps their buffers in one set of arrays with a leading
member axis: member k's buffer is row k. Members add a transition each at every step, so
they share the write position and size; :meth:`ReplayBuffer.sample` draws each member's
indices with that member's generator and gathers all members at once.

Storage stays in host memory whatever the agent's device; a drawn batch is moved to
``device`` once, as it leaves :meth:`ReplayBuffer.gather`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from agents._common import to_device
from agents.base import AgentError, Batch


class ReplayBuffer:
    """Ring buffer of ``capacity`` transitions ``(s, a, r, s', terminated, truncated)`` for
    each of ``members`` runs (arrays ``(members, capacity, ...)``); batches come out on
    ``device``."""

    def __init__(
        self,
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype: np.dtype | type = np.float32,
        n_step: int = 1,
        gamma: float = 0.99,
        members: int = 1,
        device: torch.device | str = "cpu",
    ) -> None:
        if capacity <= 0:
            raise AgentError(f"replay capacity must be a positive integer, got {capacity!r}")
        if n_step <= 0:
            raise AgentError(f"n_step must be a positive integer, got {n_step!r}")
        self.capacity = int(capacity)
        self.n_step = int(n_step)
        self.gamma = float(gamma)
        self.members = int(members)
        self.device = torch.device(device)
        shape = (self.members, self.capacity)
        self.obs = np.zeros((*shape, *obs_shape), dtype=obs_dtype)
        self.next_obs = np.zeros((*shape, *obs_shape), dtype=obs_dtype)
        self.actions = np.zeros(shape, dtype=np.int64)
        self.rewards = np.zeros(shape, dtype=np.float32)
        self.terminated = np.zeros(shape, dtype=np.bool_)
        self.ends = np.zeros(shape, dtype=np.bool_)  # terminated or truncated
        self._flat = {f: getattr(self, f).reshape(-1, *getattr(self, f).shape[2:])
                      for f in self._FIELDS}  # views: (members * capacity, ...)
        self._rows = np.arange(self.members)[:, None]
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
        """Store one transition per member (arguments with a leading member axis; a single
        buffer also takes them without); ``next_obs`` is the true successor (the final obs
        at an end)."""
        p = self.pos
        self.obs[:, p] = obs
        self.next_obs[:, p] = next_obs
        self.actions[:, p] = action
        self.rewards[:, p] = reward
        self.terminated[:, p] = terminated
        self.ends[:, p] = np.logical_or(terminated, truncated)
        self.pos = (p + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def clear(self) -> None:
        """Forget every transition (the arrays are kept for reuse)."""
        self.pos = 0
        self.size = 0

    def sample(
        self, batch_size: int, rng: np.random.Generator | Sequence[np.random.Generator]
    ) -> Batch:
        """``batch_size`` transitions per member drawn uniformly with replacement, member k's
        with ``rngs[k]``: a ``(members, batch_size, ...)`` batch. A single buffer takes one
        generator and gives a ``(batch_size, ...)`` batch."""
        if self.size == 0:
            raise AgentError("cannot sample from an empty replay buffer")
        if isinstance(rng, np.random.Generator):
            return self.gather(rng.integers(0, self.size, size=batch_size))
        idx = np.empty((len(rng), batch_size), dtype=np.int64)
        for k, g in enumerate(rng):
            idx[k] = g.integers(0, self.size, size=batch_size)
        return self.gather(idx)

    def gather(self, idx: np.ndarray, member: int | None = None) -> Batch:
        """The n-step batch for stored indices ``idx`` (see the module docstring): ``idx``
        ``(members, B)`` gives a ``(members, B, ...)`` batch; ``idx`` ``(B,)`` gives
        ``member``'s batch (default: the only member of a single buffer)."""
        if idx.ndim == 1:
            if member is None:
                if self.members != 1:
                    raise AgentError(f"gather from a buffer of {self.members} members: name the member")
                member = 0
            batch = self._gather(idx[None], np.array([[member]]))
            return {k: v[0] for k, v in batch.items()}
        return self._gather(idx, self._rows)

    def _gather(self, idx: np.ndarray, rows: np.ndarray) -> Batch:
        # 1-D takes on the flattened (members * capacity) arrays: much cheaper than 2-D
        # fancy indexing. ``base`` is the flat index of slot 0 of each member's ring.
        cap = self.capacity
        base = rows * cap
        flat = self._flat
        first = base + idx
        if self.n_step == 1:
            rewards = flat["rewards"][first]
            last = first
            discounts = self.gamma * ~flat["terminated"][last]
        else:
            offsets = np.arange(self.n_step)
            window = base[..., None] + (idx[..., None] + offsets) % cap
            newer = (self.pos - 1 - idx) % cap  # transitions stored after idx
            ends = flat["ends"][window]
            ended_before = (np.cumsum(ends, axis=-1) - ends) > 0
            include = (offsets <= newer[..., None]) & ~ended_before
            k = include.sum(axis=-1)
            rewards = (flat["rewards"][window] * self._powers[: self.n_step] * include).sum(axis=-1)
            last = base + (idx + k - 1) % cap  # window[..., k - 1]
            discounts = self._powers[k] * ~flat["terminated"][last]
        batch = {
            "obs": flat["obs"][first],
            "actions": flat["actions"][first],
            "rewards": np.asarray(rewards, dtype=np.float32),
            "next_obs": flat["next_obs"][last],
            "discounts": np.asarray(discounts, dtype=np.float32),
        }
        out = {k: to_device(v, self.device) for k, v in batch.items()}
        out["obs"], out["next_obs"] = out["obs"].float(), out["next_obs"].float()
        return out

    def state_dict(self, member: int = 0) -> dict[str, Any]:
        """Member ``member``'s buffer, in the format of a single run's."""
        n = self.size
        # Only the filled part is saved; positions are kept so sampling resumes identically.
        return {
            "capacity": self.capacity,
            "pos": self.pos,
            "size": n,
            **{f: getattr(self, f)[member, :n].copy() for f in self._FIELDS},
        }

    def load_state_dict(self, state: dict[str, Any], member: int = 0) -> None:
        """Restore member ``member`` (members share position and size: load them all)."""
        if state["capacity"] != self.capacity:
            raise AgentError(
                f"replay checkpoint capacity {state['capacity']} != buffer_size {self.capacity}"
            )
        n = state["size"]
        for f in self._FIELDS:
            getattr(self, f)[member, :n] = state[f]
        self.pos = state["pos"]
        self.size = n

    _FIELDS = ("obs", "next_obs", "actions", "rewards", "terminated", "ends")
