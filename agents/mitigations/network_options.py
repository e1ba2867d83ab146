"""Mitigations that are network or optimiser options: LayerNorm, CReLU, non-stationary Adam.

They act only through ``configure`` (before the networks and the optimiser are built) and
check at ``attach`` that the agent built what was asked, so that a config the agent ignores
cannot silently give a plain-backprop arm under another name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from agents.base import AgentError, Mitigation
from agents.mitigations._common import (
    agent_networks,
    check_number,
    replace_config,
    require_hidden_layers,
)


@dataclass
class LayerNorm(Mitigation):
    """LayerNorm between each hidden linear layer and its activation (sets ``layer_norm``).

    Lyle et al. (2023, 2024) find LayerNorm (with weight decay) the most robust single fix
    for plasticity loss; combine with ``l2`` for their "LayerNorm + L2". No hyperparameters.
    """

    name = "layer_norm"

    def configure(self, config: Any) -> Any:
        return replace_config(self.name, config, layer_norm=True)

    def attach(self, agent: Any) -> None:
        nets = agent_networks(self.name, agent)
        require_hidden_layers(self.name, nets)
        for net_name, net in nets.items():
            if not all(isinstance(block.norm, nn.LayerNorm) for block in net.hidden):
                raise AgentError(
                    f"mitigation 'layer_norm': network {net_name!r} was built without LayerNorm"
                )


@dataclass
class CReLU(Mitigation):
    """CReLU activations ``[relu(x), relu(-x)]`` (Abbas et al. 2023; sets ``activation``).

    Each hidden block's output doubles in width (the next layer's fan-in doubles), so no
    unit can be dead on a whole batch unless its pre-activation is exactly zero.
    """

    name = "crelu"

    def configure(self, config: Any) -> Any:
        return replace_config(self.name, config, activation="crelu")

    def attach(self, agent: Any) -> None:
        nets = agent_networks(self.name, agent)
        require_hidden_layers(self.name, nets)
        for net_name, net in nets.items():
            if net.activation != "crelu":
                raise AgentError(
                    f"mitigation 'crelu': network {net_name!r} was built with activation {net.activation!r}"
                )


@dataclass
class NonStationaryAdam(Mitigation):
    """Non-stationary Adam: β1 = β2 = ``beta`` (sets ``adam_betas``).

    Dohare et al. (2024) and the spectral-collapse paper's RL runs use (0.99, 0.99): with
    β2 = β1 the second-moment estimate tracks the first at the same speed, which avoids the
    large updates that default Adam (0.9, 0.999) makes after a shift.

    Attributes:
        beta: the common β (0.99).
    """

    beta: float = 0.99

    name = "ns_adam"

    def __post_init__(self) -> None:
        check_number(self.name, "beta", self.beta, low=0.0, high=1.0, high_open=True)

    def configure(self, config: Any) -> Any:
        return replace_config(self.name, config, adam_betas=(float(self.beta), float(self.beta)))

    def attach(self, agent: Any) -> None:
        for group in agent.optimizer.param_groups:
            betas = tuple(group.get("betas", ()))
            if betas != (self.beta, self.beta):
                raise AgentError(
                    f"mitigation 'ns_adam': the agent's optimiser has betas {betas}, expected "
                    f"{(self.beta, self.beta)} (another mitigation may set adam_betas too)"
                )
