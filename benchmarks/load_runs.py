"""Loading many runs: ``load_runs`` (run directories -> tables) and ``read_tables`` (Parquet).

Copies one real run directory N times (default 120, the size of a study) into a scratch
sweep directory and times, in the same process:

* baseline: every JSONL file parsed line by line with ``json.loads`` (the loader before the
  tables: one call per row);
* ``load_runs``: the whole RunData (all tables, the per-shift adaptation table included);
* ``write_tables`` / ``read_tables``: the Parquet round trip, and the size of the tables;
* with ``--report``: ``plasticity report`` end to end on the copies (labelled as a study:
  ``--arms`` arms x copies/arms seeds, the second arm a fresh reference), from the run
  directories and then from the tables it wrote.

Usage::

    python benchmarks/load_runs.py RUN_DIR [--copies 120] [--scratch DIR] [--report --arms 12]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.analysis import load_runs, read_tables, write_tables  # noqa: E402
from experiments.cli import main as plasticity  # noqa: E402
from experiments.tomlio import dumps_toml, load_toml  # noqa: E402

JSONL = ("metrics.jsonl", "episodes.jsonl", "probes.jsonl", "shifts.jsonl")


def _replicate(run_dir: Path, sweep: Path, copies: int, arms: int) -> list[Path]:
    """``copies`` copies of ``run_dir``; copy i is arm ``i % arms``, seed ``i // arms``."""
    runs = sweep / "runs"
    runs.mkdir(parents=True)
    (sweep / "sweep.toml").write_text('name = "bench"\n', encoding="utf-8")
    config = load_toml(run_dir / "config.toml")
    out = []
    for i in range(copies):
        arm, seed = f"arm{i % arms:02d}", i // arms
        target = runs / f"{arm}-seed{seed}"
        shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns("checkpoints", "events.*"))
        config["experiment"].update({"arm": arm, "seed": seed, "out": str(target),
                                     "reference": "fresh" if i % arms == 1 else "continual"})
        (target / "config.toml").write_text(dumps_toml(config), encoding="utf-8")
        out.append(target)
    return out


def _baseline(run_dirs: list[Path]) -> int:
    rows = 0
    for run_dir in run_dirs:
        for name in JSONL:
            path = run_dir / name
            if path.is_file():
                for line in path.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        json.loads(line)
                        rows += 1
    return rows


def _timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--copies", type=int, default=120)
    parser.add_argument("--scratch", type=Path, default=None)
    parser.add_argument("--arms", type=int, default=1, help="label the copies as this many arms")
    parser.add_argument("--report", action="store_true", help="also time `plasticity report`")
    ns = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(dir=ns.scratch, prefix="load_runs-"))
    try:
        run_dirs = _replicate(ns.run_dir, scratch / "sweep", ns.copies, ns.arms)
        sizes = {n: (ns.run_dir / n).stat().st_size for n in JSONL if (ns.run_dir / n).is_file()}
        rows, t_base = _timed(_baseline, run_dirs)
        data, t_load = _timed(load_runs, [scratch / "sweep"])
        tables, t_write = _timed(write_tables, data, scratch / "tables")
        back, t_read = _timed(read_tables, tables)
        assert back.equals(data)
        size = sum(p.stat().st_size for p in tables.iterdir())
        print(f"one run: {', '.join(f'{k} {v / 1e3:.0f} kB' for k, v in sizes.items())}; "
              f"{ns.copies} copies, {rows} JSONL rows")
        for name, frame in data.tables().items():
            print(f"  {name}: {len(frame)} rows x {frame.shape[1]} columns")
        print(f"baseline (json.loads per line, parsing only): {t_base:.2f} s "
              f"({t_base / ns.copies * 1e3:.1f} ms/run)")
        print(f"load_runs (all tables + adaptation):          {t_load:.2f} s "
              f"({t_load / ns.copies * 1e3:.1f} ms/run)")
        print(f"write_tables: {t_write:.2f} s; read_tables: {t_read:.2f} s; "
              f"tables on disk: {size / 1e6:.2f} MB")
        if ns.report:
            out = scratch / "report"
            code, t_runs = _timed(plasticity, ["report", str(scratch / "sweep"), "--out", str(out)])
            code2, t_tables = _timed(plasticity, ["report", str(out / "tables")])
            assert code == code2 == 0
            print(f"plasticity report, {ns.arms} arms: from the run directories {t_runs:.2f} s, "
                  f"from its tables {t_tables:.2f} s")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
