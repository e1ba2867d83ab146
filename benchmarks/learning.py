"""CartPole-v1 final return of the DQN and PPO a user gets, vs the published CleanRL figures.

Each (algorithm, seed) is exactly the command line

    plasticity run --env CartPole-v1 --agent ALGO --steps STEPS --seed SEED

(run in-process through ``experiments.cli.main``, so the config is the one the CLI resolves:
the agent's dataclass defaults = CleanRL's CartPole settings, DQN's epsilon over half of the
run and warm-up 2% of it; only progress output and TensorBoard are off). The score of a run
is the mean return of its last 20 training episodes (``episodes.jsonl``). Runs go through a
process pool of ``--workers`` processes with one torch thread each; run directories go to
``--out`` (a temporary directory by default).

    python benchmarks/learning.py --seeds 5 --steps 500000 --workers 2

CleanRL (500k steps, 5 seeds, last episodes): DQN 488.69 +- 16.11, PPO 490.04 +- 6.12.
Target: >= 475.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CLEANRL = {"dqn": (488.69, 16.11), "ppo": (490.04, 6.12)}
TARGET = 475.0
LAST_EPISODES = 20


def cli_argv(algo: str, seed: int, steps: int, out: str | Path) -> list[str]:
    """The ``plasticity`` command line of one benchmark run (without ``plasticity``)."""
    return ["run", "--env", "CartPole-v1", "--agent", algo, "--steps", str(steps),
            "--seed", str(seed), "--out", str(out), "logging.progress=off",
            "logging.tensorboard=false"]


def final_return(run_dir: str | Path, last: int = LAST_EPISODES) -> float:
    """Mean return of the last ``last`` finished training episodes of a run directory."""
    lines = Path(run_dir, "episodes.jsonl").read_text().splitlines()
    returns = [json.loads(line)["return"] for line in lines if line.strip()]
    return float(np.mean(returns[-last:]))


def train(algo: str, seed: int, steps: int, out: str) -> tuple[str, int, float, float]:
    from experiments.cli import main

    start = time.perf_counter()
    run_dir = Path(out) / f"{algo}-seed{seed}"
    code = main(cli_argv(algo, seed, steps, run_dir))
    if code != 0:
        raise RuntimeError(f"{algo} seed {seed}: plasticity run exited with {code}")
    return algo, seed, final_return(run_dir), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--steps", type=int, default=500_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--algos", default="dqn,ppo")
    parser.add_argument("--out", help="directory for the run directories (default: a temporary one)")
    args = parser.parse_args()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    jobs = [(a, s) for a in args.algos.split(",") for s in seeds]
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, ProcessPoolExecutor(args.workers) as pool:
        out = args.out or tmp
        futures = [pool.submit(train, a, s, args.steps, out) for a, s in jobs]
        for future in futures:
            algo, seed, final, secs = future.result()
            results.setdefault(algo, []).append(final)
            print(f"{algo} seed {seed}: last-{LAST_EPISODES}-episode return {final:7.2f}  "
                  f"({secs:.0f} s)", flush=True)
    for algo, finals in results.items():
        mean, std = float(np.mean(finals)), float(np.std(finals))
        ref_mean, ref_std = CLEANRL[algo]
        verdict = "PASS" if mean >= TARGET else "below target"
        print(
            f"{algo.upper()}: {mean:.2f} +- {std:.2f} over {len(finals)} seeds at {args.steps} "
            f"steps; CleanRL {ref_mean} +- {ref_std}; target >= {TARGET}: {verdict}"
        )


if __name__ == "__main__":
    main()
