"""L2 (coupled weight decay) and L2-init (regularisation toward the initial parameters)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from agents.base import AgentError, Mitigation
from agents.mitigations._common import agent_networks, check_number, check_option, named_parameters


def add_to_grad(param: Tensor, term: Tensor) -> None:
    """``param.grad += term`` (creating the gradient if the loss did not reach ``param``)."""
    if param.grad is None:
        param.grad = term.detach().clone()
    else:
        param.grad.add_(term)


@dataclass
class L2(Mitigation):
    """L2: coupled weight decay, ``g ← g + weight_decay·θ`` before the optimiser step.

    As in the spectral-collapse paper (Prakash et al. 2025): the decay is added to the
    gradient (so Adam normalises it, unlike AdamW's decoupled decay) on every trainable
    parameter of the trained networks -- weights, biases and LayerNorm gain/bias; DQN's
    target network is not trained and is left alone. Equivalent to adding
    ``weight_decay/2·‖θ‖²`` to the loss.

    Attributes:
        weight_decay: the coefficient; 1e-3 is the paper's choice for L2-ER everywhere
            (swept over {1e-3, 1e-4, 1e-5}).
    """

    weight_decay: float = 1e-3

    name = "l2"

    def __post_init__(self) -> None:
        check_number(self.name, "weight_decay", self.weight_decay, low=0.0)

    def before_optimizer_step(self, agent: Any) -> None:
        with torch.no_grad():
            for _, param in named_parameters(agent_networks(self.name, agent)):
                add_to_grad(param, self.weight_decay * param)


@dataclass
class L2Init(Mitigation):
    """L2-init (regenerative regularisation): a penalty pulling θ toward its initial value θ₀.

    ``variant="squared"`` is Kumar et al.'s L2 Init (arXiv 2308.11958): loss +
    ``coefficient·‖θ − θ₀‖²``, i.e. ``g ← g + 2·coefficient·(θ − θ₀)``.
    ``variant="abs"`` is the non-squared form used by Plasticine and Juliani & Ash:
    loss + ``coefficient·Σ|θ − θ₀|``, i.e. ``g ← g + coefficient·sign(θ − θ₀)``.
    Both are added to the gradient before the optimiser step (coupled), on every trainable
    parameter. θ₀ is stored at ``attach`` (again after a fresh re-initialisation) and saved
    in the checkpoint.

    Attributes:
        coefficient: λ. Kumar et al. tune it per problem (1e-2 … 1e-5); the default 1e-3
            matches this package's L2 default so the two are comparable out of the box.
        variant: "squared" (Kumar et al.) or "abs" (Plasticine, Juliani & Ash).
    """

    coefficient: float = 1e-3
    variant: str = "squared"

    name = "l2_init"
    VARIANTS = ("squared", "abs")

    def __post_init__(self) -> None:
        check_number(self.name, "coefficient", self.coefficient, low=0.0)
        check_option(self.name, "variant", self.variant, self.VARIANTS)
        self.initial: dict[str, Tensor] = {}

    def attach(self, agent: Any) -> None:
        self.initial = {
            name: param.detach().clone()
            for name, param in named_parameters(agent_networks(self.name, agent))
        }

    def before_optimizer_step(self, agent: Any) -> None:
        with torch.no_grad():
            for name, param in named_parameters(agent_networks(self.name, agent)):
                delta = param - self.initial[name]
                if self.variant == "squared":
                    add_to_grad(param, 2.0 * self.coefficient * delta)
                else:
                    add_to_grad(param, self.coefficient * torch.sign(delta))

    def state_dict(self) -> dict[str, Any]:
        return {"initial": {k: v.clone() for k, v in self.initial.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        initial = state["initial"]
        if self.initial and set(initial) != set(self.initial):
            raise AgentError(
                f"mitigation 'l2_init': checkpoint parameters {sorted(initial)} do not match the "
                f"agent's {sorted(self.initial)}"
            )
        self.initial = {
            k: v.detach().clone().to(self.initial[k].device)
            if k in self.initial
            else v.detach().clone()
            for k, v in initial.items()
        }
