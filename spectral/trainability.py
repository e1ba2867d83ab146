"""Trainability: how well a throw-away copy of a network fits a fixed regression task.

The plasticity probe of Lyle et al. (2022, arXiv 2204.09560; 2023, arXiv 2303.01486):
copy the network, train the copy for a fixed budget of ``T`` full-batch Adam steps on a
fixed task ``(X, Y)``, and read the fitting curve

    L_t = loss(f_{θ_t}(X), Y),   t = 0 … T   (θ_0 = the network's parameters),

as ``final = L_T`` and ``auc = (1/T) ∫_0^T L_t dt`` (trapezoid on the integer grid: the
mean loss over the budget). Run on a freshly initialised network of the same architecture
with the same data and budget, the same two numbers give the reference a ratio is taken
against. The copy is thrown away: the network, its hooks' owners and the global RNG never
see it (:func:`network_copy`).

Losses (``loss``):

* ``"mse"``: ``mean_{n,j} (f(x_n)_j − y_nj)²``; with targets standardised per output
  (:func:`standardized`) a constant predictor scores 1, so L_t is the fraction of target
  variance left unexplained.
* ``"kl"``: ``mean_n Σ_a p_na (log p_na − log softmax f(x_n)_a)`` for target distributions
  ``p`` (rows summing to 1); 0 exactly when the network's softmax equals the targets.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from spectral.errors import SpectralError

__all__ = ["FitCurve", "FIT_LOSSES", "fit_curve", "network_copy", "standardized"]

FIT_LOSSES = ("mse", "kl")


@dataclass(frozen=True)
class FitCurve:
    """The full-batch loss before each of ``T`` optimiser steps and after the last.

    Attributes:
        losses: ``L_0 … L_T`` (length ``T + 1``).
    """

    losses: np.ndarray

    @property
    def initial(self) -> float:
        return float(self.losses[0])

    @property
    def final(self) -> float:
        return float(self.losses[-1])

    @property
    def auc(self) -> float:
        """Mean loss over the budget: trapezoid of ``L_t`` over ``t = 0 … T``, divided by T."""
        area = self.losses.sum() - 0.5 * (self.losses[0] + self.losses[-1])
        return float(area / (len(self.losses) - 1))


def network_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` with every module hook removed and gradients detached.

    Hooks are dropped because a mitigation's hook (e.g. continual backprop's utility
    recorder) is a bound method of the *agent's* mitigation: run on a copy it would update
    the agent's state.
    """
    twin = copy.deepcopy(module)
    for m in twin.modules():
        for hooks in (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks,
                      m._backward_pre_hooks):
            hooks.clear()
    for p in twin.parameters():
        p.grad = None
    return twin


def standardized(targets: Tensor) -> Tensor:
    """Targets shifted and scaled to mean 0, standard deviation 1 per output column (a
    column with no spread is only centred)."""
    if targets.dim() != 2 or targets.shape[0] < 2:
        raise SpectralError(f"targets must be a (N >= 2, outputs) matrix, got shape {tuple(targets.shape)}")
    centred = targets - targets.mean(dim=0, keepdim=True)
    std = centred.std(dim=0, keepdim=True)
    return centred / torch.where(std > 0, std, torch.ones_like(std))


def _loss(output: Tensor, targets: Tensor, kind: str) -> Tensor:
    if kind == "mse":
        return (output - targets).square().mean()
    log_q = F.log_softmax(output, dim=-1)
    return (torch.xlogy(targets, targets) - targets * log_q).sum(-1).mean()


def fit_curve(
    module: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    steps: int,
    lr: float = 1e-3,
    loss: str = "mse",
) -> FitCurve:
    """Train a :func:`network_copy` of ``module`` on ``(inputs, targets)`` with a fresh Adam
    (step size ``lr``) for ``steps`` full-batch steps; return the fitting curve.

    ``module`` itself is never modified. Deterministic: no random number is drawn.
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise SpectralError(f"steps must be a positive integer, got {steps!r}")
    if not lr > 0:
        raise SpectralError(f"lr must be > 0, got {lr!r}")
    if loss not in FIT_LOSSES:
        raise SpectralError(f"unknown fit loss {loss!r}; valid choices: {', '.join(FIT_LOSSES)}")
    model = network_copy(module).requires_grad_(True)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = np.empty(steps + 1)
    with torch.enable_grad():
        output = model(inputs)
        if output.shape != targets.shape:
            raise SpectralError(f"network output shape {tuple(output.shape)} does not match "
                                f"targets shape {tuple(targets.shape)}")
        for t in range(steps):
            if t:
                output = model(inputs)
            value = _loss(output, targets, loss)
            losses[t] = value.item()
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
    with torch.no_grad():
        losses[steps] = _loss(model(inputs), targets, loss).item()
    return FitCurve(losses)
