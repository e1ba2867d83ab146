"""Continual backprop (Dohare et al., Nature 2024): utility-tracked unit replacement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from agents.base import AgentError, Mitigation
from agents.mitigations._common import (
    HiddenLayer,
    agent_networks,
    check_number,
    generator_state,
    hidden_layers,
    make_generator,
    reinitialize_units,
    require_hidden_layers,
)


@dataclass
class ContinualBackprop(Mitigation):
    """CBP: replace mature, low-utility hidden units at a small rate, after every step.

    Per hidden unit i, the *contribution utility* is a running average
    ``u_i ← decay·u_i + (1 − decay)·E|h_i|·Σ_k |w_ki|`` (mean |activation| on the training
    minibatch of the step × summed |outgoing weights|; a CReLU unit sums its two features),
    bias-corrected as ``u_i / (1 − decay^age_i)`` when ranking, as in Dohare et al.'s code.
    Every optimiser step each unit's age grows by one; units older than
    ``maturity_threshold`` are eligible; ``replacement_rate × #eligible`` units per layer
    are due, accumulated across steps until at least one whole unit is due; the due number
    of eligible units with the lowest utility are re-initialised (incoming weights from the
    initial distribution, outgoing weights zeroed, Adam moments of those rows/columns
    zeroed), with utility and age reset to 0.

    Activations are read by forward hooks from the last forward pass run with gradients
    enabled before the step (the training minibatch); passes under ``no_grad`` (acting,
    target computation) are ignored.

    Attributes:
        replacement_rate: fraction of eligible units replaced per step; 1e-4 is Dohare et
            al.'s Slippery-Ant value (their cfg ``rr: 1e-4``; the spectral-collapse paper's
            CBP baseline reports 1e-7 with wd 1e-3).
        maturity_threshold: optimiser steps before a unit may be replaced (RL: 10,000).
        decay: utility running-average decay (0.99).
    """

    replacement_rate: float = 1e-4
    maturity_threshold: int = 10_000
    decay: float = 0.99

    name = "cbp"

    def __post_init__(self) -> None:
        check_number(self.name, "replacement_rate", self.replacement_rate, low=0.0, high=1.0)
        check_number(self.name, "maturity_threshold", self.maturity_threshold, low=0, integer=True)
        check_number(self.name, "decay", self.decay, low=0.0, high=1.0, high_open=True)
        self.generator: torch.Generator | None = None
        self.utility: dict[str, Tensor] = {}
        self.age: dict[str, Tensor] = {}
        self.accumulated: dict[str, Tensor] = {}
        self.last_replaced: dict[str, Tensor] = {}
        self._features: dict[str, Tensor] = {}
        self._handles: list[Any] = []

    def attach(self, agent: Any) -> None:
        nets = agent_networks(self.name, agent)
        require_hidden_layers(self.name, nets)
        if self.generator is None:
            self.generator = make_generator(agent, self.name)
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._features = {}
        for layer in hidden_layers(nets):
            device = layer.block.linear.weight.device
            self.utility[layer.key] = torch.zeros(layer.width, device=device)
            self.age[layer.key] = torch.zeros(layer.width, dtype=torch.long, device=device)
            # a host scalar: int() of it each step must not wait for the device
            self.accumulated[layer.key] = torch.zeros((), dtype=torch.float64, device="cpu")
            act = layer.block.act
            self._handles.append(act.register_forward_hook(self._recorder(layer.key, act)))

    def _recorder(self, key: str, module: nn.Module):
        # A closure (not a bound method) so that a deepcopy of the network (e.g. a target
        # network) shares it; the identity check then ignores the copy's forward passes.
        def hook(mod: nn.Module, args: Any, output: Tensor) -> None:
            if mod is module and torch.is_grad_enabled():
                self._features[key] = output.detach()

        return hook

    def after_step(self, agent: Any) -> None:
        assert self.generator is not None, "attach() first"
        for layer in hidden_layers(agent_networks(self.name, agent)):
            key = layer.key
            self.age[key] += 1
            features = self._features.pop(key, None)
            if features is not None:
                self._update_utility(layer, features)
            self._replace(layer, agent.optimizer)

    def _update_utility(self, layer: HiddenLayer, features: Tensor) -> None:
        mean_abs_activation = features.abs().reshape(-1, features.shape[-1]).mean(dim=0)
        outgoing = layer.outgoing.weight.detach().abs().sum(dim=0)
        contribution = layer.per_unit(mean_abs_activation * outgoing)
        self.utility[layer.key].mul_(self.decay).add_((1.0 - self.decay) * contribution)

    def _replace(self, layer: HiddenLayer, optimizer: torch.optim.Optimizer) -> None:
        key = layer.key
        self.last_replaced[key] = torch.zeros(0, dtype=torch.long, device=self.age[key].device)
        eligible = torch.nonzero(self.age[key] > self.maturity_threshold).flatten()
        if eligible.numel() == 0 or self.replacement_rate == 0.0:
            return
        self.accumulated[key] += self.replacement_rate * eligible.numel()
        due = int(self.accumulated[key])
        if due < 1:
            return
        self.accumulated[key] -= due
        age = self.age[key][eligible].to(self.utility[key].dtype)
        corrected = self.utility[key][eligible] / (1.0 - self.decay**age)
        lowest = torch.topk(corrected, k=min(due, eligible.numel()), largest=False).indices
        units = eligible[lowest]
        reinitialize_units(layer, units, self.generator, optimizer)
        self.utility[key][units] = 0.0
        self.age[key][units] = 0
        self.last_replaced[key] = units

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "utility": {k: v.clone() for k, v in self.utility.items()},
            "age": {k: v.clone() for k, v in self.age.items()},
            "accumulated": {k: v.clone() for k, v in self.accumulated.items()},
        }
        if self.generator is not None:
            state["generator"] = generator_state(self.generator)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for field in ("utility", "age", "accumulated"):
            current: dict[str, Tensor] = getattr(self, field)
            loaded = state[field]
            for key, value in loaded.items():
                if key in current and current[key].shape != value.shape:
                    raise AgentError(
                        f"mitigation 'cbp': checkpoint {field} of {key!r} has shape "
                        f"{tuple(value.shape)}, the agent's layer has {tuple(current[key].shape)}"
                    )
                target = current.get(key)
                current[key] = (
                    value.detach().clone()
                    if target is None
                    else value.detach().clone().to(target.device)
                )
        if "generator" in state:
            if self.generator is None:
                self.generator = torch.Generator()
            self.generator.set_state(state["generator"])
