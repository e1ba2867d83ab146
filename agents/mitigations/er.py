"""ER (effective-rank regularisation) and L2-ER, as in the spectral-collapse paper."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from agents.base import AgentError, Batch, Mitigation
from agents.mitigations._common import (
    agent_networks,
    capture_features,
    check_betas,
    check_number,
    network_input,
    replace_config,
    require_hidden_layers,
)
from agents.mitigations.l2 import L2
from spectral import features as feature_stats


@dataclass
class ER(Mitigation):
    """ER: separate gradient-ascent steps on the effective rank of hidden features.

    ``L_ER = −Σ_networks mean_layers erank(Φ_l)`` where Φ_l are hidden layer l's
    post-activation features on the update batch's observations (PPO: the mean over actor
    layers plus the mean over critic layers; DQN: the Q network's layers) and ``erank`` is
    :func:`spectral.effective_rank`, the function the feature probes report (one definition:
    the rank pushed is the rank measured). After each update
    phase the mitigation takes ``steps_per_update`` plain SGD steps θ ← θ − lr·∇L_ER that
    bypass the optimiser (Adam's moments are untouched) and leave ``.grad`` alone, exactly as
    the spectral-collapse paper (Prakash et al. 2025) does.

    Attributes:
        lr: η_ER; the paper's RL value is 1e-6 (swept {1e-5, 1e-6, 1e-7}; supervised
            1e-2…1e-4).
        steps_per_update: ER steps per update phase; the paper takes one per PPO epoch on
            the whole 2,048-step rollout, i.e. 10 per rollout. Here they are taken after the
            phase, on its batch (PPO: the rollout; DQN: a replay batch).
    """

    lr: float = 1e-6
    steps_per_update: int = 10

    name = "er"

    def __post_init__(self) -> None:
        check_number(self.name, "lr", self.lr, low=0.0)
        check_number(self.name, "steps_per_update", self.steps_per_update, low=0, integer=True)
        self.last_erank: dict[str, float] = {}

    def attach(self, agent: Any) -> None:
        require_hidden_layers(self.name, agent_networks(self.name, agent))

    def er_loss(self, agent: Any, batch: Batch | None) -> Tensor:
        """``L_ER`` on ``batch`` (records each layer's erank in ``last_erank``)."""
        nets = agent_networks(self.name, agent)
        loss = torch.zeros((), device=next(next(iter(nets.values())).parameters()).device)
        for net_name, net in nets.items():
            features = capture_features(net, network_input(net, batch, self.name))
            eranks = {name: feature_stats.effective_rank(phi) for name, phi in features.items()}
            for name, value in eranks.items():
                self.last_erank[f"{net_name}.{name}"] = float(value.detach())
            loss = loss - torch.stack(list(eranks.values())).mean()
        return loss

    def step(self, agent: Any, batch: Batch | None) -> None:
        """One ER step θ ← θ − lr·∇L_ER (outside the optimiser)."""
        params = [
            p
            for net in agent_networks(self.name, agent).values()
            for p in net.parameters()
            if p.requires_grad
        ]
        with torch.enable_grad():
            loss = self.er_loss(agent, batch)
            grads = torch.autograd.grad(loss, params, allow_unused=True)
        with torch.no_grad():
            for param, grad in zip(params, grads, strict=True):
                if grad is not None:
                    param.sub_(self.lr * grad)

    def after_update(self, agent: Any, batch: Batch | None) -> None:
        for _ in range(self.steps_per_update):
            self.step(agent, batch)


@dataclass
class L2ER(Mitigation):
    """L2-ER: L2 (coupled weight decay) and ER together, the spectral-collapse paper's method.

    With ``adam_betas=(0.99, 0.99)`` (default) the agent's Adam uses β1 = β2 = 0.99 as in the
    paper's RL runs (Slippery Ant; (0.9, 0.999) was used only for plain backprop); set
    ``adam_betas=None`` to keep the agent's own betas.

    Attributes:
        weight_decay: L2 coefficient (paper: 1e-3).
        lr: ER step size (paper, RL: 1e-6).
        steps_per_update: ER steps per update phase (paper: 10 per rollout).
        adam_betas: Adam betas set through the agent config, or None.
    """

    weight_decay: float = 1e-3
    lr: float = 1e-6
    steps_per_update: int = 10
    adam_betas: tuple[float, float] | None = (0.99, 0.99)

    name = "l2_er"

    def __post_init__(self) -> None:
        check_number(self.name, "weight_decay", self.weight_decay, low=0.0)
        check_number(self.name, "lr", self.lr, low=0.0)
        check_number(self.name, "steps_per_update", self.steps_per_update, low=0, integer=True)
        if self.adam_betas is not None:
            self.adam_betas = check_betas(self.name, self.adam_betas)
        self.l2 = L2(self.weight_decay)
        self.er = ER(self.lr, self.steps_per_update)

    def configure(self, config: Any) -> Any:
        if self.adam_betas is None:
            return config
        return replace_config(self.name, config, adam_betas=self.adam_betas)

    def attach(self, agent: Any) -> None:
        if self.adam_betas is not None:
            for group in agent.optimizer.param_groups:
                if tuple(group.get("betas", ())) != self.adam_betas:
                    raise AgentError(
                        f"mitigation 'l2_er': the agent's optimiser has betas {group.get('betas')}, "
                        f"expected {self.adam_betas} (another mitigation may set adam_betas too)"
                    )
        self.l2.attach(agent)
        self.er.attach(agent)

    def before_optimizer_step(self, agent: Any) -> None:
        self.l2.before_optimizer_step(agent)

    def after_update(self, agent: Any, batch: Batch | None) -> None:
        self.er.after_update(agent, batch)
