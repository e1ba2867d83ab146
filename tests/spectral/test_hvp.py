"""Hessian and Gauss-Newton products against dense matrices (float64)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spectral import GGNOperator, HessianOperator, SpectralError, hvp
from tests.spectral.helpers import ce_problem, mse_problem


@pytest.mark.parametrize(
    "problem",
    [mse_problem(), ce_problem(), mse_problem(activation=nn.ReLU, seed=3)],
    ids=["mse-tanh", "ce-tanh", "mse-relu"],
)
def test_hessian_operator_matches_dense_hessian(problem):
    dense = problem.dense_hessian()
    op = HessianOperator(problem.loss_fn, problem.params)
    assert op.dim == dense.shape[0]
    torch.testing.assert_close(op.to_dense(), dense, rtol=1e-10, atol=1e-12)
    assert op.num_matvecs == op.dim


def test_operator_reuses_one_forward_pass():
    problem = mse_problem()
    calls = []

    def counting_loss():
        calls.append(1)
        return problem.loss_fn()

    op = HessianOperator(counting_loss, problem.net)
    for _ in range(5):
        op.matvec(torch.randn(op.dim, dtype=torch.float64))
    assert len(calls) == 1


def test_layer_block_matches_dense_submatrix():
    problem = mse_problem()
    dense = problem.dense_hessian()
    full = HessianOperator(problem.loss_fn, problem.params)
    middle = list(problem.net[2].parameters())  # second Linear: weight and bias
    start = sum(p.numel() for p in problem.net[0].parameters())
    stop = start + sum(p.numel() for p in middle)
    expected = dense[start:stop, start:stop]
    torch.testing.assert_close(full.block(middle).to_dense(), expected, rtol=1e-10, atol=1e-12)
    # A fresh operator on the layer's parameters alone gives the same block.
    torch.testing.assert_close(
        HessianOperator(problem.loss_fn, middle).to_dense(), expected, rtol=1e-10, atol=1e-12
    )


def test_hvp_accepts_flat_and_structured_vectors():
    problem = ce_problem()
    dense = problem.dense_hessian()
    v = torch.randn(dense.shape[0], dtype=torch.float64)
    torch.testing.assert_close(hvp(problem.loss_fn, problem.params, v), dense @ v)
    parts = list(torch.split(v, [p.numel() for p in problem.params]))
    structured = [t.view(p.shape) for t, p in zip(parts, problem.params, strict=True)]
    out = hvp(problem.loss_fn, problem.params, structured)
    torch.testing.assert_close(torch.cat([o.reshape(-1) for o in out]), dense @ v)


def test_float32_model_with_float64_vectors():
    problem = mse_problem()
    dense = problem.dense_hessian()
    net32 = problem.net.float()
    x32, y32 = problem.x.float(), problem.y.float()
    op = HessianOperator(lambda: F.mse_loss(net32(x32), y32), net32)
    v = torch.randn(op.dim, dtype=torch.float64)
    out = op.matvec(v)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, dense @ v, rtol=1e-4, atol=1e-5)


def test_parameters_the_loss_is_linear_in_have_zero_curvature():
    torch.manual_seed(0)
    w = torch.randn(3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(1, dtype=torch.float64, requires_grad=True)  # loss is linear in b
    unused = torch.randn(2, dtype=torch.float64, requires_grad=True)
    x = torch.randn(10, 3, dtype=torch.float64)
    op = HessianOperator(lambda: ((x @ w) ** 2).mean() + 3 * b.sum(), [w, b, unused])
    dense = op.to_dense()
    expected = torch.zeros(6, 6, dtype=torch.float64)
    expected[:3, :3] = 2 * x.T @ x / 10
    torch.testing.assert_close(dense, expected)
    torch.testing.assert_close(op.gradient[3], torch.tensor(3.0, dtype=torch.float64))


def _output_loss_hessian(
    loss_name: str, outputs: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """Closed-form ∂²L/∂f² for mean-reduced losses, over the row-major flattened output."""
    batch, classes = outputs.shape
    if loss_name == "mse":  # L = Σ (f - y)² / (B C)
        return 2.0 * torch.eye(batch * classes, dtype=outputs.dtype) / (batch * classes)
    if loss_name == "huber":  # δ = 1: curvature 1/(B C) inside |f - y| <= 1, none outside
        inside = ((outputs - targets).abs() <= 1).reshape(-1).to(outputs.dtype)
        return torch.diag(inside) / (batch * classes)
    p = torch.softmax(outputs, dim=1)  # L = mean_b CE: block b is (diag p_b - p_b p_bᵀ) / B
    blocks = [(torch.diag(p[b]) - torch.outer(p[b], p[b])) / batch for b in range(batch)]
    return torch.block_diag(*blocks)


@pytest.mark.parametrize("loss_name", ["mse", "huber", "cross_entropy"])
def test_ggn_matches_dense_jt_h_j(loss_name):
    problem = ce_problem() if loss_name == "cross_entropy" else mse_problem()
    targets = problem.y
    if loss_name == "huber":  # residuals on both sides of δ = 1
        targets = 1.5 * targets
        assert 0 < float(((problem.net(problem.x) - targets).abs() > 1).double().mean()) < 1
    jac = problem.dense_jacobian()
    h_out = _output_loss_hessian(loss_name, problem.net(problem.x).detach(), targets)
    expected = jac.T @ h_out @ jac
    op = GGNOperator(lambda: problem.net(problem.x), problem.params, loss_name, targets)
    dense = op.to_dense()
    torch.testing.assert_close(dense, expected, rtol=1e-10, atol=1e-12)
    assert torch.linalg.eigvalsh(dense)[0] > -1e-10  # PSD for convex output losses
    # The same with the loss given as a callable.
    functional = {"mse": F.mse_loss, "huber": F.huber_loss, "cross_entropy": F.cross_entropy}

    def loss_of_output(z):
        return functional[loss_name](z, targets)

    op2 = GGNOperator(lambda: problem.net(problem.x), problem.params, loss_of_output)
    torch.testing.assert_close(op2.to_dense(), expected, rtol=1e-10, atol=1e-12)


def test_ggn_of_a_td_loss_on_the_taken_actions():
    # DQN: Huber (smooth L1) of Q(s, a_taken) against a fixed target; H_L lives on the
    # taken-action entries of the (batch × actions) output, 1/B where |residual| <= 1.
    problem = mse_problem(widths=(5, 16, 3), batch=40)
    g = torch.Generator().manual_seed(7)
    actions = torch.randint(0, 3, (40, 1), generator=g)
    targets = 2.0 * torch.randn(40, generator=g, dtype=torch.float64)

    def td_loss(z):
        return F.smooth_l1_loss(z.gather(1, actions).squeeze(1), targets)

    q = problem.net(problem.x).detach()
    inside = (q.gather(1, actions).squeeze(1) - targets).abs() <= 1
    h_out = torch.zeros(40, 3, dtype=torch.float64)
    h_out[torch.arange(40), actions.squeeze(1)] = inside.double() / 40
    expected = problem.dense_jacobian().T @ torch.diag(h_out.reshape(-1)) @ problem.dense_jacobian()
    op = GGNOperator(lambda: problem.net(problem.x), problem.params, td_loss)
    torch.testing.assert_close(op.to_dense(), expected, rtol=1e-10, atol=1e-12)


def test_ggn_of_a_softmax_policy_is_its_fisher_matrix():
    # Cross-entropy against the policy's own (detached) probabilities: G = E_s[Jᵀ (diag p −
    # ppᵀ) J] = E_s E_{a~π}[∇log π(a|s) ∇log π(a|s)ᵀ], the Fisher matrix; no advantages.
    problem = ce_problem(widths=(6, 10, 4), batch=30)
    jac = problem.dense_jacobian()
    p = torch.softmax(problem.net(problem.x), dim=1).detach()
    fisher = torch.zeros(jac.shape[1], jac.shape[1], dtype=torch.float64)
    for b in range(30):
        # ∇_θ log π(a|s_b) = J_bᵀ (e_a − p_b) for the logits' Jacobian J_b (4 × dim).
        j_b = jac[4 * b : 4 * b + 4]
        for a in range(4):
            score = j_b.T @ (torch.eye(4, dtype=torch.float64)[a] - p[b])
            fisher += p[b, a] * torch.outer(score, score) / 30
    op = GGNOperator(lambda: problem.net(problem.x), problem.params, "cross_entropy", p)
    torch.testing.assert_close(op.to_dense(), fisher, rtol=1e-9, atol=1e-12)


def test_ggn_of_linear_model_equals_hessian():
    # For a model linear in its parameters the residual term vanishes: G = H.
    problem = mse_problem(widths=(4, 3))
    ggn = GGNOperator(lambda: problem.net(problem.x), problem.params, "mse", problem.y).to_dense()
    torch.testing.assert_close(ggn, problem.dense_hessian(), rtol=1e-10, atol=1e-12)


def test_grad_fields_are_not_touched():
    problem = mse_problem()
    op = HessianOperator(problem.loss_fn, problem.params)
    op.matvec(torch.ones(op.dim, dtype=torch.float64))
    assert all(p.grad is None for p in problem.params)


def test_bad_inputs_raise_spectral_error():
    problem = mse_problem()
    with pytest.raises(SpectralError, match="empty parameter list"):
        HessianOperator(problem.loss_fn, [])
    with pytest.raises(SpectralError, match="scalar"):
        HessianOperator(lambda: (problem.net(problem.x) - problem.y) ** 2, problem.params)
    frozen = torch.zeros(3, dtype=torch.float64)
    with pytest.raises(SpectralError, match="does not require grad"):
        HessianOperator(problem.loss_fn, [frozen])
    with pytest.raises(SpectralError, match="appears twice"):
        HessianOperator(problem.loss_fn, [problem.params[0], problem.params[0]])

    def no_grad_loss():
        with torch.no_grad():
            return problem.loss_fn()

    with pytest.raises(SpectralError, match="no_grad"):
        HessianOperator(no_grad_loss, problem.params)
    op = HessianOperator(problem.loss_fn, problem.params)
    with pytest.raises(SpectralError, match="does not match"):
        op.matvec(torch.zeros(op.dim + 1, dtype=torch.float64))
    with pytest.raises(SpectralError, match="valid choices"):
        GGNOperator(lambda: problem.net(problem.x), problem.params, "hinge", problem.y)
    with pytest.raises(SpectralError, match="targets"):
        GGNOperator(lambda: problem.net(problem.x), problem.params, "mse")
