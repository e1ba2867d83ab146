"""Per-shift adaptation metrics: how fast, and how well, a run recovers after each shift.

Segments. ``shifts.jsonl`` gives the switch steps ``s_1 < s_2 < ...``; segment 0 is task 0
(steps ``[0, s_1]``), segment ``k >= 1`` runs from ``s_k`` to ``s_{k+1}`` (the last one to the
run's final step). An episode belongs to the segment in which it ended (``s_k < step <=
s_{k+1}``), except that an episode which ended after ``s_k`` but was still played on the old
task (its ``task_id`` equals the shift's ``from_task``: with ``switch_at="reset"`` the new
task starts at the first reset after the scheduled step) is counted in the old segment.

For the shift into segment ``k >= 1`` with ``N = AdaptationSpec.window`` episodes:

* ``pre_level``: mean return of the last ``N`` episodes of segment ``k-1``.
* ``post_level``: mean return of the first ``N`` episodes of segment ``k``;
  ``drop = pre_level - post_level`` (positive = the shift cost return).
* ``threshold``: ``AdaptationSpec.threshold`` when given (absolute mode, e.g. 0.8 on
  sparse-reward MiniGrid); otherwise ``floor + fraction * (pre_level - floor)`` (relative
  mode; ``floor`` is the return of a no-skill agent, 0 by default; undefined, NaN, when
  ``pre_level <= floor``).
* ``steps_to_threshold``: env steps from ``s_k`` to the end of the first episode at which
  the trailing mean of the last ``w = min(N, episodes in segment)`` returns reaches the
  threshold (full windows only, so one lucky episode does not count). If it is never
  reached the shift is **censored**: ``steps_to_threshold`` is ``None``, ``censored`` is
  True and ``steps_lower_bound`` is the segment length (the true value is larger).
* ``auc``: the length-weighted mean return over the segment's episodes, i.e. the area under
  the per-step return curve divided by the segment's covered steps, normalised to
  ``(auc_raw - floor) / (level - floor)`` with ``level = pre_level`` in relative mode and
  ``level = max_return`` in absolute mode (no normalisation, ``auc = auc_raw``, in absolute
  mode when ``max_return`` is not given). ``auc_raw`` is kept as a column.
* ``mean_return``: plain mean return of the segment's episodes; ``final_return``: mean of
  its last ``N`` episodes.

The warm - fresh gap and the probes at each shift are the report's business: see
:mod:`experiments.reporting.references` and :mod:`experiments.reporting.frame`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from experiments.analysis.run import Run, runs_of
from experiments.analysis.rundata import RunData, canonical
from experiments.errors import ConfigError

__all__ = [
    "AdaptationSpec",
    "STREAM_SPECS",
    "spec_for",
    "adaptation_frame",
    "ADAPTATION_METRICS",
    "segment_of_episodes",
    "shift_metrics",
]

ADAPTATION_METRICS = ("pre_level", "drop", "steps_to_threshold", "auc", "mean_return",
                      "final_return")


@dataclass(frozen=True)
class AdaptationSpec:
    """How adaptation is measured (see the module docstring for the definitions).

    Attributes:
        window: N, episodes in the pre/post levels, the trailing recovery mean and the final level.
        fraction: relative mode: recover to ``floor + fraction * (pre_level - floor)``.
        threshold: absolute mode when set: recover to this return (e.g. 0.8 for MiniGrid).
        floor: return of a no-skill agent (0 for most tasks, e.g. -500 for Acrobot).
        max_return: absolute mode: the AUC normaliser (e.g. 1.0 for MiniGrid).
    """

    window: int = 10
    fraction: float = 0.8
    threshold: float | None = None
    floor: float = 0.0
    max_return: float | None = None

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ConfigError(f"window = {self.window!r}; must be a positive number of episodes")
        if not 0.0 < self.fraction <= 1.0:
            raise ConfigError(f"fraction = {self.fraction!r}; must be in (0, 1]")

    @property
    def mode(self) -> str:
        return "absolute" if self.threshold is not None else "relative"

    def describe(self) -> str:
        if self.threshold is not None:
            norm = (f"max_return = {self.max_return:g}" if self.max_return is not None
                    else "not normalised")
            return (f"absolute threshold {self.threshold:g} (window N = {self.window} episodes; "
                    f"AUC {norm}, floor {self.floor:g})")
        return (f"relative threshold: floor + {self.fraction:g} x (pre-shift level - floor), "
                f"floor {self.floor:g} (window N = {self.window} episodes; AUC normalised "
                "by the pre-shift level)")


def segment_of_episodes(run: Run) -> np.ndarray:
    """Segment index of every episode of ``run`` (module docstring: ended-in rule with the
    task-id correction for episodes that straddle a switch)."""
    steps = run.episodes["step"]
    shift_steps = np.array([int(s["step"]) for s in run.shifts], dtype=np.int64)
    seg = np.searchsorted(shift_steps, steps, side="left")  # number of shifts strictly before
    task = run.episodes["task_id"]
    for k in range(1, len(shift_steps) + 1):
        shift = run.shifts[k - 1]
        old, new = shift.get("from_task"), shift.get("to_task")
        if old is None or old == new:
            continue
        straddle = (seg == k) & (task == int(old))
        seg[straddle] = k - 1
    return seg


def _mean(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else math.nan


def _steps_to_threshold(steps: np.ndarray, returns: np.ndarray, start: int, threshold: float,
                        window: int) -> int | None:
    """First ``steps[j] - start`` where the trailing mean of ``window`` returns reaches
    ``threshold``; ``None`` if never (censored)."""
    w = min(window, len(returns))
    if w == 0 or not math.isfinite(threshold):
        return None
    # sum / w rather than a convolution with 1/w weights: a window of eight 1s and two 0s
    # must average to exactly 0.8, or a threshold of 0.8 is missed by rounding.
    trailing = np.lib.stride_tricks.sliding_window_view(returns, w).sum(axis=1) / w
    # trailing[i] is the mean of episodes i .. i + w - 1
    hit = np.flatnonzero(trailing >= threshold)
    if len(hit) == 0:
        return None
    return int(steps[hit[0] + w - 1]) - start


def shift_metrics(run: Run, spec: AdaptationSpec | None = None) -> list[dict[str, Any]]:
    """Adaptation metrics of every shift of ``run``: one dict per segment ``k >= 1``."""
    spec = spec or AdaptationSpec()
    n = spec.window
    seg = segment_of_episodes(run)
    ep_steps, ep_ret, ep_len = (run.episodes[k] for k in ("step", "return", "length"))
    bounds = [int(s["step"]) for s in run.shifts] + [run.end_step]
    rows = []
    for k, shift in enumerate(run.shifts, start=1):
        start, end = bounds[k - 1], bounds[k]
        before = ep_ret[seg == k - 1]
        after_mask = seg == k
        after, after_steps, after_len = ep_ret[after_mask], ep_steps[after_mask], ep_len[after_mask]
        pre = _mean(before[-n:])
        post = _mean(after[:n])
        if spec.threshold is not None:
            threshold = float(spec.threshold)
        elif math.isfinite(pre) and pre > spec.floor:
            threshold = spec.floor + spec.fraction * (pre - spec.floor)
        else:
            threshold = math.nan
        reached = _steps_to_threshold(after_steps, after, start, threshold, n)
        defined = math.isfinite(threshold) and len(after) > 0
        auc_raw = (float(np.sum(after * after_len) / np.sum(after_len)) if len(after)
                   else math.nan)
        if spec.threshold is None:
            level = pre
        else:
            level = spec.max_return if spec.max_return is not None else None
        if level is None:
            auc = auc_raw
        elif math.isfinite(level) and level > spec.floor:
            auc = (auc_raw - spec.floor) / (level - spec.floor)
        else:
            auc = math.nan
        rows.append({
            "segment": k,
            "shift_step": start,
            "segment_end": end,
            "segment_steps": end - start,
            "from_task": shift.get("from_task"),
            "to_task": shift.get("to_task"),
            "oracle": bool((shift.get("at_shift") or {}).get("oracle", False)),
            "n_episodes": int(len(after)),
            "pre_level": pre,
            "post_level": post,
            "drop": pre - post,
            "threshold": threshold,
            "steps_to_threshold": reached if defined else math.nan,
            "censored": bool(defined and reached is None),
            "steps_lower_bound": (end - start) if (defined and reached is None) else None,
            "auc": auc,
            "auc_raw": auc_raw,
            "mean_return": _mean(after),
            "final_return": _mean(after[-n:]),
        })
    return rows


#: env-id substring -> adaptation definition (first match wins; relative mode otherwise):
#: MiniGrid streams reach a task at a trailing mean return of 0.8 (maximum 1.0), CartPole
#: streams at 195 (the classic "solved" level; maximum 500), PermutedDigits (one-step
#: episodes, return = 1 if right: mean return = accuracy) at an accuracy of 0.8 over a trailing
#: 100 episodes (maximum 1.0).
STREAM_SPECS: tuple[tuple[str, AdaptationSpec], ...] = (
    ("MiniGrid", AdaptationSpec(window=10, threshold=0.8, max_return=1.0)),
    ("PermutedDigits", AdaptationSpec(window=100, threshold=0.8, max_return=1.0)),
    ("CartPole", AdaptationSpec(window=10, threshold=195.0, max_return=500.0)),
)


def spec_for(env_id: str | None) -> AdaptationSpec:
    """The adaptation definition of a stream (:data:`STREAM_SPECS`; relative mode otherwise)."""
    for pattern, spec in STREAM_SPECS:
        if env_id and pattern in env_id:
            return spec
    return AdaptationSpec()


def adaptation_frame(data: RunData, spec: AdaptationSpec | None = None) -> pd.DataFrame:
    """The ``adaptation`` table: one row per run x shift, the columns of :func:`shift_metrics`
    (``shift_index`` = segment, ``step`` = the shift step, ``task_id`` = the new task) under
    ``spec``, or :func:`spec_for` each run's env id when ``spec`` is None."""
    rows = []
    for run in runs_of(data, logs=False):
        for row in shift_metrics(run, spec or spec_for(run.env_id)):
            row = dict(row)
            out = {"run_id": run.run_id, "shift_index": row.pop("segment"),
                   "task_id": row["to_task"], "step": row.pop("shift_step")}
            out.update(row)
            rows.append(out)
    return canonical("adaptation", pd.DataFrame(rows))
