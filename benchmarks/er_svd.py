"""Where an ER step's time goes, and what batching its SVDs across members would buy.

ER (agents/mitigations/er.py) ascends ``spectral.effective_rank`` of every hidden layer's
features: per step and member, one ``svdvals`` (float64) and its backward per layer. This
prints, measured in this run (CPU time, one torch thread), at the PPO study's shapes
(rollout of 512 rows, 64-64 tanh actor and critic, 10 ER steps per update):

* one ER update phase (10 steps) of one member;
* one ``svdvals`` + backward of a (512, 64) float64 matrix, one at a time;
* the same for K members at once (a batched ``svdvals`` of (K, 512, 64)), per member.

    python benchmarks/er_svd.py [--k 10] [--repeats 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agents.mitigations.er import ER  # noqa: E402
from agents.networks import MLP  # noqa: E402


class _Agent:
    def __init__(self, nets: dict[str, MLP]) -> None:
        self.nets = nets

    def networks(self) -> dict[str, MLP]:
        return self.nets


def _cpu(fn, repeats: int) -> float:
    fn()
    t = time.process_time()
    for _ in range(repeats):
        fn()
    return (time.process_time() - t) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    agent = _Agent({"actor": MLP(20, 3, (64, 64), "tanh"), "critic": MLP(20, 1, (64, 64), "tanh")})
    er, batch = ER(lr=1e-6, steps_per_update=10), {"obs": torch.randn(512, 20)}
    phase = _cpu(lambda: er.after_update(agent, batch), max(args.repeats // 4, 2))
    one = torch.randn(512, 64, dtype=torch.float64, requires_grad=True)
    many = torch.randn(args.k, 512, 64, dtype=torch.float64, requires_grad=True)
    single = _cpu(lambda: torch.linalg.svdvals(one).sum().backward(), args.repeats)
    batched = _cpu(lambda: torch.linalg.svdvals(many).sum().backward(), args.repeats) / args.k
    print(f"ER update phase (10 steps, 4 layers) of one member: {1e3 * phase:.1f} ms CPU")
    print(f"svdvals + backward (512, 64) f64, one at a time:     {1e3 * single:.2f} ms")
    print(f"  4 per ER step x 10 steps:                          {40e3 * single:.1f} ms "
          f"({100 * 40 * single / phase:.0f}% of the phase)")
    print(f"batched over K = {args.k}, per member:                  {1e3 * batched:.2f} ms "
          f"({single / batched:.2f}x one at a time)")


if __name__ == "__main__":
    main()
