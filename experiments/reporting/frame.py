"""The per-shift analysis frame: adaptation, matched-reference gaps and probes, one row per
run x shift, built from the tidy tables of :class:`experiments.analysis.RunData`.

Columns: ``run_id, arm, seed, reference, shift_index, task_index`` (= ``shift_index``: the
number of tasks trained before), the adaptation columns of ``RunData.adaptation``,
``gap_<column>`` for every numeric adaptation column (the run's value minus its matched fresh
run's on the same shift; NaN without a match, see :mod:`.references`; a censored recovery of
the run against an observed one of the reference is ``+inf``: a gap known only to be
large), and one column per probe at the shift, named by :func:`probe_column`: the probe row of
that phase, network and data at the shift's step (``pre``: old task, just before the switch;
``init`` and ``trained_once``: the new task, before any update on it); when no row has the
shift's exact step, the row of that phase on the right task (``pre``: the old one, else the
new one) nearest to it.

Censored probe values (:func:`censor_probes`): a metric ``K`` with a ``K_censored`` column
holds its bound where the flag is 1 (both kinds here are lower bounds: the true value is at
least the bound), and the flag travels into the frame as the probe column's ``..._censored``
column. Tables written before probes flagged censoring have NaN for an ε-rank whose ε fell
below its estimator's resolution; where the row has the resolution
(``eps_resolution_rel`` / ``eps_resolution_nodes_rel``), such a NaN becomes censored at a
lower bound: the same estimator's ε-rank at the next larger relative ε that it resolves (a
count above a larger ε is never larger), or 0 when none is resolved.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # references imports declarations, which imports the kinds (and this)
    from experiments.reporting.references import ArmReference

__all__ = ["probe_column", "parse_probe_column", "shift_frame", "censor_probes", "PROBE_META",
           "SHIFT_PHASES"]

PROBE_META = ("run_id", "step", "task_id", "phase", "network", "data", "time", "wall_time")
SHIFT_PHASES = ("pre", "init", "trained_once")
_ID = ("run_id", "shift_index", "task_id", "step")


def probe_column(phase: str, network: str, data: str, metric: str) -> str:
    """``init/value/on_policy/hessian/eps_rank``."""
    return f"{phase}/{network}/{data}/{metric}"


def parse_probe_column(column: str) -> tuple[str, str, str, str]:
    phase, network, data, metric = column.split("/", 3)
    return phase, network, data, metric


_EPS_FAMILY = re.compile(r"^(?P<prefix>.+)/eps_rank_(?P<method>paper|nodes)/rel(?P<r>[0-9.e-]+)$")


def censor_probes(probes: pd.DataFrame) -> pd.DataFrame:
    """``probes`` with every below-resolution NaN ε-rank turned into a censored lower bound
    and a ``_censored`` 0/1 column beside each such metric (module docstring); metrics that
    already carry ``_censored`` are left as they are."""
    families: dict[tuple[str, str], list[tuple[float, str]]] = {}
    for c in probes.columns:
        m = _EPS_FAMILY.match(c)
        if m and f"{c}_censored" not in probes.columns:
            families.setdefault((m["prefix"], m["method"]), []).append((float(m["r"]), c))
    if not families:
        return probes
    out = probes.copy()
    for (prefix, method), members in families.items():
        resolution = f"{prefix}/eps_resolution{'' if method == 'paper' else '_nodes'}_rel"
        if resolution not in out.columns:
            continue
        res = pd.to_numeric(out[resolution], errors="coerce").to_numpy(dtype=float)
        members.sort()
        for i, (r, column) in enumerate(members):
            values = pd.to_numeric(out[column], errors="coerce").to_numpy(dtype=float)
            below = np.isnan(values) & np.isfinite(res) & (res > r)
            bound = np.zeros(len(values))
            filled = np.zeros(len(values), dtype=bool)
            for _, coarser in members[i + 1:]:  # the nearest resolved larger eps
                v = pd.to_numeric(out[coarser], errors="coerce").to_numpy(dtype=float)
                take = ~filled & np.isfinite(v)
                bound[take], filled[take] = v[take], True
            out[column] = np.where(below, bound, values)
            out[f"{column}_censored"] = np.where(np.isfinite(res), below.astype(float), np.nan)
    return out


def _adaptation_columns(adaptation: pd.DataFrame) -> list[str]:
    return [c for c in adaptation.columns if c not in _ID
            and pd.api.types.is_numeric_dtype(adaptation[c])
            and not pd.api.types.is_bool_dtype(adaptation[c])]


def _probe_wide(probes: pd.DataFrame, shifts: pd.DataFrame) -> pd.DataFrame:
    """One row per (run_id, shift_index) with a column per shift-phase probe metric."""
    if probes.empty or shifts.empty:
        return pd.DataFrame(columns=["run_id", "shift_index"])
    p = probes[probes["phase"].isin(SHIFT_PHASES)].copy()
    if "data" not in p.columns:
        p["data"] = "on_policy"
    p["data"] = p["data"].fillna("on_policy")
    metrics = [c for c in p.columns if c not in PROBE_META
               and pd.api.types.is_numeric_dtype(p[c]) and not pd.api.types.is_bool_dtype(p[c])]
    s = shifts[["run_id", "shift_index", "step", "from_task", "to_task"]].rename(
        columns={"step": "shift_step"})
    p = p.merge(s, on="run_id")
    task = np.where(p["phase"] == "pre", p["from_task"], p["to_task"])
    p = p[(p["step"] == p["shift_step"]) | (p["task_id"].to_numpy() == task)].copy()
    # the row of each phase nearest to the shift step (PPO may probe a rollout later)
    p["distance"] = (p["step"] - p["shift_step"]).abs()
    p = p.sort_values(["run_id", "shift_index", "phase", "network", "data", "distance", "step"],
                      kind="stable")
    p = p.drop_duplicates(["run_id", "shift_index", "phase", "network", "data"])
    if p.empty or not metrics:
        return pd.DataFrame(columns=["run_id", "shift_index"])
    long = p.melt(id_vars=["run_id", "shift_index", "phase", "network", "data"],
                  value_vars=metrics, var_name="metric").dropna(subset=["value"])
    long["column"] = [probe_column(a, b, c, d) for a, b, c, d in
                      zip(long["phase"], long["network"], long["data"], long["metric"],
                          strict=True)]
    wide = long.pivot_table(index=["run_id", "shift_index"], columns="column", values="value",
                            aggfunc="first")
    wide.columns.name = None
    return wide.reset_index()


def _gap(value: float, ref: float, column: str, censored: bool, ref_censored: bool) -> float:
    if column == "steps_to_threshold":
        if censored and not ref_censored and math.isfinite(ref):
            return math.inf
        if censored or ref_censored:
            return math.nan
    return value - ref


def shift_frame(runs: pd.DataFrame, adaptation: pd.DataFrame, probes: pd.DataFrame,
                shifts: pd.DataFrame, references: Mapping[str, ArmReference]) -> pd.DataFrame:
    """The analysis frame (module docstring) of the runs with status ``done``."""
    done = runs[runs["status"] == "done"][["run_id", "arm", "seed", "reference"]]
    frame = adaptation.merge(done, on="run_id")
    frame = frame.sort_values(["arm", "seed", "run_id", "shift_index"], kind="stable")
    frame["task_index"] = frame["shift_index"].astype(float)
    columns = _adaptation_columns(adaptation)
    ref_of = {run: ref for arm_ref in references.values() for run, ref in arm_ref.pairs.items()}
    by_key = adaptation.set_index(["run_id", "shift_index"])
    censored = "censored" in adaptation.columns
    for column in columns:
        values = []
        for run, k, v, cen in zip(frame["run_id"], frame["shift_index"], frame[column],
                                  frame["censored"] if censored else [False] * len(frame),
                                  strict=True):
            ref = ref_of.get(run)
            if ref is None or (ref, k) not in by_key.index:
                values.append(math.nan)
                continue
            row = by_key.loc[(ref, k)]
            values.append(_gap(float(v), float(row[column]), column, bool(cen),
                               bool(row["censored"]) if censored else False))
        frame[f"gap_{column}"] = np.array(values, dtype=float)
    if censored:
        frame.loc[frame["censored"].astype(bool), "steps_to_threshold"] = math.inf
    wide = _probe_wide(censor_probes(probes), shifts)
    frame = frame.merge(wide, on=["run_id", "shift_index"], how="left")
    return frame.reset_index(drop=True)
