"""Running observation and reward normalisation whose statistics belong to the agent.

Gymnasium's ``NormalizeObservation``/``NormalizeReward`` wrappers keep their statistics in
the env, so rebuilding the env at a shift silently resets them (a known trap: a
normaliser re-adapting after a shift looks like, or hides, plasticity loss). Here they are
part of the agent's ``state_dict`` and change only while the agent trains.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class RunningMeanStd:
    """Mean and variance of a stream of batches (Chan et al. parallel update, float64)."""

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4) -> None:
        self.mean = np.zeros(shape, dtype=np.float64)
        self.var = np.ones(shape, dtype=np.float64)
        self.count = epsilon  # a tiny prior count, as in the usual baselines implementation

    def update(self, batch: np.ndarray) -> None:
        """Fold in ``batch`` (leading axis = samples)."""
        batch = np.asarray(batch, dtype=np.float64)
        b_mean, b_var, b_count = batch.mean(axis=0), batch.var(axis=0), batch.shape[0]
        delta = b_mean - self.mean
        total = self.count + b_count
        self.mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.copy(), "var": self.var.copy(), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean = np.array(state["mean"], dtype=np.float64)
        self.var = np.array(state["var"], dtype=np.float64)
        self.count = float(state["count"])


class ObservationNormalizer:
    """``clip((x - mean) / sqrt(var + eps), -clip, clip)`` with running statistics."""

    def __init__(self, shape: tuple[int, ...], clip: float, epsilon: float = 1e-8) -> None:
        self.rms = RunningMeanStd(shape)
        self.clip = clip
        self.epsilon = epsilon

    def __call__(self, obs: np.ndarray, update: bool) -> np.ndarray:
        if update:
            self.rms.update(obs)
        scaled = (obs - self.rms.mean) / np.sqrt(self.rms.var + self.epsilon)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)


class RewardNormalizer:
    """Scales rewards by the running std of the discounted return (as gymnasium's wrapper).

    ``G_t = gamma * G_{t-1} + r_t`` per sub-env, restarting at zero after each episode end;
    rewards are divided by ``sqrt(Var[G] + eps)`` and clipped.
    """

    def __init__(self, num_envs: int, gamma: float, clip: float, epsilon: float = 1e-8) -> None:
        self.rms = RunningMeanStd(())
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.gamma = gamma
        self.clip = clip
        self.epsilon = epsilon

    def __call__(self, rewards: np.ndarray, ends: np.ndarray, update: bool) -> np.ndarray:
        if update:
            self.returns = self.returns * self.gamma + rewards
            self.rms.update(self.returns)
            self.returns[ends] = 0.0
        scaled = rewards / np.sqrt(self.rms.var + self.epsilon)
        return np.clip(scaled, -self.clip, self.clip).astype(np.float32)
