"""Test the declared hypotheses of a study as one family and give each its verdict.

Each hypothesis (:class:`~experiments.reporting.declarations.Hypothesis`) gives one test per
listed arm (a ``dose_response`` one: one test over its arms); a ``within_arm`` hypothesis
gives a second, lagged test per arm (the probe at
shift k against the target at shift k+1, with the target at shift k as a covariate: does the
probe predict beyond the past?). All tests of a study form one family, adjusted with Holm's
rule (:func:`~experiments.reporting.inference.holm`); a test that cannot be computed counts as
p = 1. The verdict is in the declared direction: "supported", "opposite direction" or "not
supported" (with the reason when the test could not be computed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pandas as pd

from experiments.reporting.declarations import ALPHA, Hypothesis
from experiments.reporting.frame import probe_column
from experiments.reporting.inference import (
    N_RESAMPLES,
    bootstrap_diff,
    holm,
    mixed_effect,
)

__all__ = ["Outcome", "evaluate", "SUPPORTED", "OPPOSITE", "NOT_SUPPORTED"]

SUPPORTED = "supported"
OPPOSITE = "opposite direction"
NOT_SUPPORTED = "not supported"


@dataclass(frozen=True)
class Outcome:
    """One test of one declared hypothesis in one arm."""

    hypothesis: Hypothesis
    arm: str
    variant: str            # "effect" | "lagged" | "difference" | "trend" | "dose"
    estimate: float
    low: float
    high: float
    p: float
    n_rows: int
    n_seeds: int
    method: str
    reason: str = ""
    note: str = ""
    p_holm: float = math.nan
    verdict: str = NOT_SUPPORTED

    @property
    def defined(self) -> bool:
        return math.isfinite(self.estimate) and math.isfinite(self.p)


def _column(h: Hypothesis, frame: pd.DataFrame) -> tuple[str | None, str]:
    """The frame column of the hypothesis's quantity (probe if given, else target)."""
    if h.probe is not None:
        phase, network, data, metric = h.probe_key or ("", "", "", "")
        col = probe_column(phase, network, data, metric)
    else:
        col = str(h.target)
    if col not in frame.columns or frame[col].isna().all():
        what = "probe" if h.probe is not None else "target"
        return None, f"no {what} column {col!r} in the runs"
    return col, ""


def _undefined(h: Hypothesis, arm: str, variant: str, method: str, reason: str, n: int = 0,
               seeds: int = 0) -> Outcome:
    return Outcome(h, arm, variant, math.nan, math.nan, math.nan, math.nan, n, seeds,
                      method, reason=reason)


def _lagged(rows: pd.DataFrame, y: str) -> pd.DataFrame:
    """Rows of shift k with ``y_next`` = y at shift k+1 of the same run and ``y_prev`` = y."""
    rows = rows.sort_values(["run_id", "shift_index"], kind="stable").copy()
    nxt = rows.groupby("run_id")[y].shift(-1)
    nxt_k = rows.groupby("run_id")["shift_index"].shift(-1)
    rows["y_next"] = nxt.where(nxt_k == rows["shift_index"] + 1)
    rows["y_prev"] = rows[y]
    return rows.dropna(subset=["y_next"])


def _within(h: Hypothesis, arm: str, rows: pd.DataFrame, frame: pd.DataFrame
            ) -> list[Outcome]:
    method = f"mixed model ({h.scale}): {h.target} ~ probe + task_index + (1 | seed)"
    lag_method = (f"mixed model ({h.scale}): {h.target}[k+1] ~ probe[k] + {h.target}[k] "
                  "+ task_index + (1 | seed)")
    x, why = _column(h, frame)
    target = str(h.target)
    if target not in frame.columns or (rows[target].isna().all() if len(rows) else True):
        why = why or (f"no {target!r} values in arm {arm!r}"
                      + (" (no matched fresh reference)" if target.startswith("gap_") else ""))
    if x is None or why:
        return [_undefined(h, arm, "effect", method, why),
                _undefined(h, arm, "lagged", lag_method, why)]
    out = []
    for variant, data, y, covs, ranked, meth in (
            ("effect", rows, target, ("task_index",), (), method),
            ("lagged", _lagged(rows, target), "y_next", ("task_index", "y_prev"), ("y_prev",),
             lag_method)):
        e = mixed_effect(data, y, x, covariates=covs, ranked=ranked, scale=h.scale)
        out.append(Outcome(h, arm, variant, e.coef, e.low, e.high, e.p, e.n_rows, e.n_seeds,
                              meth, reason=e.reason, note=e.note))
    return out


def _trend(h: Hypothesis, arm: str, rows: pd.DataFrame, frame: pd.DataFrame) -> Outcome:
    col, why = _column(h, frame)
    method = f"mixed model ({h.scale}): quantity ~ task_index + (1 | seed)"
    if col is None:
        return _undefined(h, arm, "trend", method, why)
    e = mixed_effect(rows, col, "task_index", covariates=(), scale=h.scale)
    return Outcome(h, arm, "trend", e.coef, e.low, e.high, e.p, e.n_rows, e.n_seeds, method,
                      reason=e.reason, note=e.note)


def _difference(h: Hypothesis, arm: str, frame: pd.DataFrame, n_resamples: int, seed: int
                ) -> Outcome:
    col, why = _column(h, frame)
    other = col
    if col is not None and h.versus_phase is not None:
        versus = replace(h, phase=h.versus_phase)
        other, why = _column(versus, frame)
    method = f"difference of means, {arm} - {h.versus}, seed-cluster bootstrap"
    if col is None or other is None:
        return _undefined(h, arm, "difference", method, why)
    a = frame[frame["arm"] == arm]
    b = frame[frame["arm"] == h.versus]
    d = bootstrap_diff(a[col], a["seed"], b[other], b["seed"], n_resamples=n_resamples,
                       seed=seed)
    reason = d.reason
    if a[col].notna().sum() == 0 or b[other].notna().sum() == 0:
        reason = (f"no {col!r} values in {arm!r}" if a[col].notna().sum() == 0
                  else f"no {other!r} values in {h.versus!r}")
    p = d.p if d.defined else math.nan
    return Outcome(h, arm, "difference", d.estimate, d.low, d.high, p, d.n_rows, d.n_seeds,
                      method, reason=reason)


def _dose(h: Hypothesis, frame: pd.DataFrame) -> Outcome:
    col, why = _column(h, frame)
    label = ", ".join(h.arms)
    method = f"mixed model ({h.scale}): quantity ~ dose + task_index + (1 | seed)"
    if col is None:
        return _undefined(h, label, "dose", method, why)
    rows = frame[frame["arm"].isin(h.arms)].copy()
    rows["dose"] = rows["arm"].map(dict(zip(h.arms, h.doses, strict=True)))
    e = mixed_effect(rows, col, "dose", scale=h.scale)
    return Outcome(h, label, "dose", e.coef, e.low, e.high, e.p, e.n_rows, e.n_seeds, method,
                   reason=e.reason, note=e.note)


def _verdict(t: Outcome, p_holm: float, alpha: float) -> str:
    if not t.defined or not p_holm < alpha:
        return NOT_SUPPORTED
    declared = 1.0 if t.hypothesis.sign == "+" else -1.0
    return SUPPORTED if t.estimate * declared > 0 else OPPOSITE


def evaluate(frame: pd.DataFrame, hypotheses: tuple[Hypothesis, ...], *,
                    alpha: float = ALPHA, n_resamples: int = N_RESAMPLES, seed: int = 0
                    ) -> list[Outcome]:
    """Every test of the declared ``hypotheses`` on the analysis frame (one row per run x
    shift, :func:`experiments.reporting.frame.shift_frame`), Holm-adjusted as one family."""
    tests: list[Outcome] = []
    arms = set(frame["arm"]) if len(frame) else set()
    for h in hypotheses:
        if h.kind == "dose_response":
            tests.append(_dose(h, frame))
            continue
        for arm in h.arms:
            rows = frame[frame["arm"] == arm]
            if arm not in arms:
                variants = (("effect", "lagged") if h.kind == "within_arm" else
                            ("difference",) if h.kind == "between_arms" else ("trend",))
                tests += [_undefined(h, arm, v, h.kind, f"no finished run of arm {arm!r}")
                          for v in variants]
            elif h.kind == "within_arm":
                tests += _within(h, arm, rows, frame)
            elif h.kind == "trend":
                tests.append(_trend(h, arm, rows, frame))
            else:
                tests.append(_difference(h, arm, frame, n_resamples, seed))
    adjusted = holm([t.p for t in tests])
    return [Outcome(**{**t.__dict__, "p_holm": q, "verdict": _verdict(t, q, alpha)})
            for t, q in zip(tests, adjusted, strict=True)]

