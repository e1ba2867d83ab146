"""SLQ density, ε-rank, negative mass and Hessian effective rank against dense spectra."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.integrate import trapezoid

from spectral import (
    SpectralError,
    epsilon_rank,
    epsilon_rank_per_probe,
    hessian_effective_rank,
    negative_mass,
    spectral_density,
)
from tests.spectral.helpers import ce_problem, mse_problem


@pytest.fixture(scope="module")
def mse():
    problem = mse_problem()
    return problem, torch.linalg.eigvalsh(problem.dense_hessian()).numpy()


def _exact(eigs):
    """Exact eigenvalues as quadrature nodes with weights 1/n."""
    return eigs, np.full(len(eigs), 1.0 / len(eigs))


def test_weights_sum_to_one_and_moments_match_the_dense_spectrum(mse):
    problem, eigs = mse
    density = spectral_density(
        problem.loss_fn,
        problem.params,
        num_iters=40,
        num_probes=30,
        generator=torch.Generator().manual_seed(0),
    )
    assert density.num_probes == 30 and density.num_matvecs == 30 * 40
    for w in density.weights:
        assert abs(w.sum() - 1) < 1e-12 and np.all(w >= 0)
    nodes, weights = np.concatenate(density.nodes), np.concatenate(density.weights) / 30
    mean = weights @ nodes
    var = weights @ nodes**2 - mean**2
    # Each probe's moments are Gaussian quadratic forms vᵀHᵖv/‖v‖²; 30 probes average them
    # to within a few standard errors (tolerances set at ~4 standard errors).
    assert abs(mean - eigs.mean()) < 0.25 * eigs.std()
    assert abs(var - eigs.var()) < 0.1 * eigs.var()
    # The smoothed density integrates to 1 and has the same mean.
    assert abs(trapezoid(density.density, density.grid) - 1) < 1e-6
    assert abs(trapezoid(density.grid * density.density, density.grid) - mean) < 1e-8
    # Extreme Ritz values are the extreme eigenvalues (Lanczos converges at the ends).
    assert abs(max(n.max() for n in density.nodes) - eigs.max()) < 1e-8 * eigs.max()


def test_epsilon_rank_is_exact_on_exact_nodes(mse):
    _, eigs = mse
    for eps in (0.0, 1e-3, 0.01, 0.1, 1.0):
        expected = np.mean(np.abs(eigs) > eps)
        assert epsilon_rank(_exact(eigs), eps) == pytest.approx(expected, abs=1e-12)
    relative = np.mean(np.abs(eigs) > 0.1 * np.abs(eigs).max())
    assert epsilon_rank(_exact(eigs), 0.1, relative=True) == pytest.approx(relative, abs=1e-12)
    assert negative_mass(_exact(eigs)) == pytest.approx(np.mean(eigs < 0), abs=1e-12)
    assert negative_mass(_exact(eigs), eps=0.01) == pytest.approx(np.mean(eigs < -0.01), abs=1e-12)


@pytest.fixture(scope="module")
def full_length_density(mse):
    problem, eigs = mse
    return spectral_density(
        problem.loss_fn,
        problem.params,
        num_iters=len(eigs),
        num_probes=8,
        generator=torch.Generator().manual_seed(1),
    )


@pytest.mark.parametrize("eps", [0.01, 0.05])
def test_slq_epsilon_rank_matches_exact_fraction(mse, full_length_density, eps):
    _, eigs = mse
    density = full_length_density
    exact = np.mean(np.abs(eigs) > eps)
    per_probe = epsilon_rank_per_probe(density, eps)
    # Full-length runs: nodes are the eigenvalues, weights (uᵀq_j)² have mean 1/n; with 8
    # probes the estimate is within 0.04 of the exact fraction (≈ 4 standard errors).
    assert abs(per_probe.mean() - exact) < 0.04
    assert per_probe.std() > 0
    # The paper's smoothed-grid version agrees once the kernel is narrower than the gaps.
    assert abs(epsilon_rank(density, eps, method="grid") - exact) < 0.05


def test_slq_with_few_iterations_still_estimates_mass(mse):
    problem, eigs = mse
    density = spectral_density(
        problem.loss_fn,
        problem.params,
        num_iters=60,
        num_probes=8,
        generator=torch.Generator().manual_seed(2),
    )
    assert abs(epsilon_rank(density, 0.05) - np.mean(np.abs(eigs) > 0.05)) < 0.06
    assert abs(negative_mass(density, eps=0.05) - np.mean(eigs < -0.05)) < 0.06


def test_hessian_effective_rank_on_constructed_spectra(mse):
    # r equal nonzero eigenvalues out of n: effective rank r/n; all equal: 1; zero: 0.
    eigs = np.array([2.0] * 3 + [0.0] * 7)
    assert hessian_effective_rank(_exact(eigs)) == pytest.approx(0.3)
    assert hessian_effective_rank(_exact(np.full(5, -1.5))) == pytest.approx(1.0)
    assert hessian_effective_rank(_exact(np.zeros(4))) == 0.0
    # General spectrum: exp of the entropy of |λ|/Σ|λ|, divided by n.
    _, dense = mse
    q = np.abs(dense) / np.abs(dense).sum()
    expected = np.exp(-np.sum(q * np.log(q))) / len(dense)
    assert hessian_effective_rank(_exact(dense)) == pytest.approx(expected, rel=1e-12)


def test_slq_effective_rank_close_to_exact():
    problem = ce_problem()
    eigs = torch.linalg.eigvalsh(problem.dense_hessian()).numpy()
    density = spectral_density(
        problem.loss_fn,
        problem.params,
        num_iters=len(eigs),
        num_probes=6,
        generator=torch.Generator().manual_seed(3),
    )
    assert hessian_effective_rank(density) == pytest.approx(
        hessian_effective_rank(_exact(eigs)), rel=0.1
    )


def test_deterministic_and_bad_arguments(mse):
    problem, eigs = mse
    a, b = (
        spectral_density(
            problem.loss_fn, problem.params, 10, 2, generator=torch.Generator().manual_seed(4)
        )
        for _ in range(2)
    )
    np.testing.assert_array_equal(np.concatenate(a.nodes), np.concatenate(b.nodes))
    with pytest.raises(SpectralError, match="eps"):
        epsilon_rank(_exact(eigs), -0.1)
    with pytest.raises(SpectralError, match="valid choices"):
        epsilon_rank(_exact(eigs), 0.1, method="simpson")
    with pytest.raises(SpectralError, match="num_probes"):
        spectral_density(problem.loss_fn, problem.params, 10, 0)
    with pytest.raises(SpectralError, match="equal shape"):
        epsilon_rank((np.zeros(3), np.ones(2)), 0.1)
