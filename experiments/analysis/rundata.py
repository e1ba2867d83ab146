"""Tidy run data: the tables every analysis and report is computed from, and their Parquet form.

A :class:`RunData` holds one pandas DataFrame per table, every row keyed by ``run_id`` (the
run directory relative to :attr:`RunData.root`, a POSIX string)::

    runs        one row per run: run_id, sweep_id, arm, seed, reference, algo, env_id, period,
                steps, end_step, status ("done" | "diverged" | "partial"), git_commit, git_dirty,
                mitigations, command, wall_time, episodes_from_metrics, and JSON strings:
                done / diverged (the markers), provenance (provenance.json), config (the
                resolved config.toml)
    sweeps      one row per sweep directory: sweep_id, name, source (the sweep file's text)
    episodes    run_id, step, task_id, return, length              (one row per episode)
    metrics     run_id, step, task_id, <training-log columns>       (metrics.jsonl)
    probes      run_id, step, task_id, phase, network, data, <probe metric columns>
    shifts      run_id, shift_index (1, 2, ...), step, from_task, to_task, oracle,
                params, at_shift (JSON strings)
    adaptation  run_id, shift_index, task_id, step, <adaptation columns>
                (:func:`experiments.analysis.adaptation.adaptation_frame`)

Metric columns are whatever the runs logged (never a fixed list), as float64 (NaN where a
row does not have the metric). :func:`write_tables` writes one Parquet file per table and a
``manifest.json``; :func:`read_tables` gives back an equal RunData, dtypes included, so a
report built from committed tables cannot tell them from the run directories.

Provenance: :func:`commits` lists the code commits the runs were made with (every segment
of a resumed run counts); :func:`check_commits` refuses data from more than one commit
unless told to, naming them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.errors import ConfigError

__all__ = ["RunData", "TABLES", "MANIFEST", "write_tables", "read_tables", "is_tables_dir",
           "commits", "check_commits", "MixedCommitsError", "canonical"]

MANIFEST = "manifest.json"
FORMAT = "plasticity-tables/1"

#: Fixed columns of each table and their dtypes; any other column is a metric (float64, or
#: str when a run logged text under that name).
SCHEMA: dict[str, dict[str, str]] = {
    "runs": {"run_id": "str", "sweep_id": "str", "arm": "str", "seed": "Int64",
             "reference": "str", "algo": "str", "env_id": "str", "period": "Int64",
             "steps": "Int64", "end_step": "int64", "status": "str", "git_commit": "str",
             "git_dirty": "boolean", "mitigations": "str", "command": "str",
             "wall_time": "float64", "episodes_from_metrics": "bool", "done": "str",
             "diverged": "str", "provenance": "str", "config": "str"},
    "sweeps": {"sweep_id": "str", "name": "str", "source": "str"},
    "episodes": {"run_id": "str", "step": "int64", "task_id": "int64", "return": "float64",
                 "length": "int64"},
    "metrics": {"run_id": "str", "step": "int64", "task_id": "int64"},
    "probes": {"run_id": "str", "step": "int64", "task_id": "int64", "phase": "str",
               "network": "str", "data": "str"},
    "shifts": {"run_id": "str", "shift_index": "int64", "step": "int64", "from_task": "Int64",
               "to_task": "Int64", "oracle": "bool", "params": "str", "at_shift": "str"},
    "adaptation": {"run_id": "str", "shift_index": "int64", "task_id": "Int64",
                   "step": "int64", "segment_end": "int64", "segment_steps": "int64",
                   "from_task": "Int64", "to_task": "Int64", "oracle": "bool",
                   "n_episodes": "int64", "censored": "bool"},
}
TABLES = tuple(SCHEMA)


def canonical(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the fixed columns of ``table`` first, in their dtypes, then the other
    columns in their order: numeric ones (bools included) as float64, text as str. A fixed
    column missing from ``frame`` is added empty. The index is reset to 0..n-1."""
    fixed = SCHEMA[table]
    out = {}
    for name, dtype in fixed.items():
        column = frame[name] if name in frame else pd.Series([None] * len(frame), dtype=object)
        out[name] = _as(column.reset_index(drop=True), dtype)
    for name in frame.columns:
        if name not in fixed:
            out[name] = _metric(frame[name].reset_index(drop=True))
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


def _as(column: pd.Series, dtype: str) -> pd.Series:
    return column.astype(dtype)  # "str" keeps None/NaN missing (pandas >= 3)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA


def _metric(column: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
        return column.astype("float64")
    present = [v for v in column if not _missing(v)]
    if all(isinstance(v, (int, float, bool, np.number)) for v in present):
        return pd.Series([np.nan if _missing(v) else float(v) for v in column], dtype="float64")
    return _as(column, "str")


@dataclass
class RunData:
    """The tables of a set of runs (module docstring). ``root`` is the directory the run ids
    are relative to (relative to the working directory when inside it, POSIX)."""

    runs: pd.DataFrame
    sweeps: pd.DataFrame
    episodes: pd.DataFrame
    metrics: pd.DataFrame
    probes: pd.DataFrame
    shifts: pd.DataFrame
    adaptation: pd.DataFrame
    root: str = "."

    def tables(self) -> dict[str, pd.DataFrame]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name in SCHEMA}

    def equals(self, other: RunData) -> bool:
        """Same root and every table equal, column order and dtypes included."""
        return self.root == other.root and all(
            a.columns.equals(b.columns) and (a.dtypes == b.dtypes).all() and a.equals(b)
            for a, b in zip(self.tables().values(), other.tables().values(), strict=True))

    def select(self, run_ids: list[str]) -> RunData:
        """The same data restricted to ``run_ids`` (sweeps kept when one of their runs is)."""
        keep = set(run_ids)
        parts = {name: canonical(name, frame[frame["run_id"].isin(keep)])
                 for name, frame in self.tables().items() if name != "sweeps"}
        used = set(parts["runs"]["sweep_id"].dropna())
        sweeps = canonical("sweeps", self.sweeps[self.sweeps["sweep_id"].isin(used)])
        return RunData(sweeps=sweeps, root=self.root, **parts)


# ----------------------------------------------------------------------------- Parquet
def write_tables(data: RunData, directory: str | Path) -> Path:
    """Write ``data`` as ``<table>.parquet`` files and ``manifest.json`` into ``directory``
    (created); returns it. Files of a table that is no longer written are removed."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"format": FORMAT, "root": data.root, "tables": {}}
    for name, frame in data.tables().items():
        path = directory / f"{name}.parquet"
        canonical(name, frame).to_parquet(path, engine="pyarrow", index=False,
                                          compression="zstd")
        manifest["tables"][name] = {"file": path.name, "rows": len(frame)}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return directory


def is_tables_dir(path: str | Path) -> bool:
    """A directory written by :func:`write_tables` (it has ``manifest.json``)."""
    return (Path(path) / MANIFEST).is_file()


def read_tables(directory: str | Path) -> RunData:
    """The RunData that :func:`write_tables` wrote into ``directory``."""
    directory = Path(directory)
    if not is_tables_dir(directory):
        raise ConfigError(f"{str(directory)!r} is not a tables directory (no {MANIFEST}); "
                          f"expected the output of write_tables: {MANIFEST} and "
                          + ", ".join(f"{t}.parquet" for t in TABLES))
    manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    if manifest.get("format") != FORMAT:
        raise ConfigError(f"{directory / MANIFEST}: format {manifest.get('format')!r}; this "
                          f"version reads {FORMAT!r}")
    frames = {}
    for name in TABLES:
        path = directory / f"{name}.parquet"
        if not path.is_file():
            raise ConfigError(f"{str(directory)!r}: {path.name} is missing (the manifest lists "
                              + ", ".join(f"{t}.parquet" for t in TABLES) + ")")
        frames[name] = canonical(name, pd.read_parquet(path, engine="pyarrow"))
    return RunData(root=str(manifest.get("root", ".")), **frames)


# ----------------------------------------------------------------------------- provenance
class MixedCommitsError(ConfigError):
    """Runs of more than one code commit were given without ``allow_mixed_commits``."""


UNKNOWN = "unknown"


def _run_commits(row: Mapping[str, Any]) -> list[str]:
    """Commits of one run: every segment's (a resumed run has one segment per start), else
    the top-level one; ``"unknown"`` without provenance or outside a git checkout."""
    text = row.get("provenance")
    if _missing(text):
        return [UNKNOWN]
    prov = json.loads(text)
    segments = prov.get("segments") or [prov]
    found = [str(s.get("git_commit") or UNKNOWN) for s in segments]
    return list(dict.fromkeys(found))


def commits(data: RunData) -> dict[str, list[str]]:
    """``{commit: [run_id, ...]}`` over every run (and every segment of a resumed run), in
    order of first appearance; runs without ``provenance.json`` count under ``"unknown"``."""
    out: dict[str, list[str]] = {}
    for row in data.runs[["run_id", "provenance"]].to_dict("records"):
        for commit in _run_commits(row):
            out.setdefault(commit, []).append(row["run_id"])
    return out


def check_commits(data: RunData, *, allow_mixed_commits: bool = False) -> list[str]:
    """The commits ``data`` was built from (:func:`commits`); raises
    :class:`MixedCommitsError` naming them when there is more than one, unless
    ``allow_mixed_commits``. "unknown" counts as a commit of its own: runs of an unrecorded
    commit cannot be shown to match the others."""
    found = commits(data)
    if len(found) > 1 and not allow_mixed_commits:
        parts = []
        for commit, run_ids in found.items():
            shown = ", ".join(run_ids[:3]) + (", ..." if len(run_ids) > 3 else "")
            parts.append(f"{commit} ({len(run_ids)} runs: {shown})")
        raise MixedCommitsError(f"the runs were made by {len(found)} code commits: "
                                + "; ".join(parts) + ". Rerun the odd ones, or pass "
                                "--allow-mixed-commits (allow_mixed_commits=True) to "
                                "build from all of them")
    return list(found)
