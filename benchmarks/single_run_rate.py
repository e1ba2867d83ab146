"""A single DQN run's env steps per CPU-second at S2's settings, this tree against another.

    python benchmarks/single_run_rate.py --against DIR [--pairs 10] [--steps 4000]

``DIR`` is another checkout of the project (e.g. ``git worktree add /tmp/before 92e7542``,
the code before populations). Each measurement is a fresh process that imports the agents
and envs of one tree, trains one DQN run (seed 0) at the settings of
``benchmarks/population.py`` (``DQN_S2``, S2's: MiniGrid hidden goal, 20-128-128-3 ReLU, batch 128,
3-step Huber, one update per env step) for 1,500 steps, then times ``--steps`` more by the
process's CPU clock. Processes alternate, the other tree first in each pair, and the
script prints each pair and the median of the per-pair ratios (this tree / the other): a
pair shares the machine's state of the moment, which on a shared machine moves the rate of
either tree by 10-30% from minute to minute.

The other tree is asked for the same thing through its own ``agents.DQN`` (a single run
there may predate populations: ``learn(env, until)`` is all this uses).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "benchmarks"))

from population import DQN_S2, PERIOD, STREAM  # noqa: E402  (this tree's settings, both trees)

#: Run in a fresh process with the tree to measure first on ``sys.path``; prints the rate.
CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import torch
import envs
from agents import DQN, DQNConfig
torch.set_num_threads(1)
stream, period, settings = json.loads(sys.argv[3])
settings["widths"] = tuple(settings["widths"])
env = envs.make(stream, seed=0, period=period)
agent = DQN(env.observation_space, env.action_space, DQNConfig(**settings, seed=0))
agent.learn(env, 1500)
start = time.process_time()
agent.learn(env, 1500 + int(sys.argv[2]))
print(int(sys.argv[2]) / (time.process_time() - start))
"""


def rate(tree: Path, steps: int) -> float:
    spec = json.dumps([STREAM, PERIOD, DQN_S2])
    out = subprocess.run([sys.executable, "-c", CHILD, str(tree), str(steps), spec], check=True,
                         capture_output=True, text=True, cwd=tree)
    return float(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, required=True,
                        help="another checkout of the project (the baseline)")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=4000, help="timed env steps per run")
    args = parser.parse_args()
    if not (args.against / "agents" / "dqn.py").is_file():
        parser.error(f"--against {str(args.against)!r}: not a checkout of this project "
                     "(no agents/dqn.py); e.g. git worktree add /tmp/before 92e7542")
    if args.pairs < 1 or args.steps < 1:
        parser.error(f"--pairs {args.pairs} / --steps {args.steps}: expected positive integers")
    ratios = []
    for i in range(args.pairs):
        other, this = rate(args.against.resolve(), args.steps), rate(HERE, args.steps)
        ratios.append(this / other)
        print(f"pair {i + 1}: {other:7.0f} there, {this:7.0f} here steps per CPU-second "
              f"({ratios[-1]:.2f}x)", flush=True)
    print(f"median ratio here / there {statistics.median(ratios):.2f}x over {args.pairs} pairs "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f}); "
          f"{sum(r >= 1 for r in ratios)} of {args.pairs} pairs here at least as fast")


if __name__ == "__main__":
    main()
