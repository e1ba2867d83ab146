"""Rank statistics: planted relations on synthetic runs, censoring ranks, degenerate cells,
bootstrap CIs and multiple-comparison adjustments checked against scipy directly."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from experiments.analysis import (
    POOLED,
    AdaptationSpec,
    adaptation_table,
    correlation_table,
    load_runs,
    mean_ci,
    multiple_comparisons,
    partial_spearman_ci,
    probe_trends,
    rank_value,
    runs_of,
    spearman_ci,
)
from experiments.analysis.stats import _partial_batch, _spearman_batch
from experiments.analysis.synthetic import step_episodes, write_run

ABS = AdaptationSpec(window=10, threshold=0.8, max_return=1.0)
EP = 100


def _sweep(tmp_path, recover_by_seed, probe_fn, *, arm="plain", period=2400):
    """One run per seed; probes ``pre/q/<name>`` = probe_fn(seed, k, recover[k])."""
    for seed, recover in enumerate(recover_by_seed):
        probes = []
        for k in range(1, len(recover)):
            values = probe_fn(seed, k, recover[k])
            probes.append({"step": k * period, "task_id": k - 1, "phase": "pre",
                           "network": "q", **values})
        write_run(tmp_path / "runs" / f"{arm}-{seed}", arm=arm, seed=seed,
                  episodes=step_episodes(period, recover, episode_length=EP), period=period,
                  n_segments=len(recover), probes=probes)
    return adaptation_table(runs_of(load_runs([tmp_path])), ABS)


def _cell(cells, group, probe, target):
    (cell,) = [c for c in cells if (c["group"], c["probe"], c["target"]) == (group, probe, target)]
    return cell


def test_probe_that_determines_steps_to_recover_gives_rho_one(tmp_path):
    rng = np.random.default_rng(1)
    # j >= 2 so that the first full window of 10 episodes is not the one that crosses.
    recover = [[0, *rng.integers(2, 14, size=5).tolist()] for _ in range(3)]
    rows = _sweep(tmp_path, recover, lambda s, k, j: {"dormant": 0.1 + 0.05 * j})
    assert all(not r["censored"] for r in rows)
    assert [r["steps_to_threshold"] for r in rows] == [(j + 8) * EP for rec in recover
                                                      for j in rec[1:]]
    cells, _ = correlation_table(rows, ["pre/q/dormant"], ["steps_to_threshold", "auc"],
                                 n_resamples=300)
    cell = _cell(cells, "plain", "pre/q/dormant", "steps_to_threshold")
    assert cell["n"] == 15
    assert cell["rho"] == pytest.approx(1.0)
    assert cell["ci_low"] == pytest.approx(1.0) and cell["ci_high"] == pytest.approx(1.0)
    # A later recovery means a smaller area under the post-shift curve.
    assert _cell(cells, "plain", "pre/q/dormant", "auc")["rho"] == pytest.approx(-1.0)


def test_probe_that_only_tracks_the_segment_index_has_partial_rho_near_zero(tmp_path):
    rng = np.random.default_rng(0)
    n_seg, n_seeds = 8, 4
    # Recovery slows with the segment (2 episodes per segment) plus a 0/1 coin per shift.
    # In every segment the four seeds get coins (0, 0, 1, 1) and clock offsets whose order
    # (1, 4, 2, 3) is orthogonal to the coins, in a random assignment to seeds: the clock
    # probe knows the segment and nothing else, so its partial rho is exactly 0.
    coins = np.zeros((n_seeds, n_seg), dtype=int)
    noise = np.zeros((n_seeds, n_seg))
    for k in range(n_seg):
        order = rng.permutation(n_seeds)
        coins[order, k] = [0, 0, 1, 1]
        noise[order, k] = [0.1, 0.4, 0.2, 0.3]
    recover = [[2 * k + int(coins[s, k]) for k in range(n_seg)] for s in range(n_seeds)]

    def probes(seed, k, j):
        return {"clock": k + float(noise[seed, k]),  # time only, orthogonal to the coin
                "informed": k + 0.5 * float(coins[seed, k])}  # time and the coin

    rows = _sweep(tmp_path, recover, probes)
    cells, _ = correlation_table(rows, ["pre/q/clock", "pre/q/informed"],
                                 ["steps_to_threshold"], n_resamples=1000)
    clock = _cell(cells, "plain", "pre/q/clock", "steps_to_threshold")
    informed = _cell(cells, "plain", "pre/q/informed", "steps_to_threshold")
    assert clock["n"] == (n_seg - 1) * n_seeds
    assert clock["rho"] > 0.9  # raw: both move with time
    assert clock["partial_rho"] == pytest.approx(0.0, abs=1e-9)
    assert clock["partial_ci_low"] < 0.0 < clock["partial_ci_high"]
    assert informed["partial_rho"] > 0.8 and informed["partial_ci_low"] > 0.3


def test_censored_recoveries_take_the_worst_tied_rank(tmp_path):
    # recover 30 >= 24 episodes per segment: censored.
    recover = [[0, 3, 30, 6, 30, 9], [0, 30, 1, 4, 7, 30]]
    rows = _sweep(tmp_path, recover, lambda s, k, j: {"p": float(j) + 0.01 * s})
    censored = [r for r in rows if r["censored"]]
    assert len(censored) == 4
    assert all(r["steps_to_threshold"] is None and r["steps_lower_bound"] == 2400
               for r in censored)
    x = [r["pre/q/p"] for r in rows]
    y = [rank_value(r, "steps_to_threshold") for r in rows]
    assert sum(math.isinf(v) for v in y) == 4
    # Hand treatment: any common value above every observed step count.
    y_hand = [v if math.isfinite(v) else 10**9 for v in y]
    expected = stats.spearmanr(x, y_hand).statistic
    cells, _ = correlation_table(rows, ["pre/q/p"], ["steps_to_threshold"], n_resamples=200)
    cell = _cell(cells, "plain", "pre/q/p", "steps_to_threshold")
    assert cell["rho"] == pytest.approx(expected) and cell["n_censored"] == 4
    assert cell["rho"] < 1.0  # ties among censored shifts whose probes differ


def test_pooled_and_within_arm_groups(tmp_path):
    recover_a = [[0, 2, 4, 6, 8, 10]] * 2
    recover_b = [[0, 12, 13, 14, 15, 16]] * 2
    rows = _sweep(tmp_path / "a", recover_a, lambda s, k, j: {"p": float(j)}, arm="a")
    rows += _sweep(tmp_path / "b", recover_b, lambda s, k, j: {"p": float(j)}, arm="b")
    cells, note = correlation_table(rows, ["pre/q/p"], ["steps_to_threshold"], n_resamples=200)
    groups = {c["group"]: c for c in cells}
    assert set(groups) == {POOLED, "a", "b"}
    assert groups[POOLED]["n"] == 20 and groups["a"]["n"] == 10
    assert note["m"] == sum(math.isfinite(c[k]) for c in cells for k in ("p", "partial_p"))


def test_degenerate_cells_are_nan_with_a_reason_not_an_error():
    x = np.arange(10.0)
    assert spearman_ci(x[:4], x[:4]).reason == "n=4 < 5"
    assert math.isnan(spearman_ci(x[:4], x[:4]).rho)
    assert spearman_ci(np.ones(10), x).reason == "constant probe"
    assert spearman_ci(x, [math.inf] * 10).reason == "constant metric"
    y = np.array([1.0, math.nan, 3, 4, 5, 6, 7, 8, 9, 10])
    assert spearman_ci(x, y).n == 9
    # One non-zero metric value: a third of the resamples miss it (rho undefined there).
    spike = np.zeros(15)
    spike[3] = 1.0
    flagged = spearman_ci(np.arange(15.0), spike)
    assert math.isfinite(flagged.rho) and flagged.dropped > 0.05 * 2000
    assert "resamples undefined" in flagged.reason
    seg = np.repeat([1.0, 2.0], 5)
    assert partial_spearman_ci(seg, x, seg).reason == "probe determined by segment index"
    assert partial_spearman_ci(x, x, np.ones(10)).reason == "constant segment index"


def test_point_estimates_and_batches_agree_with_scipy():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(2, 40))
    z = np.repeat(np.arange(8.0), 5)
    res = spearman_ci(x, y)  # default 2000 resamples
    ref = stats.spearmanr(x, y)
    assert res.rho == pytest.approx(ref.statistic) and res.p == pytest.approx(ref.pvalue)
    assert res.ci_low < res.rho < res.ci_high
    assert res == spearman_ci(x, y)  # fixed bootstrap seed: reproducible
    xb, yb, zb = rng.normal(size=(3, 6, 12))
    zb = np.round(zb)
    for i in range(6):
        assert _spearman_batch(xb, yb)[i] == pytest.approx(stats.spearmanr(xb[i], yb[i])[0])
        assert _partial_batch(xb, yb, zb)[i] == pytest.approx(
            partial_spearman_ci(xb[i], yb[i], zb[i], n_resamples=10).rho)
    # Partial rho by its definition: Pearson of rank residuals after regressing on rank(z).
    rx, ry, rz = stats.rankdata(x), stats.rankdata(y), stats.rankdata(z)
    ex = rx - np.polyval(np.polyfit(rz, rx, 1), rz)
    ey = ry - np.polyval(np.polyfit(rz, ry, 1), rz)
    assert partial_spearman_ci(x, y, z).rho == pytest.approx(stats.pearsonr(ex, ey)[0])


def test_multiple_comparisons_and_mean_ci():
    p = [0.001, 0.02, math.nan, 0.04, 0.5]
    note = multiple_comparisons(p, alpha=0.05)
    assert note["m"] == 4 and note["bonferroni_threshold"] == pytest.approx(0.0125)
    assert note["n_bonferroni"] == 1
    finite = [v for v in p if math.isfinite(v)]
    adjusted = [v for v in note["p_bh"] if math.isfinite(v)]
    assert adjusted == pytest.approx(stats.false_discovery_control(finite).tolist())
    # BH by hand: sorted p x m / rank = 0.004, 0.04, 0.0533, 0.5 -> two below 0.05.
    assert adjusted == pytest.approx([0.004, 0.04, 0.04 * 4 / 3, 0.5])
    assert math.isnan(note["p_bh"][2]) and note["n_bh"] == 2
    mean, low, high, n = mean_ci([1.0, 2.0, 3.0])
    half = stats.t.ppf(0.975, 2) / math.sqrt(3)
    assert (mean, n) == (2.0, 3) and high - mean == pytest.approx(half)
    one = mean_ci([4.0, math.nan])
    assert one[0] == 4.0 and math.isnan(one[1]) and math.isnan(one[2]) and one[3] == 1


def test_probe_trends_over_successive_shifts(tmp_path):
    recover = [[0, 1, 2, 3, 4, 5]] * 3
    rows = _sweep(tmp_path, recover, lambda s, k, j: {"rank": 10.0 - k + 0.1 * s})
    (trend,) = probe_trends(rows, ["pre/q/rank"], n_resamples=200)
    assert trend["arm"] == "plain" and trend["segments"] == [1, 2, 3, 4, 5]
    assert trend["mean"] == pytest.approx([9.1, 8.1, 7.1, 6.1, 5.1])
    assert trend["n"] == [3] * 5
    assert trend["trend"].rho == pytest.approx(stats.spearmanr(
        [k for _ in range(3) for k in range(1, 6)],
        [10 - k + 0.1 * s for s in range(3) for k in range(1, 6)]).statistic)
    assert trend["trend"].rho < -0.9
