"""Loading many runs: ``load_runs`` (run directories -> tables) and ``read_tables`` (Parquet).

Copies one real run directory N times (default 120, the size of a study) into a scratch
sweep directory and times, in the same process:

* baseline: every JSONL file parsed line by line with ``json.loads`` (the loader before the
  tables: one call per row);
* ``load_runs``: the whole RunData (all tables, the per-shift adaptation table included);
* ``write_tables`` / ``read_tables``: the Parquet round trip, and the size of the tables.

Usage::

    python benchmarks/load_runs.py RUN_DIR [--copies 120] [--scratch DIR]
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

JSONL = ("metrics.jsonl", "episodes.jsonl", "probes.jsonl", "shifts.jsonl")


def _replicate(run_dir: Path, sweep: Path, copies: int) -> list[Path]:
    runs = sweep / "runs"
    runs.mkdir(parents=True)
    (sweep / "sweep.toml").write_text('name = "bench"\n', encoding="utf-8")
    out = []
    for i in range(copies):
        target = runs / f"{run_dir.name}-copy{i:03d}"
        shutil.copytree(run_dir, target, ignore=shutil.ignore_patterns("checkpoints", "events.*"))
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
    ns = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(dir=ns.scratch, prefix="load_runs-"))
    try:
        run_dirs = _replicate(ns.run_dir, scratch / "sweep", ns.copies)
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
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
