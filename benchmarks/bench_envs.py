"""Env stepping speed: the stream wrappers' per-step overhead and the flagship stream's speed.

Run: ``python benchmarks/bench_envs.py [--steps N]`` from the repo root. Prints steps/s of each
env, measured in this run, and ratios against its raw peer:

* CartPole-v1 (``gymnasium.make``) vs the CartPole streams: the wrapper's overhead per step;
* MiniGrid-Empty-8x8-v0 (raw ``MiniGridEnv``, dict observation rendered from the view each
  step; 7 actions) vs the same hidden-goal room rendering its view (raw ``RoomEnv``),
  ``plasticity/MiniGridHiddenGoal-v0`` (one-hot pose observation, no view rendering) and the
  visible-goal stream (flattened view);
* the raw ``DigitsBandit`` (one-step episodes: every step is followed by a reset) vs
  ``plasticity/PermutedDigits-v0`` (the stream alone; the issue asks >= 100k steps/s);
* the hidden-goal stream stepped alone with Python-int actions vs 4 of it in
  ``envs.make_vector`` (gymnasium's ``SyncVectorEnv``, numpy-integer actions) and in the
  lean vector env (``mode="lean"``, ``envs.vector.LeanSyncVectorEnv``: PPO's path in the
  runner), per sub-env step: the vector env's overhead;
* 4-env ``SyncVectorEnv`` vs ``LeanSyncVectorEnv`` of the hidden-goal and goal-shift
  streams, per sub-env step (ratio > 1: the lean env is faster).

Rates are wall clock (best of ``--rounds``); on a loaded machine read the ratios.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import envs

#: the timer: wall time by default; ``--cpu-time`` uses this process's CPU time, which a
#: machine shared with other jobs distorts less
clock = time.perf_counter


def steps_per_second(env: gym.Env, steps: int, seed: int = 0) -> float:
    """Random-action steps per second, resets included (one timed run)."""
    n = env.action_space.n
    actions = np.random.default_rng(seed).integers(0, n, steps).tolist()
    env.reset(seed=seed)
    t = clock()
    for a in actions:
        _, _, term, trunc, _ = env.step(a)
        if term or trunc:
            env.reset()
    return steps / (clock() - t)


def vector_steps_per_second(vec: gym.vector.VectorEnv, steps: int, seed: int = 0) -> float:
    """Sub-env steps per second of random numpy-integer actions (autoresets included)."""
    actions = np.random.default_rng(seed).integers(0, vec.single_action_space.n,
                                                   (steps // vec.num_envs, vec.num_envs))
    vec.reset(seed=seed)
    t = clock()
    for a in actions:
        vec.step(a)
    return len(actions) * vec.num_envs / (clock() - t)


def best_of(envs_: list[gym.Env], steps: int, rounds: int) -> list[float]:
    """Best steps/s of each env over ``rounds`` interleaved rounds (a shared machine's load
    then hits every env alike instead of whichever ran during a burst)."""
    best = [0.0] * len(envs_)
    for _ in range(rounds):
        for i, env in enumerate(envs_):
            rate = (vector_steps_per_second if isinstance(env, gym.vector.VectorEnv)
                    else steps_per_second)
            best[i] = max(best[i], rate(env, steps))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cpu-time", action="store_true", help="time with process CPU time")
    args = parser.parse_args()
    global clock
    if args.cpu_time:
        clock = time.process_time
    groups = [
        ("CartPole-v1", gym.make("CartPole-v1"), [
            ("plasticity/CartPoleDynamics-v0", envs.make("plasticity/CartPoleDynamics-v0", period=5_000)),
            ("plasticity/CartPolePermutedObs-v0", envs.make("plasticity/CartPolePermutedObs-v0", period=5_000)),
            ("plasticity/CartPoleObsOffset-v0", envs.make("plasticity/CartPoleObsOffset-v0", period=5_000)),
        ]),
        ("MiniGrid-Empty-8x8-v0", gym.make("MiniGrid-Empty-8x8-v0"), [
            # the same room, unwrapped, rendering its egocentric view: isolates the rendering cost
            ("RoomEnv hidden goal, image obs (raw)", envs.RoomEnv(goal_visible=False, obs="image", max_steps=144)),
            ("plasticity/MiniGridHiddenGoal-v0", envs.make("plasticity/MiniGridHiddenGoal-v0")),
            ("plasticity/MiniGridGoalShift-v0", envs.make("plasticity/MiniGridGoalShift-v0")),
        ]),
        ("DigitsBandit (raw)", envs.DigitsBandit(), [
            ("plasticity/PermutedDigits-v0", envs.make("plasticity/PermutedDigits-v0", period=5_000)),
        ]),
        ("plasticity/MiniGridHiddenGoal-v0", envs.make("plasticity/MiniGridHiddenGoal-v0"), [
            ("  x4 make_vector, per sub-env", envs.make_vector("plasticity/MiniGridHiddenGoal-v0", 4)),
            ("  x4 make_vector lean, per sub-env",
             envs.make_vector("plasticity/MiniGridHiddenGoal-v0", 4, "lean")),
        ]),
        # PPO's training envs: gymnasium's SyncVectorEnv vs the lean one (the runner's)
        ("x4 SyncVectorEnv hidden goal", envs.make_vector("plasticity/MiniGridHiddenGoal-v0", 4), [
            ("  x4 LeanSyncVectorEnv", envs.make_vector("plasticity/MiniGridHiddenGoal-v0", 4, "lean")),
        ]),
        ("x4 SyncVectorEnv goal shift", envs.make_vector("plasticity/MiniGridGoalShift-v0", 4), [
            ("  x4 LeanSyncVectorEnv", envs.make_vector("plasticity/MiniGridGoalShift-v0", 4, "lean")),
        ]),
    ]
    print(f"{'env':<36} {'steps/s':>10} {'ratio':>7} {'overhead us/step':>17}")
    for raw_id, raw, streams in groups:
        base, *rates = best_of([raw] + [env for _, env in streams], args.steps, args.rounds)
        print(f"{raw_id:<36} {base:>10,.0f} {1.0:>7.2f} {'-':>17}")
        for (sid, _), sps in zip(streams, rates, strict=True):
            print(f"{sid:<36} {sps:>10,.0f} {sps / base:>7.2f} {1e6 / sps - 1e6 / base:>17.2f}")


if __name__ == "__main__":
    main()
