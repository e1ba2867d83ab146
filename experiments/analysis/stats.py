"""Rank correlations with bootstrap confidence intervals, partial Spearman, multiple comparisons.

* Spearman's rho: :func:`scipy.stats.spearmanr` (Pearson correlation of the mid-ranks).
* Partial Spearman with a control ``z`` (the segment index): rank ``x``, ``y`` and ``z``
  (mid-ranks), regress ``rank(x)`` and ``rank(y)`` linearly on ``rank(z)``
  (:func:`scipy.stats.linregress`) and take the Pearson correlation of the two residual
  vectors (:func:`scipy.stats.pearsonr`). Its p-value uses the t distribution with ``n - 3``
  degrees of freedom (one more parameter than a plain correlation). A probe that only tracks
  the segment index has partial rho ~ 0.
* Confidence intervals: :func:`scipy.stats.bootstrap`, paired resampling of the (x, y[, z])
  tuples, percentile method, ``n_resamples = 2000`` by default, a fixed seed. Resamples in
  which the statistic is undefined (e.g. every resampled x equal) are dropped before taking
  the percentiles; the count is kept in ``Correlation.dropped`` and flagged above 5%.
* Censored values (``+inf``, see :func:`experiments.analysis.adaptation.rank_value`) take the
  worst rank, tied among themselves; NaN pairs are dropped.
* A cell with fewer than ``min_n = 5`` pairs, a constant x or y, a constant control, or an x
  or y fully determined by the control gives NaN with the reason, never an exception.
* Multiple comparisons: :func:`multiple_comparisons` adds Benjamini-Hochberg adjusted
  p-values (:func:`scipy.stats.false_discovery_control`) and the Bonferroni threshold.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "Correlation",
    "spearman_ci",
    "partial_spearman_ci",
    "mean_ci",
    "boot_mean",
    "boot_diff",
    "multiple_comparisons",
    "fmt_number",
]

_RNG_KW = "rng" if "rng" in inspect.signature(stats.bootstrap).parameters else "random_state"
_DEGENERATE_TOL = 1e-9


@dataclass(frozen=True)
class Correlation:
    """A rank correlation with its bootstrap CI; NaNs and ``reason`` when undefined."""

    rho: float
    p: float
    ci_low: float
    ci_high: float
    n: int
    reason: str = ""
    dropped: int = 0

    @property
    def defined(self) -> bool:
        return math.isfinite(self.rho)

    def as_dict(self, prefix: str = "") -> dict[str, Any]:
        return {f"{prefix}rho": self.rho, f"{prefix}p": self.p, f"{prefix}ci_low": self.ci_low,
                f"{prefix}ci_high": self.ci_high, f"{prefix}n": self.n,
                f"{prefix}reason": self.reason}


def _undefined(n: int, reason: str) -> Correlation:
    return Correlation(math.nan, math.nan, math.nan, math.nan, n, reason)


def _clean(*arrays: Sequence[float]) -> list[np.ndarray]:
    """Float arrays with every position where any array is NaN dropped (inf is kept)."""
    arrs = [np.asarray(a, dtype=np.float64) for a in arrays]
    if len({len(a) for a in arrs}) != 1:
        raise ValueError(f"arrays of different lengths: {[len(a) for a in arrs]}")
    keep = np.ones(len(arrs[0]), dtype=bool)
    for a in arrs:
        keep &= ~np.isnan(a)
    return [a[keep] for a in arrs]


def _constant(a: np.ndarray) -> bool:
    return bool(np.all(a == a[0]))


def _spearman_batch(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman rho along ``axis`` for a batch of resamples: Pearson of mid-ranks."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        rx = stats.rankdata(x, axis=axis)
        ry = stats.rankdata(y, axis=axis)
        return np.asarray(stats.pearsonr(rx, ry, axis=axis).statistic)


def _residual_ranks(a: np.ndarray, z_rank: np.ndarray, axis: int = -1) -> np.ndarray:
    """Residuals of rank(a) after least squares on z_rank along ``axis``; NaN rows where the
    control is constant or explains rank(a) completely."""
    ra = stats.rankdata(a, axis=axis)
    ra_c = ra - ra.mean(axis=axis, keepdims=True)
    z_c = z_rank - z_rank.mean(axis=axis, keepdims=True)
    szz = (z_c * z_c).sum(axis=axis, keepdims=True)
    with np.errstate(all="ignore"):
        slope = (ra_c * z_c).sum(axis=axis, keepdims=True) / szz
        resid = ra_c - slope * z_c
        total = (ra_c * ra_c).sum(axis=axis, keepdims=True)
        left = (resid * resid).sum(axis=axis, keepdims=True)
        bad = (szz <= 0) | (left <= _DEGENERATE_TOL * np.maximum(total, 1.0))
    return np.where(bad, np.nan, resid)


def _partial_batch(x: np.ndarray, y: np.ndarray, z: np.ndarray, axis: int = -1) -> np.ndarray:
    """Partial Spearman for a batch of resamples (same definition as the point estimate)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        rz = stats.rankdata(z, axis=axis)
        ex = _residual_ranks(x, rz, axis)
        ey = _residual_ranks(y, rz, axis)
        r = np.asarray(stats.pearsonr(np.nan_to_num(ex), np.nan_to_num(ey), axis=axis).statistic)
        bad = np.isnan(ex).any(axis=axis) | np.isnan(ey).any(axis=axis)
        return np.where(bad, np.nan, r)


def _bootstrap_ci(data: tuple[np.ndarray, ...], statistic: Any, *, n_resamples: int,
                  confidence: float, seed: int) -> tuple[float, float, int]:
    """Percentile CI from :func:`scipy.stats.bootstrap` over the defined resamples."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.bootstrap(data, statistic, paired=True, vectorized=True, axis=-1,
                              n_resamples=n_resamples, confidence_level=confidence,
                              method="percentile", **{_RNG_KW: np.random.default_rng(seed)})
    dist = np.asarray(res.bootstrap_distribution, dtype=np.float64)
    finite = dist[np.isfinite(dist)]
    dropped = int(len(dist) - len(finite))
    if len(finite) < max(10, n_resamples // 2):
        return math.nan, math.nan, dropped
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(finite, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high), dropped


def _flag(dropped: int, n_resamples: int) -> str:
    if dropped > 0.05 * n_resamples:
        return f"{dropped} of {n_resamples} resamples undefined (ties); CI from the rest, unreliable"
    return ""


def spearman_ci(x: Sequence[float], y: Sequence[float], *, n_resamples: int = 2000,
                confidence: float = 0.95, seed: int = 0, min_n: int = 5,
                names: tuple[str, str] = ("probe", "metric")) -> Correlation:
    """Spearman's rho of (x, y) with a paired-bootstrap percentile CI (module docstring);
    ``names`` label x and y in the reason of an undefined cell."""
    x, y = _clean(x, y)
    n = len(x)
    if n < min_n:
        return _undefined(n, f"n={n} < {min_n}")
    if _constant(x):
        return _undefined(n, f"constant {names[0]}")
    if _constant(y):
        return _undefined(n, f"constant {names[1]}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = stats.spearmanr(stats.rankdata(x), stats.rankdata(y))
    low, high, dropped = _bootstrap_ci((x, y), _spearman_batch, n_resamples=n_resamples,
                                       confidence=confidence, seed=seed)
    return Correlation(float(res.statistic), float(res.pvalue), low, high, n,
                       _flag(dropped, n_resamples), dropped)


def partial_spearman_ci(x: Sequence[float], y: Sequence[float], z: Sequence[float], *,
                        n_resamples: int = 2000, confidence: float = 0.95, seed: int = 0,
                        min_n: int = 5) -> Correlation:
    """Spearman's rho of (x, y) with ``z`` (the segment index) partialled out, with a
    paired-bootstrap percentile CI over (x, y, z) tuples (module docstring)."""
    x, y, z = _clean(x, y, z)
    n = len(x)
    if n < min_n:
        return _undefined(n, f"n={n} < {min_n}")
    if _constant(x):
        return _undefined(n, "constant probe")
    if _constant(y):
        return _undefined(n, "constant metric")
    if _constant(z):
        return _undefined(n, "constant segment index")
    rx, ry, rz = stats.rankdata(x), stats.rankdata(y), stats.rankdata(z)
    fit_x, fit_y = stats.linregress(rz, rx), stats.linregress(rz, ry)
    ex = rx - (fit_x.intercept + fit_x.slope * rz)
    ey = ry - (fit_y.intercept + fit_y.slope * rz)
    for name, e, r in (("probe", ex, rx), ("metric", ey, ry)):
        if np.sum(e * e) <= _DEGENERATE_TOL * max(np.sum((r - r.mean()) ** 2), 1.0):
            return _undefined(n, f"{name} determined by segment index")
    rho = float(stats.pearsonr(ex, ey).statistic)
    df = n - 3
    if df < 1:
        p = math.nan
    elif abs(rho) >= 1.0:
        p = 0.0
    else:
        t = rho * math.sqrt(df / (1.0 - rho * rho))
        p = float(2.0 * stats.t.sf(abs(t), df))
    low, high, dropped = _bootstrap_ci((x, y, z), _partial_batch, n_resamples=n_resamples,
                                       confidence=confidence, seed=seed)
    return Correlation(rho, p, low, high, n, _flag(dropped, n_resamples), dropped)


def _finite_sample(values: Sequence[float | None]
                   ) -> tuple[np.ndarray, tuple[float, float, float, int] | None]:
    """The finite values (None and NaN dropped) and, where fewer than 2 leave no interval,
    the (mean, NaN, NaN, n) answer to return instead."""
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    a = a[np.isfinite(a)]
    if len(a) == 0:
        return a, (math.nan, math.nan, math.nan, 0)
    if len(a) < 2:
        return a, (float(a.mean()), math.nan, math.nan, 1)
    return a, None


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the finite values with a Student-t interval (seeds are few, so
    a t interval rather than a bootstrap); NaN bounds for n < 2."""
    a, short = _finite_sample(values)
    if short is not None:
        return short
    mean, n = float(a.mean()), len(a)
    sem = float(stats.sem(a))
    if sem == 0.0:
        return mean, mean, mean, n
    low, high = stats.t.interval(confidence, n - 1, loc=mean, scale=sem)
    return mean, float(low), float(high), n


def multiple_comparisons(p_values: Sequence[float], alpha: float = 0.05) -> dict[str, Any]:
    """Benjamini-Hochberg adjusted p-values for the finite p's (NaN stays NaN), the number
    of tests m, the Bonferroni threshold alpha/m and how many tests pass each correction."""
    p = np.asarray(p_values, dtype=np.float64)
    finite = np.isfinite(p)
    m = int(finite.sum())
    adjusted = np.full(len(p), np.nan)
    if m:
        adjusted[finite] = stats.false_discovery_control(p[finite], method="bh")
    bonferroni = alpha / m if m else math.nan
    return {
        "m": m,
        "alpha": alpha,
        "bonferroni_threshold": bonferroni,
        "n_bonferroni": int(np.sum(p[finite] < bonferroni)) if m else 0,
        "n_bh": int(np.sum(adjusted[finite] < alpha)) if m else 0,
        "p_bh": adjusted.tolist(),
    }


def boot_mean(values: Sequence[float], *, n_resamples: int = 2000, seed: int = 0
              ) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the finite ``values``: 95% percentile bootstrap CI of the mean
    (NaN bounds for n < 2; a constant sample gives a zero-width interval)."""
    a, short = _finite_sample(values)
    if short is not None:
        return short
    mean, n = float(a.mean()), len(a)
    if np.all(a == a[0]):
        return mean, mean, mean, n
    res = stats.bootstrap((a,), np.mean, vectorized=True, axis=-1, n_resamples=n_resamples,
                          confidence_level=0.95, method="percentile",
                          **{_RNG_KW: np.random.default_rng(seed)})
    return mean, float(res.confidence_interval.low), float(res.confidence_interval.high), n


def boot_diff(a: Sequence[float], b: Sequence[float], *, n_resamples: int = 2000,
              seed: int = 0) -> tuple[float, float, float]:
    """mean(a) - mean(b) with a 95% percentile bootstrap CI (each sample resampled on its own)."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if len(x) == 0 or len(y) == 0:
        return math.nan, math.nan, math.nan
    diff = float(x.mean() - y.mean())
    if len(x) < 2 or len(y) < 2:
        return diff, math.nan, math.nan
    if np.all(x == x[0]) and np.all(y == y[0]):
        return diff, diff, diff
    res = stats.bootstrap((x, y), lambda u, v, axis: u.mean(axis=axis) - v.mean(axis=axis),
                          vectorized=True, axis=-1, paired=False, n_resamples=n_resamples,
                          confidence_level=0.95, method="percentile",
                          **{_RNG_KW: np.random.default_rng(seed)})
    return diff, float(res.confidence_interval.low), float(res.confidence_interval.high)


def fmt_number(value: Any, digits: int = 3) -> str:
    """A number for a markdown table: ``digits`` significant digits, ``-`` for None/NaN."""
    if value is None:
        return "-"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    value = float(value)
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}g}"
