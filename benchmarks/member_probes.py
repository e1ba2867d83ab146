"""Probe cost per member: a population of K seeds vs the same K seeds as single runs.

    python benchmarks/member_probes.py [--study experiments/studies/e2_dqn_hidden_goal.toml]
                                       [--k 4] [--tasks 3] [--period 3000] [--repeats 1]

Runs one study file's ``[base]`` (its probe set, probe settings, fixed probe data and
trained-once reference as the study runs them; ``--reference`` picks the arm's reference)
for ``--tasks`` tasks of ``--period`` env steps, once as K single runs (seeds 0..K-1, one
after the other) and once as one population of those K seeds, in this process, one torch
thread. Probes do not depend on the period beyond the replay buffer they sample from, so a
short period times the study's probes at a fraction of a study run's cost. Prints, per
seed, the CPU time of the prober's calls (side rollouts included; this thread's CPU time,
which other processes on a shared machine do not inflate) and the wall time the runner
measured (``RunResult.probe_time``), as a single run and as a population member, and the
ratios of the sums: issue 13 asks that a member's probe cost be no worse than a single
run's (members are probed through the same ``spectral`` code, each viewed as a plain
module). Rounds alternate the two orders.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from experiments.config import apply_overrides, from_dict  # noqa: E402
from experiments.errors import ConfigError  # noqa: E402
from experiments.probing import Prober  # noqa: E402
from experiments.resolve import resolve  # noqa: E402
from experiments.runner import run, run_population  # noqa: E402
from experiments.tomlio import load_toml  # noqa: E402

DEFAULT = Path(__file__).resolve().parents[1] / "experiments/studies/e2_dqn_hidden_goal.toml"


#: CPU seconds of each prober's ``probe`` calls, by the prober's (the run's) seed.
_CPU: dict[int, float] = defaultdict(float)
_PROBE = Prober.probe


def _timed_probe(self: Prober, *args, **kwargs):
    # The thread's CPU time, not the wall clock: on a shared machine the wall clock of a probe
    # also counts the other processes' time slices, which differ between the two runs.
    start = time.thread_time()
    try:
        return _PROBE(self, *args, **kwargs)
    finally:
        _CPU[self.seed] += time.thread_time() - start


def probe_times(base: dict, seeds: list[int], out: str,
                population: bool) -> tuple[list[float], list[float]]:
    """(probe CPU seconds, probe wall seconds) of each seed's run, as single runs or as one
    population."""
    configs = [from_dict(apply_overrides(base, {"experiment.seed": s,
                                                "experiment.out": f"{out}/seed{s}"}))
               for s in seeds]
    _CPU.clear()
    results = run_population(configs) if population else [run(c) for c in configs]
    return [_CPU[s] for s in seeds], [r.probe_time for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=DEFAULT)
    parser.add_argument("--k", type=int, default=4, help="population size (seeds 0..k-1)")
    parser.add_argument("--tasks", type=int, default=3)
    parser.add_argument("--period", type=int, default=3000, help="env steps per task")
    parser.add_argument("--reference", default="fresh",
                        help="experiment.reference (fresh adds the trained-once probes)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    if args.k < 2:
        parser.error(f"--k {args.k}: a population needs at least 2 seeds")
    torch.set_num_threads(1)
    if not args.study.is_file():
        parser.error(f"--study {str(args.study)!r}: no such file; the study files are in "
                     "experiments/studies/")
    base = load_toml(args.study)["base"]
    agent = base.get("agent", {})
    overrides = {"experiment.steps": args.tasks * args.period, "env.period": args.period,
                 "experiment.reference": args.reference, "experiment.checkpoint_every": 0,
                 "logging.progress": "off", "logging.tensorboard": False}
    # Keep the exploration and replay schedule inside the shortened task.
    for key in ("exploration_steps", "buffer_size"):
        if key in agent:
            overrides[f"agent.{key}"] = min(agent[key], args.period)
    if "learning_starts" in agent:
        overrides["agent.learning_starts"] = min(agent["learning_starts"], args.period // 3)
    base = apply_overrides(base, overrides)
    try:  # bad settings (e.g. a period that is no multiple of PPO's rollout) fail before any run
        resolve(from_dict({**base, "experiment": {**base["experiment"], "out": "unused"}}))
    except ConfigError as exc:
        parser.error(str(exc))
    seeds = list(range(args.k))
    print(f"load average {os.getloadavg()[0]:.2f} at start; {args.study.name} [{args.reference}], "
          f"{args.tasks} tasks x {args.period} steps, K = {args.k}", flush=True)
    Prober.probe = _timed_probe
    ratios, wall_ratios = [], []
    for r in range(args.repeats):
        order = (False, True) if r % 2 == 0 else (True, False)
        cpu, wall = {}, {}
        with tempfile.TemporaryDirectory() as tmp:
            for population in order:
                label = "population" if population else "single"
                cpu[label], wall[label] = probe_times(base, seeds, f"{tmp}/{label}", population)
        for s, (a, b) in enumerate(zip(cpu["single"], cpu["population"], strict=True)):
            print(f"  round {r + 1} seed {s}: probe CPU {a:6.2f}s single, {b:6.2f}s as a member "
                  f"({b / a:.2f}x); wall {wall['single'][s]:6.2f}s vs "
                  f"{wall['population'][s]:6.2f}s", flush=True)
        ratios.append(sum(cpu["population"]) / sum(cpu["single"]))
        wall_ratios.append(sum(wall["population"]) / sum(wall["single"]))
        print(f"round {r + 1}: probe CPU seconds per member {sum(cpu['population']) / args.k:.2f} "
              f"in the population vs {sum(cpu['single']) / args.k:.2f} as single runs: "
              f"{ratios[-1]:.2f}x (wall {wall_ratios[-1]:.2f}x)", flush=True)
    print(f"median ratio member/single probe CPU time {statistics.median(ratios):.2f}x "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f}); wall-clock ratio median "
          f"{statistics.median(wall_ratios):.2f}x; load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
