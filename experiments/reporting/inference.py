"""Seed-level inference: the cluster bootstrap, the within-seed mixed model, Holm's rule.

The unit of replication is the seed (one run of an arm). Shifts of one run share the run's
history, so they are never resampled or counted as independent:

* :func:`bootstrap_mean` / :func:`bootstrap_diff` -- percentile bootstrap that resamples
  *clusters* (seeds) with replacement and keeps every row of a drawn cluster together; the
  statistic is the mean over all rows of the drawn clusters (a cluster drawn twice counts
  twice). ``clusters=None`` makes every row its own cluster (the row bootstrap, shown only to
  demonstrate how much narrower it is). A difference of two groups draws one set of seeds
  for both (seeds are paired: the same seed number gives both arms the same environment
  draws); a resample in which a group has no row is dropped.
* :func:`mixed_effect` -- ``y ~ x_within + x_seed_mean + covariates + (1 | seed)``
  (:class:`statsmodels.regression.mixed_linear_model.MixedLM`, REML). ``x`` is split into its
  seed mean and the deviation from it (the within-between, or Mundlak, decomposition), and the
  reported effect is the coefficient of ``x_within``: how adaptation moves when the probe moves
  *within one seed* from shift to shift. A probe that only differs between seeds has no
  within-seed variation and gets no effect (it is the between coefficient, not reported as
  the effect). On ``scale="ranks"`` ``y`` and ``x`` are replaced by their mid-ranks divided
  by the number of rows (censored values, ``+inf``, take the worst rank), which makes the
  fit robust to heavy tails (Hessian eigenvalues spread over 10^4).
  Fits that fail, do not converge, or have fewer than :data:`MIN_SEEDS` seeds give an
  undefined effect with the reason; a seed variance estimated at 0 (a singular fit, i.e. the
  model is pooled least squares) is kept and flagged.
* :func:`holm` -- Holm's step-down adjustment of one family of p-values (undefined tests
  count as p = 1, so a declared test that could not be computed still uses up its share).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "Interval",
    "Effect",
    "MIN_SEEDS",
    "N_RESAMPLES",
    "bootstrap_mean",
    "bootstrap_diff",
    "mixed_effect",
    "holm",
]

N_RESAMPLES = 2000
CONFIDENCE = 0.95
#: Fewest seeds for a mixed model or a cluster interval (below it: undefined, with the reason).
MIN_SEEDS = 3
_SINGULAR_VAR = 1e-8


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% interval over seeds; ``p`` is the two-sided bootstrap
    p-value of ``estimate == 0`` where one was asked for. NaNs and ``reason`` when undefined."""

    estimate: float
    low: float
    high: float
    n_rows: int
    n_seeds: int
    p: float = math.nan
    reason: str = ""

    @property
    def defined(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high)


@dataclass(frozen=True)
class Effect:
    """The within-seed coefficient of a mixed model with its Wald 95% CI and p-value."""

    coef: float
    low: float
    high: float
    p: float
    n_rows: int
    n_seeds: int
    scale: str
    seed_sd: float = math.nan
    reason: str = ""
    note: str = ""

    @property
    def defined(self) -> bool:
        return math.isfinite(self.coef) and math.isfinite(self.p)


def _percentile(dist: np.ndarray) -> tuple[float, float]:
    alpha = (1.0 - CONFIDENCE) / 2.0
    low, high = np.percentile(dist, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def _boot_p(dist: np.ndarray) -> float:
    """Two-sided bootstrap p-value of 0: twice the smaller tail mass at 0, (count+1)/(B+1)."""
    b = len(dist)
    below = (np.sum(dist <= 0.0) + 1) / (b + 1)
    above = (np.sum(dist >= 0.0) + 1) / (b + 1)
    return float(min(1.0, 2.0 * min(below, above)))


def _cluster_draws(n_clusters: int, n_resamples: int, seed: int) -> np.ndarray:
    """``(n_resamples, n_clusters)`` counts: how often each cluster is drawn per resample."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_clusters, size=(n_resamples, n_clusters))
    counts = np.zeros((n_resamples, n_clusters))
    np.add.at(counts, (np.repeat(np.arange(n_resamples), n_clusters), idx.ravel()), 1.0)
    return counts


def _cluster_sums(values: np.ndarray, clusters: Sequence[object] | None
                  ) -> tuple[np.ndarray, np.ndarray, list[object]]:
    if clusters is None:
        ids = list(range(len(values)))
        return values.copy(), np.ones(len(values)), ids
    codes, ids = pd.factorize(pd.Series(list(clusters)), sort=True)
    sums = np.bincount(codes, weights=values, minlength=len(ids))
    counts = np.bincount(codes, minlength=len(ids)).astype(float)
    return sums, counts, list(ids)


def _finite(values: Sequence[float], clusters: Sequence[object] | None
            ) -> tuple[np.ndarray, list[object] | None]:
    v = np.asarray(values, dtype=np.float64)
    keep = np.isfinite(v)
    cl = None if clusters is None else [c for c, k in zip(clusters, keep, strict=True) if k]
    return v[keep], cl


def bootstrap_mean(values: Sequence[float], clusters: Sequence[object] | None, *,
                   n_resamples: int = N_RESAMPLES, seed: int = 0) -> Interval:
    """Mean of the finite ``values`` with a cluster-bootstrap percentile interval (module
    docstring); ``clusters`` labels each value's seed (``None``: the row bootstrap)."""
    v, cl = _finite(values, clusters)
    if len(v) == 0:
        return Interval(math.nan, math.nan, math.nan, 0, 0, reason="no finite value")
    sums, counts, ids = _cluster_sums(v, cl)
    mean = float(v.mean())
    n_seeds = len(ids) if cl is not None else 0
    if len(ids) < (MIN_SEEDS if cl is not None else 2):
        return Interval(mean, math.nan, math.nan, len(v), n_seeds,
                        reason=f"{len(ids)} seed(s) < {MIN_SEEDS}")
    if np.all(v == v[0]):
        return Interval(mean, mean, mean, len(v), n_seeds)
    w = _cluster_draws(len(ids), n_resamples, seed)
    dist = (w @ sums) / (w @ counts)
    low, high = _percentile(dist)
    return Interval(mean, low, high, len(v), n_seeds, p=_boot_p(dist))


def bootstrap_diff(a: Sequence[float], a_seeds: Sequence[object], b: Sequence[float],
                   b_seeds: Sequence[object], *, n_resamples: int = N_RESAMPLES,
                   seed: int = 0) -> Interval:
    """mean(a) - mean(b) over rows, with a seed-cluster bootstrap that draws one set of seeds
    for both groups (module docstring) and its two-sided bootstrap p-value."""
    va, ca = _finite(a, a_seeds)
    vb, cb = _finite(b, b_seeds)
    if len(va) == 0 or len(vb) == 0:
        return Interval(math.nan, math.nan, math.nan, len(va) + len(vb), 0,
                        reason="a group has no finite value")
    assert ca is not None and cb is not None
    ids = sorted({*ca, *cb}, key=str)
    code = {c: i for i, c in enumerate(ids)}
    ia, ib = np.array([code[c] for c in ca]), np.array([code[c] for c in cb])
    sa = np.bincount(ia, weights=va, minlength=len(ids))
    na = np.bincount(ia, minlength=len(ids)).astype(float)
    sb = np.bincount(ib, weights=vb, minlength=len(ids))
    nb = np.bincount(ib, minlength=len(ids)).astype(float)
    diff = float(va.mean() - vb.mean())
    n_rows = len(va) + len(vb)
    if len(ids) < MIN_SEEDS:
        return Interval(diff, math.nan, math.nan, n_rows, len(ids),
                        reason=f"{len(ids)} seed(s) < {MIN_SEEDS}")
    if np.all(va == va[0]) and np.all(vb == vb[0]):
        return Interval(diff, diff, diff, n_rows, len(ids), p=0.0 if diff != 0 else 1.0)
    w = _cluster_draws(len(ids), n_resamples, seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        dist = (w @ sa) / (w @ na) - (w @ sb) / (w @ nb)
    dist = dist[np.isfinite(dist)]
    if len(dist) < n_resamples // 2:
        return Interval(diff, math.nan, math.nan, n_rows, len(ids),
                        reason="most resamples leave a group empty (seeds barely overlap)")
    low, high = _percentile(dist)
    return Interval(diff, low, high, n_rows, len(ids), p=_boot_p(dist))


def _ranks(values: np.ndarray) -> np.ndarray:
    """Mid-ranks / n (``+inf`` = censored takes the worst rank, tied among themselves)."""
    return stats.rankdata(values) / len(values)


def _varies(column: pd.Series) -> bool:
    """Not constant up to rounding (a constant column would duplicate the intercept)."""
    values = column.to_numpy(dtype=float)
    return float(values.max() - values.min()) > 1e-9 * max(1.0, float(np.abs(values).max()))


def mixed_effect(frame: pd.DataFrame, y: str, x: str, *, seed: str = "seed",
                 covariates: Sequence[str] = ("task_index",), ranked: Sequence[str] = (),
                 scale: str = "ranks") -> Effect:
    """Within-seed effect of ``x`` on ``y`` (module docstring) from the rows of ``frame``
    (columns ``y``, ``x``, ``seed``, ``covariates``); NaN rows are dropped, ``+inf`` (a
    censored recovery) is the worst rank on ``scale="ranks"`` and dropped on ``"raw"``.
    The covariates named in ``ranked`` (e.g. the previous shift's adaptation) are put on
    the rank scale with ``y`` and ``x``; the others (the task index) stay as they are."""
    if scale not in ("ranks", "raw"):
        raise ValueError(f"scale = {scale!r}; valid choices: ranks, raw")
    cols = [y, x, *covariates]
    data = frame[[seed, *cols]].copy()
    for c in cols:
        data[c] = pd.to_numeric(data[c], errors="coerce").astype(float)
    data = data.dropna()
    note = ""
    if scale == "raw":
        finite = np.isfinite(data[cols]).all(axis=1)
        if (~finite).any():
            note = f"{int((~finite).sum())} censored row(s) dropped"
        data = data[finite]
    n, n_seeds = len(data), data[seed].nunique()

    def undefined(reason: str) -> Effect:
        return Effect(math.nan, math.nan, math.nan, math.nan, n, n_seeds, scale, reason=reason,
                      note=note)

    if n_seeds < MIN_SEEDS:
        return undefined(f"{n_seeds} seed(s) < {MIN_SEEDS}")
    if scale == "ranks":
        data[y] = _ranks(data[y].to_numpy())
        data[x] = _ranks(data[x].to_numpy())
        for c in ranked:
            data[c] = _ranks(data[c].to_numpy())
    groups = data[seed].astype(str).to_numpy()
    seed_mean = data.groupby(groups)[x].transform("mean")
    within = data[x] - seed_mean
    if float(np.abs(within).max()) <= 1e-12 * max(1.0, float(np.abs(data[x]).max())):
        return undefined("no within-seed variation of the probe")
    if not _varies(data[y]):
        return undefined("constant target")
    design = pd.DataFrame({"const": 1.0, "x_within": within.to_numpy()}, index=data.index)
    if _varies(seed_mean):
        design["x_seed_mean"] = seed_mean.to_numpy()
    for c in covariates:
        if _varies(data[c]):
            design[c] = data[c].to_numpy()
    if n <= design.shape[1] + 1:
        return undefined(f"{n} rows for {design.shape[1]} fixed effects")
    if np.linalg.matrix_rank(design.to_numpy()) < design.shape[1]:
        return undefined("the probe is collinear with the covariates")
    from statsmodels.regression.mixed_linear_model import MixedLM

    model = MixedLM(data[y].to_numpy(), design, groups=groups)
    result, failure = None, "the fit did not converge"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for method in ("lbfgs", "powell"):  # statsmodels' default first, then derivative-free
            try:
                fit = model.fit(reml=True, method=method)
            except (np.linalg.LinAlgError, ValueError) as exc:
                failure = f"fit failed ({type(exc).__name__}: {exc})"
                continue
            if getattr(fit, "converged", True):
                result = fit
                break
    if result is None:
        return undefined(failure)
    coef = float(result.fe_params["x_within"])
    se = float(result.bse_fe["x_within"])
    if not (math.isfinite(se) and se > 0):
        return undefined("no standard error (degenerate fit)")
    seed_var = float(np.asarray(result.cov_re)[0, 0])
    if seed_var <= _SINGULAR_VAR * max(1.0, float(result.scale)):
        note = "; ".join(filter(None, [note, "seed variance estimated at 0 (singular fit: "
                                             "equivalent to pooled least squares)"]))
    elif any("converge" in str(w.message).lower() for w in caught):
        note = "; ".join(filter(None, [note, "optimiser warned about convergence"]))
    z = float(stats.norm.ppf(0.5 + CONFIDENCE / 2.0))
    p = float(2.0 * stats.norm.sf(abs(coef / se)))
    return Effect(coef, coef - z * se, coef + z * se, p, n, n_seeds, scale,
                  seed_sd=math.sqrt(max(seed_var, 0.0)), note=note)


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
