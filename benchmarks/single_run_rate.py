"""A single run's env steps per CPU-second (DQN at S2's settings, PPO at S1's), this tree
against another.

    python benchmarks/single_run_rate.py --against DIR [--algo dqn|ppo] [--pairs 10] [--steps N]

``DIR`` is another checkout of the project (e.g. ``git worktree add /tmp/before 92e7542``,
the code before populations). Each measurement is a fresh process that imports the agents
and envs of one tree and trains one run (seed 0) at the settings of
``benchmarks/population.py``: DQN at ``DQN_S2`` (S2's: MiniGrid hidden goal, 20-128-128-3
ReLU, batch 128, 3-step Huber, one update per env step) for 1,500 steps, then times
``--steps`` more (default 4,000); PPO at ``PPO_S1`` (same stream, 4 envs x 128 steps, 64-64
tanh, 4 x 4 minibatches) for 2,048 steps, then times ``--steps`` more (default 20,480,
whole rollouts), by the process's CPU clock. Processes alternate, the other tree first in
each pair, and the script prints each pair and the median of the per-pair ratios (this tree
/ the other): a pair shares the machine's state of the moment, which on a shared machine
moves the rate of either tree by 10-30% from minute to minute.

The other tree is asked for the same thing through its own ``agents.DQN`` / ``agents.PPO`` (a
single run there may predate populations: ``learn(env, until)`` is all this uses).
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

from population import DQN_S2, PERIOD, PPO_S1, STREAM  # noqa: E402  (this tree's, both trees)

#: Run in a fresh process with the tree to measure first on ``sys.path``; prints the rate.
CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
import torch
import envs
from agents import DQN, PPO, DQNConfig, PPOConfig
torch.set_num_threads(1)
algo, stream, period, settings = json.loads(sys.argv[3])
settings["widths"] = tuple(settings["widths"])
if algo == "dqn":
    env = envs.make(stream, seed=0, period=period)
    agent = DQN(env.observation_space, env.action_space, DQNConfig(**settings, seed=0))
    warm = 1500
else:
    env = envs.make_vector(stream, settings["num_envs"], seed=0, period=period)
    agent = PPO(env.single_observation_space, env.single_action_space,
                PPOConfig(**settings, seed=0))
    warm = 2048
agent.learn(env, warm)
start, before = time.process_time(), agent.global_step
agent.learn(env, warm + int(sys.argv[2]))
print((agent.global_step - before) / (time.process_time() - start))
"""

SETTINGS = {"dqn": DQN_S2, "ppo": PPO_S1}
DEFAULT_STEPS = {"dqn": 4000, "ppo": 20_480}


def rate(tree: Path, algo: str, steps: int) -> float:
    spec = json.dumps([algo, STREAM, PERIOD, SETTINGS[algo]])
    out = subprocess.run([sys.executable, "-c", CHILD, str(tree), str(steps), spec], check=True,
                         capture_output=True, text=True, cwd=tree)
    return float(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, required=True,
                        help="another checkout of the project (the baseline)")
    parser.add_argument("--algo", choices=("dqn", "ppo"), default="dqn")
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=None,
                        help="timed env steps per run (default: dqn 4,000, ppo 20,480)")
    args = parser.parse_args()
    if args.steps is None:
        args.steps = DEFAULT_STEPS[args.algo]
    if not (args.against / "agents" / "dqn.py").is_file():
        parser.error(f"--against {str(args.against)!r}: not a checkout of this project "
                     "(no agents/dqn.py); e.g. git worktree add /tmp/before 92e7542")
    if args.pairs < 1 or args.steps < 1:
        parser.error(f"--pairs {args.pairs} / --steps {args.steps}: expected positive integers")
    ratios = []
    for i in range(args.pairs):
        other = rate(args.against.resolve(), args.algo, args.steps)
        this = rate(HERE, args.algo, args.steps)
        ratios.append(this / other)
        print(f"pair {i + 1}: {other:7.0f} there, {this:7.0f} here steps per CPU-second "
              f"({ratios[-1]:.2f}x)", flush=True)
    print(f"median ratio here / there {statistics.median(ratios):.2f}x over {args.pairs} pairs "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f}); "
          f"{sum(r >= 1 for r in ratios)} of {args.pairs} pairs here at least as fast")


if __name__ == "__main__":
    main()
