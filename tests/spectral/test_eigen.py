"""Top/bottom-k Hessian eigenvalues against torch.linalg.eigvalsh of the dense Hessian."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from spectral import (
    GGNOperator,
    HessianOperator,
    SpectralError,
    hessian_eigenvalues,
    lanczos_eigenvalues,
    layer_parameters,
    per_layer,
)
from tests.spectral.helpers import ce_problem, mse_problem

PROBLEMS = {
    "mse-tanh-339": lambda: mse_problem(),
    "ce-tanh-224": lambda: ce_problem(),
    "mse-relu-339": lambda: mse_problem(activation=nn.ReLU, seed=3),
    "ce-tanh-1509": lambda: ce_problem((8, 32, 32, 5), batch=128, seed=1),
}


def _rel_err(estimate, exact) -> float:
    return float(np.max(np.abs(np.asarray(estimate) - exact) / np.abs(exact)))


@pytest.fixture(scope="module", params=list(PROBLEMS))
def problem_and_spectrum(request):
    problem = PROBLEMS[request.param]()
    return problem, torch.linalg.eigvalsh(problem.dense_hessian()).numpy()


def test_top_and_bottom_five_match_dense(problem_and_spectrum):
    problem, exact = problem_and_spectrum
    top = hessian_eigenvalues(problem.loss_fn, problem.params, k=5, which="largest", tol=1e-10)
    bottom = hessian_eigenvalues(problem.loss_fn, problem.params, k=5, which="smallest", tol=1e-10)
    assert top.converged and bottom.converged
    assert _rel_err(top.eigenvalues, exact[::-1][:5]) <= 1e-6
    assert _rel_err(bottom.eigenvalues, exact[:5]) <= 1e-6
    # Converged well before the dimension: Lanczos, not a dense solve in disguise.
    assert top.num_iters < len(exact)


def test_magnitude_and_both(problem_and_spectrum):
    problem, exact = problem_and_spectrum
    mag = hessian_eigenvalues(problem.loss_fn, problem.params, k=5, which="magnitude", tol=1e-10)
    by_magnitude = exact[np.argsort(-np.abs(exact))][:5]
    assert _rel_err(mag.eigenvalues, by_magnitude) <= 1e-6
    both = hessian_eigenvalues(problem.loss_fn, problem.params, k=3, which="both", tol=1e-10)
    assert _rel_err(both.eigenvalues, np.concatenate([exact[:3], exact[-3:]])) <= 1e-6


def test_cheap_settings_are_close_and_report_unconverged():
    problem = mse_problem()
    exact = torch.linalg.eigvalsh(problem.dense_hessian()).numpy()[::-1]
    cheap = hessian_eigenvalues(problem.loss_fn, problem.params, k=3, max_iters=20, tol=1e-3)
    assert cheap.num_iters <= 20
    assert _rel_err(cheap.eigenvalues, exact[:3]) <= 1e-3
    capped = hessian_eigenvalues(
        problem.loss_fn, problem.params, k=5, which="smallest", max_iters=10, tol=1e-12
    )
    assert not capped.converged and capped.num_iters == 10
    # Ritz values never leave the spectrum's hull (Cauchy interlacing).
    assert np.all(capped.eigenvalues >= exact[-1] - 1e-12)


def test_residual_bounds_bound_the_error():
    problem = ce_problem()
    exact = torch.linalg.eigvalsh(problem.dense_hessian()).numpy()[::-1]
    result = hessian_eigenvalues(problem.loss_fn, problem.params, k=4, max_iters=15, tol=0)
    # Each Ritz value lies within its bound of *some* eigenvalue.
    distance = np.min(np.abs(result.eigenvalues[:, None] - exact[None, :]), axis=1)
    assert np.all(distance <= result.residual_bounds + 1e-12)
    assert np.all(result.residual_bounds > 0) and not result.converged


def test_per_layer_spectra_match_dense_blocks():
    problem = mse_problem()
    dense = problem.dense_hessian()
    layers = layer_parameters(problem.net)
    assert list(layers) == ["0", "2", "4"]
    # tol=0 runs each block to its dimension: exact, including the head block I₃ ⊗ B whose
    # eigenvalues are triple (a residual test could stop before the copies are found).
    results = per_layer(hessian_eigenvalues, problem.loss_fn, layers, k=3, tol=0)
    start = 0
    for name, params in layers.items():
        size = sum(p.numel() for p in params)
        block = dense[start : start + size, start : start + size]
        start += size
        exact = torch.linalg.eigvalsh(block).numpy()[::-1][:3]
        assert _rel_err(results[name].eigenvalues, exact) <= 1e-6
    by_name = layer_parameters(problem.net, ["2"])
    assert [p.shape for p in by_name["2"]] == [p.shape for p in problem.net[2].parameters()]


def test_ggn_top_eigenvalues_match_dense():
    problem = ce_problem()
    op = GGNOperator(lambda: problem.net(problem.x), problem.params, "cross_entropy", problem.y)
    exact = torch.linalg.eigvalsh(op.to_dense()).numpy()[::-1][:5]
    op2 = GGNOperator(lambda: problem.net(problem.x), problem.params, "cross_entropy", problem.y)
    assert _rel_err(lanczos_eigenvalues(op2, 5, tol=1e-10).eigenvalues, exact) <= 1e-6


def test_repeated_eigenvalues_are_counted_after_restarts():
    # Exact multiplicities make the Krylov space close; the restart rule must keep going.
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(40, 40, generator=g, dtype=torch.float64))
    eigs = torch.tensor([3.0] * 3 + [2.0] * 2 + [1.0] * 5 + [0.0] * 30, dtype=torch.float64)
    a = q @ torch.diag(eigs) @ q.T
    op = SimpleNamespace(matvec=lambda v: a @ v, dim=40, device=torch.device("cpu"))
    result = lanczos_eigenvalues(op, 6, tol=1e-10)
    np.testing.assert_allclose(result.eigenvalues, [3, 3, 3, 2, 2, 1], atol=1e-10)
    assert result.converged


def test_deterministic_given_generator():
    problem = mse_problem()
    run = [
        hessian_eigenvalues(
            problem.loss_fn,
            problem.params,
            3,
            max_iters=8,
            tol=0,
            generator=torch.Generator().manual_seed(5),
        )
        for _ in range(2)
    ]
    np.testing.assert_array_equal(run[0].eigenvalues, run[1].eigenvalues)


def test_bad_arguments():
    problem = mse_problem(widths=(2, 2))  # 6 parameters
    with pytest.raises(SpectralError, match="k=7"):
        hessian_eigenvalues(problem.loss_fn, problem.params, k=7)
    with pytest.raises(SpectralError, match="k=4"):
        hessian_eigenvalues(problem.loss_fn, problem.params, k=4, which="both")
    with pytest.raises(SpectralError, match="valid choices"):
        hessian_eigenvalues(problem.loss_fn, problem.params, which="top")
    with pytest.raises(SpectralError, match="empty parameter list"):
        hessian_eigenvalues(problem.loss_fn, [])
    with pytest.raises(SpectralError, match="unknown layer"):
        layer_parameters(problem.net, ["nope"])
    op = HessianOperator(problem.loss_fn, problem.params)
    with pytest.raises(SpectralError, match="tol"):
        lanczos_eigenvalues(op, 2, tol=-1)
