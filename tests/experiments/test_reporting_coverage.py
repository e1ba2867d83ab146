"""Measured coverage of the report's 95% intervals on simulated studies with the second
edition's variance components, at 5 and 10 seeds.

The simulation: ``y[arm, seed, shift] = mu_arm + seed_g + arm_seed_g + shift_gk + noise``
with sds 0.15 (seed: shared by both arms, the same environment draws), 0.08 (arm x seed),
0.10 (shift within seed, shared by the arms) and 0.12 (measurement noise), 10 shifts -- about
the components of ``mean_return`` in the committed e2 tables (continual seed-mean sd ~0.1-0.2,
within-seed sd ~0.15). 2,000 studies per setting.

Measured here on 2,000 studies (numpy 2.4.6, draws of seed 105 / 110; the test asserts
93-97% for the report's intervals):

=========================  ==========  ==========
interval                   5 seeds     10 seeds
=========================  ==========  ==========
t on seed means (mean)     95.9%       95.0%
paired t (difference)      95.6%       94.5%
percentile cluster
bootstrap, mean (old)      83.6%       88.9%
percentile cluster
bootstrap, difference      84.2%       90.1%
=========================  ==========  ==========

The old engine's percentile cluster bootstrap is measured on the same draws (B = 400 here;
it is anti-conservative at few clusters whatever B: the bootstrap distribution of a mean of
G draws has variance s^2 (G-1)/G^2, not s^2/G, and normal, not t, tails) and asserted below
93% at 5 seeds: that is why the report no longer uses it. Welch's t for 5 against 10 seeds
and the within-seed slope (CR2, t(G-1)) are checked the same way.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

SEED_SD, ARM_SEED_SD, SHIFT_SD, NOISE_SD, SHIFTS = 0.15, 0.08, 0.10, 0.12, 10
STUDIES = 2000


def _studies(rng, n_seeds, delta=0.1):
    """Seed means of two arms per study: shape (STUDIES, n_seeds) each."""
    seed = rng.normal(0, SEED_SD, (STUDIES, n_seeds, 1))
    shift = rng.normal(0, SHIFT_SD, (STUDIES, n_seeds, SHIFTS))
    arms = []
    for mu in (delta, 0.0):
        rows = (mu + seed + rng.normal(0, ARM_SEED_SD, (STUDIES, n_seeds, 1)) + shift
                + rng.normal(0, NOISE_SD, (STUDIES, n_seeds, SHIFTS)))
        arms.append(rows.mean(axis=2))
    return arms


def _t_cover(values, truth):
    g = values.shape[1]
    m, se = values.mean(axis=1), values.std(axis=1, ddof=1) / np.sqrt(g)
    q = stats.t.ppf(0.975, g - 1)
    return float(np.mean(np.abs(m - truth) <= q * se))


def _percentile_cover(values, truth, rng, b=400):
    """The old engine: resample seeds with replacement, percentile interval of the mean."""
    n, g = values.shape
    idx = rng.integers(0, g, (b, g))
    hits = 0
    for v in values:
        dist = v[idx].mean(axis=1)
        low, high = np.percentile(dist, [2.5, 97.5])
        hits += low <= truth <= high
    return hits / n


@pytest.mark.parametrize("n_seeds", [5, 10])
def test_t_intervals_cover_95_percent(n_seeds):
    rng = np.random.default_rng(n_seeds)
    a, b = _studies(rng, n_seeds)
    mean_cover = _t_cover(b, 0.0)
    paired_cover = _t_cover(a - b, 0.1)
    assert 0.93 <= mean_cover <= 0.97
    assert 0.93 <= paired_cover <= 0.97


def test_welch_covers_95_percent_for_5_against_10_seeds():
    rng = np.random.default_rng(3)
    a, _ = _studies(rng, 5)
    _, b = _studies(rng, 10)
    va, vb = a.var(axis=1, ddof=1) / 5, b.var(axis=1, ddof=1) / 10
    df = (va + vb) ** 2 / (va ** 2 / 4 + vb ** 2 / 9)
    est = a.mean(axis=1) - b.mean(axis=1)
    cover = np.mean(np.abs(est - 0.1) <= stats.t.ppf(0.975, df) * np.sqrt(va + vb))
    assert 0.93 <= cover <= 0.97


def test_the_report_functions_are_the_simulated_intervals():
    """The closed forms above are what :mod:`experiments.reporting.inference` computes."""
    from experiments.reporting.inference import difference, mean_interval

    rng = np.random.default_rng(7)
    a, b = _studies(rng, 5)
    seeds = np.arange(5)
    i = mean_interval(b[0], seeds)
    half = stats.t.ppf(0.975, 4) * b[0].std(ddof=1) / np.sqrt(5)
    assert (i.low, i.high) == pytest.approx((b[0].mean() - half, b[0].mean() + half))
    d = difference(a[0], seeds, b[0], seeds)
    half = stats.t.ppf(0.975, 4) * (a[0] - b[0]).std(ddof=1) / np.sqrt(5)
    assert d.high - d.low == pytest.approx(2 * half)


def test_the_old_percentile_bootstrap_under_covers_at_5_seeds():
    rng = np.random.default_rng(11)
    _, b = _studies(rng, 5)
    cover = _percentile_cover(b[:1000], 0.0, rng)
    assert cover < 0.93


def test_within_seed_slope_with_cr2_covers_95_percent_at_10_seeds():
    """The within-seed slope (CR2, t(G-1)) on 300 simulated continual arms with a seed
    effect on both the probe and the target and a true within slope of 0.3 (300 keeps the
    test to seconds; the band is wider to match: binomial sd 1.3%)."""
    import pandas as pd

    from experiments.reporting.inference import within_effect

    rng = np.random.default_rng(5)
    hits, n = 0, 300
    seeds = np.repeat(np.arange(10), SHIFTS)
    task = np.tile(np.arange(SHIFTS, dtype=float), 10)
    for _ in range(n):
        level = np.repeat(rng.normal(0, 1.0, 10), SHIFTS)
        x = level + rng.normal(size=10 * SHIFTS)
        y = 2.0 * level + 0.3 * (x - level) + 0.05 * task + rng.normal(size=10 * SHIFTS)
        e = within_effect(pd.DataFrame({"seed": seeds, "x": x, "y": y, "task_index": task}),
                          "y", "x", scale="raw")
        hits += e.low <= 0.3 <= e.high
    assert 0.92 <= hits / n <= 0.98
