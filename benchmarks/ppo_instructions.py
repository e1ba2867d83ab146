"""A single PPO run's work by section, for counting instructions under callgrind.

    valgrind --tool=callgrind --dump-before=time_sleep python benchmarks/ppo_instructions.py DIR

``DIR`` is the checkout to measure (this one, or e.g. ``git worktree add /tmp/before
92e7542``). Two PPO runs at S1's settings (MiniGrid hidden goal, 4 envs x 128 steps, 64-64
tanh, 4 minibatches; seed 0) with 4 and with 8 update epochs each warm up for 2,048 env
steps, then train 4,096 more between ``time.sleep(0)`` markers, where callgrind dumps its
counts: dump 2 is the 4-epoch run's 4,096 steps, dump 3 the 8-epoch run's. Dump 3 minus
dump 2 is 4 epochs of updates (128 minibatches); dump 2 minus that is the rollouts.
Instruction counts are deterministic, unlike CPU time on a shared machine.
"""

import sys
import time

sys.path.insert(0, sys.argv[1])

import torch  # noqa: E402

import envs  # noqa: E402
from agents import PPO, PPOConfig  # noqa: E402

torch.set_num_threads(1)
S1 = dict(num_envs=4, num_steps=128, num_minibatches=4, widths=(64, 64), total_steps=360_000)
runs = []
for epochs in (4, 8):
    vec = envs.make_vector("plasticity/MiniGridHiddenGoal-v0", 4, seed=0, period=15000)
    agent = PPO(vec.single_observation_space, vec.single_action_space,
                PPOConfig(**S1, update_epochs=epochs, seed=0))
    agent.learn(vec, 2048)
    runs.append((agent, vec))
for agent, vec in runs:
    time.sleep(0)
    agent.learn(vec, 2048 + 4096)
time.sleep(0)
