"""Spectral-norm regularisation, the spectral-collapse paper's baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from agents.base import Mitigation
from agents.mitigations._common import agent_networks, check_number
from agents.mitigations.l2 import add_to_grad


def spectral_norm_penalty(net: nn.Module, target: float = 2.0) -> Tensor:
    """``Σ_W (σ_max(W)² − target)² + Σ_b ‖b‖² + Σ_LN ‖γ − 1‖²`` over a network's layers.

    σ_max is the exact largest singular value (the paper's 10 power iterations approximate
    it); biases include LayerNorm biases.
    """
    terms = []
    for module in net.modules():
        if isinstance(module, nn.Linear):
            sigma = torch.linalg.matrix_norm(module.weight, ord=2)
            terms.append((sigma**2 - target) ** 2)
            if module.bias is not None:
                terms.append(module.bias.pow(2).sum())
        elif isinstance(module, nn.LayerNorm):
            if module.weight is not None:
                terms.append((module.weight - 1.0).pow(2).sum())
            if module.bias is not None:
                terms.append(module.bias.pow(2).sum())
    return torch.stack(terms).sum()


@dataclass
class SpectralNormReg(Mitigation):
    """Spectral-norm regularisation: loss + λ·[(σ_max(W)² − 2)² + ‖b‖² + ‖γ_LN − 1‖²].

    The spectral-collapse paper's baseline (Prakash et al. 2025): every weight matrix's
    squared top singular value is pulled toward 2, biases toward 0 and LayerNorm gains
    toward 1. The penalty's gradient is added to ``.grad`` before the optimiser step.

    Attributes:
        coefficient: λ; the paper sweeps {1e-2, 1e-3, 1e-4}; default 1e-3.
        target: the target squared spectral norm (2 in the paper).
    """

    coefficient: float = 1e-3
    target: float = 2.0

    name = "spectral_norm_reg"

    def __post_init__(self) -> None:
        check_number(self.name, "coefficient", self.coefficient, low=0.0)
        check_number(self.name, "target", self.target, low=0.0)

    def before_optimizer_step(self, agent: Any) -> None:
        for net in agent_networks(self.name, agent).values():
            params = [p for p in net.parameters() if p.requires_grad]
            with torch.enable_grad():
                penalty = self.coefficient * spectral_norm_penalty(net, self.target)
                grads = torch.autograd.grad(penalty, params, allow_unused=True)
            with torch.no_grad():
                for param, grad in zip(params, grads, strict=True):
                    if grad is not None:
                        add_to_grad(param, grad)
