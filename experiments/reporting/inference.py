"""Seed-level inference that holds at 5-10 seeds: t on seed means, paired t / Welch between
arms, the within-seed (fixed-effects) slope with CR2 standard errors, run-level dose-response,
equivalence (TOST), the detectable effect, random-effects pooling and Holm's rule.

The unit of replication is the seed (one run of an arm). Shifts of one run share the run's
history, so they are never counted as independent: every interval is built from one number
per seed (or per run) or from a cluster-robust variance with the seed as the cluster, with
a t reference distribution on the number of seeds. Every estimator is closed form (numpy and
scipy's t quantiles): no resampling, no optimiser, so a report is the same at its printed
precision on any numpy / scipy / pandas the install resolves.

* :func:`mean_interval` -- the mean over seeds of each seed's mean, with the t interval
  ``m +- t(G-1) s / sqrt(G)`` (G seeds, s the sd of the seed means). This covers 95% at 5
  and 10 seeds (``tests/experiments/test_reporting_coverage.py``), where the percentile
  cluster bootstrap the first and second editions used covers about 84% at 5 seeds and 89%
  at 10.
* :func:`difference` -- ``mean(a) - mean(b)``. When the arms share at least
  :data:`MIN_SEEDS` seeds (the same seed number gives both arms the same environment draws),
  a paired t on the per-seed differences of seed means over the shared seeds only (seeds of
  one arm without a partner are not used: the table says ``5 paired of 5/10``); otherwise, or
  with ``paired=False``, Welch's t on the two sets of seed means (Satterthwaite df).
* :func:`within_effect` -- the within-seed slope of ``y`` on ``x``: ``y`` and every covariate
  (``x``, the task index, ...) are centred on their seed means and ``y`` is regressed on them
  by least squares. This is the fixed-effects estimator, which equals the within coefficient
  of the Mundlak random-intercept model when every within covariate is seed-centred (so a
  probe that only differs between seeds gets no effect). Standard error: cluster-robust CR2
  (Bell & McCaffrey 2002; Pustejovsky & Tipton 2018) with the seed as the cluster, t on
  G - 1 df. On ``scale="ranks"`` ``y`` and ``x`` are replaced *within each seed* by their
  mid-ranks divided by the seed's row count (censored values -- ``+inf`` recoveries, probe
  values flagged censored at their bound -- tie at their bound or take the worst rank), so
  the slope is about a within-seed rank correlation, whatever the spread between seeds.
* :func:`dose_slope` / :func:`dose_contrast` -- dose-response with the run as the unit: each
  run's mean over its shifts, regressed on the run's dose (OLS, t on runs - 2), or a declared
  contrast of the arms' means (Welch-Satterthwaite df) for a non-monotone dose.
* :func:`equivalent` -- TOST: the 1 - 2 alpha (90%) interval lies inside ``+-sesoi``;
  :func:`detectable` -- the effect a two-sided level-alpha t test finds with 80% power.
* :func:`pool` -- DerSimonian-Laird random-effects pooling of one hypothesis over streams,
  with a (modified) Hartung-Knapp t(k-1) interval, tau^2 and I^2.
* :func:`holm` -- Holm's step-down adjustment of one family (undefined tests count as p = 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "Interval",
    "Effect",
    "Pooled",
    "CONFIDENCE",
    "MIN_SEEDS",
    "seed_means",
    "mean_interval",
    "difference",
    "within_effect",
    "dose_slope",
    "dose_contrast",
    "equivalent",
    "detectable",
    "pool",
    "holm",
]

CONFIDENCE = 0.95
POWER = 0.8
#: Fewest seeds (or runs) for an interval (below it: undefined, with the reason).
MIN_SEEDS = 3


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% t interval (``se`` on ``df`` degrees of freedom) and the
    two-sided p-value of ``estimate == 0``; NaNs and ``reason`` when undefined. ``seeds``
    says which seeds entered (e.g. ``5 paired of 5/10``)."""

    estimate: float
    low: float
    high: float
    n_rows: int
    n_seeds: int
    p: float = math.nan
    reason: str = ""
    se: float = math.nan
    df: float = math.nan
    method: str = ""
    seeds: str = ""
    n_censored: int = 0

    @property
    def defined(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)


@dataclass(frozen=True)
class Effect:
    """A within-seed (or run-level) coefficient with its 95% t interval and p-value."""

    coef: float
    low: float
    high: float
    p: float
    n_rows: int
    n_seeds: int
    scale: str
    se: float = math.nan
    df: float = math.nan
    reason: str = ""
    note: str = ""
    n_censored: int = 0

    @property
    def defined(self) -> bool:
        return math.isfinite(self.coef) and math.isfinite(self.p)


@dataclass(frozen=True)
class Pooled:
    """A random-effects pooled estimate over ``k`` streams."""

    estimate: float
    low: float
    high: float
    p: float
    k: int
    tau2: float
    i2: float
    q: float


def _t_parts(estimate: float, se: float, df: float) -> tuple[float, float, float]:
    """(low, high, p) of the 95% t interval and the two-sided t test of 0."""
    if not (math.isfinite(se) and math.isfinite(df) and df > 0):
        return math.nan, math.nan, math.nan
    if se == 0.0:
        return estimate, estimate, (1.0 if estimate == 0 else 0.0)
    q = float(stats.t.ppf(0.5 + CONFIDENCE / 2.0, df))
    p = float(2.0 * stats.t.sf(abs(estimate / se), df))
    return estimate - q * se, estimate + q * se, p


def seed_means(values: Sequence[float], seeds: Sequence[object]) -> pd.Series:
    """Each seed's mean of its finite ``values`` (index: the seed, sorted)."""
    v = pd.to_numeric(pd.Series(list(values)), errors="coerce").astype(float)
    s = pd.Series(list(seeds))
    keep = np.isfinite(v.to_numpy())
    return v[keep].groupby(s[keep].to_numpy()).mean().sort_index()


def mean_interval(values: Sequence[float], seeds: Sequence[object]) -> Interval:
    """Mean over seeds of the seed means of the finite ``values``, t interval on G - 1 df."""
    m = seed_means(values, seeds)
    n_rows = int(np.isfinite(pd.to_numeric(pd.Series(list(values)), errors="coerce")
                             .astype(float)).sum())
    g = len(m)
    if g == 0:
        return Interval(math.nan, math.nan, math.nan, 0, 0, reason="no finite value")
    est = float(m.mean())
    if g < MIN_SEEDS:
        return Interval(est, math.nan, math.nan, n_rows, g, reason=f"{g} seed(s) < {MIN_SEEDS}")
    se = float(m.std(ddof=1)) / math.sqrt(g)
    low, high, p = _t_parts(est, se, g - 1)
    return Interval(est, low, high, n_rows, g, p=p, se=se, df=g - 1, method="t on seed means",
                    seeds=f"{g} seeds")


def _welch(ma: pd.Series, mb: pd.Series) -> tuple[float, float, float]:
    """(estimate, se, Satterthwaite df) of mean(ma) - mean(mb)."""
    va, vb = float(ma.var(ddof=1)) / len(ma), float(mb.var(ddof=1)) / len(mb)
    se2 = va + vb
    df = se2 ** 2 / (va ** 2 / (len(ma) - 1) + vb ** 2 / (len(mb) - 1)) if se2 > 0 else math.inf
    return float(ma.mean() - mb.mean()), math.sqrt(se2), df


def difference(a: Sequence[float], a_seeds: Sequence[object], b: Sequence[float],
               b_seeds: Sequence[object], *, paired: bool = True) -> Interval:
    """``mean(a) - mean(b)`` over seed means: paired t on the shared seeds when there are at
    least :data:`MIN_SEEDS` of them and ``paired``, else Welch (module docstring)."""
    ma, mb = seed_means(a, a_seeds), seed_means(b, b_seeds)
    n_rows = int(sum(np.isfinite(pd.to_numeric(pd.Series(list(x)), errors="coerce")
                                 .astype(float)).sum() for x in (a, b)))
    if len(ma) == 0 or len(mb) == 0:
        return Interval(math.nan, math.nan, math.nan, n_rows, 0,
                        reason="a group has no finite value")
    shared = ma.index.intersection(mb.index)
    if paired and len(shared) >= MIN_SEEDS:
        d = ma[shared] - mb[shared]
        g = len(d)
        est = float(d.mean())
        se = float(d.std(ddof=1)) / math.sqrt(g)
        low, high, p = _t_parts(est, se, g - 1)
        return Interval(est, low, high, n_rows, g, p=p, se=se, df=g - 1, method="paired t",
                        seeds=f"{g} paired of {len(ma)}/{len(mb)} seeds")
    seeds = f"unpaired {len(ma)}/{len(mb)} seeds"
    if min(len(ma), len(mb)) < 2 or len(ma) + len(mb) < MIN_SEEDS + 1:
        return Interval(float(ma.mean() - mb.mean()), math.nan, math.nan, n_rows,
                        len(ma) + len(mb), reason=f"{len(ma)} and {len(mb)} seeds: too few for "
                        "Welch's t", seeds=seeds)
    est, se, df = _welch(ma, mb)
    low, high, p = _t_parts(est, se, df)
    return Interval(est, low, high, n_rows, len(ma) + len(mb), p=p, se=se, df=df,
                    method="Welch t", seeds=seeds)


def _within_ranks(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Mid-ranks / row count within each group (ties, ``+inf`` included, share a mid-rank)."""
    out = np.empty(len(values))
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        out[idx] = stats.rankdata(values[idx]) / len(idx)
    return out


def _centre(values: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    sums = np.bincount(codes, weights=values, minlength=n_groups)
    counts = np.bincount(codes, minlength=n_groups)
    return values - (sums / counts)[codes]


def _cr2(x: np.ndarray, resid: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """CR2 cluster-robust covariance of OLS on the (group-centred) design ``x``: the meat
    adjusts each cluster's residuals by ``(I - H_gg)^(-1/2)`` (pseudo-inverse square root;
    with absorbed group means the residuals are orthogonal to the constant, on which the
    full and the centred hat matrices agree)."""
    bread = np.linalg.inv(x.T @ x)
    meat = np.zeros_like(bread)
    for g in range(n_groups):
        idx = np.flatnonzero(codes == g)
        xg = x[idx]
        h = np.eye(len(idx)) - xg @ bread @ xg.T
        w, v = np.linalg.eigh((h + h.T) / 2.0)
        inv_sqrt = (v * np.where(w > 1e-10, 1.0 / np.sqrt(np.clip(w, 1e-10, None)), 0.0)) @ v.T
        u = xg.T @ (inv_sqrt @ resid[idx])
        meat += np.outer(u, u)
    return bread @ meat @ bread


def _varies(values: np.ndarray) -> bool:
    """Not constant up to rounding (an infinite value, a censored recovery, varies)."""
    finite = values[np.isfinite(values)]
    if len(finite) < len(values):
        return len(finite) > 0 or len(set(values.tolist())) > 1
    return float(values.max() - values.min()) > 1e-9 * max(1.0, float(np.abs(values).max()))


def within_effect(frame: pd.DataFrame, y: str, x: str, *, seed: str = "seed",
                  covariates: Sequence[str] = ("task_index",), scale: str = "ranks",
                  censored: str | None = None) -> Effect:
    """Within-seed slope of ``y`` on ``x`` beyond the seed-centred ``covariates`` (module
    docstring), CR2 standard error, t on seeds - 1 df. NaN rows are dropped; ``+inf`` in
    ``y`` (a censored recovery) is the worst rank on ``"ranks"`` and dropped on ``"raw"``.
    ``censored`` names a 0/1 column flagging ``x`` values that are bounds (they enter at
    their bound, tied on the rank scale, and are counted)."""
    if scale not in ("ranks", "raw"):
        raise ValueError(f"scale = {scale!r}; valid choices: ranks, raw")
    cols = list(dict.fromkeys([y, x, *covariates]))
    extra = [censored] if censored and censored in frame.columns else []
    data = frame[[seed, *cols, *extra]].copy()
    for c in cols + extra:
        data[c] = pd.to_numeric(data[c], errors="coerce").astype(float)
    data = data.dropna(subset=cols)
    note = ""
    if scale == "raw":
        finite = np.isfinite(data[cols]).all(axis=1)
        if (~finite).any():
            note = f"{int((~finite).sum())} censored recovery row(s) dropped"
        data = data[finite]
    n_cens = int((data[extra[0]].fillna(0.0) > 0).sum()) if extra else 0
    n, n_seeds = len(data), data[seed].nunique()

    def undefined(reason: str) -> Effect:
        return Effect(math.nan, math.nan, math.nan, math.nan, n, n_seeds, scale, reason=reason,
                      note=note, n_censored=n_cens)

    if n_seeds < MIN_SEEDS:
        return undefined(f"{n_seeds} seed(s) < {MIN_SEEDS}")
    codes, _ = pd.factorize(data[seed].astype(str), sort=True)
    yv, xv = data[y].to_numpy(), data[x].to_numpy()
    if scale == "ranks":
        yv, xv = _within_ranks(yv, codes), _within_ranks(xv, codes)
    xc = _centre(xv, codes, n_seeds)
    if float(np.abs(xc).max()) <= 1e-12 * max(1.0, float(np.abs(xv).max())):
        return undefined("no within-seed variation of the probe")
    if not _varies(data[y].to_numpy()):
        return undefined("constant target")
    design = [xc]
    for c in covariates:
        if c == x:
            continue
        cc = _centre(data[c].to_numpy(), codes, n_seeds)
        if _varies(cc):
            design.append(cc)
    design_m = np.column_stack(design)
    if n <= n_seeds + design_m.shape[1]:
        return undefined(f"{n} rows for {n_seeds} seed means and {design_m.shape[1]} slopes")
    if np.linalg.matrix_rank(design_m) < design_m.shape[1]:
        return undefined("the probe is collinear with the covariates within seeds")
    yc = _centre(yv, codes, n_seeds)
    beta, *_ = np.linalg.lstsq(design_m, yc, rcond=None)
    resid = yc - design_m @ beta
    cov = _cr2(design_m, resid, codes, n_seeds)
    coef, se = float(beta[0]), math.sqrt(max(float(cov[0, 0]), 0.0))
    if not se > 0:
        return undefined("no standard error (a perfect within-seed fit)")
    low, high, p = _t_parts(coef, se, n_seeds - 1)
    return Effect(coef, low, high, p, n, n_seeds, scale, se=se, df=n_seeds - 1, note=note,
                  n_censored=n_cens)


def _run_means(values: Sequence[float], runs: Sequence[object], keys: Sequence[object]
               ) -> pd.DataFrame:
    """One row per run: its mean of the finite ``values`` and its key (dose or arm)."""
    table = pd.DataFrame({"v": pd.to_numeric(pd.Series(list(values)), errors="coerce")
                          .astype(float).to_numpy(), "run": list(runs), "key": list(keys)})
    table = table[np.isfinite(table["v"])]
    return table.groupby("run", sort=True).agg(v=("v", "mean"), key=("key", "first"),
                                              n=("v", "size"))


def dose_slope(values: Sequence[float], runs: Sequence[object], doses: Sequence[float]
               ) -> Effect:
    """OLS slope of each run's mean on its dose (a run is one unit: dose is constant within
    it), t on runs - 2 df."""
    t = _run_means(values, runs, doses)
    n_rows, k = int(t["n"].sum()), len(t)
    d, v = t["key"].to_numpy(dtype=float), t["v"].to_numpy()
    if k < MIN_SEEDS + 1 or not _varies(d):
        return Effect(math.nan, math.nan, math.nan, math.nan, n_rows, k, "runs",
                      reason=f"{k} runs over {len(set(d))} dose(s): too few")
    dc = d - d.mean()
    coef = float(dc @ (v - v.mean()) / (dc @ dc))
    resid = v - v.mean() - coef * dc
    se = math.sqrt(float(resid @ resid) / (k - 2) / float(dc @ dc))
    low, high, p = _t_parts(coef, se, k - 2)
    return Effect(coef, low, high, p, n_rows, k, "runs", se=se, df=k - 2)


def dose_contrast(values: Sequence[float], runs: Sequence[object], arms: Sequence[object],
                  weights: dict[object, float]) -> Effect:
    """``sum_i w_i mean_i`` of the arms' means of run means (declared weights, summing to 0),
    se ``sqrt(sum_i w_i^2 s_i^2 / n_i)``, Welch-Satterthwaite df."""
    t = _run_means(values, runs, arms)
    n_rows = int(t["n"].sum())
    est, var, denom = 0.0, 0.0, 0.0
    for arm, w in weights.items():
        m = t.loc[t["key"] == arm, "v"]
        if len(m) < 2:
            return Effect(math.nan, math.nan, math.nan, math.nan, n_rows, len(t), "runs",
                          reason=f"arm {arm!r} has {len(m)} run(s): too few")
        est += w * float(m.mean())
        part = w * w * float(m.var(ddof=1)) / len(m)
        var += part
        denom += part * part / (len(m) - 1)
    se = math.sqrt(var)
    df = var * var / denom if denom > 0 else math.inf
    low, high, p = _t_parts(est, se, df)
    return Effect(est, low, high, p, n_rows, len(t), "runs", se=se, df=df)


def equivalent(estimate: float, se: float, df: float, sesoi: float, *, alpha: float = 0.05
               ) -> bool:
    """TOST at ``alpha``: the ``1 - 2 alpha`` t interval lies inside ``(-sesoi, +sesoi)``."""
    if not (math.isfinite(estimate) and math.isfinite(se) and math.isfinite(df) and df > 0):
        return False
    q = float(stats.t.ppf(1.0 - alpha, df))
    return -sesoi < estimate - q * se and estimate + q * se < sesoi


def detectable(se: float, df: float, *, alpha: float = 0.05, power: float = POWER) -> float:
    """The true effect a two-sided level-``alpha`` t test on ``df`` detects with probability
    ``power`` given its standard error ``se`` (noncentral t, solved for the noncentrality)."""
    if not (math.isfinite(se) and math.isfinite(df) and df > 0 and se > 0):
        return math.nan
    crit = float(stats.t.ppf(1.0 - alpha / 2.0, df))

    def shortfall(delta: float) -> float:
        return float(stats.nct.sf(crit, df, delta) + stats.nct.cdf(-crit, df, delta)) - power

    lo, hi = 0.0, crit + 10.0
    for _ in range(80):  # bisection: power rises with the noncentrality
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if shortfall(mid) < 0 else (lo, mid)
    return 0.5 * (lo + hi) * se


def pool(estimates: Sequence[float], ses: Sequence[float]) -> Pooled:
    """DerSimonian-Laird random-effects estimate of ``estimates`` (standard errors ``ses``)
    with the Hartung-Knapp t(k-1) 95% interval, tau^2 and I^2 = (Q - (k-1)) / Q."""
    y, s = np.asarray(estimates, dtype=float), np.asarray(ses, dtype=float)
    keep = np.isfinite(y) & np.isfinite(s) & (s > 0)
    y, s = y[keep], s[keep]
    k = len(y)
    if k < 2:
        return Pooled(math.nan, math.nan, math.nan, math.nan, k, math.nan, math.nan, math.nan)
    w = 1.0 / s ** 2
    fixed = float(w @ y / w.sum())
    q = float(w @ (y - fixed) ** 2)
    c = float(w.sum() - (w ** 2).sum() / w.sum())
    tau2 = max(0.0, (q - (k - 1)) / c) if c > 0 else 0.0
    ws = 1.0 / (s ** 2 + tau2)
    est = float(ws @ y / ws.sum())
    # Hartung-Knapp, never narrower than the DL standard error (the "modified" rule: with
    # few streams that agree by chance the plain HK variance can be near 0)
    se = math.sqrt(max(float(ws @ (y - est) ** 2) / ((k - 1) * ws.sum()), 1.0 / ws.sum()))
    low, high, p = _t_parts(est, se, k - 1)
    i2 = max(0.0, (q - (k - 1)) / q) if q > 0 else 0.0
    return Pooled(est, low, high, p, k, tau2, i2, q)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values of one family (NaN counts as 1; order preserved)."""
    p = np.array([v if math.isfinite(v) else 1.0 for v in p_values], dtype=np.float64)
    m = len(p)
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()
