"""Lanczos on explicit symmetric matrices: orthogonality, exactness, quadrature, breakdown."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spectral import SpectralError, lanczos


def _symmetric(eigenvalues, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    n = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.as_tensor(eigenvalues, dtype=torch.float64)) @ q.T


def test_basis_is_orthonormal_and_tridiagonalises():
    a = _symmetric(np.linspace(-3, 10, 80))
    run = lanczos(
        lambda v: a @ v, 80, 30, generator=torch.Generator().manual_seed(1), keep_basis=True
    )
    q = run.basis
    assert run.num_iters == 30 and q.shape == (30, 80)
    torch.testing.assert_close(q @ q.T, torch.eye(30, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(q @ a @ q.T, torch.as_tensor(run.tridiagonal()), atol=1e-10, rtol=0)


def test_full_run_gives_exact_eigenvalues_and_unit_weights():
    eigs = np.sort(np.random.default_rng(0).normal(size=60) * 5)
    a = _symmetric(eigs)
    run = lanczos(lambda v: a @ v, 60, 200)  # capped at dim
    values, weights = run.ritz()
    assert run.num_iters == 60
    np.testing.assert_allclose(values, eigs, rtol=0, atol=1e-10)
    assert abs(weights.sum() - 1) < 1e-12 and np.all(weights >= 0)


@pytest.mark.parametrize("steps", [3, 8, 15])
def test_quadrature_reproduces_moments_up_to_degree_2m_minus_1(steps):
    a = _symmetric(np.linspace(-1, 2, 50), seed=2)
    v = torch.randn(50, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    run = lanczos(lambda x: a @ x, 50, steps, start=v)
    values, weights = run.ritz()
    u = v / v.norm()
    power = u.clone()
    for degree in range(1, 2 * steps):
        power = a @ power
        exact = float(u @ power)  # uᵀ A^p u
        np.testing.assert_allclose(weights @ values**degree, exact, rtol=1e-8, atol=1e-10)


def test_breakdown_stops_with_exact_nodes_for_few_distinct_eigenvalues():
    # 3 distinct eigenvalues: the Krylov space has dimension 3, then β = 0.
    eigs = [-1.0] * 10 + [0.5] * 10 + [4.0] * 10
    a = _symmetric(eigs)
    run = lanczos(lambda v: a @ v, 30, 20)
    values, weights = run.ritz()
    assert run.num_iters == 3 and run.residual == 0.0
    np.testing.assert_allclose(values, [-1.0, 0.5, 4.0], atol=1e-12)
    assert abs(weights.sum() - 1) < 1e-12


def test_restart_recovers_multiplicities():
    eigs = [-1.0] * 4 + [2.0] * 3 + [5.0]
    a = _symmetric(eigs, seed=4)
    run = lanczos(lambda v: a @ v, 8, 8, restart=True)
    values, _ = run.ritz()
    assert run.num_iters == 8
    np.testing.assert_allclose(values, sorted(eigs), atol=1e-10)


def test_deterministic_given_generator_and_leaves_global_rng_alone():
    a = _symmetric(np.linspace(0, 1, 40))
    state = torch.get_rng_state()
    r1 = lanczos(lambda v: a @ v, 40, 10, generator=torch.Generator().manual_seed(7))
    r2 = lanczos(lambda v: a @ v, 40, 10, generator=torch.Generator().manual_seed(7))
    r3 = lanczos(lambda v: a @ v, 40, 10, generator=torch.Generator().manual_seed(8))
    assert torch.equal(torch.get_rng_state(), state)
    np.testing.assert_array_equal(r1.alpha, r2.alpha)
    assert not np.array_equal(r1.alpha, r3.alpha)


def test_float32_operator_runs_recurrence_in_float64():
    a = _symmetric(np.linspace(-2, 3, 30)).float()
    run = lanczos(lambda v: a @ v.float(), 30, 30)
    assert run.alpha.dtype == np.float64
    values, _ = run.ritz()
    np.testing.assert_allclose(values, np.linspace(-2, 3, 30), atol=1e-5)


def test_bad_arguments():
    a = torch.eye(5, dtype=torch.float64)
    with pytest.raises(SpectralError, match="num_iters"):
        lanczos(lambda v: a @ v, 5, 0)
    with pytest.raises(SpectralError, match="start vector"):
        lanczos(lambda v: a @ v, 5, 3, start=torch.zeros(5, dtype=torch.float64))
    with pytest.raises(SpectralError, match="shape"):
        lanczos(lambda v: a @ v, 5, 3, start=torch.ones(4, dtype=torch.float64))
    with pytest.raises(SpectralError, match="non-finite"):
        lanczos(lambda v: v * float("nan"), 5, 3)
