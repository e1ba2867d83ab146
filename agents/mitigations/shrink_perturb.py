"""Shrink-and-perturb (Ash & Adams 2020), periodic or "soft" (every optimiser step)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from agents.base import AgentError, Batch, Mitigation
from agents.mitigations._common import (
    agent_networks,
    check_number,
    check_option,
    fresh_linear,
    generator_state,
    make_generator,
    named_parameters,
)
from agents.networks import MLP


def initial_draw(net: MLP, generator: torch.Generator) -> dict[str, Tensor]:
    """A fresh sample of every parameter of ``net`` from its initial distribution.

    Linear layers are redrawn with the network's own scheme and gains; LayerNorm starts at
    gain 1 / bias 0, which is what the initialiser "draws" for it.
    """
    draw: dict[str, Tensor] = {}
    for i, block in enumerate(net.hidden):
        fresh = fresh_linear(block.linear, net.init, net.hidden_gain, generator)
        draw[f"hidden.{i}.linear.weight"] = fresh.weight.detach()
        if fresh.bias is not None:
            draw[f"hidden.{i}.linear.bias"] = fresh.bias.detach()
        if isinstance(block.norm, nn.LayerNorm):
            draw[f"hidden.{i}.norm.weight"] = torch.ones_like(block.norm.weight)
            draw[f"hidden.{i}.norm.bias"] = torch.zeros_like(block.norm.bias)
    head = fresh_linear(net.head, net.init, net.head_gain, generator)
    draw["head.weight"] = head.weight.detach()
    if head.bias is not None:
        draw["head.bias"] = head.bias.detach()
    return draw


def _layer_parameters(nets: dict[str, MLP]) -> list[tuple[str, Tensor]]:
    """Parameters of the hidden blocks and heads (not extras such as PPO's ``log_std``)."""
    return [(n, p) for n, p in named_parameters(nets) if n.split(".")[1] in ("hidden", "head")]


@dataclass
class ShrinkPerturb(Mitigation):
    """Shrink-and-perturb: θ ← shrink·θ + perturb·ε on every trainable parameter.

    ``noise`` says exactly what ε is:

    * ``"init"`` -- a *fresh draw from the initialiser* each time (the network's own init
      scheme and gains, from a generator seeded from the agent seed). This is Juliani &
      Ash's soft shrink-and-perturb and also what Plasticine's code does
      (``p ← c·p + (1 − c)·p_fresh`` with a newly generated module, c = 0.999999).
    * ``"theta0"`` -- the *stored initial parameters* θ₀ (no randomness: a pull toward the
      start point, related to L2-init). Offered as a named option; it is not the
      fresh-draw variant.

    ``mode="soft"`` applies it after every optimiser step; ``mode="periodic"`` after every
    ``every_updates``-th update phase (Plasticine's "hard" variant used every 10 rollouts).
    The optimiser state is left as it is. Only the MLP's layers (hidden blocks and head) are
    touched: a parameter registered outside them (PPO's state-independent ``log_std``) has
    no initialiser to draw from and is left alone.

    Attributes:
        mode: "soft" | "periodic".
        shrink: λ; default 0.999999 (Plasticine's per-step coefficient). Periodic use
            normally wants a much smaller λ (Ash & Adams shrink strongly at task boundaries).
        perturb: σ; None means 1 − shrink (a convex mix that keeps the init scale).
        noise: "init" | "theta0".
        every_updates: period of the periodic mode, in update phases.
    """

    mode: str = "soft"
    shrink: float = 0.999999
    perturb: float | None = None
    noise: str = "init"
    every_updates: int = 10

    name = "shrink_perturb"
    MODES = ("soft", "periodic")
    NOISES = ("init", "theta0")

    def __post_init__(self) -> None:
        check_option(self.name, "mode", self.mode, self.MODES)
        check_option(self.name, "noise", self.noise, self.NOISES)
        check_number(self.name, "shrink", self.shrink, low=0.0, high=1.0)
        if self.perturb is not None:
            check_number(self.name, "perturb", self.perturb, low=0.0)
        check_number(self.name, "every_updates", self.every_updates, low=1, integer=True)
        self.generator: torch.Generator | None = None
        self.initial: dict[str, Tensor] = {}
        self.updates = 0

    @property
    def sigma(self) -> float:
        return 1.0 - self.shrink if self.perturb is None else self.perturb

    def attach(self, agent: Any) -> None:
        if self.generator is None:
            self.generator = make_generator(agent, self.name)
        if self.noise == "theta0":
            nets = agent_networks(self.name, agent)
            self.initial = {name: p.detach().clone() for name, p in _layer_parameters(nets)}

    def apply(self, agent: Any) -> None:
        """One shrink-and-perturb of every network (used by both modes; callable directly)."""
        assert self.generator is not None, "attach() first"
        with torch.no_grad():
            for net_name, net in agent_networks(self.name, agent).items():
                if self.noise == "init":
                    noise = {
                        f"{net_name}.{k}": v for k, v in initial_draw(net, self.generator).items()
                    }
                else:
                    noise = self.initial
                for name, param in _layer_parameters({net_name: net}):
                    param.mul_(self.shrink).add_(self.sigma * noise[name].to(param.device))

    def after_step(self, agent: Any) -> None:
        if self.mode == "soft":
            self.apply(agent)

    def after_update(self, agent: Any, batch: Batch | None) -> None:
        if self.mode == "periodic":
            self.updates += 1
            if self.updates % self.every_updates == 0:
                self.apply(agent)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "updates": self.updates,
            "initial": {k: v.clone() for k, v in self.initial.items()},
        }
        if self.generator is not None:
            state["generator"] = generator_state(self.generator)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        if self.initial and set(state["initial"]) != set(self.initial):
            raise AgentError(
                "mitigation 'shrink_perturb': checkpoint parameters do not match the agent's"
            )
        # a checkpoint's tensors (on any device) go where the attached agent's are
        self.initial = {k: v.detach().clone().to(self.initial[k].device if self.initial else v.device)
                        for k, v in state["initial"].items()}
        if "generator" in state:
            if self.generator is None:
                self.generator = torch.Generator()
            self.generator.set_state(state["generator"])
