"""Sweep throughput with 1 vs 2 local workers (process pool, spawn, one torch thread each).

    python benchmarks/sweep_scaling.py [--runs 4] [--tasks 2]

Runs the same small sweep (the default study's PPO config, ``--runs`` seeds of ``--tasks``
tasks each, probes on) twice, into fresh directories, with ``--workers 1`` then 2, and
prints env steps per second of each and their ratio. Target (issue 6): >= 1.8x on two cores.
The machine must be otherwise idle for the ratio to mean anything.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from experiments.cli import DEFAULT_STUDY  # noqa: E402
from experiments.sweep import build_sweep, run_sweep  # noqa: E402
from experiments.tomlio import load_toml  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=2)
    args = parser.parse_args()
    data = load_toml(DEFAULT_STUDY)
    data.pop("arms")
    data.pop("smoke")
    data["seeds"] = list(range(args.runs))
    steps = args.tasks * data["base"]["env"]["period"]
    data["base"]["experiment"]["steps"] = steps
    sps = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            sweep = build_sweep(data, name="scaling", out=Path(tmp) / f"w{workers}")
            start = time.perf_counter()
            result = run_sweep(sweep, workers=workers, progress="off")
            wall = time.perf_counter() - start
            assert not result.failed, result.outcomes
            sps[workers] = args.runs * steps / wall
            print(f"workers {workers}: {args.runs} runs x {steps} steps in {wall:6.1f}s = "
                  f"{sps[workers]:7.0f} env steps/s", flush=True)
    print(f"speed-up 2 workers / 1 worker: {sps[2] / sps[1]:.2f}x")


if __name__ == "__main__":
    main()
