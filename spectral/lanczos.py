"""Lanczos tridiagonalisation with full reorthogonalisation.

For a symmetric ``A`` (given by its product ``v ↦ A v``) and a start vector ``q₁``, ``m``
steps build an orthonormal basis ``Q = [q₁ … q_m]`` of the Krylov space and the tridiagonal
``T = Qᵀ A Q`` (diagonal ``α``, off-diagonal ``β``) with

    A Q = Q T + β_m q_{m+1} e_mᵀ.

The eigenvalues ``θᵢ`` of ``T`` (Ritz values) approximate the extreme eigenvalues of ``A``;
with ``sᵢ`` the eigenvectors of ``T``, ``|β_m sᵢ[m]|`` bounds ``‖A Q sᵢ − θᵢ Q sᵢ‖`` and hence
the distance from ``θᵢ`` to the spectrum. The squared first components ``sᵢ[1]²`` are the
Gauss quadrature weights of stochastic Lanczos quadrature (they sum to 1).

Every new vector is orthogonalised against the whole basis twice ("twice is enough",
classical Gram-Schmidt), so no spurious copies of converged eigenvalues appear. The
recurrence runs in ``dtype`` (float64 by default) whatever the operator's dtype.

*Breakdown* (``β_j ≈ 0``) means the Krylov space is invariant: its Ritz values are exact
eigenvalues. For SLQ the run stops there; for eigenvalue searches ``restart=True`` continues
with a fresh random vector orthogonal to the basis (``T`` gets a zero off-diagonal), which
recovers eigenvalues a single Krylov space cannot see (e.g. repeated ones).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from torch import Tensor

from spectral.errors import SpectralError

_SQRT2 = 2.0**0.5

Matvec = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class LanczosResult:
    """Outcome of ``m`` Lanczos steps.

    Attributes:
        alpha: diagonal of ``T``, shape ``(m,)``.
        beta: off-diagonal of ``T``, shape ``(m-1,)`` (zeros where a restart happened).
        residual: ``β_m``, the norm of the part of ``A q_m`` outside the basis
            (0 after a breakdown without restart, i.e. the Ritz values are exact).
        basis: the Lanczos vectors as rows, shape ``(m, dim)`` (``None`` if not kept).
    """

    alpha: np.ndarray
    beta: np.ndarray
    residual: float
    basis: Tensor | None = None

    @property
    def num_iters(self) -> int:
        return int(self.alpha.shape[0])

    def tridiagonal(self) -> np.ndarray:
        """The dense ``m × m`` matrix ``T``."""
        return np.diag(self.alpha) + np.diag(self.beta, 1) + np.diag(self.beta, -1)

    def ritz(self) -> tuple[np.ndarray, np.ndarray]:
        """Ritz values (ascending) and quadrature weights ``sᵢ[1]²`` (summing to 1)."""
        values, vectors = tridiagonal_eigh(self.alpha, self.beta)
        return values, vectors[0] ** 2

    def residual_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Ritz values (ascending) and their residual bounds ``|β_m sᵢ[m]|``."""
        values, vectors = tridiagonal_eigh(self.alpha, self.beta)
        return values, np.abs(self.residual * vectors[-1])


def tridiagonal_eigh(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (ascending) and eigenvectors (columns) of the tridiagonal ``T(α, β)``."""
    if alpha.shape[0] == 1:
        return alpha.copy(), np.ones((1, 1))
    return eigh_tridiagonal(alpha, beta)


def random_vector(
    dim: int,
    generator: torch.Generator | None,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    distribution: str = "gaussian",
) -> Tensor:
    """A random vector drawn with ``generator`` on the generator's device, then moved.

    ``gaussian``: N(0, I). ``rademacher``: ±1 with equal probability. ``generator=None``
    means a fresh CPU generator seeded with 0 (deterministic; the global RNG is never used).
    """
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    gen_device = generator.device
    if distribution == "gaussian":
        v = torch.randn(dim, generator=generator, dtype=dtype, device=gen_device)
    elif distribution == "rademacher":
        bits = torch.randint(0, 2, (dim,), generator=generator, device=gen_device)
        v = (2 * bits - 1).to(dtype)
    else:
        raise SpectralError(
            f"unknown probe distribution {distribution!r}; valid choices: 'gaussian', 'rademacher'"
        )
    return v.to(device) if device is not None else v


class LanczosIteration:
    """Step-by-step Lanczos (so callers can test convergence between steps).

    Args:
        matvec: ``v ↦ A v`` on flat vectors of length ``dim``.
        dim: dimension of ``A``.
        start: start vector (normalised here); drawn with ``generator`` if ``None``.
        generator: RNG for the start vector and restart vectors.
        dtype, device: where the recurrence runs (default float64, on the start's device).
        restart: continue with a random orthogonal vector after a breakdown.
        breakdown_tol: ``β_j ≤ breakdown_tol · ‖T‖`` (running estimate) counts as breakdown.
    """

    def __init__(
        self,
        matvec: Matvec,
        dim: int,
        *,
        start: Tensor | None = None,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
        restart: bool = False,
        breakdown_tol: float = 1e-10,
    ) -> None:
        if dim < 1:
            raise SpectralError(f"operator dimension must be >= 1, got {dim}")
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        self.matvec, self.dim, self.generator = matvec, dim, generator
        self.dtype, self.restart, self.breakdown_tol = dtype, restart, breakdown_tol
        if start is None:
            start = random_vector(dim, generator, dtype=dtype, device=device)
        start = start.to(dtype=dtype, device=device if device is not None else start.device)
        if start.shape != (dim,):
            raise SpectralError(f"start vector has shape {tuple(start.shape)}, expected ({dim},)")
        norm = torch.linalg.vector_norm(start)
        if not torch.isfinite(norm) or norm == 0:
            raise SpectralError("the Lanczos start vector must be finite and nonzero")
        self.device = start.device
        # Basis vectors as rows of a buffer that doubles when full (amortised O(1) append,
        # no re-stacking of the whole basis at every step).
        self._buffer = torch.empty(min(dim, 32), dim, dtype=dtype, device=self.device)
        self._buffer[0] = start / norm
        self._size = 1
        self._alpha: list[float] = []
        self._beta: list[float] = []
        self._scale = 0.0  # running max of |α|, β: an estimate of ‖A‖ for the breakdown test
        self.residual = float("nan")
        self.finished = False  # basis exhausted (dim reached) or breakdown without restart
        self.num_restarts = 0
        self.restarted = False  # the last step closed a Krylov space and restarted

    @property
    def num_steps(self) -> int:
        return len(self._alpha)

    @property
    def scale(self) -> float:
        """Running ``max(|α_j|, β_j)``: a lower estimate of ``‖A‖``."""
        return self._scale

    def _orthogonalise(self, w: Tensor, q: Tensor) -> Tensor:
        # Classical Gram-Schmidt against the whole basis, repeated only when a pass removed
        # most of w (Kahan-Parlett "twice is enough": ||w'|| < ||w|| / sqrt(2) signals
        # cancellation); one pass usually suffices and halves the cost.
        norm = torch.linalg.vector_norm(w)
        for _ in range(2):
            w = w - q.T @ (q @ w)
            new_norm = torch.linalg.vector_norm(w)
            if new_norm * _SQRT2 >= norm:
                break
            norm = new_norm
        return w

    def step(self) -> bool:
        """One Lanczos step; returns ``False`` (and does nothing) once :attr:`finished`."""
        if self.finished:
            return False
        self.restarted = False
        j = len(self._alpha)
        q_j = self._buffer[j]
        w = self.matvec(q_j).to(dtype=self.dtype, device=self.device)
        if not torch.all(torch.isfinite(w)):
            raise SpectralError(
                "the operator returned a non-finite product (NaN/inf in the loss or model)"
            )
        alpha = float(q_j @ w)
        basis = self._buffer[: self._size]
        w = self._orthogonalise(w, basis)
        beta = float(torch.linalg.vector_norm(w))
        self._alpha.append(alpha)
        self._scale = max(self._scale, abs(alpha), beta)
        self.residual = beta
        if j + 1 == self.dim:
            self.finished = True
            return True
        if beta > self.breakdown_tol * self._scale:
            self._beta.append(beta)
            self._append(w / beta)
            return True
        if not self.restart:
            self.residual = 0.0
            self.finished = True
            return True
        # Invariant subspace found: its Ritz values are exact; continue in its complement.
        r = random_vector(self.dim, self.generator, dtype=self.dtype, device=self.device)
        r = self._orthogonalise(r, basis)
        self._beta.append(0.0)
        self._append(r / torch.linalg.vector_norm(r))
        self.residual = 0.0
        self.num_restarts += 1
        self.restarted = True
        return True

    def _append(self, q: Tensor) -> None:
        if self._size == self._buffer.shape[0]:
            grown = torch.empty(
                min(2 * self._size, self.dim), self.dim, dtype=self.dtype, device=self.device
            )
            grown[: self._size] = self._buffer
            self._buffer = grown
        self._buffer[self._size] = q
        self._size += 1

    def result(self, keep_basis: bool = False) -> LanczosResult:
        m = len(self._alpha)
        if m == 0:
            raise SpectralError("no Lanczos step was taken")
        return LanczosResult(
            alpha=np.asarray(self._alpha, dtype=np.float64),
            beta=np.asarray(self._beta[: m - 1], dtype=np.float64),
            residual=self.residual,
            basis=self._buffer[:m].clone() if keep_basis else None,
        )


def restarting_iteration(
    operator: Any, *, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64
) -> LanczosIteration:
    """A :class:`LanczosIteration` over ``operator`` (anything with ``matvec``, ``dim`` and
    optionally ``device``) that restarts in the complement when a Krylov space closes: the
    form every extreme-eigenvalue search here uses."""
    return LanczosIteration(
        operator.matvec,
        operator.dim,
        generator=generator,
        dtype=dtype,
        device=getattr(operator, "device", None),
        restart=True,
    )


def lanczos(
    matvec: Matvec,
    dim: int,
    num_iters: int,
    *,
    start: Tensor | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
    restart: bool = False,
    keep_basis: bool = False,
) -> LanczosResult:
    """Run ``min(num_iters, dim)`` Lanczos steps (fewer after a breakdown without restart).

    Deterministic given ``generator`` (or ``start``). See :class:`LanczosIteration`.
    """
    if num_iters < 1:
        raise SpectralError(f"num_iters must be >= 1, got {num_iters}")
    it = LanczosIteration(
        matvec, dim, start=start, generator=generator, dtype=dtype, device=device, restart=restart
    )
    for _ in range(min(num_iters, dim)):
        if not it.step():
            break
    return it.result(keep_basis=keep_basis)
