"""Statistics of a feature (activation) matrix ``Φ`` of shape ``(batch, units)``.

Papers use the same words for different quantities; each function here is named after its
exact definition and says whose variant it is. Ranks are computed from the singular values
``σ₁ ≥ σ₂ ≥ …`` of ``Φ`` in float64.

=====================  ===========================================================
``effective_rank``     ``exp(−Σ pᵢ log pᵢ)``, ``pᵢ = σᵢ/Σσ`` (Roy & Vetterli 2007; the ER
                       regulariser of the spectral-collapse paper)
``srank``              smallest ``k`` with ``Σ_{i≤k} σᵢ ≥ 0.99 Σσ`` (Kumar et al. 2021; the
                       "stable rank" of Plasticine and Dohare et al.; alias ``stable_rank``,
                       NOT ``‖Φ‖_F²/‖Φ‖₂²``)
``feature_rank``       ``#{σᵢ(Φ/√batch) > ε}`` (Lyle et al. 2022, ε = 0.01)
``numerical_rank``     ``#{σᵢ > tol}``, ``tol = σ₁·max(batch, units)·ε_mach`` by default
``redo_scores``        ``sᵢ = mean_b|Φ_bi| / mean_j mean_b|Φ_bj|`` (Sokar et al. 2023, ReDo)
``dormant_fraction``   fraction of units with ``sᵢ ≤ τ`` (ReDo; τ = 0.025 as in Plasticine)
``dead_fraction``      fraction of units that are exactly 0 on every sample (Dohare et al. 2024)
``zero_fraction``      fraction of entries that are exactly 0 (Juliani & Ash 2024)
``feature_norm``       mean over samples of the row norm ``‖Φ_b‖₂``; on pre-activations this is
                       the pre-activation norm Moalla et al. 2024 tie to PPO collapse
=====================  ===========================================================
"""

from __future__ import annotations

import torch
from torch import Tensor

from spectral.errors import SpectralError


def check_features(features: Tensor) -> Tensor:
    """Raise :class:`SpectralError` unless ``features`` is a finite 2-D floating tensor."""
    if not isinstance(features, Tensor):
        raise SpectralError(f"features must be a torch.Tensor, got {type(features).__name__}")
    if features.ndim != 2:
        raise SpectralError(
            f"features must be 2-D (batch, units), got shape {tuple(features.shape)}; "
            "flatten per-sample dimensions first, e.g. features.flatten(1)"
        )
    if features.shape[0] == 0 or features.shape[1] == 0:
        raise SpectralError(f"features must be non-empty, got shape {tuple(features.shape)}")
    if not features.is_floating_point():
        raise SpectralError(f"features must be floating point, got {features.dtype}")
    return features


def singular_values(features: Tensor) -> Tensor:
    """Singular values of ``Φ`` in descending order, computed in float64 (differentiable)."""
    return torch.linalg.svdvals(check_features(features).to(torch.float64))


def effective_rank(features: Tensor, *, log_eps: float = 0.0) -> Tensor:
    """Roy & Vetterli effective rank ``exp(−Σ pᵢ log pᵢ)`` with ``pᵢ = σᵢ / Σσ``.

    Returns a 0-dim tensor in ``features``' dtype, differentiable (for the ER regulariser).
    ``0 log 0 = 0`` by default; ``log_eps > 0`` uses ``log(pᵢ + log_eps)`` as the
    paper's code does (1e-8) to keep gradients finite when some ``σᵢ = 0``. A zero matrix
    has effective rank 0.
    """
    if log_eps < 0:
        raise SpectralError(f"log_eps must be >= 0, got {log_eps}")
    sigma = singular_values(features)
    total = sigma.sum()
    if total == 0:
        return torch.zeros((), dtype=features.dtype, device=features.device)
    p = sigma / total
    entropy = (
        -(p * torch.log(p + log_eps)).sum() if log_eps > 0 else -torch.special.xlogy(p, p).sum()
    )
    return torch.exp(entropy).to(features.dtype)


def srank(features: Tensor, threshold: float = 0.99) -> int:
    """Smallest ``k`` whose top-``k`` singular values cover ``threshold`` of ``Σσ``.

    Kumar et al. 2021 ``srank_δ`` with ``δ = 1 − threshold``; Plasticine's and Dohare et
    al.'s "stable rank"/"approximate rank". 0 for a zero matrix.
    """
    if not 0 < threshold <= 1:
        raise SpectralError(f"threshold must be in (0, 1], got {threshold}")
    sigma = singular_values(features)
    total = sigma.sum()
    if total == 0:
        return 0
    covered = torch.cumsum(sigma, 0) / total
    return min(int((covered < threshold).sum()) + 1, sigma.numel())


stable_rank = srank  # the name Plasticine / Dohare et al. use, with *this* definition


def feature_rank(features: Tensor, eps: float = 0.01) -> int:
    """Lyle et al. 2022 feature rank ``#{σᵢ(Φ/√batch) > eps}``.

    Scaling by ``1/√batch`` makes the singular values those of the empirical second moment
    ``ΦᵀΦ/batch`` (square-rooted), so the count does not grow with the batch size.
    """
    if eps < 0:
        raise SpectralError(f"eps must be >= 0, got {eps}")
    sigma = singular_values(features) / features.shape[0] ** 0.5
    return int((sigma > eps).sum())


def numerical_rank(features: Tensor, tol: float | None = None) -> int:
    """Number of singular values ``> tol``.

    Default ``tol = σ₁ · max(batch, units) · ε_mach`` (float64 ε, the LAPACK/NumPy
    ``matrix_rank`` rule); pass an absolute ``tol`` to count near-zero directions.
    """
    if tol is not None and tol < 0:
        raise SpectralError(f"tol must be >= 0, got {tol}")
    sigma = singular_values(features)
    if tol is None:
        tol = float(sigma[0]) * max(features.shape) * torch.finfo(torch.float64).eps
    return int((sigma > tol).sum())


def redo_scores(activations: Tensor) -> Tensor:
    """ReDo per-unit scores ``sᵢ = mean_b|h_bi| / mean_j mean_b|h_bj|`` (shape ``(units,)``).

    A layer whose activations are all 0 gets scores 0 (every unit dormant).
    """
    mean_abs = check_features(activations).abs().mean(dim=0)
    layer_mean = mean_abs.mean()
    if layer_mean == 0:
        return torch.zeros_like(mean_abs)
    return mean_abs / layer_mean


def dormant_fraction(activations: Tensor, tau: float = 0.025) -> float:
    """Fraction of units with ReDo score ``sᵢ ≤ tau`` (Sokar et al. 2023)."""
    if tau < 0:
        raise SpectralError(f"tau must be >= 0, got {tau}")
    return float((redo_scores(activations) <= tau).to(torch.float64).mean())


def dead_fraction(activations: Tensor) -> float:
    """Fraction of units that are exactly 0 on every sample (Dohare et al. 2024 "dead units")."""
    return float((check_features(activations) == 0).all(dim=0).to(torch.float64).mean())


def zero_fraction(activations: Tensor) -> float:
    """Fraction of entries exactly 0 (Juliani & Ash 2024's dormant-neuron variant)."""
    return float((check_features(activations) == 0).to(torch.float64).mean())


def feature_norm(features: Tensor) -> Tensor:
    """``mean_b ‖Φ_b‖₂``: mean L2 norm of the per-sample feature vectors (0-dim tensor)."""
    return torch.linalg.vector_norm(check_features(features), dim=1).mean()
