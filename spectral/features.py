"""Statistics of a feature (activation) matrix ``Φ`` of shape ``(batch, units)``.

Papers use the same words for different quantities; each function here is named after its
exact definition and says whose variant it is. Ranks are computed from the singular values
``σ₁ ≥ σ₂ ≥ …`` of ``Φ`` in float64.

=====================  ===========================================================
``effective_rank``     ``exp(−Σ pᵢ log(pᵢ + 1e-8))``, ``pᵢ = σᵢ/Σσ`` (Roy & Vetterli 2007, with
                       the spectral-collapse paper's guard): the one definition the probes
                       report and the ER regulariser differentiates
``srank``              smallest ``k`` with ``Σ_{i≤k} σᵢ ≥ 0.99 Σσ`` (Kumar et al. 2021; the
                       "stable rank" of Plasticine and Dohare et al.; alias ``stable_rank``,
                       NOT ``‖Φ‖_F²/‖Φ‖₂²``)
``feature_rank``       ``#{σᵢ(Φ/√batch) > ε}`` (Lyle et al. 2022, ε = 0.01)
``numerical_rank``     ``#{σᵢ > tol}``, ``tol = σ₁·max(batch, units)·ε_mach`` by default
``redo_scores``        ``sᵢ = mean_b|Φ_bi| / mean_j mean_b|Φ_bj|`` per unit (Sokar et al. 2023,
                       ReDo); the ReDo mitigation recycles by these very scores
``dormant_fraction``   fraction of units with ``sᵢ ≤ τ`` (ReDo; τ = 0.025 as in Plasticine)
``dead_fraction``      fraction of units that are exactly 0 on every sample (Dohare et al. 2024)
``zero_fraction``      fraction of entries that are exactly 0 (Juliani & Ash 2024)
``saturated_fraction`` fraction of units whose ``|pre-activation| > bound`` on every sample
                       (tanh's counterpart of ``dead_fraction``)
``feature_norm``       mean over samples of the row norm ``‖Φ_b‖₂``; on pre-activations this is
                       the pre-activation norm Moalla et al. 2024 tie to PPO collapse
=====================  ===========================================================

*Units.* The unit statistics take ``units``: with ``units = w`` a ``(batch, k·w)`` feature
matrix holds ``k`` blocks of ``w`` features and unit ``i`` owns columns ``i, i + w, …``
(CReLU's ``[relu(x), relu(−x)]`` has ``k = 2``: a unit is dormant only if ``E|x| ≈ 0``).
An activation module declares ``k`` as a ``features_per_unit`` attribute
(:func:`features_per_unit`; 1 when absent), which the probe reads.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

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


def features_per_unit(layer: nn.Module) -> int:
    """``k`` of a layer whose output concatenates ``k`` blocks of per-unit features.

    Read from the module's ``features_per_unit`` attribute (e.g. 2 on a CReLU module), 1 if
    it has none.
    """
    k = getattr(layer, "features_per_unit", 1)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise SpectralError(
            f"{type(layer).__name__}.features_per_unit must be a positive integer, got {k!r}"
        )
    return k


def singular_values(features: Tensor) -> Tensor:
    """Singular values of ``Φ`` in descending order, computed in float64 (differentiable)."""
    return torch.linalg.svdvals(check_features(features).to(torch.float64))


def effective_rank(features: Tensor, *, log_eps: float = 1e-8) -> Tensor:
    """Roy & Vetterli effective rank ``exp(−Σ pᵢ log(pᵢ + log_eps))`` with ``pᵢ = σᵢ / Σσ``.

    Returns a 0-dim tensor in ``features``' dtype, differentiable in ``features`` (the ER
    regulariser ascends exactly this function). ``log_eps = 1e-8`` is the spectral-collapse
    paper's guard, which keeps the gradient finite when some ``σᵢ = 0`` (dead units);
    ``log_eps = 0`` is the exact entropy with ``0 log 0 = 0``. A zero matrix has effective
    rank 0 (with a zero gradient). ``svdvals`` has a stable gradient even for repeated
    singular values and runs in float64 (LAPACK's float32 SVD failed to converge on nearly
    rank-one features of saturated units in a study run).
    """
    if log_eps < 0:
        raise SpectralError(f"log_eps must be >= 0, got {log_eps}")
    sigma = singular_values(features)
    total = sigma.sum()
    if total == 0:
        return (total * 0).to(features.dtype)
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


def _per_unit(per_feature: Tensor, units: int | None, reduce: str = "sum") -> Tensor:
    """Fold a per-feature statistic of ``k·units`` features onto ``units`` (module docstring)."""
    if units is None or units == per_feature.numel():
        return per_feature
    if units < 1 or per_feature.numel() % units:
        raise SpectralError(
            f"{per_feature.numel()} features do not split into units={units!r} units; valid: "
            f"a divisor of {per_feature.numel()} (the layer's pre-activation width)"
        )
    blocks = per_feature.reshape(-1, units)
    return blocks.sum(dim=0) if reduce == "sum" else blocks.all(dim=0)


def redo_scores(activations: Tensor, units: int | None = None) -> Tensor:
    """ReDo per-unit scores ``sᵢ = E|hᵢ| / mean_j E|h_j|`` (shape ``(units,)``).

    ``E|hᵢ|`` is the mean over the batch, summed over the unit's features (``units``, see
    the module docstring). A layer whose activations are all 0 gets scores 0 (every unit
    dormant).
    """
    mean_abs = _per_unit(check_features(activations).abs().mean(dim=0), units)
    layer_mean = mean_abs.mean()
    if layer_mean == 0:
        return torch.zeros_like(mean_abs)
    return mean_abs / layer_mean


def dormant_fraction(activations: Tensor, tau: float = 0.025, units: int | None = None) -> float:
    """Fraction of units with ReDo score ``sᵢ ≤ tau`` (Sokar et al. 2023)."""
    if tau < 0:
        raise SpectralError(f"tau must be >= 0, got {tau}")
    return float((redo_scores(activations, units) <= tau).to(torch.float64).mean())


def dead_fraction(activations: Tensor, units: int | None = None) -> float:
    """Fraction of units exactly 0 on every sample, all their features (Dohare et al. 2024)."""
    dead = (check_features(activations) == 0).all(dim=0)
    return float(_per_unit(dead, units, reduce="all").to(torch.float64).mean())


def saturated_fraction(preactivations: Tensor, bound: float = 3.0) -> float:
    """Fraction of units saturated on every sample: ``mean_i 1[min_b |z_bi| > bound]``.

    ``preactivations`` is the ``(batch, units)`` input ``z`` of a tanh layer. A saturated
    unit is (nearly) constant, ``±tanh(bound)``, and passes at most ``1 − tanh²(bound)`` of
    its gradient on every sample: tanh's counterpart of a dead ReLU unit. At the default
    ``bound = 3``, ``tanh = 0.995`` and ``tanh' < 0.0099``: under 1% of the unit's gradient
    at 0 gets through, the conventional "saturated" level (``|tanh| > 0.99`` is
    ``|z| > 2.65``). A unit whose sign flips between samples counts as saturated if every
    ``|z|`` exceeds the bound (it is then a sign detector with no gradient on the batch).
    """
    if not bound >= 0:
        raise SpectralError(f"bound must be >= 0, got {bound}")
    z = check_features(preactivations)
    return float((z.abs() > bound).all(dim=0).to(torch.float64).mean())


def zero_fraction(activations: Tensor) -> float:
    """Fraction of entries exactly 0 (Juliani & Ash 2024's dormant-neuron variant)."""
    return float((check_features(activations) == 0).to(torch.float64).mean())


def feature_norm(features: Tensor) -> Tensor:
    """``mean_b ‖Φ_b‖₂``: mean L2 norm of the per-sample feature vectors (0-dim tensor)."""
    return torch.linalg.vector_norm(check_features(features), dim=1).mean()
