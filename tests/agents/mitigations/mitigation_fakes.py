"""A tiny agent that follows the mitigation contract (config, networks(), optimizer, hooks).

The method tests run against it so that each one checks the mitigation alone; the
real DQN and PPO are exercised in test_mitigations_with_agents.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from agents.networks import MLP


@dataclass
class FakeConfig:
    widths: tuple[int, ...] = (16, 16)
    activation: str = "relu"
    layer_norm: bool = False
    init: str = "default"
    adam_betas: tuple[float, float] = (0.9, 0.999)
    learning_rate: float = 1e-3
    seed: int = 0


class FakeAgent:
    def __init__(
        self,
        config: FakeConfig | None = None,
        mitigations: Any = (),
        in_dim: int = 6,
        out_dim: int = 3,
        nets: tuple[str, ...] = ("q",),
        optimizer: str = "adam",
    ) -> None:
        self.mitigations = list(mitigations)
        config = config or FakeConfig()
        for m in self.mitigations:
            config = m.configure(config)
        self.config = config
        generator = torch.Generator().manual_seed(config.seed)
        self.nets = {
            name: MLP(
                in_dim,
                out_dim,
                config.widths,
                config.activation,
                config.layer_norm,
                config.init,
                generator=generator,
            )
            for name in nets
        }
        params = [p for net in self.nets.values() for p in net.parameters()]
        if optimizer == "adam":
            self.optimizer = torch.optim.Adam(
                params, lr=config.learning_rate, betas=config.adam_betas
            )
        else:
            self.optimizer = torch.optim.SGD(params, lr=config.learning_rate)
        self.global_step = 0
        for m in self.mitigations:
            m.attach(self)

    def networks(self) -> dict[str, MLP]:
        return dict(self.nets)

    def train_step(self, inputs: torch.Tensor | None = None) -> None:
        """One hooked optimiser step; with ``inputs`` the loss is the mean squared output."""
        self.optimizer.zero_grad(set_to_none=True)
        if inputs is not None:
            loss = sum(net(inputs).pow(2).mean() for net in self.nets.values())
            loss.backward()
        for m in self.mitigations:
            m.before_optimizer_step(self)
        self.optimizer.step()
        for m in self.mitigations:
            m.after_step(self)

    def update_phase(self, batch: dict[str, torch.Tensor]) -> None:
        for m in self.mitigations:
            m.after_update(self, batch)


def make_obs_batch() -> dict[str, torch.Tensor]:
    return {"obs": torch.randn(256, 6, generator=torch.Generator().manual_seed(123))}
