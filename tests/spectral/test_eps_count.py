"""Exact ε-counts from converged Lanczos: a known synthetic spectrum, censoring, and the
study's networks (trained on a continual MiniGrid hidden-goal stream, on their fixed probe
data at a new task's init) against dense float64 eigendecompositions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spectral import HessianOperator, ProbeConfig, SpectralError, epsilon_counts, probe

RELS = (0.001, 0.01, 0.03, 0.1)


class _Dense:
    """``A v`` for a dense symmetric ``A`` (the synthetic operator)."""

    def __init__(self, matrix: torch.Tensor) -> None:
        self.matrix, self.dim, self.device = matrix, matrix.shape[0], matrix.device

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.matrix @ v


def _with_spectrum(eigenvalues: np.ndarray, seed: int = 0) -> _Dense:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
    return _Dense(torch.tensor((q * eigenvalues) @ q.T))


def _true_counts(eigenvalues: np.ndarray, rels=RELS) -> list[int]:
    radius = np.abs(eigenvalues).max()
    return [int(np.sum(np.abs(eigenvalues) > r * radius)) for r in rels]


def _network_like_spectrum(n: int = 600, seed: int = 0) -> np.ndarray:
    """A few outliers, a power-law decay through every threshold, negative eigenvalues and
    a large near-zero bulk (the shape of a trained network's Hessian); no eigenvalue within
    2% of a threshold, so the count is unambiguous."""
    rng = np.random.default_rng(seed)
    top = 50 * np.geomspace(1, 3e-4, 45)
    neg = -np.geomspace(8, 2e-2, 12)
    bulk = 1e-5 * rng.standard_normal(n - len(top) - len(neg))
    lam = np.concatenate([top, neg, bulk])
    for r in RELS:  # push eigenvalues off the thresholds
        t = r * 50
        near = np.abs(np.abs(lam) - t) < 0.02 * t
        lam[near] *= 1.05
    return lam


def test_counts_of_a_known_spectrum_are_exact_and_uncensored():
    lam = _network_like_spectrum()
    result = epsilon_counts(_with_spectrum(lam), RELS, max_iters=400)
    assert list(result.counts) == _true_counts(lam)
    assert result.censored == (False,) * len(RELS)
    assert result.radius == pytest.approx(50, rel=1e-10)
    assert result.fractions() == tuple(c / len(lam) for c in result.counts)
    # the negative end counts by |λ|: at 10% of max|λ| (5.0) one of the 12 negatives counts (-8)
    assert result.counts[-1] == int(np.sum(lam > 5)) + int(np.sum(lam < -5))
    assert int(np.sum(lam < -5)) == 1
    # the largest ε needs the fewest steps: it is read off the same run
    assert result.num_iters < 400


def test_a_count_that_does_not_close_is_a_censored_lower_bound():
    lam = _network_like_spectrum()
    truth = _true_counts(lam)
    result = epsilon_counts(_with_spectrum(lam), RELS, max_iters=30)
    assert result.num_iters == 30
    assert result.censored[0]  # 0.1% of max|λ|: 50 eigenvalues cannot converge in 30 steps
    for count, censored, true in zip(result.counts, result.censored, truth, strict=True):
        assert count <= true
        if not censored:
            assert count == true
    assert all(np.isfinite(result.fractions()))


def test_full_dimension_is_exact_even_for_a_flat_spectrum():
    # every eigenvalue above the threshold and none converged early: dim steps, exact
    lam = np.linspace(1.0, 2.0, 40)
    result = epsilon_counts(_with_spectrum(lam), RELS, max_iters=1000)
    assert result.counts == (40,) * len(RELS) and result.censored == (False,) * len(RELS)
    assert result.num_iters == 40


def test_bad_arguments_name_the_value():
    op = _with_spectrum(np.ones(4))
    with pytest.raises(SpectralError, match="0, 1"):
        epsilon_counts(op, (0.0,))
    with pytest.raises(SpectralError, match="max_iters"):
        epsilon_counts(op, RELS, max_iters=0)
    with pytest.raises(SpectralError, match="eps_count_tol"):
        ProbeConfig(eps_count_tol=0)


def test_probe_group_keys_match_the_counts():
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 3, generator=g, dtype=torch.float64), torch.randn(32, 2, generator=g,
                                                                            dtype=torch.float64)

    def loss():
        return torch.nn.functional.mse_loss(net(x), y)

    out = probe(net, loss, metrics=["hessian_eps_count"])
    dense = torch.linalg.eigvalsh(HessianOperator(loss, net).to_dense()).numpy()
    dim = dense.size
    for r, true in zip(RELS, _true_counts(dense), strict=True):
        key = f"hessian/eps_count/rel{r:g}"
        assert out[key + "_censored"] == 0.0
        assert abs(out[key] - true) <= 1
        assert out[f"hessian/eps_count_fraction/rel{r:g}"] == out[key] / dim
        assert out[f"hessian/eps_count_fraction/rel{r:g}_censored"] == 0.0
    assert 1 <= out["hessian/eps_count_steps"] <= dim
    assert out["time/hessian_eps_count"] >= 0


# --------------------------------------------------------------- the study's networks

STUDIES = Path(__file__).resolve().parents[2] / "experiments/studies"


def _continual_problems(tmp: Path, algo: str, widths: list[int], tasks: int, period: int):
    """Networks of a continual run on the study's stream after ``tasks`` tasks, with their
    fixed-data loss on the next task's fixed probe data (its ``init`` phase)."""
    from experiments import streams
    from experiments.checkpoint import load_latest
    from experiments.config import apply_overrides, from_dict
    from experiments.probing import Prober
    from experiments.resolve import resolve
    from experiments.runner import _make_agent, run
    from experiments.tomlio import load_toml

    study = f"e2_{algo}_hidden_goal.toml"
    overrides = {"experiment.steps": tasks * period, "env.period": period,
                 "experiment.checkpoint_every": 0, "experiment.out": str(tmp / algo),
                 "logging.progress": "off", "logging.tensorboard": False,
                 "probes.enabled": False, "agent.widths": widths}
    if algo == "dqn":
        overrides.update({"agent.buffer_size": period, "agent.learning_starts": period // 4,
                          "agent.exploration_steps": period // 4,
                          "agent.target_network_frequency": 100})
    else:
        overrides.update({"agent.num_steps": 64, "agent.rewarm_steps": period // 4})
    base = apply_overrides(load_toml(STUDIES / study)["base"], overrides)
    config = resolve(from_dict(base))
    result = run(config)
    state = load_latest(Path(result.run_dir) / "checkpoints").state
    env = streams.make_stream(config, stationary=True, seed=config.experiment.seed)
    view = _make_agent(config, env, [config.experiment.seed]).members[0]
    view.load_state_dict(state["agent"])
    fixed_env = streams.make_stream(config, stationary=True, seed=config.experiment.seed,
                                    single=True)
    prober = Prober(config.probes, [], config.experiment.seed, fixed_env=fixed_env)
    _, subset = prober._fixed_data(tasks)  # the next task: the init phase's data
    problems = []
    for target in view.probe_targets():
        if target.fixed_loss is None or target.name == "actor_critic":
            continue
        batch = {**subset, "obs": target.observe(subset["obs"]),
                 "next_obs": target.observe(subset["next_obs"])}
        problems.append((target.name, target.module,
                         lambda t=target, b=batch: t.fixed_loss(b)))
    return problems


def _dense_hessian(loss, params: list[torch.Tensor], chunk: int = 256) -> torch.Tensor:
    """Explicit Hessian columns (batched double backward), symmetrised, in float64."""
    grads = torch.autograd.grad(loss(), params, create_graph=True)
    flat = torch.cat([g.reshape(-1) for g in grads])
    n = flat.numel()
    rows = []
    for start in range(0, n, chunk):
        eye = torch.zeros(min(chunk, n - start), n, dtype=flat.dtype)
        eye[:, start:start + chunk] = torch.eye(eye.shape[0], dtype=flat.dtype)
        cols = torch.autograd.grad(flat, params, grad_outputs=eye, retain_graph=True,
                                   is_grads_batched=True, allow_unused=True)
        rows.append(torch.cat([(c if c is not None else torch.zeros(len(eye), *p.shape))
                               .reshape(len(eye), -1) for c, p in zip(cols, params, strict=True)],
                              dim=1).double())
    dense = torch.cat(rows)
    return (dense + dense.T) / 2


def _inertia_count(dense: np.ndarray, shift: float, positive: bool) -> int:
    """#{λ > shift} (``positive``) or #{λ < shift} of a dense symmetric matrix, exactly, by
    Sylvester's law of inertia on the LDLᵀ factorisation of ``dense − shift·I`` (a third of
    the cost of an eigendecomposition)."""
    from scipy.linalg import lapack

    m = np.array(dense, order="F", copy=True)
    m[np.diag_indices_from(m)] -= shift
    ldu, ipiv, info = lapack.dsytrf(m, lower=1, overwrite_a=1)
    assert info >= 0
    count, i = 0, 0
    while i < len(ldu):
        if ipiv[i] < 0:  # a 2×2 pivot block
            block = np.array([[ldu[i, i], ldu[i + 1, i]], [ldu[i + 1, i], ldu[i + 1, i + 1]]])
            w = np.linalg.eigvalsh(block)
            count += int(np.sum(w > 0 if positive else w < 0))
            i += 2
        else:
            count += int(ldu[i, i] > 0 if positive else ldu[i, i] < 0)
            i += 1
    return count


def test_inertia_count_matches_the_eigenvalues():
    lam = _network_like_spectrum(200)
    dense = _with_spectrum(lam).matrix.numpy()
    for t in (0.01, 1.0):
        assert _inertia_count(dense, t, True) == int(np.sum(lam > t))
        assert _inertia_count(dense, -t, False) == int(np.sum(lam < -t))


def _check_against_dense(problems, max_iters: int, inertia: bool = False) -> None:
    for name, module, loss in problems:
        params = list(module.parameters())
        op = HessianOperator(loss, params)
        result = epsilon_counts(op, RELS, max_iters=max_iters)
        dense = _dense_hessian(loss, params).numpy()
        if inertia:  # max|λ| from Lanczos (the extreme value converges first)
            truth = [_inertia_count(dense, r * result.radius, True)
                     + _inertia_count(dense, -r * result.radius, False) for r in RELS]
        else:
            truth = _true_counts(np.linalg.eigvalsh(dense))
        assert not any(result.censored), (name, result)
        for r, count, true in zip(RELS, result.counts, truth, strict=True):
            assert abs(count - true) <= 1, (name, r, count, true)


def test_counts_on_small_study_networks_match_dense(tmp_path):
    """Default suite: the study's streams, losses and fixed data at 16-16 width (a
    dense eigendecomposition takes well under a second); the full widths are below."""
    problems = (_continual_problems(tmp_path, "ppo", [16, 16], tasks=3, period=512)
                + _continual_problems(tmp_path, "dqn", [16, 16], tasks=3, period=600))
    assert {name for name, _, _ in problems} == {"policy", "value", "q"}
    _check_against_dense(problems, max_iters=1000)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_counts_on_the_study_ppo_networks_match_dense(tmp_path):
    """PPO 64-64 policy (5,699 parameters) and value (5,569) after 4 tasks, and a DQN Q
    network of the same size (20-64-64-3): minutes (two 5.7k-square eigendecompositions)."""
    _check_against_dense(_continual_problems(tmp_path, "ppo", [64, 64], tasks=4, period=2048)
                         + _continual_problems(tmp_path, "dqn", [64, 64], tasks=4, period=2000),
                         max_iters=2000)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_counts_on_the_study_dqn_network_match_dense(tmp_path):
    """DQN 128-128 Q network (19,587 parameters) after 4 tasks: the dense float64 Hessian
    is 3 GB, so the dense counts come from 8 LDLᵀ inertias (~1 CPU minute each) instead of
    an eigendecomposition (~1e13 flops); 6 GB of memory."""
    _check_against_dense(_continual_problems(tmp_path, "dqn", [128, 128], tasks=4, period=2000),
                         max_iters=2000, inertia=True)


def test_plasticity_list_metrics_shows_the_groups(capsys):
    from experiments.cli import main

    assert main(["list", "metrics"]) == 0
    out = capsys.readouterr().out.splitlines()
    for group in ("hessian_eps_count", "ggn_eps_count"):
        (line,) = [ln for ln in out if group in ln.split()[:2]]
        assert "eps-count" in line


def test_a_hessian_group_after_one_step_gain_sees_the_same_operator():
    # one_step_gain writes the parameters in place; a later Hessian group must rebuild
    # the gradient graph instead of failing on it (the study lists one_step_gain first).
    net = torch.nn.Sequential(torch.nn.Linear(3, 6), torch.nn.Tanh(), torch.nn.Linear(6, 1))
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, generator=g), torch.randn(16, 1, generator=g)

    def loss():
        return torch.nn.functional.mse_loss(net(x), y)

    after = probe(net, loss, metrics=["hessian_top", "one_step_gain", "hessian_eps_count"],
                  eval_loss_fn=loss)
    alone = probe(net, loss, metrics=["hessian_eps_count"])
    for r in RELS:
        assert after[f"hessian/eps_count/rel{r:g}"] == alone[f"hessian/eps_count/rel{r:g}"]
