"""CPU cost of one fixed-data trainability row, before and after the scale-free views.

    python benchmarks/trainability_cost.py [--repeats 3] [--steps 100]

On the second edition's networks (PPO 64-64 tanh policy and value, DQN 128-128 ReLU Q
network, untrained) and the hidden-goal room's fixed data of task 1 (its 512 uniform-random
transitions' distinct observations; the exact targets of its ``optimal_action_values``
hook), times in process CPU seconds (one torch thread):

* before: the row as it was -- the network's random- and exact-target fits
  (``Prober._fit_pair``; the fresh network's fits cached, as in a run after its first row);
* after: the row as it is now (``Prober._trainability``): the same plus the feature fit
  (one more random-target fit from a re-drawn head) and the head's scale (one forward).

Prints per network the median of ``--repeats`` and the ratio after / before. The share of a
run's wall follows from it: trainability rows are off in the default probe set (no fixed
phases), and the study settings' share scales by the printed ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import envs  # noqa: E402
import spectral  # noqa: E402
from agents.dqn import DQN, DQNConfig  # noqa: E402
from agents.ppo import PPO, PPOConfig  # noqa: E402
from experiments import probe_data, streams  # noqa: E402
from experiments.config import ProbeConfig  # noqa: E402
from experiments.probing import EXACT_TARGETS, Prober  # noqa: E402

ENV = "plasticity/MiniGridHiddenGoal-v0"


def cpu(fn) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100, help="probes.trainability_steps")
    args = parser.parse_args()
    torch.set_num_threads(1)

    env = envs.make(ENV, seed=0, stationary=True)
    streams.set_task(env, 1)
    data = probe_data.fixed_transitions(env, 512)
    exact = probe_data.optimal_action_values(env, 0.99)
    space = env.observation_space, env.action_space
    ppo = PPO(*space, PPOConfig(widths=(64, 64), num_envs=1, num_steps=8))
    dqn = DQN(*space, DQNConfig(widths=(128, 128)))
    targets = [t for t in ppo.probe_targets() if t.name in ("policy", "value")]
    targets += dqn.probe_targets()
    config = ProbeConfig(trainability_steps=args.steps)
    print(f"{ENV} task 1: {len(data['obs'])} transitions, exact targets "
          f"{'yes' if exact is not None else 'no'}; {args.steps} Adam steps per fit; "
          f"CPU seconds, median of {args.repeats}")
    for target in targets:
        prober = Prober(config, ["trainability"], seed=0)
        prober._trainability(target, 1, data["obs"], exact)  # fill the fresh-fit cache
        x = torch.unique(target.observe(data["obs"]), dim=0)

        def before(target=target, prober=prober, x=x) -> None:
            with torch.no_grad():
                y = spectral.standardized(
                    target.fresh_module(prober._task_generator(1, "targets", target.name))(x))
            prober._fit_pair("random", target, 1, x, y, "mse")
            if exact is not None and target.name in EXACT_TARGETS:
                y_e, loss = EXACT_TARGETS[target.name](exact[1])
                prober._fit_pair("exact", target, 1, target.observe(exact[0]), y_e, loss)

        def after(target=target, prober=prober) -> None:
            prober._trainability(target, 1, data["obs"], exact)

        old = statistics.median(cpu(before) for _ in range(args.repeats))
        new = statistics.median(cpu(after) for _ in range(args.repeats))
        print(f"  {target.name:>6} ({len(x)} inputs): before {old:6.3f} s, after {new:6.3f} s, "
              f"after / before {new / old:4.2f}x")


if __name__ == "__main__":
    main()
