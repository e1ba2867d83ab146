"""Probe overhead at the default cadence: the default study's continual arm with probes
(pre + init at every shift, default metric set, 256-step side rollouts) vs the same run
with probes off, one after the other in this process, one torch thread.

    python benchmarks/probe_overhead.py [--tasks 12] [--seed 0]

Prints each run's wall time, the probe time the runner measured (side rollouts included)
and the overhead both as probe_time / wall_time and as the wall-time ratio of the pair.
Target (issue 6): probes <= 5% of the run's wall time.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from experiments.cli import DEFAULT_STUDY  # noqa: E402
from experiments.config import apply_overrides, from_dict  # noqa: E402
from experiments.runner import run  # noqa: E402
from experiments.tomlio import load_toml  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = load_toml(DEFAULT_STUDY)["base"]
    period = base["env"]["period"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, enabled in (("probes", True), ("no probes", False)):
            data = apply_overrides(base, {
                "experiment.steps": args.tasks * period, "experiment.seed": args.seed,
                "experiment.out": f"{tmp}/{label.replace(' ', '_')}", "probes.enabled": enabled,
                "logging.progress": "off"})
            start = time.perf_counter()
            result = run(from_dict(data))
            results[label] = (time.perf_counter() - start, result.probe_time)
            print(f"{label:>9}: wall {results[label][0]:7.1f}s  probe time {result.probe_time:6.2f}s "
                  f"({result.probe_fraction:.1%} of the run)", flush=True)
    with_p, without = results["probes"][0], results["no probes"][0]
    print(f"tasks {args.tasks}, shifts {args.tasks - 1}: probe time / wall = "
          f"{results['probes'][1] / with_p:.1%}; wall ratio probes/no-probes = {with_p / without:.3f}")


if __name__ == "__main__":
    main()
