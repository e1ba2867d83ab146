"""Probe overhead: one arm of a study with its probes vs the same run with probes off, one
after the other in this process, one torch thread.

    python benchmarks/probe_overhead.py [--tasks 12] [--seed 0]
        [--study experiments/studies/e2_ppo_hidden_goal.toml] [--reference fresh]

Default study: the embedded default (PPO on the hidden-goal room; pre + init probes at
every shift, default metric set, 256-step side rollouts). Prints each run's wall time, the
probe time the runner measured (side rollouts included), the overhead both as
probe_time / wall_time and as the wall-time ratio of the pair, and where the probe time
went: per (phase, data, network) the probe rows' own time (``time/total``: spectral groups) and the
trainability fits (``time/trainability``), as a share of the probed run's wall time.
Target (issue 6): the default probe set <= 5% of the run's wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from experiments.cli import DEFAULT_STUDY  # noqa: E402
from experiments.config import apply_overrides, from_dict  # noqa: E402
from experiments.runner import run  # noqa: E402
from experiments.tomlio import load_toml  # noqa: E402


def breakdown(probes: Path, wall: float) -> list[str]:
    """Seconds of probe-row time per (phase, data, network), split into spectral groups
    and trainability fits."""
    spent: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    for line in probes.read_text().splitlines():
        row = json.loads(line)
        key = (row["phase"], row.get("data", "on_policy"), row["network"])
        spent[key][0] += row.get("time/total", 0.0)
        spent[key][1] += row.get("time/trainability", 0.0)
        spent[key][2] += 1
    out = []
    for (phase, data, network), (spectral_s, fit_s, n) in sorted(spent.items()):
        out.append(f"  {phase:>12} {data:>9} {network:>7}: {n:3d} rows, spectral {spectral_s:6.2f}s "
                   f"({spectral_s / wall:5.1%}), trainability {fit_s:6.2f}s ({fit_s / wall:5.1%})")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--study", type=Path, default=DEFAULT_STUDY,
                        help="a study file whose [base] is run (default: the default study)")
    parser.add_argument("--reference", default="continual", help="experiment.reference of the arm")
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = load_toml(args.study)["base"]
    period = base["env"]["period"]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, enabled in (("probes", True), ("no probes", False)):
            data = apply_overrides(base, {
                "experiment.steps": args.tasks * period, "experiment.seed": args.seed,
                "experiment.reference": args.reference, "experiment.checkpoint_every": 0,
                "experiment.out": f"{tmp}/{label.replace(' ', '_')}", "probes.enabled": enabled,
                "logging.progress": "off"})
            start = time.perf_counter()
            result = run(from_dict(data))
            results[label] = (time.perf_counter() - start, result.probe_time)
            print(f"{label:>9}: wall {results[label][0]:7.1f}s  probe time {result.probe_time:6.2f}s "
                  f"({result.probe_fraction:.1%} of the run)", flush=True)
            if enabled:
                print("\n".join(breakdown(result.run_dir / "probes.jsonl", results[label][0])))
    with_p, without = results["probes"][0], results["no probes"][0]
    print(f"{args.study.name} [{args.reference}], tasks {args.tasks}, shifts {args.tasks - 1}: "
          f"probe time / wall = {results['probes'][1] / with_p:.1%}; wall ratio "
          f"probes/no-probes = {with_p / without:.3f}")


if __name__ == "__main__":
    main()
