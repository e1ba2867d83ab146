"""Extreme eigenvalues of a curvature operator by Lanczos with a residual stopping rule.

Lanczos runs until the ``k`` wanted Ritz values ``θᵢ`` are converged in ARPACK's sense,

    |β_m sᵢ[m]| ≤ tol · max(|θᵢ|, ε_mach^{2/3} · ‖T‖),

or ``max_iters`` steps were taken. The left side bounds the distance from ``θᵢ`` to the
spectrum, and the eigenvalue error is usually far smaller (it shrinks like its square over
the gap). Once ``m = dim`` the values are exact up to rounding: ``tol=0`` with the
default ``max_iters=None`` (= dim) is an exact (if slow) eigensolver for small problems.

Multiplicities: one Krylov space holds one copy of each distinct eigenvalue. When it
closes (exact breakdown) Lanczos restarts in the complement, and convergence is then only
declared when a further Krylov space closes without changing the wanted values, so
repeated eigenvalues are counted. In floating point an exact symmetry does not always close
the space cleanly (e.g. the head block ``I ⊗ B`` of a multi-output MSE loss, when ``B`` has
tiny eigenvalues): rounding then seeds the missing copies and the residual test may pass
before they have grown. For operators with such symmetries use ``tol=0`` with
``max_iters=dim`` (exact), as with any single-vector method (ARPACK alike).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal

from spectral.errors import SpectralError
from spectral.hvp import CurvatureOperator, HessianOperator
from spectral.lanczos import restarting_iteration
from spectral.params import LossFn, Params

WHICH = ("largest", "smallest", "magnitude", "both")
_EPS23 = float(np.finfo(np.float64).eps) ** (2 / 3)


@dataclass(frozen=True)
class EigenResult:
    """Eigenvalue estimates with their convergence evidence.

    Attributes:
        eigenvalues: ``largest``: k values, descending; ``smallest``: k values, ascending;
            ``magnitude``: k values by descending ``|λ|``; ``both``: the k smallest then the
            k largest, all ascending (2k values).
        residual_bounds: ``|β_m sᵢ[m]|`` for each value (same order): each value lies
            within its bound of some eigenvalue; 0 means exact.
        num_iters: Lanczos steps taken (= operator products).
        converged: every value met the tolerance.
    """

    eigenvalues: np.ndarray
    residual_bounds: np.ndarray
    num_iters: int
    converged: bool


def _wanted(
    alpha: np.ndarray, beta: np.ndarray, residual: float, k: int, which: str
) -> tuple[np.ndarray, np.ndarray]:
    """Wanted Ritz values and residual bounds, in the order documented on EigenResult."""
    m = alpha.shape[0]
    kk = min(k, m)
    # One dense tridiagonal solve gives every Ritz pair (m is small: cheaper than two
    # index-selected solves for the two ends).
    if m == 1:
        all_vals, all_res = alpha.copy(), np.array([abs(residual)])
    else:
        all_vals, vecs = eigh_tridiagonal(alpha, beta)
        all_res = np.abs(residual * vecs[-1])

    def ends(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        return all_vals[lo : hi + 1], all_res[lo : hi + 1]

    if which == "largest":
        vals, res = ends(m - kk, m - 1)
        return vals[::-1], res[::-1]
    if which == "smallest":
        return ends(0, kk - 1)
    if which == "both" and 2 * kk > m:  # the two ends overlap: take every Ritz value once
        return ends(0, m - 1)
    lo_vals, lo_res = ends(0, kk - 1)
    hi_vals, hi_res = ends(m - kk, m - 1)
    if which == "both":
        return np.concatenate([lo_vals, hi_vals]), np.concatenate([lo_res, hi_res])
    # magnitude: the k largest |θ| are among the k smallest and the k largest θ.
    index = np.concatenate([np.arange(kk), np.arange(m - kk, m)])
    _, first = np.unique(index, return_index=True)
    vals = np.concatenate([lo_vals, hi_vals])[first]
    res = np.concatenate([lo_res, hi_res])[first]
    order = np.argsort(-np.abs(vals), kind="stable")[:kk]
    return vals[order], res[order]


def lanczos_eigenvalues(
    operator: CurvatureOperator,
    k: int = 5,
    which: str = "largest",
    *,
    max_iters: int | None = None,
    tol: float = 1e-8,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> EigenResult:
    """``k`` extreme eigenvalues of a symmetric operator (Hessian, GGN, ...).

    Args:
        operator: anything with ``matvec`` and ``dim`` (e.g. :class:`HessianOperator`).
        k: how many eigenvalues (``1 <= k <= dim``; ``2k <= dim`` for ``both``).
        which: ``largest`` | ``smallest`` | ``magnitude`` | ``both``.
        max_iters: step cap (default ``dim``).
        tol: relative residual tolerance (see module docstring); 0 runs ``max_iters`` steps.
        generator: RNG for the start vector (default: seed 0; the global RNG is never used).
        dtype: precision of the Lanczos recurrence.
    """
    if which not in WHICH:
        raise SpectralError(f"unknown which={which!r}; valid choices: {', '.join(WHICH)}")
    dim = operator.dim
    limit = dim // 2 if which == "both" else dim
    if not isinstance(k, int) or k < 1 or k > limit:
        raise SpectralError(
            f"k={k!r} is invalid: need 1 <= k <= {limit} for which={which!r} (dim={dim})"
        )
    if tol < 0:
        raise SpectralError(f"tol must be >= 0, got {tol}")
    max_iters = dim if max_iters is None else min(max_iters, dim)
    needed = min(2 * k if which in ("both", "magnitude") else k, dim)
    if max_iters < needed:
        raise SpectralError(
            f"max_iters={max_iters} is too small to resolve k={k} eigenvalues ({which})"
        )
    it = restarting_iteration(operator, generator=generator, dtype=dtype)
    converged = False
    at_last_closure: np.ndarray | None = None  # wanted values when the last Krylov space closed
    while it.step():
        m = it.num_steps
        if m < needed and not it.finished:
            continue
        res = it.result()
        vals, bounds = _wanted(res.alpha, res.beta, res.residual, k, which)
        complete = len(vals) == (2 * k if which == "both" else k)
        floor = np.maximum(np.abs(vals), _EPS23 * it.scale)
        if it.finished:
            converged = True
        elif it.num_restarts == 0:
            converged = complete and bool(np.all(bounds <= tol * floor))
        elif it.restarted:
            converged = (
                complete
                and at_last_closure is not None
                and len(at_last_closure) == len(vals)
                and bool(np.all(np.abs(vals - at_last_closure) <= tol * floor))
            )
            at_last_closure = vals
        if converged or m >= max_iters:
            break
    return EigenResult(
        eigenvalues=vals, residual_bounds=bounds, num_iters=res.num_iters, converged=converged
    )


def hessian_eigenvalues(
    loss_fn: LossFn,
    params: Params,
    k: int = 5,
    which: str = "largest",
    *,
    max_iters: int | None = None,
    tol: float = 1e-8,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> EigenResult:
    """``k`` extreme eigenvalues of ``∇²_θ loss_fn()`` (see :func:`lanczos_eigenvalues`).

    ``params`` may be a whole network's parameters or one layer's (a diagonal block of the
    Hessian). Example: ``hessian_eigenvalues(lambda: F.mse_loss(net(x), y), net, k=5)``.
    """
    return lanczos_eigenvalues(
        HessianOperator(loss_fn, params),
        k,
        which,
        max_iters=max_iters,
        tol=tol,
        generator=generator,
        dtype=dtype,
    )
