"""Exact ε-counts: how many eigenvalues have ``|λ| > ε·max|λ|``, from converged Lanczos.

For a symmetric ``A`` (``n × n``) and a relative threshold ``r ∈ (0, 1]`` the ε-count is

    N(r) = #{ j : |λ_j| > r · max_j |λ_j| },

and ``N(r) / n`` is the paper's normalised ε-rank of the exact spectrum. Stochastic Lanczos
quadrature estimates that fraction through a smoothed density whose resolution near 0 is a
quadrature cell (:mod:`spectral.density`); here the eigenvalues above the threshold are
found one by one instead, so the answer is an integer read off converged eigenvalues.

Method. One Lanczos run with full reorthogonalisation (:class:`~spectral.lanczos.LanczosIteration`,
restarting in the complement when a Krylov space closes) grows the Krylov space; every
``check_every`` steps the Ritz values ``θ`` of ``T`` and their residual bounds
``ρᵢ = |β_m sᵢ[m]|`` (each ``θᵢ`` lies within ``ρᵢ`` of an eigenvalue) are read. A Ritz
value is *converged* when

    ρᵢ ≤ tol · max(|θᵢ|, r · R),        R = max|θ| (the converged spectral radius).

At each end of the spectrum (descending ``θ`` for the positive end, ascending for the
negative end, so negative eigenvalues count by ``|λ|``) the count for ``r`` is *closed*
when the Ritz values from the end inwards are all converged up to and including the first
one with ``|θ| ≤ r·R``: the ``k``-th converged magnitude has fallen below the threshold,
and ``N(r)`` is the number of converged values before it, both ends summed. The run stops
when every ``r`` is closed at both ends (the smallest ``r`` needs the most steps; larger
ones are read off the same Ritz values), or after ``max_iters`` steps.

Contract. A closed count is exact under the usual Lanczos assumption that the start
vector is not (numerically) orthogonal to an eigenvector beyond the threshold: converged
Ritz values at an end are then the extreme eigenvalues in order (full reorthogonalisation
leaves no spurious copies). Validated against dense float64 eigendecompositions of the
study's networks (tests/spectral/test_eps_count.py): equal to ±1 at the threshold.
A count that is not closed after ``max_iters`` steps is *censored*: the value reported is
``#{i : |θᵢ| > r·R}`` over all Ritz values, a lower bound of ``N(r)`` by Cauchy interlacing
(the ``j``-th largest Ritz value never exceeds the ``j``-th largest eigenvalue, and the
same from below), flagged ``censored``. Never NaN.

Cost: ``m`` operator products plus ``O(m² n)`` for the reorthogonalisation, where ``m`` is
the number of steps until the smallest ``r`` closes (about a few times ``N(r_min)``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal

from spectral.errors import SpectralError
from spectral.hvp import CurvatureOperator
from spectral.lanczos import LanczosIteration, restarting_iteration

__all__ = ["EpsCount", "epsilon_counts"]


@dataclass(frozen=True)
class EpsCount:
    """ε-counts of one operator at several relative thresholds.

    Attributes:
        rels: the relative thresholds ``r`` (as given).
        counts: ``N(r)`` for each ``r`` (a lower bound where censored).
        censored: per ``r``, True when the count did not close within ``max_iters`` steps.
        radius: ``R = max|θ|``, the spectral radius the thresholds are fractions of.
        dim: ``n``; ``counts / dim`` are the normalised ε-ranks.
        num_iters: Lanczos steps taken (= operator products).
    """

    rels: tuple[float, ...]
    counts: tuple[int, ...]
    censored: tuple[bool, ...]
    radius: float
    dim: int
    num_iters: int

    def fractions(self) -> tuple[float, ...]:
        return tuple(c / self.dim for c in self.counts)


def _ritz(it: LanczosIteration) -> tuple[np.ndarray, np.ndarray]:
    res = it.result()
    if res.num_iters == 1:
        return res.alpha.copy(), np.array([abs(res.residual)])
    values, vectors = eigh_tridiagonal(res.alpha, res.beta)
    return values, np.abs(res.residual * vectors[-1])


def _end_count(values: np.ndarray, converged: np.ndarray, threshold: float) -> tuple[int, bool]:
    """(converged values beyond ``threshold`` before the first one inside it, closed?) for
    Ritz values ordered from one end of the spectrum inwards (``values`` as magnitudes)."""
    for i, (v, ok) in enumerate(zip(values, converged, strict=True)):
        if not ok:
            return i, False
        if v <= threshold:
            return i, True
    return len(values), False


def _counts(
    theta: np.ndarray, bounds: np.ndarray, rels: Sequence[float], tol: float, exact: bool
) -> tuple[float, list[int], list[bool]]:
    radius = float(np.max(np.abs(theta)))
    counts, closed = [], []
    for r in rels:
        t = r * radius
        ok = exact | (bounds <= tol * np.maximum(np.abs(theta), t))
        # positive end (descending θ) and negative end (ascending θ), by magnitude; a value
        # of the other sign ends that walk (its magnitude is compared as 0), so the two
        # walks count disjoint sets.
        desc = theta[::-1]
        n_top, c_top = _end_count(np.where(desc > 0, desc, 0.0), ok[::-1], t)
        n_bot, c_bot = _end_count(np.where(theta < 0, -theta, 0.0), ok, t)
        counts.append(n_top + n_bot)
        closed.append(exact or (c_top and c_bot))
    return radius, counts, closed


def epsilon_counts(
    operator: CurvatureOperator,
    rels: Sequence[float] = (0.001, 0.01, 0.03, 0.1),
    *,
    max_iters: int = 200,
    tol: float = 1e-2,
    check_every: int = 10,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> EpsCount:
    """ε-counts ``N(r) = #{|λ| > r·max|λ|}`` for each ``r`` in ``rels`` (module docstring).

    Args:
        operator: anything with ``matvec`` and ``dim`` (Hessian, GGN, a dense matrix).
        rels: relative thresholds in ``(0, 1]``.
        max_iters: the cap on Lanczos steps (operator products); counts not closed by then
            are censored lower bounds. Capped at ``dim`` (where every count is exact).
        tol: relative residual tolerance of a converged Ritz value.
        check_every: steps between convergence checks (one ``m × m`` tridiagonal solve).
        generator: RNG of the start vector (default: seed 0; the global RNG is never used).
        dtype: precision of the recurrence.
    """
    rels = tuple(float(r) for r in rels)
    if not rels or not all(0 < r <= 1 for r in rels):
        raise SpectralError(f"eps-count thresholds must be fractions of max|λ| in (0, 1], got {rels!r}")
    for name, value in (("max_iters", max_iters), ("check_every", check_every)):
        if not isinstance(value, int) or value < 1:
            raise SpectralError(f"{name} must be a positive integer, got {value!r}")
    if not tol > 0:
        raise SpectralError(f"tol must be > 0, got {tol!r}")
    dim = operator.dim
    max_iters = min(max_iters, dim)
    it = restarting_iteration(operator, generator=generator, dtype=dtype)
    while it.step():
        m = it.num_steps
        if it.finished or m >= max_iters or m % check_every == 0:
            theta, bounds = _ritz(it)
            exact = it.finished  # every eigenvalue found (dim steps)
            radius, counts, closed = _counts(theta, bounds, rels, tol, exact)
            if all(closed) or m >= max_iters:
                break
    if not all(closed):  # censored: every Ritz value beyond the threshold (interlacing bound)
        counts = [
            c if ok else int(np.sum(np.abs(theta) > r * radius))
            for c, ok, r in zip(counts, closed, rels, strict=True)
        ]
    return EpsCount(
        rels=rels,
        counts=tuple(int(c) for c in counts),
        censored=tuple(not c for c in closed),
        radius=radius,
        dim=dim,
        num_iters=it.num_steps,
    )
