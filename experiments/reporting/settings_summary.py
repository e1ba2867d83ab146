"""Compact summary of a settings pilot sweep (continual vs fresh at a few grid points).

::

    python -m experiments.reporting.settings_summary SWEEP_DIR [--out FILE.csv]

``SWEEP_DIR/runs/<arm>[-<key>=<value>...]-seed<s>/`` (as ``experiments.sweep`` names them)
-> one CSV row per (setting, arm, quantity, window): the mean over seeds of the seed means,
its 95% t interval on G - 1 df (``inference.mean_interval``), and for the ``continual-fresh``
and ``last-first`` rows the paired difference over seeds (``inference.difference``).

Quantities, per task ``k`` (env steps ``[k P, (k + 1) P)`` of period ``P``):

* ``accuracy``: the task's mean episodic return (on PermutedDigits: the fraction of images
  labelled right), episodes-weighted over its ``metrics.jsonl`` rows;
* ``end_accuracy``: the return of the task's last logged window (with ``log_every = P / 4``,
  its last quarter of episodes -- the ``final return`` of ``experiments.reporting.pilots``);
* probe columns of the ``init`` rows on fixed data of the ``policy`` network (the network
  as it meets task ``k``; fresh: re-initialised): tanh saturated fraction (mean over the
  layers that report it), exact eps-counts, trainability log-ratio; ``<key>_censored`` is
  reported as the share of censored rows (censored counts are lower bounds).

Windows: ``first`` = the first ``window`` tasks, ``last`` = the last ``window`` tasks that
every run of the sweep finished. Exploratory statistics: no multiplicity correction.
"""

from __future__ import annotations

import argparse
import math
import tomllib
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from experiments.reporting.inference import difference, mean_interval
from experiments.rundir import read_jsonl

__all__ = ["PROBE_COLUMNS", "run_tables", "summarize", "main"]

#: probe columns summarised (row key -> column name in the CSV)
PROBE_COLUMNS = {
    "hessian/eps_count/rel0.03": "eps_count_rel0.03",
    "hessian/eps_count/rel0.1": "eps_count_rel0.1",
    "trainability/exact_final_fraction_logratio": "trainability_exact_logratio",
}


def _ids(run_dir: Path, config: dict) -> dict:
    """arm and seed from the run's config; the setting is the name's ``<key>=<value>`` part
    between them (``base`` when the sweep has no grid)."""
    arm, seed = str(config["experiment"]["arm"]), int(config["experiment"]["seed"])
    head, tail = f"{arm}", f"-seed{seed}"
    name = run_dir.name
    if not (name.startswith(head) and name.endswith(tail)):
        raise ValueError(f"run directory {name!r} is not named {arm}[-<key>=<value>...]-seed{seed}")
    return {"arm": arm, "setting": name[len(head):len(name) - len(tail)].lstrip("-") or "base",
            "seed": seed}


def run_tables(run_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(tasks, probes) of one run: per task ``accuracy``/``end_accuracy``; per probed task
    the :data:`PROBE_COLUMNS`, their ``_censored`` flags and ``saturated_fraction``."""
    config = tomllib.loads((run_dir / "config.toml").read_text())
    period = int(config["env"]["period"])
    ids = _ids(run_dir, config)
    rows = []
    for r in read_jsonl(run_dir / "metrics.jsonl", torn="warn"):
        if r.get("episodes", 0) > 0 and math.isfinite(r.get("episodic_return", math.nan)):
            rows.append({"task": (int(r["step"]) - 1) // period, "step": int(r["step"]),
                         "ret": float(r["episodic_return"]), "n": int(r["episodes"])})
    m = pd.DataFrame(rows, columns=["task", "step", "ret", "n"])
    tasks = []
    for task, g in m.groupby("task"):
        g = g.sort_values("step")
        tasks.append({**ids, "task": int(task),
                      "accuracy": float((g.ret * g.n).sum() / g.n.sum()),
                      "end_accuracy": float(g.ret.iloc[-1])})
    probes = []
    for r in read_jsonl(run_dir / "probes.jsonl", torn="warn"):
        if (r.get("phase"), r.get("data"), r.get("network")) != ("init", "fixed", "policy"):
            continue
        sat = [v for k, v in r.items() if k.endswith("/saturated_fraction")]
        row = {**ids, "task": int(r["task_id"]),
               "saturated_fraction": sum(sat) / len(sat) if sat else math.nan}
        for key, col in PROBE_COLUMNS.items():
            row[col] = r.get(key, math.nan)
            if f"{key}_censored" in r:
                row[f"{col}_censored"] = r[f"{key}_censored"]
        probes.append(row)
    return pd.DataFrame(tasks), pd.DataFrame(probes)


def _row(setting: str, arm: str, quantity: str, window: str, iv) -> dict:
    return {"setting": setting, "arm": arm, "quantity": quantity, "window": window,
            "mean": iv.estimate, "low": iv.low, "high": iv.high, "n_seeds": iv.n_seeds,
            "method": iv.method or iv.reason}


def summarize(sweep_dir: Path, window: int = 10) -> pd.DataFrame:
    """The summary rows of ``sweep_dir`` (module docstring)."""
    runs = sorted(p for p in (Path(sweep_dir) / "runs").iterdir() if (p / "metrics.jsonl").exists())
    if not runs:
        raise ValueError(f"{sweep_dir}: no run with a metrics.jsonl under runs/")
    parts = [run_tables(p) for p in runs]
    tasks = pd.concat([t for t, _ in parts], ignore_index=True)
    probes = pd.concat([p for _, p in parts if len(p)], ignore_index=True) if any(
        len(p) for _, p in parts) else pd.DataFrame(columns=["setting", "arm", "seed", "task"])
    # the last window every run reached, so arms and seeds are compared on the same tasks
    n_tasks = int(tasks.groupby(["setting", "arm", "seed"]).task.max().min()) + 1
    windows = {"first": range(0, min(window, n_tasks)),
               "last": range(max(0, n_tasks - window), n_tasks)}
    out = []
    cols = [("accuracy", tasks), ("end_accuracy", tasks), ("saturated_fraction", probes)]
    cols += [(c, probes) for c in PROBE_COLUMNS.values()]
    cols += [(f"{c}_censored", probes) for c in PROBE_COLUMNS.values() if f"{c}_censored" in probes]
    for setting in sorted(tasks.setting.unique()):
        for quantity, frame in cols:
            if quantity not in frame:
                continue
            f = frame[frame.setting == setting]
            sel = {(arm, w): f[(f.arm == arm) & f.task.isin(list(r))]
                   for arm in sorted(f.arm.unique()) for w, r in windows.items()}
            for (arm, w), g in sel.items():
                out.append(_row(setting, arm, quantity, w, mean_interval(g[quantity], g.seed)))
            for arm in sorted(f.arm.unique()):
                a, b = sel[(arm, "last")], sel[(arm, "first")]
                out.append(_row(setting, arm, quantity, "last-first",
                                difference(a[quantity], a.seed, b[quantity], b.seed)))
            if ("continual", "last") in sel and ("fresh", "last") in sel:
                for w in windows:
                    a, b = sel[("continual", w)], sel[("fresh", w)]
                    out.append(_row(setting, "continual-fresh", quantity, w,
                                    difference(a[quantity], a.seed, b[quantity], b.seed)))
    frame = pd.DataFrame(out)
    frame.attrs["n_tasks"] = n_tasks
    return frame


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.reporting.settings_summary",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="CSV path (default: stdout)")
    parser.add_argument("--window", type=int, default=10, help="tasks per window (default 10)")
    args = parser.parse_args(argv)
    try:
        frame = summarize(args.sweep_dir, args.window)
    except (ValueError, OSError) as err:
        print(f"error: {err}")
        return 2
    text = frame.to_csv(index=False, float_format="%.4g")
    if args.out is None:
        print(text, end="")
    else:
        args.out.write_text(text)
        print(f"{len(frame)} rows over {frame.attrs['n_tasks']} tasks -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
