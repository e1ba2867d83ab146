"""Cost of the spectral probe options on the S1 (PPO) and S2 (DQN) study networks: the
paper's ε-rank and its resolution given an SLQ density, the Gauss-Newton density, and the
Hessian of the full PPO loss (``actor_critic``) beside the per-network Hessians.

Run from the repository root:

    python benchmarks/spectral_options.py [--repeats 3]

Each study's agent is built from its TOML (``[base]``: networks, loss, probe settings:
SLQ 100 steps x 2 probe vectors) at initialisation, on a 256-sample batch of a 512-step
side rollout of task 0 (the init probe's data). Per probe target: one Adam update of
that target's parameters (the peer), ``hessian_top``, ``hessian_density`` and, of it, the
ε-rank summaries alone (node sum and smoothed-trapezoid ε-ranks at the absolute ε and the
relative sweep, resolution) on a density already computed, and ``ggn_density``. Every
time is the median of ``--repeats`` runs in this process, one torch thread. Compare
ratios: the machine may be shared.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import spectral  # noqa: E402
from benchmarks.probes import median_time  # noqa: E402
from experiments.config import apply_overrides, from_dict  # noqa: E402
from experiments.resolve import resolve  # noqa: E402
from experiments.runner import _make_agent  # noqa: E402
from experiments.streams import make_stream  # noqa: E402
from experiments.tomlio import load_toml  # noqa: E402
from spectral.probe import density_summary  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STUDIES = {
    # the second edition's successors of the first edition's S1 and S2 (same networks)
    "S1": ROOT / "experiments/studies/e2_ppo_hidden_goal.toml",
    "S2": ROOT / "experiments/studies/e2_dqn_hidden_goal.toml",
}


def update_time(module: torch.nn.Module, loss_fn, repeats: int) -> float:
    params = [p for p in module.parameters() if p.requires_grad]
    saved = [p.detach().clone() for p in params]
    opt = torch.optim.Adam(params, lr=0.0)  # lr 0: time the update, keep the weights

    def step():
        opt.zero_grad()
        loss_fn().backward()
        opt.step()

    t, _ = median_time(step, max(repeats, 10))
    opt.zero_grad(set_to_none=True)
    with torch.no_grad():
        for p, s in zip(params, saved, strict=True):
            p.copy_(s)
    return t


def study_agent(path: Path, out: str):
    base = load_toml(path)["base"]
    config = resolve(from_dict(apply_overrides(base, {"experiment.out": out})))
    env = make_stream(config, stationary=True, seed=0)
    agent = _make_agent(config, env)
    batch = agent.collect(env, 512, seed=1)
    batch = {k: v[:256] for k, v in batch.items()}
    return config, agent, batch


def bench_target(label: str, target, batch, settings, repeats: int) -> dict[str, float]:
    """Print one row for ``target``; return its ``hessian_density`` values."""

    def loss_fn():
        return target.loss(batch)

    def run(metrics):
        ggn = target.ggn(batch) if "ggn_density" in metrics else None
        return spectral.probe(target.module, loss_fn, metrics=metrics, config=settings, ggn=ggn)

    n_params = sum(p.numel() for p in target.module.parameters() if p.requires_grad)
    upd = update_time(target.module, loss_fn, repeats)
    t_top, _ = median_time(lambda: run(["hessian_top"]), repeats)
    t_dens, out = median_time(lambda: run(["hessian_density"]), repeats)
    slq = spectral.stochastic_lanczos_quadrature(
        spectral.HessianOperator(loss_fn, target.module), settings.slq_iters, settings.slq_probes
    )
    t_eps, _ = median_time(lambda: density_summary("h", slq, settings), repeats)
    if target.ggn is not None:
        t_ggn, _ = median_time(lambda: run(["ggn_density"]), repeats)
        ggn_cols = f"{t_ggn:7.3f} {t_ggn / t_dens:8.2f}"
    else:
        ggn_cols = f"{'-':>7s} {'-':>8s}"
    print(
        f"{label + '/' + target.name:22s} {n_params:7d} {upd * 1e3:9.2f} {t_top:7.3f} "
        f"{t_dens:9.3f} {t_eps * 1e3:11.1f} {ggn_cols} {t_dens / upd:11.0f}"
    )
    return out


def bench(repeats: int) -> None:
    print(f"== spectral probe options on the study networks (median of {repeats}) ==")
    print(
        f"{'study/network':22s} {'params':>7s} {'update ms':>9s} {'top s':>7s} {'density s':>9s} "
        f"{'eps-rank ms':>11s} {'ggn s':>7s} {'ggn/dens':>8s} {'dens/update':>11s}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for label, path in STUDIES.items():
            config, agent, batch = study_agent(path, tmp)
            settings = spectral.ProbeConfig(**config.probes.settings)
            densities = {
                t.name: bench_target(label, t, batch, settings, repeats)
                for t in agent.probe_targets()
            }
            for name, out in densities.items():
                rel = "  ".join(
                    f"rel{r:g}={out[f'hessian/eps_rank_paper/rel{r:g}']:.3f}"
                    for r in settings.eps_sweep
                )
                radius = max(abs(out["hessian/slq_min"]), out["hessian/slq_max"])
                print(
                    f"   {label}/{name}: max|λ|={radius:.3g} resolution="
                    f"{out['hessian/eps_resolution']:.3g} (rel {out['hessian/eps_resolution_rel']:.2g});"
                    f" abs eps={settings.eps:g}: {out['hessian/eps_rank']:.3f}; paper {rel}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    bench(args.repeats)


if __name__ == "__main__":
    main()
