"""Hutchinson and Hutch++ against the exact trace of dense Hessians."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spectral import SpectralError, hessian_trace
from tests.spectral.helpers import mse_problem


@pytest.fixture(scope="module")
def trained_sine():
    """1-32-32-1 tanh MLP (1,153 parameters) fitted to sin(2x): a trained network's spectrum
    (a few large eigenvalues over a bulk near 0), the regime the probes measure."""
    problem = mse_problem((1, 32, 32, 1), batch=128)
    problem.x.copy_(torch.linspace(-3, 3, 128, dtype=torch.float64)[:, None])
    problem.y.copy_(torch.sin(2 * problem.x))
    opt = torch.optim.Adam(problem.net.parameters(), lr=1e-2)
    for _ in range(300):
        opt.zero_grad()
        problem.loss_fn().backward()
        opt.step()
    for p in problem.params:
        p.grad = None
    return problem, float(torch.trace(problem.dense_hessian()))


def test_hutch_plus_plus_within_two_percent_with_60_products(trained_sine):
    problem, exact = trained_sine
    for seed in range(5):
        est = hessian_trace(
            problem.loss_fn,
            problem.params,
            60,
            "hutch++",
            generator=torch.Generator().manual_seed(seed),
        )
        assert est.num_matvecs == 60
        assert abs(est.trace - exact) <= 0.02 * abs(exact)


def test_hutchinson_is_unbiased_within_its_standard_error(trained_sine):
    problem, exact = trained_sine
    z = []
    for seed in range(5):
        est = hessian_trace(
            problem.loss_fn,
            problem.params,
            200,
            "hutchinson",
            generator=torch.Generator().manual_seed(seed),
        )
        z.append((est.trace - exact) / est.std_error)
    assert np.all(np.abs(z) < 4)
    assert abs(np.mean(z)) < 4 / np.sqrt(5)


def test_hutch_plus_plus_is_exact_when_the_sketch_spans_the_space():
    problem = mse_problem((3, 4, 2))  # 26 parameters
    exact = float(torch.trace(problem.dense_hessian()))
    est = hessian_trace(problem.loss_fn, problem.params, 90, "hutch++")
    assert est.std_error == 0.0 and est.num_matvecs == 52
    assert est.trace == pytest.approx(exact, rel=1e-10)


def test_bad_arguments():
    problem = mse_problem((3, 2))
    with pytest.raises(SpectralError, match="valid choices"):
        hessian_trace(problem.loss_fn, problem.params, 10, "xtrace")
    with pytest.raises(SpectralError, match="num_samples"):
        hessian_trace(problem.loss_fn, problem.params, 2, "hutch++")
