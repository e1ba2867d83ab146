"""ReDo: recycle dormant units (Sokar et al. 2023)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from agents.base import Batch, Mitigation
from agents.mitigations._common import (
    HiddenLayer,
    agent_networks,
    capture_features,
    check_number,
    generator_state,
    hidden_layers,
    make_generator,
    network_input,
    reinitialize_units,
    require_hidden_layers,
)
from spectral import features as feature_stats


def unit_scores(layer: HiddenLayer, features: Tensor) -> Tensor:
    """ReDo's dormancy score per unit, :func:`spectral.redo_scores` (the dormant probe's).

    ``s_i = E|h_i| / mean_j E|h_j|`` over the batch; with CReLU a unit's two features are
    summed (``E|relu(x)| + E|relu(-x)| = E|x|``), so a unit is dormant only if its
    pre-activation is ~0 on the batch.
    """
    phi = features.detach().reshape(features.shape[0], -1)
    return feature_stats.redo_scores(phi, units=layer.width)


@dataclass
class ReDo(Mitigation):
    """ReDo: every ``every_updates`` update phases, recycle units whose score is ≤ ``tau``.

    Scores (:func:`unit_scores`) are computed on the update batch's observations. A dormant
    unit's incoming weights and bias are redrawn from the initial distribution (LayerNorm
    gain/bias back to 1/0), its outgoing weights are zeroed, and Adam's moments of exactly
    those rows and columns are zeroed (Sokar et al. 2023).

    Attributes:
        tau: dormancy threshold; 0.025 as in Plasticine (the ReDo paper uses 0.0–0.1).
        every_updates: recycle every this many update phases (PPO: rollouts; DQN:
            ``update_phase`` env steps each). ReDo's DQN recycled every 1,000 gradient steps.
    """

    tau: float = 0.025
    every_updates: int = 1

    name = "redo"

    def __post_init__(self) -> None:
        check_number(self.name, "tau", self.tau, low=0.0)
        check_number(self.name, "every_updates", self.every_updates, low=1, integer=True)
        self.generator: torch.Generator | None = None
        self.updates = 0
        self.last_recycled: dict[str, int] = {}

    def attach(self, agent: Any) -> None:
        require_hidden_layers(self.name, agent_networks(self.name, agent))
        if self.generator is None:
            self.generator = make_generator(agent, self.name)

    def dormant_units(self, agent: Any, batch: Batch | None) -> dict[str, Tensor]:
        """Indices of the dormant units of every hidden layer, keyed ``"q.hidden.0"``."""
        dormant: dict[str, Tensor] = {}
        nets = agent_networks(self.name, agent)
        with torch.no_grad():
            for net_name, net in nets.items():
                features = capture_features(net, network_input(net, batch, self.name))
                for layer in hidden_layers({net_name: net}):
                    scores = unit_scores(layer, features[layer.name])
                    dormant[layer.key] = torch.nonzero(scores <= self.tau).flatten()
        return dormant

    def recycle(self, agent: Any, batch: Batch | None) -> None:
        assert self.generator is not None, "attach() first"
        dormant = self.dormant_units(agent, batch)
        for layer in hidden_layers(agent_networks(self.name, agent)):
            units = dormant[layer.key]
            reinitialize_units(layer, units, self.generator, agent.optimizer)
            self.last_recycled[layer.key] = int(units.numel())

    def after_update(self, agent: Any, batch: Batch | None) -> None:
        self.updates += 1
        if self.updates % self.every_updates == 0:
            self.recycle(agent, batch)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"updates": self.updates}
        if self.generator is not None:
            state["generator"] = generator_state(self.generator)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        if "generator" in state:
            if self.generator is None:
                self.generator = torch.Generator()
            self.generator.set_state(state["generator"])
