"""Shared helpers for the agent tests: env factories and a hook-recording mitigation."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import torch
from minigrid.wrappers import ImgObsWrapper

from agents import Mitigation


def cartpole() -> gym.Env:
    return gym.make("CartPole-v1", disable_env_checker=True)


def cartpole_vec(n: int) -> gym.vector.VectorEnv:
    return gym.make_vec("CartPole-v1", n, vectorization_mode="sync")


def empty_room() -> gym.Env:
    """MiniGrid Empty-5x5 with the 7x7x3 egocentric image as observation."""
    return ImgObsWrapper(gym.make("MiniGrid-Empty-5x5-v0"))


def mean_return(episodes, last: int) -> float:
    return float(np.mean([r for _, r, _ in episodes[-last:]]))


def params_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


class Recorder(Mitigation):
    """Records every hook call (and turns LayerNorm on in configure)."""

    name = "recorder"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.batches: list = []

    def configure(self, config):
        self.calls.append("configure")
        return dataclasses.replace(config, layer_norm=True)

    def attach(self, agent) -> None:
        self.calls.append("attach")

    def before_optimizer_step(self, agent) -> None:
        # Gradients exist and Adam has not stepped yet.
        assert all(
            p.grad is not None for p in agent.networks()[next(iter(agent.networks()))].parameters()
        )
        self.calls.append("before")

    def after_step(self, agent) -> None:
        self.calls.append("after_step")

    def after_update(self, agent, batch) -> None:
        self.calls.append("after_update")
        self.batches.append(batch)

    def on_task_switch(self, agent) -> None:
        self.calls.append("switch")

    def state_dict(self):
        return {"n": len(self.calls)}

    def load_state_dict(self, state) -> None:
        self.loaded = state
