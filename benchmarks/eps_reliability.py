"""Test-retest reliability and cost of the ε-rank estimators on the study's networks.

    python benchmarks/eps_reliability.py harvest [--tasks 6] [--seeds 3] [--out /work/runs/B/eps]
    python benchmarks/eps_reliability.py measure [--out /work/runs/B/eps]
    python benchmarks/eps_reliability.py report | cost [--tasks 2] | dense STATE

``harvest`` runs the second edition's PPO and DQN hidden-goal settings
(experiments/studies/e2_{ppo,dqn}_hidden_goal.toml ``[base]``, their task length, for
``--tasks`` tasks) as a continual and a fresh-reference population of ``--seeds`` seeds,
and saves the agent at every shift's ``init`` probe (continual: the network after k tasks;
fresh: the trained-once network, phase ``trained_once``) to ``--out``: the network states
whose spectra the study measures.

``dense STATE`` checks one state's exact counts against dense float64 counts (LDLᵀ
inertia of the explicit Hessian ∓ tI).

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
import importlib
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
from spectral.density import epsilon_rank, epsilon_resolution  # noqa: E402
from spectral.probe import density_summary  # noqa: E402

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
        for reference in args.references:
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


def _timed(fn):
    t0 = time.process_time()
    out = fn()
    return out, time.process_time() - t0


def measure_one(module, loss, batch, seed: int) -> dict:
    """One row of every estimator on one batch, probe vectors drawn from ``seed``."""
    params = [p for p in module.parameters() if p.requires_grad]
    (op, setup) = _timed(lambda: spectral.HessianOperator(lambda: loss(batch), params))
    cfg = spectral.ProbeConfig(slq_iters=100, slq_probes=2, eps_sweep=RELS)
    gen = torch.Generator().manual_seed(seed)
    density, slq_cpu = _timed(lambda: spectral.stochastic_lanczos_quadrature(
        op, cfg.slq_iters, cfg.slq_probes, generator=gen))
    summary, summary_cpu = _timed(lambda: density_summary("h", density, cfg))
    counts, count_cpu = _timed(lambda: spectral.epsilon_counts(
        op, RELS, max_iters=cfg.eps_count_iters, tol=cfg.eps_count_tol,
        generator=torch.Generator().manual_seed(seed + 1)))
    sigma = float(np.sqrt(density.variance))
    row = {"lambda_max": counts.radius, "dim": op.dim, "count_steps": counts.num_iters,
           "cpu": {"setup": setup, "slq": slq_cpu + summary_cpu, "count": count_cpu}}
    for r, n, cens in zip(RELS, counts.fractions(), counts.censored, strict=True):
        row[f"exact/{r:g}"] = (n, bool(cens))
        for name, key in (("slq_nodes", "nodes"), ("slq_grid", "paper")):
            k = f"h/eps_rank_{key}/rel{r:g}"
            row[f"{name}/{r:g}"] = (summary[k], bool(summary[k + "_censored"]))
        # the grid value under the old guard (2 kernel widths), for the λ_max comparison
        old_res = max(epsilon_resolution(density, method="nodes"), 2 * sigma) / counts.radius
        raw = epsilon_rank(density, r, relative=True, method="grid")
        row[f"slq_grid_old/{r:g}"] = (raw, bool(r < old_res))
    return row


def icc(pairs: np.ndarray) -> float:
    """ICC(2,1) (Shrout & Fleiss): two-way random effects, absolute agreement, one rater,
    of an ``(n_states, 2)`` array of repeated measurements."""
    n, k = pairs.shape
    grand = pairs.mean()
    ms_rows = k * np.sum((pairs.mean(axis=1) - grand) ** 2) / (n - 1)
    ms_cols = n * np.sum((pairs.mean(axis=0) - grand) ** 2) / (k - 1)
    resid = pairs - pairs.mean(axis=1, keepdims=True) - pairs.mean(axis=0, keepdims=True) + grand
    ms_err = np.sum(resid**2) / ((n - 1) * (k - 1))
    denom = ms_rows + (k - 1) * ms_err + k * (ms_cols - ms_err) / n
    return float((ms_rows - ms_err) / denom) if denom > 0 else float("nan")


def measure(args: argparse.Namespace) -> None:
    out = Path(args.out)
    results = out / "measure.jsonl"
    done = set()
    if results.exists():
        done = {(r["path"], r["network"]) for r in map(json.loads, results.read_text().splitlines())}
    # interleaved by task, then arm and seed: a partial measure covers both arms evenly
    paths = sorted((p for algo in args.algos for p in out.glob(f"{algo}/*/*.pt")),
                   key=lambda p: (p.stem.split("-task")[1], p.parent.name, p.stem))
    with results.open("a") as fh:
        for path in paths:
            for problem in fixed_problems(path):
                if (str(path), problem["network"]) in done:
                    continue
                rows = {"A": measure_one(problem["module"], problem["loss"], problem["batch"], 11),
                        "B": measure_one(problem["module"], problem["loss"], problem["batch"], 22)}
                for i, half in enumerate(problem["halves"]):
                    rows[f"H{i + 1}"] = measure_one(problem["module"], problem["loss"], half, 11)
                fh.write(json.dumps({"path": str(path), "network": problem["network"],
                                     "arm": path.parent.name, **rows}) + "\n")
                fh.flush()
                print(f"{path.parent.parent.name}/{path.parent.name}/{path.name} "
                      f"{problem['network']}: done", flush=True)
    report(results)


ESTIMATORS = ("slq_nodes", "slq_grid", "exact")


def report(results: Path) -> None:
    rows, seen = [], set()
    for row in map(json.loads, results.read_text().splitlines()):
        # The fresh arm's network trained on task 0 only is the continual network after
        # task 0 (training is identical until the first switch): count each state once.
        key = (row["network"], row["A"]["lambda_max"], row["A"]["slq_nodes/0.01"][0])
        if key not in seen:
            seen.add(key)
            rows.append(row)
    print(f"{len(rows)} distinct (state, network) pairs from {len({r['path'] for r in rows})} states")
    # Per network type only: pooling types would count their differences as reliability.
    print("network  estimator     eps   median  ICC draws ICC halves censored  "
          "Spearman(., λmax) all / uncensored (n)  CPU s/row")
    for network in sorted({r["network"] for r in rows}):
        sel = [r for r in rows if r["network"] == network]
        lmax = np.array([r["A"]["lambda_max"] for r in sel])
        for est in (*ESTIMATORS, "slq_grid_old"):
            for r in RELS:
                key = f"{est}/{r:g}"
                draws = np.array([[x["A"][key][0], x["B"][key][0]] for x in sel])
                halves = np.array([[x["H1"][key][0], x["H2"][key][0]] for x in sel])
                flags = np.array([[x[rep][key][1] for rep in ("A", "B", "H1", "H2")] for x in sel])
                cpu_key = "count" if est == "exact" else "slq"
                cpu = statistics.median(x["A"]["cpu"][cpu_key] + x["A"]["cpu"]["setup"] for x in sel)
                open_ = ~flags[:, 0]
                rho_all = spearmanr(draws[:, 0], lmax)[0]
                rho_open = spearmanr(draws[open_, 0], lmax[open_])[0] if open_.sum() > 2 else np.nan
                print(f"{network:8s} {est:13s} {r:<5g} {np.median(draws):.4f} {icc(draws):9.3f} "
                      f"{icc(halves):10.3f} {flags.mean():8.2f}  {rho_all:6.2f} / {rho_open:6.2f} "
                      f"({int(open_.sum()):3d}){'':12s}{cpu:8.3f}")
    arms = {(r["network"], r["arm"]) for r in rows}
    print("states per (network, arm): " + ", ".join(
        f"{n}/{a} {sum(1 for r in rows if (r['network'], r['arm']) == (n, a))}" for n, a in sorted(arms)))
    steps = [r["A"]["count_steps"] for r in rows]
    print(f"exact count Lanczos steps: median {statistics.median(steps):.0f}, max {max(steps)}")


def cost(args: argparse.Namespace) -> None:
    """CPU share of the study's probe set with ``hessian_eps_count`` added, on a short run
    at the study's settings (fresh reference: pre, init and trained_once probes). The group
    runs on every probe row; its CPU is attributed per (phase, data) so that the share of
    "the study set + the exact count at every shift's init on fixed data" is read off the
    same run: (probes without the count + the count's init/fixed calls) / (run CPU without
    the count's other calls)."""
    from experiments.runner import run

    probe_module = importlib.import_module("spectral.probe")  # the module, not the function
    where = {"phase": "", "data": "on_policy"}
    spent: dict = {"probes": 0.0, "trainability": 0.0, "groups": {}, "count": {}}
    originals = {"probe": Prober.probe, "fixed": Prober._fixed_rows,
                 "trainability": Prober._trainability, "metrics": dict(probe_module.METRICS)}

    def timed_probe(self, *a, phase, **k):
        where.update(phase=phase, data="on_policy")
        t0 = time.thread_time()
        try:
            return originals["probe"](self, *a, phase=phase, **k)
        finally:
            spent["probes"] += time.thread_time() - t0

    def fixed_rows(self, *a, **k):
        where["data"] = "fixed"
        try:
            return originals["fixed"](self, *a, **k)
        finally:
            where["data"] = "on_policy"

    def trainability(self, *a, **k):
        t0 = time.thread_time()
        try:
            return originals["trainability"](self, *a, **k)
        finally:
            spent["trainability"] += time.thread_time() - t0

    def timed_group(name, metric):
        def run_group(ctx):
            t0 = time.thread_time()
            try:
                return metric.run(ctx)
            finally:
                dt = time.thread_time() - t0
                spent["groups"][name] = spent["groups"].get(name, 0.0) + dt
                if name == "hessian_eps_count":
                    at = (where["phase"], where["data"])
                    spent["count"][at] = spent["count"].get(at, 0.0) + dt
        return probe_module._Metric(metric.description, run_group)

    Prober.probe, Prober._fixed_rows, Prober._trainability = timed_probe, fixed_rows, trainability
    for name, metric in originals["metrics"].items():
        probe_module.METRICS[name] = timed_group(name, metric)
    try:
        for algo in args.algos:
            base = load_toml(STUDIES[algo])["base"]
            metrics = [*base["probes"]["metrics"], "hessian_eps_count"]
            period = base["env"]["period"]
            config = from_dict(apply_overrides(base, {
                "experiment.steps": args.tasks * period, "experiment.checkpoint_every": 0,
                "experiment.reference": "fresh", "experiment.seed": 0,
                "experiment.out": f"{args.out}/cost/{algo}", "logging.progress": "off",
                "logging.tensorboard": False, "probes.metrics": metrics}))
            spent.update(probes=0.0, trainability=0.0, groups={}, count={})
            t0 = time.process_time()
            run(config, overwrite=True)
            total = time.process_time() - t0
            count_all = sum(spent["count"].values())
            count_init = spent["count"].get(("init", "fixed"), 0.0)
            study = spent["probes"] - count_all
            print(f"{algo}, {args.tasks} tasks x {period} steps (fresh reference), run CPU "
                  f"{total:.1f} s; study probe set {study:.1f} s = {study / (total - count_all):.1%}"
                  f" of the run without the count; + exact count at init on fixed data "
                  f"{count_init:.2f} s -> {(study + count_init) / (total - count_all + count_init):.1%}"
                  f"; the count on every row {count_all:.2f} s -> "
                  f"{spent['probes'] / total:.1%}", flush=True)
            groups = {**spent["groups"], "trainability": spent["trainability"]}
            print("  CPU s by group: " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(
                groups.items(), key=lambda kv: -kv[1])), flush=True)
            print("  exact count CPU s by (phase, data): " + ", ".join(
                f"{p}/{d} {v:.2f}" for (p, d), v in sorted(spent["count"].items())), flush=True)
    finally:
        Prober.probe, Prober._fixed_rows = originals["probe"], originals["fixed"]
        Prober._trainability = originals["trainability"]
        probe_module.METRICS.update(originals["metrics"])


def dense(args: argparse.Namespace) -> None:
    """The exact counts of one saved state against dense float64 counts (Sylvester inertia
    of ``H ∓ t I`` on the explicit Hessian: feasible where an eigendecomposition is not)."""
    from tests.spectral.test_eps_count import _dense_hessian, _inertia_count

    for problem in fixed_problems(Path(args.state)):
        params = list(problem["module"].parameters())

        def loss(problem=problem):
            return problem["loss"](problem["batch"])

        counts, cpu = _timed(lambda loss=loss, params=params: spectral.epsilon_counts(
            spectral.HessianOperator(loss, params), RELS_ALL, max_iters=args.max_iters))
        print(f"{problem['network']} ({counts.dim} parameters): Lanczos counts {counts.counts}, "
              f"censored {counts.censored}, {counts.num_iters} steps, {cpu:.1f} CPU s", flush=True)
        matrix, cpu = _timed(lambda loss=loss, params=params: _dense_hessian(loss, params).numpy())
        print(f"  dense Hessian built in {cpu:.0f} CPU s", flush=True)
        for r, count in zip(RELS_ALL, counts.counts, strict=True):
            t = r * counts.radius
            truth, cpu = _timed(lambda t=t, m=matrix: _inertia_count(m, t, True)
                                + _inertia_count(m, -t, False))
            print(f"  rel {r:g}: Lanczos {count}, dense (inertia) {truth} ({cpu:.0f} CPU s)",
                  flush=True)


RELS_ALL = (0.001, 0.01, 0.03, 0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    h = sub.add_parser("harvest", help="train the study settings and save the network states")
    h.add_argument("--tasks", type=int, default=6)
    h.add_argument("--seeds", type=int, default=3)
    h.add_argument("--algos", nargs="+", default=["ppo", "dqn"], choices=sorted(STUDIES))
    h.add_argument("--references", nargs="+", default=["continual", "fresh"],
                   choices=["continual", "fresh"])
    h.add_argument("--out", default="/work/runs/B/eps")
    h.add_argument("--period", type=int, default=None, help="override the task length")
    m = sub.add_parser("measure", help="reliability and cost of each estimator")
    m.add_argument("--out", default="/work/runs/B/eps")
    m.add_argument("--algos", nargs="+", default=["ppo", "dqn"], choices=sorted(STUDIES))
    c = sub.add_parser("cost", help="CPU share of the study probe set with the exact count")
    c.add_argument("--tasks", type=int, default=3)
    c.add_argument("--algos", nargs="+", default=["ppo", "dqn"], choices=sorted(STUDIES))
    c.add_argument("--out", default="/work/runs/B/eps")
    d = sub.add_parser("dense", help="one saved state's counts against dense inertia counts")
    d.add_argument("state", help="a .pt file written by harvest")
    d.add_argument("--max-iters", type=int, default=3000)
    sub.add_parser("report", help="print the table of an earlier measure").add_argument(
        "--out", default="/work/runs/B/eps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.2f}", flush=True)
    if args.command == "harvest":
        harvest(args)
    elif args.command == "measure":
        measure(args)
    elif args.command == "cost":
        cost(args)
    elif args.command == "dense":
        dense(args)
    else:
        report(Path(args.out) / "measure.jsonl")


if __name__ == "__main__":
    main()
