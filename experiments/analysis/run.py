"""One run of a :class:`~experiments.analysis.rundata.RunData` as plain Python structures.

:class:`Run` is a per-run view of the tables (the episode log as numpy arrays, the other
logs as lists of dicts) for code that walks runs one at a time; :func:`runs_of` builds the
views of every run of a RunData, whether it was read from run directories or from tables.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments.analysis.rundata import RunData

__all__ = ["Run", "runs_of"]


@dataclass
class Run:
    """One run: the ``runs`` row's identity columns and its logs.

    Attributes:
        path: ``RunData.root / run_id`` (the run directory when the data came from one).
        config: the resolved ``config.toml`` as nested dicts.
        episodes: ``{"step", "task_id", "return", "length"}`` -> 1-D arrays sorted by step.
        shifts: ``{"step", "from_task", "to_task", "params", "at_shift"}`` rows by step.
        probes / metrics: the rows of ``probes.jsonl`` / ``metrics.jsonl`` (keys a row did
            not log are absent; probe rows always have ``data``).
        done / diverged: the parsed markers, or ``None``.
        episodes_from_metrics: the episode log was rebuilt from ``metrics.jsonl``.
    """

    run_id: str
    path: Path
    config: dict[str, Any]
    episodes: dict[str, np.ndarray]
    shifts: list[dict[str, Any]]
    probes: list[dict[str, Any]]
    metrics: list[dict[str, Any]] = field(default_factory=list)
    done: dict[str, Any] | None = None
    diverged: dict[str, Any] | None = None
    episodes_from_metrics: bool = False
    arm: str = ""
    seed: int | None = None
    reference: str = "continual"
    env_id: str | None = None
    algo: str | None = None
    period: int | None = None
    steps: int | None = None
    end_step: int = 0
    status: str = "partial"
    command: str | None = None
    wall_time: float | None = None
    mitigations: str = "none"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def experiment(self) -> dict[str, Any]:
        return dict(self.config.get("experiment", {}))


def _value(v: Any) -> Any:
    """A table cell as a plain Python value (None for missing)."""
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    return v.item() if isinstance(v, np.generic) else v


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Records without ``run_id`` and without missing cells (keys the row did not log)."""
    records = frame.drop(columns="run_id").to_dict("records")
    return [{k: v for k, v in r.items() if v is not None and v == v} for r in records]  # v != v: NaN


def _json(text: Any) -> Any:
    return None if _value(text) is None else json.loads(text)


def runs_of(data: RunData, *, logs: bool = True) -> list[Run]:
    """A :class:`Run` for every row of ``data.runs``, in order; ``logs=False`` leaves the
    probe and metric rows empty (for code that needs only episodes and shifts)."""
    def groups(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
        return {k: g for k, g in frame.groupby("run_id", sort=False)} if len(frame) else {}

    episodes, shifts = groups(data.episodes), groups(data.shifts)
    probes = groups(data.probes) if logs else {}
    metrics = groups(data.metrics) if logs else {}
    none = data.episodes.iloc[:0]
    out = []
    for row in data.runs.to_dict("records"):
        rid = row["run_id"]
        ep = episodes.get(rid, none)
        sh = shifts.get(rid, data.shifts.iloc[:0])
        out.append(Run(
            run_id=rid,
            path=Path(data.root) / rid,
            config=json.loads(row["config"]),
            episodes={"step": ep["step"].to_numpy(np.int64),
                      "task_id": ep["task_id"].to_numpy(np.int64),
                      "return": ep["return"].to_numpy(np.float64),
                      "length": ep["length"].to_numpy(np.int64)},
            shifts=[{"step": int(s["step"]), "from_task": _value(s["from_task"]),
                     "to_task": _value(s["to_task"]), "params": json.loads(s["params"]),
                     "at_shift": json.loads(s["at_shift"])}
                    for s in sh.to_dict("records")],
            probes=_rows(probes[rid]) if rid in probes else [],
            metrics=_rows(metrics[rid]) if rid in metrics else [],
            done=_json(row["done"]),
            diverged=_json(row["diverged"]),
            episodes_from_metrics=bool(row["episodes_from_metrics"]),
            arm=str(row["arm"]),
            seed=_value(row["seed"]),
            reference=str(row["reference"]),
            env_id=_value(row["env_id"]),
            algo=_value(row["algo"]),
            period=_value(row["period"]),
            steps=_value(row["steps"]),
            end_step=int(row["end_step"]),
            status=str(row["status"]),
            command=_value(row["command"]),
            wall_time=_value(row["wall_time"]),
            mitigations=str(row["mitigations"]),
        ))
    return out
