"""Env steps per second of our DQN and PPO vs stable-baselines3, measured in the same run.

Same env (CartPole-v1, env checker off for both), same network sizes, batch sizes and update
ratio, one torch thread. DQN: (120, 84) ReLU, batch 128, one gradient step per env step
(train_frequency 1), learning_starts 1000, target update every 500 steps. PPO: 4 envs x 128
steps, (64, 64) tanh actor and critic, 4 minibatches x 4 epochs.

    python benchmarks/speed.py [--dqn-steps 10000] [--ppo-steps 50000] [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import gymnasium as gym
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agents import DQN, PPO, DQNConfig, PPOConfig  # noqa: E402

ENV_ID = "CartPole-v1"


def make_env() -> gym.Env:
    return gym.make(ENV_ID, disable_env_checker=True)


def ours_dqn(steps: int) -> float:
    env = make_env()
    # Huber as SB3 (the loss barely changes the cost; the same loss keeps the peers alike).
    config = DQNConfig(learning_starts=1000, train_frequency=1, exploration_steps=steps // 2,
                       loss="huber")
    agent = DQN(env.observation_space, env.action_space, config)
    start = time.perf_counter()
    agent.learn(env, steps)
    return steps / (time.perf_counter() - start)


def sb3_dqn(steps: int) -> float:
    from stable_baselines3 import DQN as SB3DQN

    model = SB3DQN(
        "MlpPolicy",
        make_env(),
        learning_rate=2.5e-4,
        buffer_size=10_000,
        learning_starts=1000,
        batch_size=128,
        tau=1.0,
        gamma=0.99,
        train_freq=1,
        gradient_steps=1,
        target_update_interval=500,
        exploration_fraction=0.5,
        exploration_final_eps=0.05,
        policy_kwargs={"net_arch": [120, 84]},
        seed=1,
        device="cpu",
    )
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    return steps / (time.perf_counter() - start)


def ours_ppo(steps: int) -> float:
    envs = gym.vector.SyncVectorEnv([make_env] * 4)
    agent = PPO(
        envs.single_observation_space, envs.single_action_space, PPOConfig(total_steps=steps)
    )
    start = time.perf_counter()
    agent.learn(envs, steps)
    return agent.global_step / (time.perf_counter() - start)


def sb3_ppo(steps: int) -> float:
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.env_util import make_vec_env

    envs = make_vec_env(make_env, n_envs=4, seed=1)
    model = SB3PPO(
        "MlpPolicy",
        envs,
        learning_rate=2.5e-4,
        n_steps=128,
        batch_size=128,
        n_epochs=4,
        gamma=0.99,
        gae_lambda=0.95,
        clip_range=0.2,
        ent_coef=0.01,
        vf_coef=0.5,
        max_grad_norm=0.5,
        seed=1,
        device="cpu",
        policy_kwargs={
            "net_arch": {"pi": [64, 64], "vf": [64, 64]},
            "activation_fn": torch.nn.Tanh,
        },
    )
    start = time.perf_counter()
    model.learn(total_timesteps=steps)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dqn-steps", type=int, default=10_000)
    parser.add_argument("--ppo-steps", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    ratios: dict[str, list[float]] = {"DQN": [], "PPO": []}
    for _ in range(args.repeats):
        # Interleave ours and theirs so a noisy neighbour affects both alike.
        dqn, sb3d = ours_dqn(args.dqn_steps), sb3_dqn(args.dqn_steps)
        ppo, sb3p = ours_ppo(args.ppo_steps), sb3_ppo(args.ppo_steps)
        print(
            f"DQN  ours {dqn:8.0f} steps/s   SB3 {sb3d:8.0f} steps/s   ratio {dqn / sb3d:5.2f}x"
            f"  (target >= 2.0x, >= 1000 steps/s)"
        )
        print(
            f"PPO  ours {ppo:8.0f} steps/s   SB3 {sb3p:8.0f} steps/s   ratio {ppo / sb3p:5.2f}x"
            f"  (target >= 1.3x, >= 6000 steps/s)",
            flush=True,
        )
        ratios["DQN"].append(dqn / sb3d)
        ratios["PPO"].append(ppo / sb3p)
    for name, values in ratios.items():
        print(f"{name} ratio over {len(values)} repeats: median {statistics.median(values):.2f}x, "
              f"min {min(values):.2f}x, max {max(values):.2f}x")


if __name__ == "__main__":
    main()
