"""Seed-level inference on synthetic shifts whose truth is known: the within-seed slope finds
a within-seed driver with its sign and ignores a between-seed-only probe, seed-centring the
task index recovers the fixed-effects estimate with missing rows, intervals are built on
seed means (paired on shared seeds, Welch otherwise), Holm's rule, the declared family and
its four verdicts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from experiments.errors import ConfigError
from experiments.reporting.declarations import parse_declarations
from experiments.reporting.frame import probe_column
from experiments.reporting.hypotheses import evaluate
from experiments.reporting.inference import (
    difference,
    holm,
    mean_interval,
    pool,
    within_effect,
)
from experiments.reporting.outcome import EQUIVALENT, INCONCLUSIVE, OPPOSITE, SUPPORTED

PROBE = probe_column("init", "q", "on_policy", "features/erank")


def _frame(rng, *, seeds=6, shifts=10, within=0.0, between=0.0, arm="continual"):
    """``auc`` = seed level + ``within`` x (probe's deviation from its seed mean) + noise;
    the probe's seed mean is ``between`` x the seed level (so a probe with within = 0 and
    between != 0 differs only between seeds, in step with adaptation)."""
    rows = []
    for s in range(seeds):
        level = rng.normal()
        for k in range(1, shifts + 1):
            dev = rng.normal()
            rows.append({"run_id": f"{arm}-seed{s}", "arm": arm, "seed": s, "shift_index": k,
                         "task_index": float(k), PROBE: between * level + dev,
                         "auc": 2.0 * level + within * dev + 0.3 * rng.normal()})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("scale", ["ranks", "raw"])
def test_within_seed_driver_is_found_with_its_sign(scale):
    rng = np.random.default_rng(0)
    up = within_effect(_frame(rng, within=0.8), "auc", PROBE, scale=scale)
    down = within_effect(_frame(rng, within=-0.8), "auc", PROBE, scale=scale)
    assert up.defined and up.low > 0 and up.p < 1e-4
    assert down.defined and down.high < 0 and down.p < 1e-4
    if scale == "raw":  # the raw coefficient recovers the planted slope
        assert abs(up.coef - 0.8) < 0.1 and abs(down.coef + 0.8) < 0.1


def test_between_seed_only_probe_is_not_found():
    # the probe is constant within each seed and tracks the seed's adaptation level exactly
    frame = _frame(np.random.default_rng(1), between=1.0)
    seed_level = frame.groupby("seed")["auc"].transform("mean")
    frame[PROBE] = seed_level
    pooled = np.corrcoef(frame[PROBE], frame["auc"])[0, 1]
    assert pooled > 0.9  # a row-level correlation would call it a strong predictor
    effect = within_effect(frame, "auc", PROBE)
    assert not effect.defined and effect.reason == "no within-seed variation of the probe"


def test_between_seed_probe_with_within_noise_is_rarely_found():
    """Noise around a between-seed signal: the within coefficient stays null (false positive
    rate near the nominal 5% over 40 synthetic studies)."""
    hits = 0
    for r in range(40):
        frame = _frame(np.random.default_rng(100 + r), between=3.0, within=0.0)
        hits += within_effect(frame, "auc", PROBE).p < 0.05
    assert hits <= 6


def test_mixed_model_reports_why_it_is_undefined():
    rng = np.random.default_rng(2)
    two = _frame(rng, seeds=2)
    assert "2 seed(s) < 3" in within_effect(two, "auc", PROBE).reason
    flat = _frame(rng)
    flat["auc"] = 1.0
    assert within_effect(flat, "auc", PROBE).reason == "constant target"
    with pytest.raises(ValueError, match="valid choices: ranks, raw"):
        within_effect(flat, "auc", PROBE, scale="log")


def test_censored_recovery_takes_the_worst_rank():
    frame = _frame(np.random.default_rng(3), within=-1.0)
    frame["steps"] = -frame["auc"]
    worst = frame["steps"].idxmax()
    frame.loc[worst, "steps"] = math.inf
    ranks = within_effect(frame, "steps", PROBE, scale="ranks")
    raw = within_effect(frame, "steps", PROBE, scale="raw")
    assert ranks.n_rows == len(frame) and ranks.low > 0
    assert raw.n_rows == len(frame) - 1 and raw.note == "1 censored recovery row(s) dropped"


def test_task_index_is_seed_centred_so_missing_rows_keep_the_within_estimate():
    """With rows missing unevenly across seeds, a task index that is not seed-centred lets
    between-seed differences leak into the probe's coefficient; centred, the estimate is the
    fixed-effects (seed dummies) least-squares slope exactly."""
    rng = np.random.default_rng(12)
    frame = _frame(rng, seeds=8, within=0.5)
    frame = frame[~((frame["seed"] % 2 == 0) & (frame["shift_index"] > 5))]  # uneven rows
    e = within_effect(frame, "auc", PROBE, scale="raw")
    dummies = pd.get_dummies(frame["seed"], dtype=float).to_numpy()
    design = np.column_stack([frame[PROBE], frame["task_index"], dummies])
    beta, *_ = np.linalg.lstsq(design, frame["auc"].to_numpy(), rcond=None)
    assert e.coef == pytest.approx(beta[0], rel=1e-9)
    assert e.df == 7 and e.low < 0.5 < e.high


def test_mean_interval_is_a_t_interval_on_seed_means():
    rng = np.random.default_rng(4)
    seeds = np.repeat(np.arange(6), 10)
    values = np.repeat(rng.normal(size=6), 10) + 0.1 * rng.normal(size=60)  # seed effects
    i = mean_interval(values, seeds)
    means = pd.Series(values).groupby(seeds).mean()
    half = 2.5706 * means.std(ddof=1) / math.sqrt(6)  # t(5) 97.5% quantile
    assert i.estimate == pytest.approx(means.mean())
    assert (i.low, i.high) == pytest.approx((means.mean() - half, means.mean() + half), rel=1e-4)
    assert i.n_seeds == 6 and i.df == 5


def test_difference_pairs_shared_seeds_and_falls_back_to_welch():
    rng = np.random.default_rng(5)
    seeds = np.repeat(np.arange(5), 4)
    shared = np.repeat(rng.normal(size=5), 4)  # the seed's environment, shared by both arms
    a, b = shared + 1.0 + 0.05 * rng.normal(size=20), shared + 0.05 * rng.normal(size=20)
    d = difference(a, seeds, b, seeds)
    assert d.low > 0.9 and d.high < 1.1 and d.p < 0.01  # pairing removes the seed effect
    assert d.method == "paired t" and d.seeds == "5 paired of 5/5 seeds"
    # 5 seeds against 10: paired on the 5 shared ones, the other 5 are not used
    b10 = np.concatenate([b, rng.normal(size=20) + 5.0])
    s10 = np.concatenate([seeds, seeds + 5])
    half = difference(a, seeds, b10, s10)
    assert half.seeds == "5 paired of 5/10 seeds" and half.estimate == pytest.approx(d.estimate)
    # disjoint seeds: Welch's t on the seed means (the seed effect stays in the variance)
    w = difference(a, seeds, b, seeds + 10)
    assert w.method == "Welch t" and w.seeds == "unpaired 5/5 seeds" and w.high - w.low > 1.0
    short = difference(a[:4], seeds[:4], b[:4], seeds[:4] + 10)
    assert not short.defined and "too few" in short.reason


def test_random_effects_pooling_matches_dersimonian_laird():
    y, s = np.array([0.1, 0.3, 0.5, 0.2]), np.array([0.1, 0.1, 0.2, 0.15])
    p = pool(y, s)
    w = 1 / s ** 2
    fixed = (w * y).sum() / w.sum()
    q = (w * (y - fixed) ** 2).sum()
    tau2 = max(0.0, (q - 3) / (w.sum() - (w ** 2).sum() / w.sum()))
    ws = 1 / (s ** 2 + tau2)
    assert p.tau2 == pytest.approx(tau2) and p.estimate == pytest.approx((ws * y).sum() / ws.sum())
    assert p.i2 == pytest.approx(max(0.0, (q - 3) / q)) and p.low < p.estimate < p.high
    assert p.k == 4


def test_holm_matches_the_step_down_rule():
    p = [0.01, 0.04, 0.03, 0.005, math.nan]
    # sorted: 0.005*5, 0.01*4, 0.03*3, 0.04*2, 1 -> running max
    assert holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.025, 1.0])
    assert holm([]) == []


# ----------------------------------------------------------------------------- declared family
def _declare(*hypotheses, **report):
    return parse_declarations({"hypotheses": list(hypotheses), "report": report})


H_WITHIN = {"id": "H1", "kind": "within_arm", "probe": "features/erank", "network": "q",
            "phase": "init", "target": "auc", "sign": "+", "arms": ["continual"]}


def test_declared_within_arm_hypothesis_gets_its_verdict_in_the_declared_direction():
    frame = _frame(np.random.default_rng(6), within=0.8)
    up = evaluate(frame, _declare(H_WITHIN).hypotheses)
    assert [(t.variant, t.verdict) for t in up][0] == ("effect", SUPPORTED)
    assert [t.p_holm for t in up] == pytest.approx(holm([t.p for t in up]))
    down = evaluate(frame, _declare({**H_WITHIN, "sign": "-"}).hypotheses)
    assert down[0].verdict == OPPOSITE
    null = evaluate(_frame(np.random.default_rng(7)), _declare(H_WITHIN).hypotheses)
    assert null[0].verdict == INCONCLUSIVE and null[0].detectable > 0


def test_equivalence_needs_a_declared_sesoi_and_a_narrow_interval():
    """A true zero with many seeds: inconclusive without a sesoi, equivalent with one that
    the 90% interval fits inside, inconclusive again with a sesoi too small for it."""
    frame = _frame(np.random.default_rng(13), seeds=30, within=0.0)
    (plain,) = evaluate(frame, _declare(H_WITHIN).hypotheses)
    (equiv,) = evaluate(frame, _declare({**H_WITHIN, "sesoi": 0.3}).hypotheses)
    (tiny,) = evaluate(frame, _declare({**H_WITHIN, "sesoi": 0.01}).hypotheses)
    assert plain.verdict == INCONCLUSIVE and equiv.verdict == EQUIVALENT
    assert tiny.verdict == INCONCLUSIVE
    with pytest.raises(ConfigError, match="sesoi = -1; expected a number > 0"):
        _declare({**H_WITHIN, "sesoi": -1})


def test_between_arms_and_trend_hypotheses():
    rng = np.random.default_rng(9)
    low = _frame(rng, arm="continual")
    high = _frame(rng, arm="fresh")
    high[PROBE] += 3.0
    frame = pd.concat([low, high], ignore_index=True)
    frame["gap_mean_return"] = -0.05 * frame["task_index"] + 0.02 * rng.normal(size=len(frame))
    hyps = _declare(
        {"id": "H2", "kind": "between_arms", "probe": "features/erank", "network": "q",
         "sign": "-", "arms": ["continual"], "versus": "fresh"},
        {"id": "H3", "kind": "trend", "target": "gap_mean_return", "sign": "-",
         "arms": ["continual"]},
        {"id": "H4", "kind": "trend", "target": "gap_mean_return", "sign": "-",
         "arms": ["missing_arm"]}).hypotheses
    out = {t.hypothesis.id: t for t in evaluate(frame, hyps)}
    assert out["H2"].verdict == SUPPORTED and out["H2"].estimate == pytest.approx(
        low[PROBE].mean() - high[PROBE].mean())
    assert out["H3"].verdict == SUPPORTED and out["H3"].variant == "trend"
    assert out["H4"].verdict == INCONCLUSIVE and "no finished run" in out["H4"].reason
    assert out["H4"].p_holm == 1.0


def test_a_gap_hypothesis_without_a_reference_is_not_testable():
    frame = _frame(np.random.default_rng(10))
    frame["gap_auc"] = math.nan
    (effect,) = evaluate(frame, _declare({**H_WITHIN, "target": "gap_auc"}).hypotheses)
    assert effect.verdict == INCONCLUSIVE and "no matched fresh reference" in effect.reason


@pytest.mark.parametrize(("hypothesis", "message"), [
    ({**H_WITHIN, "kind": "correlation"}, "kind = 'correlation'; valid choices: within_arm"),
    ({**H_WITHIN, "sign": "up"}, "sign = 'up'; valid choices: +, -"),
    ({k: v for k, v in H_WITHIN.items() if k != "target"}, "needs both probe and target"),
    ({k: v for k, v in H_WITHIN.items() if k != "network"}, "needs network"),
    ({**H_WITHIN, "kind": "between_arms"}, "tests one quantity"),
    ({**H_WITHIN, "probe": 3}, "probe = 3; expected a column name"),
    ({**H_WITHIN, "phase": "after"}, "phase = 'after'; valid choices: pre, init"),
    ({**H_WITHIN, "expected": "+"}, "unknown key 'expected'"),
    ({**H_WITHIN, "versus": "fresh"}, "versus is only for kind = 'between_arms'"),
    ({**H_WITHIN, "kind": "dose_response", "target": None, "doses": [1, 2],
      "arms": ["a", "b"], "contrast": [1, 1]}, "contrast = \\[1, 1\\]; expected one weight"),
    ({"id": "H9", "kind": "trend"}, "missing 'sign'"),
])
def test_bad_hypotheses_are_refused_with_the_valid_choices(hypothesis, message):
    with pytest.raises(ConfigError, match=message.replace("+", r"\+").replace("(", r"\(")):
        _declare(hypothesis)


def test_duplicate_ids_and_bad_report_keys_are_refused():
    with pytest.raises(ConfigError, match="'H1' is declared twice"):
        _declare(H_WITHIN, H_WITHIN)
    with pytest.raises(ConfigError, match="unknown key 'key_arm'"):
        _declare(key_arm=["continual"])
    with pytest.raises(ConfigError, match="needs a reason"):
        _declare(references={"head_reset": {"arm": "fresh", "ignore": ["mitigations"]}})
    assert parse_declarations({}).hypotheses == ()


def test_dose_response_and_versus_phase():
    """Three ER doses: AUC rises with the dose (planted); the continual network at init has
    a lower trainability than the fresh arm's trained-once network (planted)."""
    rng = np.random.default_rng(11)
    frames = []
    for arm, dose in (("er_low", 1e-6), ("er_mid", 1e-4), ("er_high", 1e-3)):
        f = _frame(rng, arm=arm)
        f["auc"] += {1e-6: 0.0, 1e-4: 3.0, 1e-3: 6.0}[dose]  # run level sd 2: a dose moves whole runs
        frames.append(f)
    cont, fresh = _frame(rng, arm="continual"), _frame(rng, arm="fresh")
    cont[probe_column("init", "q", "fixed", "trainability")] = 2.0 + 0.1 * rng.normal(size=60)
    fresh[probe_column("trained_once", "q", "fixed", "trainability")] = 1.0 + 0.1 * rng.normal(
        size=60)
    frame = pd.concat(frames + [cont, fresh], ignore_index=True)
    hyps = _declare(
        {"id": "dose", "kind": "dose_response", "target": "auc", "sign": "+",
         "arms": ["er_low", "er_mid", "er_high"], "doses": [1e-6, 1e-4, 1e-3]},
        {"id": "tr", "kind": "between_arms", "probe": "trainability", "network": "q",
         "data": "fixed", "phase": "init", "versus_phase": "trained_once", "sign": "+",
         "arms": ["continual"], "versus": "fresh"}).hypotheses
    out = {t.hypothesis.id: t for t in evaluate(frame, hyps)}
    assert out["dose"].verdict == SUPPORTED and out["dose"].arm == "er_low, er_mid, er_high"
    assert out["tr"].verdict == SUPPORTED and out["tr"].estimate == pytest.approx(1.0, abs=0.1)
    with pytest.raises(ConfigError, match="one number per arm"):
        _declare({"id": "d", "kind": "dose_response", "target": "auc", "sign": "+",
                  "arms": ["a", "b"], "doses": [1.0]})


# ----------------------------------------------------------------------------- held-out studies
def test_a_declared_paired_comparison_of_disjoint_seeds_is_refused():
    study = {"seeds": [0, 1, 2, 3, 4],
             "arms": [{"name": "continual"}, {"name": "late", "seeds": [5, 6, 7, 8, 9]}],
             "hypotheses": [{"id": "H", "kind": "between_arms", "target": "auc", "sign": "+",
                             "arms": ["late"], "versus": "continual", "paired": True}]}
    with pytest.raises(ConfigError, match="share 0 seed\\(s\\) \\(none\\); a paired test needs"):
        parse_declarations(study)
    study["hypotheses"][0]["paired"] = False  # Welch is allowed
    assert parse_declarations(study).hypotheses[0].paired is False
    with pytest.raises(ConfigError, match="paired = 'yes'; expected true or false"):
        parse_declarations({"hypotheses": [{**study["hypotheses"][0], "paired": "yes"}]})


def test_a_clustered_difference_is_not_taken_for_an_effect():
    """Two arms on disjoint seeds whose rows differ only by seed-level noise: a row-level
    test would call the difference significant; Welch's t on seed means stays inconclusive
    in nearly every draw (false-positive rate near 5% over 60 studies)."""
    hits, row_hits = 0, 0
    for r in range(60):
        rng = np.random.default_rng(200 + r)
        a, b = _frame(rng, seeds=5, arm="a"), _frame(rng, seeds=5, arm="b")
        b["seed"] += 10
        frame = pd.concat([a, b], ignore_index=True)
        (t,) = evaluate(frame, _declare({"id": "D", "kind": "between_arms", "target": "auc",
                                         "sign": "+", "arms": ["a"], "versus": "b"}).hypotheses)
        assert t.seeds == "unpaired 5/5 seeds"
        hits += t.verdict != INCONCLUSIVE
        from scipy import stats

        row_hits += stats.ttest_ind(a["auc"], b["auc"]).pvalue < 0.05
    assert hits <= 6 and row_hits >= 30


def test_dose_response_takes_the_run_as_the_unit_under_run_effects():
    """The issue's null: run effects (sd 0.15) and shift noise (sd 0.05), no dose effect.
    Shifts counted as independent were significant in 58% of draws; runs as the unit stay
    near the nominal 5% (at most 10 of 60 draws here)."""
    hits = 0
    hyp = _declare({"id": "dose", "kind": "dose_response", "target": "auc", "sign": "+",
                    "scale": "raw", "arms": ["lo", "mid", "hi"], "doses": [1, 2, 3]}).hypotheses
    for r in range(60):
        rng = np.random.default_rng(300 + r)
        rows = []
        for arm in ("lo", "mid", "hi"):
            for s in range(5):
                run = rng.normal(0, 0.15)
                for k in range(1, 11):
                    rows.append({"run_id": f"{arm}-{s}", "arm": arm, "seed": s,
                                 "shift_index": k, "task_index": float(k),
                                 "auc": run + rng.normal(0, 0.05)})
        (t,) = evaluate(pd.DataFrame(rows), hyp)
        assert t.n_seeds == 15  # runs
        hits += t.p < 0.05
    assert hits <= 10


def test_a_non_monotone_dose_is_found_by_its_declared_contrast():
    rng = np.random.default_rng(14)
    rows = []
    for arm, bump in (("lo", 0.0), ("mid", 0.5), ("hi", 0.0)):  # best in the middle
        for s in range(6):
            run = rng.normal(0, 0.1)
            for k in range(1, 11):
                rows.append({"run_id": f"{arm}-{s}", "arm": arm, "seed": s, "shift_index": k,
                             "task_index": float(k), "auc": bump + run + rng.normal(0, 0.1)})
    frame = pd.DataFrame(rows)
    base = {"id": "d", "kind": "dose_response", "target": "auc", "sign": "+", "scale": "raw",
            "arms": ["lo", "mid", "hi"], "doses": [1, 2, 3]}
    (slope,) = evaluate(frame, _declare(base).hypotheses)
    (peak,) = evaluate(frame, _declare({**base, "contrast": [-1, 2, -1]}).hypotheses)
    assert slope.verdict == INCONCLUSIVE
    assert peak.variant == "contrast" and peak.verdict == SUPPORTED
    assert peak.estimate == pytest.approx(1.0, abs=0.2)


def test_below_resolution_eps_ranks_enter_censored_at_the_next_resolved_bound():
    from experiments.reporting.frame import censor_probes

    probes = pd.DataFrame({
        "hessian/eps_resolution_rel": [0.005, 0.02, 0.5, np.nan],
        "hessian/eps_rank_paper/rel0.01": [0.3, np.nan, np.nan, np.nan],
        "hessian/eps_rank_paper/rel0.03": [0.2, 0.25, np.nan, np.nan],
    })
    out = censor_probes(probes)
    col = "hessian/eps_rank_paper/rel0.01"
    assert out[col].tolist()[:3] == [0.3, 0.25, 0.0]  # measured; bound from rel0.03; none: 0
    assert np.isnan(out[col].iloc[3])  # not probed at all: stays missing
    assert out[f"{col}_censored"].tolist()[:3] == [0.0, 1.0, 1.0]
    # a within-seed test counts the censored rows that entered it
    frame = _frame(np.random.default_rng(15), within=0.5)
    frame[f"{PROBE}_censored"] = (np.arange(len(frame)) % 10 == 0).astype(float)
    (t,) = evaluate(frame, _declare(H_WITHIN).hypotheses)
    assert t.n_censored == 6
