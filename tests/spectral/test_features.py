"""Feature statistics on matrices with known singular values and constructed activations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from spectral import (
    SpectralError,
    dead_fraction,
    dormant_fraction,
    effective_rank,
    feature_norm,
    feature_rank,
    numerical_rank,
    redo_scores,
    saturated_fraction,
    singular_values,
    srank,
    stable_rank,
    zero_fraction,
)


def with_singular_values(sigma, rows=50, cols=None, seed=0) -> torch.Tensor:
    """A rows × cols matrix U diag(σ) Vᵀ with random orthonormal U, V."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    cols = cols or len(sigma)
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(rows, len(sigma), generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(cols, len(sigma), generator=g, dtype=torch.float64))
    return u @ torch.diag(sigma) @ v.T


SIGMA = [8.0, 4.0, 2.0, 1.0, 0.5, 0.25, 0.0, 0.0]


def test_singular_values_recovered():
    torch.testing.assert_close(
        singular_values(with_singular_values(SIGMA)),
        torch.tensor(SIGMA, dtype=torch.float64),
        atol=1e-12,
        rtol=0,
    )


def test_effective_rank_exact():
    p = torch.tensor(SIGMA[:6], dtype=torch.float64) / sum(SIGMA)
    expected = math.exp(-float((p * p.log()).sum()))
    exact = effective_rank(with_singular_values(SIGMA), log_eps=0.0)
    assert float(exact) == pytest.approx(expected, rel=1e-10)
    assert float(effective_rank(with_singular_values([3.0] * 5))) == pytest.approx(5.0, rel=1e-7)
    assert float(effective_rank(torch.zeros(4, 3))) == 0.0
    # The default is the paper's log(p + 1e-8) guard: O(1e-8) from the exact entropy.
    guarded = float(effective_rank(with_singular_values(SIGMA)))
    p_np = np.array(SIGMA[:6]) / sum(SIGMA)
    assert guarded == pytest.approx(math.exp(-(p_np * np.log(p_np + 1e-8)).sum()), rel=1e-12)
    assert guarded == pytest.approx(expected, rel=1e-6)


def test_effective_rank_is_differentiable():
    # SIGMA has two zero singular values: the default guard keeps the gradient finite.
    phi = with_singular_values(SIGMA).requires_grad_(True)
    (grad,) = torch.autograd.grad(effective_rank(phi), phi)
    assert torch.all(torch.isfinite(grad)) and grad.abs().sum() > 0
    phi = torch.randn(7, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.autograd.gradcheck(effective_rank, (phi.requires_grad_(True),))
    # A dead layer: rank 0 with a (zero) gradient, so a regulariser's step is defined.
    zero = torch.zeros(5, 4, requires_grad=True)
    (grad,) = torch.autograd.grad(effective_rank(zero), zero)
    assert torch.equal(grad, torch.zeros(5, 4))


def test_srank_covers_99_percent():
    # Σσ = 15.75; cumulative: 8, 12, 14, 15, 15.5, 15.75 -> 0.99·15.75 = 15.59 needs 6.
    assert srank(with_singular_values(SIGMA)) == 6
    assert srank(with_singular_values(SIGMA), threshold=0.9) == 4  # 14.175 needs 15 (k=4)
    assert srank(with_singular_values(SIGMA), threshold=0.5) == 1  # 8 ≥ 7.875
    assert stable_rank is srank
    assert srank(torch.zeros(3, 3)) == 0


def test_feature_rank_scales_by_sqrt_batch():
    # σ(Φ/√n) with n = 100 rows: 0.8, 0.4, 0.2, 0.1, 0.05, 0.025, 0, 0.
    phi = with_singular_values(SIGMA, rows=100)
    assert feature_rank(phi) == 6
    assert feature_rank(phi, eps=0.03) == 5
    assert feature_rank(phi, eps=0.15) == 3


def test_numerical_rank():
    assert numerical_rank(with_singular_values(SIGMA)) == 6
    assert numerical_rank(with_singular_values(SIGMA), tol=0.3) == 5
    assert numerical_rank(with_singular_values([1.0, 1e-9, 1e-20])) == 2


def test_redo_scores_and_dormant_fraction_on_constructed_activations():
    # Unit means of |h|: 1, 2, 3, 0.05, 0 -> layer mean 1.21.
    h = torch.tensor([[1.0, 2.0, 3.0, 0.1, 0.0], [1.0, 2.0, 3.0, 0.0, 0.0]])
    scores = redo_scores(h)
    torch.testing.assert_close(scores, torch.tensor([1.0, 2.0, 3.0, 0.05, 0.0]) / 1.21)
    assert dormant_fraction(h, tau=0.0) == pytest.approx(1 / 5)  # only the all-zero unit
    assert dormant_fraction(h, tau=0.05) == pytest.approx(2 / 5)  # 0.05/1.21 = 0.041 ≤ 0.05
    assert dormant_fraction(h, tau=0.9) == pytest.approx(3 / 5)  # 1/1.21 = 0.83 too
    assert dormant_fraction(torch.zeros(3, 4)) == 1.0


def test_crelu_units_fold_their_two_features():
    # [relu(x), relu(-x)] of 3 units: unit 0 only ever negative (its relu(x) half is 0),
    # unit 2 always 0. Per feature, unit 0's first half looks dead; per unit it is active.
    x = torch.tensor([[-1.0, 2.0, 0.0], [-3.0, -2.0, 0.0]])
    h = torch.cat([torch.relu(x), torch.relu(-x)], dim=1)
    torch.testing.assert_close(redo_scores(h, units=3), torch.tensor([2.0, 2.0, 0.0]) / (4 / 3))
    assert dormant_fraction(h, units=3) == pytest.approx(1 / 3)
    assert dormant_fraction(h) == pytest.approx(3 / 6)  # per feature: x0+, x2+, x2-
    assert dead_fraction(h, units=3) == pytest.approx(1 / 3)
    assert dead_fraction(h) == pytest.approx(3 / 6)
    with pytest.raises(SpectralError, match="units=4"):
        redo_scores(h, units=4)


def test_dead_and_zero_fraction_are_different_things():
    h = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0], [0.0, 3.0, 0.0]])
    assert dead_fraction(h) == pytest.approx(1 / 3)  # unit 0 is zero on every sample
    assert zero_fraction(h) == pytest.approx(6 / 9)  # 6 of 9 entries are zero


def test_saturated_fraction_by_hand():
    # unit 0: |z| > 3 on every row (one negative, sign flips count) -> saturated
    # unit 1: 3.5, 2.0, 4.0 -> one row inside the bound -> not saturated
    # unit 2: exactly 3.0 on one row -> not beyond the bound -> not saturated
    # unit 3: -5 everywhere -> saturated
    z = torch.tensor([[3.1, 3.5, 4.0, -5.0], [-4.0, 2.0, 3.0, -5.0], [10.0, 4.0, 9.0, -5.0]])
    assert saturated_fraction(z, bound=3.0) == pytest.approx(2 / 4)
    assert saturated_fraction(z, bound=1.0) == pytest.approx(4 / 4)
    assert saturated_fraction(z, bound=5.0) == pytest.approx(0.0)
    assert saturated_fraction(z) == saturated_fraction(z, bound=3.0)  # the default bound is 3
    with pytest.raises(SpectralError, match="bound"):
        saturated_fraction(z, bound=-1.0)


def test_feature_norm_is_mean_row_norm():
    phi = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    assert float(feature_norm(phi)) == pytest.approx(3.0)


def test_bad_inputs():
    with pytest.raises(SpectralError, match="2-D"):
        effective_rank(torch.ones(2, 3, 4))
    with pytest.raises(SpectralError, match="2-D"):
        dormant_fraction(torch.ones(5))
    with pytest.raises(SpectralError, match="eps"):
        feature_rank(torch.ones(3, 3), eps=-1)
    with pytest.raises(SpectralError, match="tau"):
        dormant_fraction(torch.ones(3, 3), tau=-0.1)
    with pytest.raises(SpectralError, match="threshold"):
        srank(torch.ones(3, 3), threshold=1.5)
    with pytest.raises(SpectralError, match="floating"):
        srank(torch.ones(3, 3, dtype=torch.long))
