"""probe()/ProbeSet: stable names, agreement with the functions, no side effects."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spectral import (
    DEFAULT_METRICS,
    FULL_METRICS,
    ProbeConfig,
    ProbeSet,
    SpectralError,
    effective_rank,
    list_metrics,
    probe,
)
from tests.spectral.helpers import mse_problem

FEATURE_KEYS = {
    "effective_rank", "srank", "feature_rank", "numerical_rank", "dormant_fraction",
    "dead_fraction", "zero_fraction", "feature_norm", "preactivation_norm",
}  # fmt: skip


def _net_with_state():
    """MLP with BatchNorm (buffers) and Dropout (consumes the global RNG in train mode)."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(4, 16),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Dropout(0.1),
        nn.Linear(16, 8),
        nn.ReLU(),
        nn.Linear(8, 2),
    ).double()
    x = torch.randn(32, 4, dtype=torch.float64)
    y = torch.randn(32, 2, dtype=torch.float64)
    return net, x, lambda: F.mse_loss(net(x), y)


def test_no_side_effects_on_model_grads_modes_flags_buffers_and_rng():
    net, x, loss_fn = _net_with_state()
    net[1].eval()  # mixed modes must survive
    net[0].bias.requires_grad_(False)  # frozen parameters are skipped, flag kept
    net[4].weight.grad = torch.full_like(net[4].weight, 7.0)
    grad_object = net[4].weight.grad
    init = [p.detach().clone() for p in net.parameters() if p.requires_grad]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    modes = [m.training for m in net.modules()]
    rng = torch.get_rng_state()
    out = probe(
        net, loss_fn, layers={"a": net[2], "b": net[5]}, inputs=x,
        metrics=[*FULL_METRICS, "layer_hessian_top", "one_step_gain", "distance_from_init"],
        config=ProbeConfig(slq_iters=20, slq_probes=2, trace_samples=9),
        eval_loss_fn=loss_fn, init_params=init,
    )  # fmt: skip
    # eps_rank_std is the only key that may be NaN (one probe vector has no spread)
    assert all(np.isfinite(v) for k, v in out.items())
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # params and BN buffers
    assert [m.training for m in net.modules()] == modes
    assert net[0].bias.requires_grad is False and net[0].weight.requires_grad is True
    assert net[4].weight.grad is grad_object and torch.all(grad_object == 7.0)
    assert all(p.grad is None for name, p in net.named_parameters() if name != "4.weight")
    assert torch.equal(torch.get_rng_state(), rng)


def test_default_keys_are_stable_and_match_the_functions():
    problem = mse_problem(activation=nn.ReLU)
    layers = {"h0": problem.net[1], "h1": problem.net[3]}
    out = probe(problem.net, problem.loss_fn, layers=layers, inputs=problem.x)
    expected = {f"hessian/top_{i}" for i in range(1, 6)} | {
        "grad/norm",
        "grad/zero_fraction",
        "weights/norm",
    }
    expected |= {f"features/{layer}/{key}" for layer in layers for key in FEATURE_KEYS}
    expected |= {f"time/{g}" for g in DEFAULT_METRICS} | {"time/hessian_setup", "time/total"}
    assert set(out) == expected
    assert all(isinstance(v, float) for v in out.values())
    exact = torch.linalg.eigvalsh(problem.dense_hessian()).numpy()[::-1]
    top = [out[f"hessian/top_{i}"] for i in range(1, 6)]
    np.testing.assert_allclose(top, exact[:5], rtol=2e-3)  # cheap default: ≤ 30 Lanczos steps
    with torch.no_grad():
        phi = torch.relu(problem.net[2](torch.relu(problem.net[0](problem.x))))
    assert out["features/h1/effective_rank"] == pytest.approx(float(effective_rank(phi)), rel=1e-12)
    with torch.no_grad():
        pre = problem.net[2](torch.relu(problem.net[0](problem.x)))
    assert out["features/h1/preactivation_norm"] == pytest.approx(
        float(pre.norm(dim=1).mean()), rel=1e-12
    )
    assert out["time/total"] >= out["time/hessian_top"] > 0


def test_features_group_reports_saturated_fraction_for_tanh_layers_only():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 1))
    with torch.no_grad():
        net[0].bias.copy_(torch.tensor([10.0, -10.0, 0.0, 0.0]))  # units 0, 1 saturated
        net[0].weight.mul_(0.1)
    x = torch.randn(16, 3)
    out = probe(net, lambda: net(x).square().mean(), layers={"t": net[1], "r": net[3]},
                inputs=x, metrics=["features"])
    with torch.no_grad():
        z = net[0](x)
    assert (z[:, :2].abs() > 3).all() and not (z[:, 2:].abs() > 3).all(dim=0).any()
    assert out["features/t/saturated_fraction"] == pytest.approx(0.5)
    assert "features/r/saturated_fraction" not in out  # a ReLU layer: dead_fraction instead
    loose = probe(net, lambda: net(x).square().mean(), layers={"t": net[1]}, inputs=x,
                  metrics=["features"], config=ProbeConfig(saturation_bound=1e-9))
    assert loose["features/t/saturated_fraction"] == pytest.approx(1.0)


def test_full_set_and_bottom_from_one_lanczos_run():
    problem = mse_problem()
    cfg = ProbeConfig(top_k=3, lanczos_iters=200, lanczos_tol=1e-10, slq_probes=3, slq_iters=30)
    out = ProbeSet(FULL_METRICS, cfg)(problem.net, problem.loss_fn, layers=["1"], inputs=problem.x)
    exact = torch.linalg.eigvalsh(problem.dense_hessian()).numpy()
    np.testing.assert_allclose(
        [out[f"hessian/bottom_{i}"] for i in (1, 2, 3)], exact[:3], rtol=1e-6
    )
    np.testing.assert_allclose(
        [out[f"hessian/top_{i}"] for i in (1, 2, 3)], exact[::-1][:3], rtol=1e-6
    )
    for key in ("eps_rank", "eps_rank_std", "eps_rank_grid", "neg_mass", "effective_rank", "trace"):
        assert f"hessian/{key}" in out
    assert out["hessian/slq_max"] == pytest.approx(exact[-1], rel=1e-6)
    # Each ε-rank is censored exactly when its ε is below the reported resolution, and is
    # a number (never NaN) either way.
    assert out["hessian/eps_rank_censored"] == float(0.01 < out["hessian/eps_resolution_nodes"])
    assert out["hessian/eps_rank_grid_censored"] == float(0.01 < out["hessian/eps_resolution"])
    for r in cfg.eps_sweep:
        for estimator, suffix in (("paper", ""), ("nodes", "_nodes")):
            key = f"hessian/eps_rank_{estimator}/rel{r:g}"
            assert out[key + "_censored"] == float(r < out[f"hessian/eps_resolution{suffix}_rel"])
            assert 0 <= out[key] <= 1
    # The paper's estimator also has the smoothing kernel's limit.
    assert out["hessian/eps_resolution"] >= out["hessian/eps_resolution_nodes"]
    assert out["hessian/eps_resolution_rel"] == pytest.approx(
        out["hessian/eps_resolution"] / max(abs(exact[0]), abs(exact[-1])), rel=1e-6
    )


def test_ggn_density_matches_the_dense_gauss_newton_spectrum():
    problem = mse_problem(widths=(4, 10, 2), batch=16)  # 72 parameters, GGN rank <= 32
    net, x, y = problem.net, problem.x, problem.y
    cfg = ProbeConfig(slq_iters=100, slq_probes=6, eps_sweep=(0.001, 0.01, 0.1))
    out = probe(
        net, problem.loss_fn, metrics=["ggn_density"], config=cfg,
        ggn=(lambda: net(x), lambda z: F.mse_loss(z, y)),
    )  # fmt: skip
    jac = problem.dense_jacobian()
    exact = torch.linalg.eigvalsh(jac.T @ jac * 2 / y.numel()).numpy()
    assert out["ggn/slq_max"] == pytest.approx(exact[-1], rel=1e-8)
    assert out["ggn/slq_min"] > -1e-10  # PSD
    # The Krylov space closes (33 distinct eigenvalues), so the quadrature is exact: the
    # node sum resolves every ε; the paper's estimator is limited by GRID_GUARD widths of
    # its kernel, 4·sqrt(1e-5·max(1, range)) ≈ 1% of λ_max here, so its rel 0.001 is
    # censored: the ε-rank at the resolution, a lower bound.
    kernel = 4 * np.sqrt(1e-5 * max(1.0, exact[-1] - exact[0])) / exact[-1]
    assert out["ggn/eps_resolution_rel"] == pytest.approx(kernel, rel=1e-6)
    assert out["ggn/eps_resolution_nodes"] < 1e-12
    assert out["ggn/eps_rank_paper/rel0.001_censored"] == 1.0
    assert out["ggn/eps_rank_paper/rel0.001"] <= np.mean(np.abs(exact) > 0.001 * exact[-1]) + 0.12
    for r in cfg.eps_sweep:
        truth = np.mean(np.abs(exact) > r * exact[-1])
        for estimator in ("paper", "nodes") if r > 0.001 else ("nodes",):
            # 6 probes: the weights average to 1/n within ~0.035 (1 s.e.); 0.12 ~ 3.5 s.e.
            assert abs(out[f"ggn/eps_rank_{estimator}/rel{r:g}"] - truth) < 0.12
    with pytest.raises(SpectralError, match="needs the `ggn` argument"):
        probe(net, problem.loss_fn, metrics=["ggn_density"], config=cfg)


def test_eps_sweep_is_validated():
    assert ProbeConfig(eps_sweep=[0.01, 0.1]).eps_sweep == (0.01, 0.1)  # a TOML list
    for bad in ((0.0,), (1.5,), 0.1, ("a",)):
        with pytest.raises(SpectralError, match="eps_sweep"):
            ProbeConfig(eps_sweep=bad)


def test_layer_hessian_top_matches_dense_blocks():
    problem = mse_problem(widths=(5, 16, 12, 1))
    cfg = ProbeConfig(top_k=2, lanczos_iters=300, lanczos_tol=0)
    out = probe(problem.net, problem.loss_fn, metrics=["layer_hessian_top"], config=cfg)
    dense = problem.dense_hessian()
    start = 0
    for name in ("0", "2", "4"):
        size = sum(p.numel() for p in problem.net.get_submodule(name).parameters())
        exact = torch.linalg.eigvalsh(dense[start : start + size, start : start + size]).numpy()[
            ::-1
        ]
        start += size
        np.testing.assert_allclose(
            [out[f"hessian/{name}/top_1"], out[f"hessian/{name}/top_2"]], exact[:2], rtol=1e-8
        )


def test_deterministic_given_generator_and_independent_of_other_groups():
    problem = mse_problem()
    cfg = ProbeConfig(slq_iters=15, slq_probes=2)

    def run(metrics, seed):
        return probe(
            problem.net,
            problem.loss_fn,
            metrics=metrics,
            config=cfg,
            generator=torch.Generator().manual_seed(seed),
        )

    a, b = run(["hessian_density"], 1), run(["hessian_density"], 1)
    c = run(["hessian_trace", "hessian_density"], 1)
    d = run(["hessian_density"], 2)
    density_keys = [k for k in a if k.startswith("hessian/")]
    values = [{k: r[k] for k in density_keys} for r in (a, b, c, d)]
    np.testing.assert_equal(values[0], values[1])  # NaN (unresolved ε) equal to NaN
    np.testing.assert_equal(values[0], values[2])
    assert values[0]["hessian/eps_resolution"] != values[3]["hessian/eps_resolution"]


def test_float32_model_and_no_grad_caller():
    problem = mse_problem()
    exact = torch.linalg.eigvalsh(problem.dense_hessian()).numpy()[::-1]
    net = problem.net.float()
    x, y = problem.x.float(), problem.y.float()
    with torch.no_grad():  # a runner may probe from inside no_grad
        out = probe(
            net,
            lambda: F.mse_loss(net(x), y),
            metrics=["hessian_top"],
            config=ProbeConfig(lanczos_iters=60, lanczos_tol=1e-6),
        )
    assert out["hessian/top_1"] == pytest.approx(exact[0], rel=1e-4)


def test_unknown_metrics_and_missing_arguments():
    problem = mse_problem()
    assert set(list_metrics()) >= set(FULL_METRICS)
    with pytest.raises(SpectralError, match="valid choices: hessian_top"):
        probe(problem.net, problem.loss_fn, metrics=["hessian_top", "spectral_gap"])
    with pytest.raises(SpectralError, match="layers"):
        probe(problem.net, problem.loss_fn, metrics=["features"], inputs=problem.x)
    with pytest.raises(SpectralError, match="eval_loss_fn"):
        probe(problem.net, problem.loss_fn, metrics=["one_step_gain"])
    with pytest.raises(SpectralError, match="init_params"):
        probe(problem.net, problem.loss_fn, metrics=["distance_from_init"])
    with pytest.raises(SpectralError, match="trace_method"):
        ProbeConfig(trace_method="exact")
    with pytest.raises(SpectralError, match="top_k"):
        ProbeConfig(top_k=0)
