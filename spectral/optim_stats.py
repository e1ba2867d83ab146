"""Optimisation diagnostics: gradient, weight and distance norms, one-step gain.

All use :func:`torch.autograd.grad` (``.grad`` fields are never read or written).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from spectral.errors import SpectralError
from spectral.params import (
    LossFn,
    Params,
    as_parameter_list,
    evaluate_scalar_loss,
    flatten,
    gradients,
)


@dataclass(frozen=True)
class GradientStats:
    """``norm``: ``‖∇_θ L‖₂``; ``zero_fraction``: fraction of gradient entries exactly 0
    (a cheap sign of dead units: their incoming weights get no gradient)."""

    norm: float
    zero_fraction: float


def gradient_stats_of(flat_gradient: Tensor) -> GradientStats:
    """:class:`GradientStats` of an already computed flat gradient."""
    g = flat_gradient.detach()
    return GradientStats(
        norm=float(torch.linalg.vector_norm(g.to(torch.float64))),
        zero_fraction=float((g == 0).to(torch.float64).mean()),
    )


def gradient_stats(loss_fn: LossFn, params: Params) -> GradientStats:
    """Norm and zero fraction of ``∇_θ loss_fn()`` (one forward/backward)."""
    plist = as_parameter_list(params)
    grads = gradients(evaluate_scalar_loss(loss_fn), plist, create_graph=False)
    return gradient_stats_of(flatten(grads))


def gradient_norm(loss_fn: LossFn, params: Params) -> float:
    """``‖∇_θ loss_fn()‖₂`` over all of ``params``."""
    return gradient_stats(loss_fn, params).norm


def weight_norm(params: Params) -> float:
    """``‖θ‖₂``: L2 norm of all parameters concatenated."""
    plist = as_parameter_list(params)
    return float(
        torch.linalg.vector_norm(flatten([p.detach() for p in plist], dtype=torch.float64))
    )


def distance_from_init(params: Params, init_params: Sequence[Tensor]) -> float:
    """``‖θ − θ₀‖₂`` with ``init_params`` the initial values, in the same order and shapes."""
    plist = as_parameter_list(params)
    inits = list(init_params)
    if len(inits) != len(plist) or any(
        a.shape != b.shape for a, b in zip(plist, inits, strict=True)
    ):
        raise SpectralError(
            f"init_params shapes {[tuple(t.shape) for t in inits]} do not match parameter shapes "
            f"{[tuple(p.shape) for p in plist]}"
        )
    diff = [
        p.detach().to(torch.float64) - q.detach().to(device=p.device, dtype=torch.float64)
        for p, q in zip(plist, inits, strict=True)
    ]
    return float(torch.linalg.vector_norm(flatten(diff)))


def one_step_gain(loss_fn: LossFn, params: Params, lr: float, eval_loss_fn: LossFn) -> float:
    """Loss decrease on a fresh batch after one plain gradient step on the training batch.

    ``gain = L_eval(θ) − L_eval(θ − lr ∇_θ L_train(θ))``: positive when the step helps
    (a one-step-gain style "optimisation readiness", cf. arXiv 2605.09044). The parameters
    are restored bit for bit afterwards, also if a loss raises.
    """
    if not lr > 0:
        raise SpectralError(f"lr must be > 0, got {lr!r}")
    plist = as_parameter_list(params)
    grads = gradients(evaluate_scalar_loss(loss_fn), plist, create_graph=False)
    with torch.no_grad():
        before = float(eval_loss_fn())
        saved = [p.detach().clone() for p in plist]
        try:
            for p, g in zip(plist, grads, strict=True):
                p.sub_(lr * g)
            after = float(eval_loss_fn())
        finally:
            for p, s in zip(plist, saved, strict=True):
                p.copy_(s)
    return before - after
