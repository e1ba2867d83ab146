"""Throughput of the second-edition studies: member-steps per CPU-second, where the time
goes, and each study file's estimated full wall on 2 cores.

For every arm of every ``experiments/studies/e2_*.toml`` (the sweep's own resolved configs:
the same networks, batch sizes, update rates, mitigations and probe settings), this script

1. **trains** the arm's population (all its seeds, as the sweep runs it) through the
   runner's own constructors (``experiments.streams.make_stream``, the runner's
   ``_make_agent``): a warm-up to ``learning_starts + 100`` (DQN) or one rollout (PPO),
   then a timed window of ``--dqn-window`` env steps (a multiple of ``update_phase``, so
   the window holds DQN's after-update mitigation hooks) or ``--ppo-rollouts`` rollouts;
2. **probes** one member (seed 0, a population of one, trained as in 1) the way the runner
   does at a shift: ``pre`` and ``init`` (and ``trained_once`` for the fresh reference) at
   a shift with SLQ (shift index 0) and at one without (index 1), and writes one checkpoint
   of it (``save_checkpoint``, the env snapshots included) -- the I/O. By default only the
   ``continual`` and ``fresh`` arms are probed and every other arm is charged
   ``continual``'s probe cost (same networks); ``--probe-arms all`` probes each arm.

Time is CPU time of this process (``time.process_time``; one torch thread), so the numbers
are meaningful on a loaded machine. The breakdown wraps, on the objects only (no code
changes, nothing that alters results), the env's ``step``/``reset`` (env), acting
(DQN ``_greedy``; PPO ``_act``, ``_values``), updates (DQN replay ``add``/``sample``,
``_backward``, ``_apply_gradients``, ``_update_target``; PPO ``_minibatch_index``,
``_losses``, ``_optimizer_step``) and every mitigation hook; each timer counts its own
time only (nested timers are subtracted), and "other" is the rest of ``learn`` (the
Python loop, episode bookkeeping, PPO's GAE and padding).

The full-wall estimate of a job (one arm's population): K x [warm-up rate x
learning_starts + window rate x (steps - learning_starts)] + K x [SLQ-shift probes x
shifts on the SLQ grid + other shifts' probes x the rest] + K x checkpoints x one
checkpoint's cost. The file's wall on 2 cores is the makespan of its jobs on 2 workers
(each at one core's speed) with the jobs in the sweep file's order (how sweeps ran them
before packing) and, where the tree has it, as ``sweep.pack_jobs`` orders and splits them
(a part of a split population charged by the sweep's cost model), next to the recorded
wall of the committed runs (``docs/tables/<study>/runs.parquet``: wall clock of a loaded
machine; a population's members share one wall). ``--compare-vector ROUNDS`` also trains
each PPO arm on gymnasium's ``SyncVectorEnv``, interleaved with the runner's vector env.

    nice -n 10 python benchmarks/study_throughput.py [--files e2_dqn_permuted_view ...]
        [--dqn-window 1000] [--ppo-rollouts 2] [--probe-arms base|all] [--no-probes]
        [--compare-vector ROUNDS]   (PPO arms also on SyncVectorEnv, interleaved, this run)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import envs as env_package  # noqa: E402
from experiments import streams  # noqa: E402
from experiments import sweep as sweep_module  # noqa: E402
from experiments.checkpoint import save_checkpoint  # noqa: E402
from experiments.config import from_dict  # noqa: E402
from experiments.probing import Prober  # noqa: E402
from experiments.runner import _make_agent, shift_policy  # noqa: E402
from experiments.sweep import load_sweep, population_groups  # noqa: E402

STUDIES = ["e2_dqn_permuted_view", "e2_dqn_hidden_goal", "e2_ppo_hidden_goal", "e2_ppo_goal_shift"]
PARTS = ("env", "acting", "updates", "mitigations", "other")


class Timers:
    """Exclusive CPU time per category: a timer running inside another is subtracted from
    the outer one."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[list[float]] = []  # [start, child time]

    def wrap(self, category: str, fn: Any) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._stack.append([time.process_time(), 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                start, child = self._stack.pop()
                spent = time.process_time() - start
                self.seconds[category] += spent - child
                if self._stack:
                    self._stack[-1][1] += spent
        return timed

    def patch(self, obj: Any, names: tuple[str, ...], category: str) -> None:
        for name in names:
            if hasattr(obj, name):
                setattr(obj, name, self.wrap(category, getattr(obj, name)))

    def reset(self) -> None:
        self.seconds.clear()


def instrument(agent: Any, member_envs: list[Any], timers: Timers) -> None:
    for env in member_envs:
        timers.patch(env, ("step", "reset"), "env")
    if agent.config.__class__.__name__ == "DQNConfig":
        timers.patch(agent, ("_greedy",), "acting")
        timers.patch(agent, ("_backward", "_apply_gradients", "_update_target"), "updates")
        timers.patch(agent.buffer, ("add", "sample"), "updates")
    else:
        timers.patch(agent, ("_act", "_values"), "acting")
        timers.patch(agent, ("_minibatch_index", "_losses", "_optimizer_step"), "updates")
    for m in agent.members:
        for mitigation in m.mitigations:
            timers.patch(mitigation, ("before_optimizer_step", "after_step", "after_update",
                                      "on_task_switch"), "mitigations")
    agent.learn = timers.wrap("other", agent.learn)


def _build(configs: list[Any]) -> tuple[Any, list[Any]]:
    stationary = configs[0].experiment.reference == "stationary"
    member_envs = [streams.make_stream(c, stationary=stationary, seed=c.experiment.seed)
                   for c in configs]
    agent = _make_agent(configs[0], member_envs[0], [c.experiment.seed for c in configs])
    return agent, member_envs


def _warm_and_window(config: Any, args: argparse.Namespace) -> tuple[int, int]:
    s = config.agent.settings
    if config.agent.algo == "dqn":
        warm = s.learning_starts + 100
        return warm, warm + args.dqn_window
    rollout = s.num_envs * s.num_steps
    return rollout, rollout * (1 + args.ppo_rollouts)


def train_rates(configs: list[Any], args: argparse.Namespace,
                vector_mode: str | None = None) -> dict[str, Any]:
    """CPU seconds per member-step: warm-up (before learning starts) and the timed window,
    with the window's breakdown. ``vector_mode``: build PPO's vector envs in this
    ``envs.make_vector`` mode instead of the runner's."""
    if vector_mode is not None:
        make_vector = env_package.make_vector
        env_package.make_vector = lambda id, n, _mode="sync", **kw: make_vector(id, n, vector_mode, **kw)
        try:
            agent, member_envs = _build(configs)
        finally:
            env_package.make_vector = make_vector
    else:
        agent, member_envs = _build(configs)
    timers = Timers()
    instrument(agent, member_envs, timers)
    envs = member_envs[0] if len(configs) == 1 else member_envs
    warm, until = _warm_and_window(configs[0], args)
    t = time.process_time()
    agent.learn(envs, warm)
    warm_cpu, warm_steps = time.process_time() - t, agent.global_step
    timers.reset()
    t, start = time.process_time(), agent.global_step
    agent.learn(envs, until)
    cpu, steps = time.process_time() - t, agent.global_step - start
    k = len(configs)
    for env in member_envs:
        env.close()
    return {"k": k, "warm": warm_cpu / (k * warm_steps), "window": cpu / (k * steps),
            "rate": k * steps / cpu,
            "parts": {p: timers.seconds.get(p, 0.0) / (k * steps) for p in PARTS}}


def probe_costs(config: Any, args: argparse.Namespace, directory: Path) -> dict[str, float]:
    """One member's CPU seconds for the probes at a shift with SLQ and at one without, and
    for one checkpoint (the runner's state: agent, both envs' snapshots)."""
    agent, (env,) = _build([config])
    warm, _ = _warm_and_window(config, args)
    agent.learn(env, warm)
    seed = config.experiment.seed
    side_env = streams.make_stream(config, stationary=True, seed=seed)
    fixed_env = (streams.make_stream(config, stationary=True, seed=seed, single=True)
                 if config.probes.fixed_phases else None)
    prober = Prober(config.probes, config.probes.metrics, seed, fixed_env=fixed_env)
    view, p = agent.members[0], config.probes
    trained_once = shift_policy(config).reinitialize and p.trained_once
    costs = {}
    step = agent.global_step
    for index, label in ((0, "slq_shift"), (1, "other_shift")):
        t = time.process_time()
        if p.pre:
            prober.probe(view, phase="pre", step=step, task_id=index, shift_index=index)
        for phase in (["trained_once"] if trained_once else []) + (["init"] if p.init else []):
            streams.set_task(side_env, index + 1)
            prober.probe(view, phase=phase, step=step, task_id=index + 1, shift_index=index,
                         side_env=side_env)
        costs[label] = time.process_time() - t
    t = time.process_time()
    save_checkpoint(directory / "checkpoints", step, {
        "step": step, "agent": view.state_dict(), "env": streams.snapshot(env),
        "side_env": streams.snapshot(side_env), "global_rng": torch.get_rng_state()})
    costs["checkpoint"] = time.process_time() - t
    for e in (env, side_env, fixed_env):
        if e is not None:
            e.close()
    return costs


def shift_counts(config: Any) -> tuple[int, int]:
    """(shifts on the SLQ grid, other shifts) of a full run."""
    if config.experiment.reference == "stationary" or not config.env.period:
        return 0, 0
    shifts = len(range(config.env.period, config.experiment.steps, config.env.period))
    slq = len(range(0, shifts, config.probes.slq_every_n_shifts))
    return (slq, shifts - slq) if config.probes.enabled else (0, 0)


def checkpoints(config: Any) -> int:
    e = config.experiment
    every = set(range(e.checkpoint_every, e.steps, e.checkpoint_every)) if e.checkpoint_every else set()
    return len(every | {e.steps})


def job_seconds(config: Any, k: int, rates: dict[str, Any], probes: dict[str, float]) -> dict[str, float]:
    steps, s = config.experiment.steps, config.agent.settings
    warm_steps = min(getattr(s, "learning_starts", 0), steps)
    slq, other = shift_counts(config)
    return {"train": k * (rates["warm"] * warm_steps + rates["window"] * (steps - warm_steps)),
            "probes": k * (slq * probes.get("slq_shift", 0.0) + other * probes.get("other_shift", 0.0)),
            "io": k * checkpoints(config) * probes.get("checkpoint", 0.0)}


def recorded_walls(study: str) -> dict[str, float]:
    path = ROOT / "docs" / "tables" / study / "runs.parquet"
    if not path.exists():
        return {}
    import pandas as pd

    runs = pd.read_parquet(path, columns=["arm", "wall_time"])
    return runs.groupby("arm")["wall_time"].max().to_dict()


def study(name: str, args: argparse.Namespace, scratch: Path) -> float:
    sweep = load_sweep(ROOT / "experiments" / "studies" / f"{name}.toml", out=scratch / name)
    jobs = population_groups(sweep.runs, True)
    recorded = recorded_walls(name)
    print(f"\n== {name}: {len(sweep.runs)} runs in {len(jobs)} population jobs", flush=True)
    header = (f"{'arm':<18}{'K':>3} {'m-steps/cpu-s':>13} {'ms/m-step':>9} "
              + " ".join(f"{p:>8}" for p in PARTS)
              + f" {'probe/sh s':>10} {'job cpu h':>9} {'train':>6} {'probes':>6} {'io':>5}"
              + f" {'recorded h':>10}")
    print(header)
    base_probes: dict[str, float] = {}
    costs = []
    compared: list[tuple] = []
    for job in jobs:
        configs = [from_dict(r.config) for r in job]
        config = configs[0]
        arm = config.experiment.arm
        rates = train_rates(configs, args)
        if args.compare_vector and config.agent.algo == "ppo":
            # interleaved rounds, the best of each: a loaded machine's bursts hit both alike
            sync, lean = [], [rates]
            for _ in range(args.compare_vector):
                sync.append(train_rates(configs, args, vector_mode="sync"))
                lean.append(train_rates(configs, args))
            best = [min(runs, key=lambda r: r["window"]) for runs in (sync, lean)]
            compared.append((arm, *(b["parts"]["env"] for b in best),
                             *(b["window"] for b in best)))
        probes: dict[str, float] = {}
        if config.probes.enabled and not args.no_probes:
            fresh = shift_policy(config).reinitialize
            if args.probe_arms == "all" or fresh or arm == "continual" or not base_probes:
                probes = probe_costs(configs[0], args, scratch / name / arm)
                if arm == "continual" or not base_probes:
                    base_probes = probes
            else:
                probes = base_probes
        parts = job_seconds(config, len(configs), rates, probes)
        total = sum(parts.values())
        costs.append(total)
        share = {p: 100 * v / total for p, v in parts.items()} if total else parts
        breakdown = " ".join(f"{1e3 * rates['parts'][p]:>8.3f}" for p in PARTS)
        probe_shift = (probes.get("slq_shift", 0.0) + probes.get("other_shift", 0.0)) / 2
        rec = recorded.get(arm)
        print(f"{arm:<18}{len(configs):>3} {rates['rate']:>13.0f} {1e3 * rates['window']:>9.3f} "
              f"{breakdown} {probe_shift:>10.1f} {total / 3600:>9.2f} {share['train']:>5.0f}% "
              f"{share['probes']:>5.0f}% {share['io']:>4.1f}% "
              f"{(rec / 3600 if rec is not None else float('nan')):>10.2f}", flush=True)
    if compared:
        print("PPO env stepping, ms per member-step (best of interleaved rounds, this run): "
              "SyncVectorEnv vs the runner's vector env")
        for arm, env_sync, env_run, all_sync, all_run in compared:
            print(f"  {arm:<18} env {1e3 * env_sync:.4f} vs {1e3 * env_run:.4f} "
                  f"({env_sync / env_run:.2f}x); member-step {1e3 * all_sync:.4f} vs "
                  f"{1e3 * all_run:.4f} ({all_sync / all_run:.2f}x)")
    wall = makespan(costs, 2)
    line = (f"{name}: job CPU {sum(costs) / 3600:.2f} h; estimated wall on 2 cores: "
            f"{wall / 3600:.2f} h with the jobs in the sweep file's order")
    if hasattr(sweep_module, "pack_jobs"):
        packed = packed_makespan(jobs, costs, 2)
        line += f", {packed / 3600:.2f} h packed (sweep.pack_jobs)"
        wall = packed
    print(f"{line}; recorded: {(sum(recorded.values()) / 3600 if recorded else float('nan')):.2f}"
          " h of job wall", flush=True)
    return wall


def makespan(costs: list[float], workers: int) -> float:
    """Wall of jobs handed in this order to the first free of ``workers`` (a process pool).
    The script's own copy of ``sweep.simulate_makespan``, so that it also measures trees
    from before the sweep had one (the BEFORE numbers in benchmarks/RESULTS.md)."""
    free = [0.0] * workers
    for cost in costs:
        i = free.index(min(free))
        free[i] += cost
    return max(free)


def packed_makespan(jobs: list[list[Any]], costs: list[float], workers: int) -> float:
    """The makespan of ``sweep.pack_jobs``' jobs; a part of a split population is charged
    its share of the whole's measured cost, scaled by the sweep's cost model from the
    whole's K to the part's."""
    owner = {id(run): (i, len(job)) for i, job in enumerate(jobs) for run in job}
    parts = sweep_module.pack_jobs(jobs, workers)
    part_costs = []
    for part in parts:
        i, k = owner[id(part[0])]
        scale = sweep_module.member_cost(len(part)) / sweep_module.member_cost(k)
        part_costs.append(costs[i] * len(part) / k * scale)
    return makespan(part_costs, workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", nargs="+", default=STUDIES, choices=STUDIES)
    parser.add_argument("--dqn-window", type=int, default=1000,
                        help="timed DQN env steps per member (a multiple of update_phase)")
    parser.add_argument("--ppo-rollouts", type=int, default=2)
    parser.add_argument("--probe-arms", choices=("base", "all"), default="base")
    parser.add_argument("--no-probes", action="store_true")
    parser.add_argument("--compare-vector", type=int, default=0, metavar="ROUNDS",
                        help="also train each PPO arm on gymnasium's SyncVectorEnv in ROUNDS "
                             "rounds interleaved with the runner's vector env (best of each)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"CPU time (time.process_time), one torch thread, load average {os.getloadavg()[0]:.1f}; "
          "breakdown columns in ms per member-step of the timed window")
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as scratch:
        walls = [study(name, args, Path(scratch)) for name in args.files]
    print(f"\nall files: estimated wall on 2 cores {sum(walls) / 3600:.2f} h "
          "(files one after another)")


if __name__ == "__main__":
    main()
