"""Randomised trace estimates of a curvature operator from matrix-vector products.

* Hutchinson (1989): ``tr(A) ≈ (1/N) Σ_k z_kᵀ A z_k`` with Rademacher ``z_k``; unbiased, with
  variance ``2(‖A‖_F² − Σ A_ii²)/N``.
* Hutch++ (Meyer, Musco, Musco & Woodruff 2021): spend a third of the ``N`` products on a
  sketch ``Q = orth(A S)`` of the top eigenspace, take its trace exactly as ``tr(QᵀAQ)``
  (another third) and run Hutchinson on the deflated remainder ``(I−QQᵀ)A(I−QQᵀ)`` (last
  third). Error ``O(1/N)`` instead of ``O(1/√N)`` when the spectrum decays, as Hessians' do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from spectral.errors import SpectralError
from spectral.hvp import CurvatureOperator, HessianOperator
from spectral.lanczos import random_vector
from spectral.params import LossFn, Params

TRACE_METHODS = ("hutchinson", "hutch++")


@dataclass(frozen=True)
class TraceEstimate:
    """``trace``: the estimate; ``std_error``: standard error of its random part (0 if
    none is left); ``num_matvecs``: operator products spent."""

    trace: float
    std_error: float
    num_matvecs: int


def _rademacher_block(dim: int, count: int, generator: torch.Generator, device, dtype) -> Tensor:
    return torch.stack(
        [
            random_vector(dim, generator, dtype=dtype, device=device, distribution="rademacher")
            for _ in range(count)
        ],
        dim=1,
    )


def _apply(operator: CurvatureOperator, block: Tensor) -> Tensor:
    return torch.stack([operator.matvec(block[:, i]) for i in range(block.shape[1])], dim=1)


def _hutchinson_terms(operator: CurvatureOperator, z: Tensor) -> np.ndarray:
    return np.array([float(z[:, i] @ operator.matvec(z[:, i])) for i in range(z.shape[1])])


def _std_error(samples: np.ndarray) -> float:
    return (
        float(np.std(samples, ddof=1) / np.sqrt(len(samples))) if len(samples) > 1 else float("nan")
    )


def operator_trace(
    operator: CurvatureOperator,
    num_samples: int = 60,
    method: str = "hutch++",
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> TraceEstimate:
    """Trace of a symmetric operator from ``num_samples`` products (see module docstring).

    For ``hutch++`` ``num_samples`` is the total product budget (split in thirds, so at
    least 3); if the sketch already spans the whole space the trace is exact.
    """
    if method not in TRACE_METHODS:
        raise SpectralError(
            f"unknown trace method {method!r}; valid choices: {', '.join(TRACE_METHODS)}"
        )
    min_samples = 3 if method == "hutch++" else 1
    if not isinstance(num_samples, int) or num_samples < min_samples:
        raise SpectralError(
            f"num_samples must be an integer >= {min_samples} for {method}, got {num_samples!r}"
        )
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    dim, device = operator.dim, operator.device
    if method == "hutchinson":
        terms = _hutchinson_terms(
            operator, _rademacher_block(dim, num_samples, generator, device, dtype)
        )
        return TraceEstimate(float(terms.mean()), _std_error(terms), num_samples)
    sketch_size = min(num_samples // 3, dim)
    q, _ = torch.linalg.qr(
        _apply(operator, _rademacher_block(dim, sketch_size, generator, device, dtype))
    )
    exact_part = float(torch.trace(q.T @ _apply(operator, q)))
    used = 2 * sketch_size
    if sketch_size == dim:  # Q spans everything: tr(QᵀAQ) = tr(A)
        return TraceEstimate(exact_part, 0.0, used)
    residual_samples = num_samples - used
    g = _rademacher_block(dim, residual_samples, generator, device, dtype)
    g = g - q @ (q.T @ g)
    terms = _hutchinson_terms(operator, g)
    return TraceEstimate(
        exact_part + float(terms.mean()), _std_error(terms), used + residual_samples
    )


def hessian_trace(
    loss_fn: LossFn,
    params: Params,
    num_samples: int = 60,
    method: str = "hutch++",
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> TraceEstimate:
    """Trace of ``∇²_θ loss_fn()`` (``hutchinson`` or ``hutch++``, ``num_samples`` products)."""
    return operator_trace(
        HessianOperator(loss_fn, params), num_samples, method, generator=generator, dtype=dtype
    )
