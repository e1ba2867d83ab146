"""Test-retest reliability and cost of the ε-rank estimators on the study's networks.

    python benchmarks/eps_reliability.py harvest [--tasks 6] [--seeds 3] [--out /work/runs/B/eps]
    python benchmarks/eps_reliability.py measure [--out /work/runs/B/eps]

``harvest`` runs the second edition's PPO and DQN hidden-goal settings
(experiments/studies/e2_{ppo,dqn}_hidden_goal.toml ``[base]``, their task length, for
``--tasks`` tasks) as a continual and a fresh-reference population of ``--seeds`` seeds,
and saves the agent at every shift's ``init`` probe (continual: the network after k tasks;
fresh: the trained-once network, phase ``trained_once``) to ``--out``: the network states
whose spectra the study measures.

``measure`` loads every state, takes its task's fixed probe data (experiments.probe_data:
every transition of the room under the new task, ``probes.batch_size`` of them as the study
probes), and measures each estimator four times: two independent draws of probe vectors
on the study's batch (A, B) and, with draw A, two disjoint halves of the task's fixed data
(H1, H2). Estimators (each at ε = 1% and 10% of max|λ|):

* ``slq_nodes``: SLQ node sum (``hessian/eps_rank_nodes/rel{r}``), 100 steps × 2 vectors;
* ``slq_grid``: the paper's smoothed-density trapezoid (``hessian/eps_rank_paper/rel{r}``)
  under the current guard, same SLQ run;
* ``exact``: the converged-Lanczos count fraction (``hessian/eps_count_fraction/rel{r}``).

Reliability is the intraclass correlation ICC(2,1) (two-way random effects, absolute
agreement, single measurement) of the pair across network states, per network type and
pooled; censored values enter at their bound (their share is printed). Cost per row is the
process CPU time of one probe call of the group (one torch thread). Also printed: the
Spearman correlation of each estimator with λ_max across the states (the grid estimator
should not track it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

import spectral  # noqa: E402
from experiments import streams  # noqa: E402
from experiments.config import apply_overrides, from_dict  # noqa: E402
from experiments.probing import Prober  # noqa: E402
from experiments.resolve import resolve  # noqa: E402
from experiments.runner import _make_agent, run_population  # noqa: E402
from experiments.tomlio import load_toml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STUDIES = {"ppo": ROOT / "experiments/studies/e2_ppo_hidden_goal.toml",
           "dqn": ROOT / "experiments/studies/e2_dqn_hidden_goal.toml"}
RELS = (0.01, 0.1)


def study_base(algo: str, tasks: int, period: int | None = None) -> dict:
    """The study's ``[base]`` for ``tasks`` tasks, probes reduced to the cheap ``weights``
    group at the fixed-data phases (the harvest needs the init calls, not their values)."""
    base = load_toml(STUDIES[algo])["base"]
    overrides = {}
    if period is not None:  # a shorter task (smoke): keep the schedules inside it
        overrides["env.period"] = period
        agent = base["agent"]
        for key in ("exploration_steps", "buffer_size", "rewarm_steps"):
            if key in agent:
                overrides[f"agent.{key}"] = min(agent[key], period // 4 if key != "buffer_size" else period)
        if "learning_starts" in agent:
            overrides["agent.learning_starts"] = min(agent["learning_starts"], period // 3)
    period = period or base["env"]["period"]
    return apply_overrides(base, {
        **overrides, "experiment.steps": tasks * period, "experiment.checkpoint_every": 0,
        "logging.progress": "off", "logging.tensorboard": False,
        "probes.metrics": ["weights"], "probes.trained_once": True,
        "probes.fixed_phases": ["init", "trained_once"],
    })


def harvest(args: argparse.Namespace) -> None:
    saved: list[str] = []
    original = Prober.probe
    current: dict = {}

    def saving_probe(self, agent, *, phase, step, task_id, **kwargs):
        rows = original(self, agent, phase=phase, step=step, task_id=task_id, **kwargs)
        arm, algo = current["reference"], current["algo"]
        if (arm, phase) in (("continual", "init"), ("fresh", "trained_once")):
            path = Path(args.out) / algo / arm / f"seed{self.seed}-task{task_id}.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"agent": agent.state_dict(), "task_id": task_id, "step": step,
                        "seed": self.seed, "phase": phase, "arm": arm, "algo": algo,
                        "config": current["base"]}, path)
            saved.append(str(path))
        return rows

    Prober.probe = saving_probe
    for algo in args.algos:
        for reference in ("continual", "fresh"):
            base = apply_overrides(study_base(algo, args.tasks, args.period),
                                   {"experiment.reference": reference})
            current.update(algo=algo, reference=reference, base=base)
            configs = [from_dict(apply_overrides(base, {
                "experiment.seed": s, "experiment.out": f"{args.out}/runs/{algo}-{reference}/seed{s}"}))
                for s in range(args.seeds)]
            t0 = time.process_time()
            run_population(configs, overwrite=True)
            print(f"{algo} {reference}: {args.seeds} seeds x {args.tasks} tasks in "
                  f"{time.process_time() - t0:.0f} s CPU; {len(saved)} states so far", flush=True)
    Prober.probe = original



def fixed_problems(path: Path) -> list[dict]:
    """The networks of a saved state with their fixed-data loss closures: per network
    ``{"network", "module", "loss"(batch), "batch" (the study's), "halves"}``."""
    state = torch.load(path, weights_only=False)
    seed = state["seed"]
    config = resolve(from_dict(apply_overrides(state["config"], {
        "experiment.seed": seed, "experiment.out": str(path.parent / "unused")})))
    env = streams.make_stream(config, stationary=True, seed=seed)
    view = _make_agent(config, env, [seed]).members[0]
    view.load_state_dict(state["agent"])
    fixed_env = streams.make_stream(config, stationary=True, seed=seed, single=True)
    data, subset = Prober(config.probes, [], seed, fixed_env=fixed_env)._fixed_data(state["task_id"])
    n = len(data["obs"])
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed), device="cpu")
    halves = [{k: v[idx] for k, v in data.items()} for idx in (order[: n // 2], order[n // 2:])]
    out = []
    for target in view.probe_targets():
        if target.fixed_loss is None or target.name == "actor_critic":
            continue

        def observed(b, target=target):
            return {**b, "obs": target.observe(b["obs"]), "next_obs": target.observe(b["next_obs"])}

        out.append({"network": target.name, "module": target.module, "loss": target.fixed_loss,
                    "batch": observed(subset), "halves": [observed(h) for h in halves]})
    return out


def measure(args: argparse.Namespace) -> None:
    raise NotImplementedError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    h = sub.add_parser("harvest", help="train the study settings and save the network states")
    h.add_argument("--tasks", type=int, default=6)
    h.add_argument("--seeds", type=int, default=3)
    h.add_argument("--algos", nargs="+", default=["ppo", "dqn"], choices=sorted(STUDIES))
    h.add_argument("--out", default="/work/runs/B/eps")
    h.add_argument("--period", type=int, default=None, help="override the task length")
    m = sub.add_parser("measure", help="reliability and cost of each estimator")
    m.add_argument("--out", default="/work/runs/B/eps")
    m.add_argument("--limit", type=int, default=None, help="at most this many states per algo")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
    if args.command == "harvest":
        harvest(args)
    else:
        measure(args)


if __name__ == "__main__":
    main()
