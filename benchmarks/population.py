"""Member-env-steps/s per core of a population of K seeds vs K single runs, same run.

DQN at S2's settings (``plasticity/MiniGridHiddenGoal-v0``, 20-128-128-3 ReLU Q network,
batch 128, 3-step Huber TD loss, one gradient step per env step, gradient clipping at 10,
Adam lr 1e-3); PPO at S1's (same stream, 4 envs x 128 steps, 64-64 tanh actor and critic, 4
minibatches x 4 epochs). One torch thread. For every K the population trains K members
for ``--steps`` env steps each after a warm-up past ``learning_starts``; the single-run
rate is one run of the same settings measured in the same round (K single runs cost K times
one), so every ratio compares rates measured minutes apart. Rounds interleave singles and
populations; the median ratio over ``--repeats`` rounds is printed.

The arithmetic limit: the fp32 matmul throughput of this core (a ``(16, 128, 128) x (16,
128, 128)`` batched matmul, the shape of the populations' hidden layer, best of 20) divided
by the matmul FLOPs of one member-env-step (DQN: online and target forward passes of the
batch and the backward, 4x the forward's ``2 B sum(fan_in * fan_out)`` per update, plus
acting).

``--device cuda`` runs the same comparison with the agents on a GPU (networks, Adam and
batches there; envs, replay storage and RNGs on the host) and the limit is that device's
batched-matmul throughput; every timing waits for the device to finish first.

    python benchmarks/population.py [--algo dqn ppo] [--ks 1 4 8 16] [--steps 2000] [--repeats 3]
                                    [--device cpu|cuda|cuda:N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import envs  # noqa: E402
from agents import DQN, PPO, AgentError, DQNConfig, PPOConfig  # noqa: E402
from agents.base import parse_device  # noqa: E402

STREAM = "plasticity/MiniGridHiddenGoal-v0"
PERIOD = 15_000
DQN_S2 = dict(learning_rate=1e-3, buffer_size=15_000, batch_size=128, learning_starts=1000,
              train_frequency=1, gradient_steps=1, n_step=3, max_grad_norm=10.0,
              widths=(128, 128), exploration_steps=3750, target_network_frequency=500,
              loss="huber")
PPO_S1 = dict(num_envs=4, num_steps=128, num_minibatches=4, update_epochs=4, widths=(64, 64),
              total_steps=360_000)


def _clock(device: str) -> float:
    """``time.perf_counter()`` once the device has finished the work queued on it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def dqn_rate(k: int, steps: int, device: str = "cpu") -> float:
    """Member-env-steps/s of a population of ``k`` (timed after the warm-up)."""
    env_list = [envs.make(STREAM, seed=s, period=PERIOD) for s in range(k)]
    agent = DQN(env_list[0].observation_space, env_list[0].action_space,
                DQNConfig(**DQN_S2, seed=0, device=device), seeds=range(k))
    warm = DQN_S2["learning_starts"] + 200
    agent.learn(env_list if k > 1 else env_list[0], warm)
    start = _clock(device)
    agent.learn(env_list if k > 1 else env_list[0], warm + steps)
    return k * steps / (_clock(device) - start)


def ppo_rate(k: int, steps: int, device: str = "cpu") -> float:
    vecs = [envs.make_vector(STREAM, PPO_S1["num_envs"], seed=s, period=PERIOD) for s in range(k)]
    agent = PPO(vecs[0].single_observation_space, vecs[0].single_action_space,
                PPOConfig(**PPO_S1, seed=0, device=device), seeds=range(k))
    rollout = PPO_S1["num_envs"] * PPO_S1["num_steps"]
    agent.learn(vecs if k > 1 else vecs[0], rollout)
    start_step, start = agent.global_step, _clock(device)
    agent.learn(vecs if k > 1 else vecs[0], rollout + steps)
    return k * (agent.global_step - start_step) / (_clock(device) - start)


def matmul_gflops(device: str = "cpu") -> float:
    a, b = torch.randn(16, 128, 128, device=device), torch.randn(16, 128, 128, device=device)
    best = float("inf")
    for _ in range(20):
        start = _clock(device)
        for _ in range(10):
            torch.bmm(a, b)
        best = min(best, (_clock(device) - start) / 10)
    return 2 * 16 * 128**3 / best / 1e9


def dqn_flops_per_step() -> float:
    dims = (20, *DQN_S2["widths"], 3)  # MiniGridHiddenGoal's one-hot pose (20), 3 actions
    macs = sum(i * o for i, o in zip(dims[:-1], dims[1:], strict=True))
    per_update = 4 * 2 * DQN_S2["batch_size"] * macs  # online + target forward, 2x backward
    return per_update / DQN_S2["train_frequency"] + 2 * macs


def ppo_flops_per_step() -> float:
    c = PPO_S1
    dims = (20, *c["widths"])
    macs = sum(i * o for i, o in zip(dims[:-1], dims[1:], strict=True))
    actor, critic = macs + c["widths"][-1] * 3, macs + c["widths"][-1]
    # acting: both forwards; update: forward + 2x backward of both, epochs over the rollout
    return 2 * (actor + critic) * (1 + 3 * c["update_epochs"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", nargs="+", default=["dqn", "ppo"], choices=["dqn", "ppo"])
    parser.add_argument("--ks", nargs="+", type=int, default=[1, 4, 8, 16])
    parser.add_argument("--steps", type=int, default=2000, help="env steps per member timed")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="the agents' device: cpu, cuda, cuda:N")
    args = parser.parse_args()
    try:
        kind = parse_device(args.device, "--device").type
    except AgentError as exc:
        parser.error(str(exc))
    if kind == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device!r}: this torch build/machine has no CUDA device; "
                     "valid here: 'cpu'")
    torch.set_num_threads(1)
    print(f"load average {os.getloadavg()[0]:.2f} at start; agents on {args.device}", flush=True)
    gflops = matmul_gflops(args.device)
    where = "this core" if kind == "cpu" else args.device
    print(f"fp32 batched matmul throughput of {where}: {gflops:.1f} GFLOP/s", flush=True)
    rate_of = {"dqn": dqn_rate, "ppo": ppo_rate}
    flops = {"dqn": dqn_flops_per_step(), "ppo": ppo_flops_per_step()}
    for algo in args.algo:
        limit = gflops * 1e9 / flops[algo]
        ratios: dict[int, list[float]] = {k: [] for k in args.ks}
        rates: dict[int, list[float]] = {k: [] for k in args.ks}
        singles: list[float] = []
        for _ in range(args.repeats):
            single = rate_of[algo](1, args.steps, args.device)
            singles.append(single)
            for k in args.ks:
                rate = single if k == 1 else rate_of[algo](k, args.steps, args.device)
                rates[k].append(rate)
                ratios[k].append(rate / single)
                print(f"{algo.upper()} K={k:2d}  {rate:8.0f} member-env-steps/s   single run "
                      f"{single:7.0f}   ratio {rate / single:5.2f}x   "
                      f"{rate / limit:6.1%} of the arithmetic limit ({limit:,.0f}/s)", flush=True)
        for k in args.ks:
            print(f"{algo.upper()} K={k:2d}: median {statistics.median(rates[k]):8.0f} "
                  f"member-env-steps/s, ratio to single runs median "
                  f"{statistics.median(ratios[k]):.2f}x (min {min(ratios[k]):.2f}, "
                  f"max {max(ratios[k]):.2f}), {statistics.median(rates[k]) / limit:.1%} of the "
                  "arithmetic limit", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
