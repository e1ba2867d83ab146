"""CartPole-v1 final return of our DQN and PPO vs the published CleanRL figures.

Each (algorithm, seed) trains with CleanRL's CartPole settings (the agents' config defaults;
DQN uses ``--dqn-loss``, default ``mse`` as in CleanRL's ``dqn.py``) for ``--steps`` env
steps; the score of a run is the mean return of its last 10 finished training episodes
(CleanRL's figures are episodic training returns at the end of training). Runs go through a
process pool of ``--workers`` processes with one torch thread each.

    python benchmarks/learning.py --seeds 5 --steps 500000 --workers 2

CleanRL (500k steps, 5 seeds): DQN 488.69 +- 16.11, PPO 490.04 +- 6.12. Target: >= 475.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CLEANRL = {"dqn": (488.69, 16.11), "ppo": (490.04, 6.12)}
TARGET = 475.0


def train(algo: str, seed: int, steps: int, dqn_loss: str) -> tuple[str, int, float, float]:
    import gymnasium as gym
    import torch

    from agents import DQN, PPO, DQNConfig, PPOConfig

    torch.set_num_threads(1)
    start = time.perf_counter()
    if algo == "dqn":
        env = gym.make("CartPole-v1", disable_env_checker=True)
        # CleanRL decays epsilon over 50% of the run.
        config = DQNConfig(seed=seed, loss=dqn_loss, exploration_steps=steps // 2)
        agent = DQN(env.observation_space, env.action_space, config)
    else:
        env = gym.vector.SyncVectorEnv(
            [lambda: gym.make("CartPole-v1", disable_env_checker=True)] * 4
        )
        agent = PPO(
            env.single_observation_space,
            env.single_action_space,
            PPOConfig(seed=seed, total_steps=steps),
        )
    episodes = []
    for until in np.linspace(0, steps, 11)[1:].astype(int):
        episodes += agent.learn(env, int(until)).episodes
    final = float(np.mean([r for _, r, _ in episodes[-10:]]))
    return algo, seed, final, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=500_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--algos", default="dqn,ppo")
    parser.add_argument("--dqn-loss", default="mse", choices=("mse", "huber"))
    args = parser.parse_args()
    jobs = [(a, s) for a in args.algos.split(",") for s in range(1, args.seeds + 1)]
    results: dict[str, list[float]] = {}
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [pool.submit(train, a, s, args.steps, args.dqn_loss) for a, s in jobs]
        for future in futures:
            algo, seed, final, secs = future.result()
            results.setdefault(algo, []).append(final)
            print(f"{algo} seed {seed}: final return {final:7.2f}  ({secs:.0f} s)", flush=True)
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
