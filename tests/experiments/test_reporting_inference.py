"""Seed-level inference on synthetic shifts whose truth is known: the mixed model finds a
within-seed driver with its sign and ignores a between-seed-only probe, the lagged test
separates prediction from an echo of the past, the cluster bootstrap is wider than the row
bootstrap when a seed's shifts are correlated, Holm's rule, and the declared family."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from experiments.errors import ConfigError
from experiments.reporting.declarations import parse_declarations
from experiments.reporting.frame import probe_column
from experiments.reporting.hypotheses import NOT_SUPPORTED, OPPOSITE, SUPPORTED, evaluate
from experiments.reporting.inference import bootstrap_diff, bootstrap_mean, holm, mixed_effect

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
    up = mixed_effect(_frame(rng, within=0.8), "auc", PROBE, scale=scale)
    down = mixed_effect(_frame(rng, within=-0.8), "auc", PROBE, scale=scale)
    assert up.defined and up.low > 0 and up.p < 1e-6
    assert down.defined and down.high < 0 and down.p < 1e-6
    if scale == "raw":  # the raw coefficient recovers the planted slope
        assert up.low < 0.8 < up.high and down.low < -0.8 < down.high


def test_between_seed_only_probe_is_not_found():
    # the probe is constant within each seed and tracks the seed's adaptation level exactly
    frame = _frame(np.random.default_rng(1), between=1.0)
    seed_level = frame.groupby("seed")["auc"].transform("mean")
    frame[PROBE] = seed_level
    pooled = np.corrcoef(frame[PROBE], frame["auc"])[0, 1]
    assert pooled > 0.9  # a row-level correlation would call it a strong predictor
    effect = mixed_effect(frame, "auc", PROBE)
    assert not effect.defined and effect.reason == "no within-seed variation of the probe"


def test_between_seed_probe_with_within_noise_is_rarely_found():
    """Noise around a between-seed signal: the within coefficient stays null (false positive
    rate near the nominal 5% over 40 synthetic studies)."""
    hits = 0
    for r in range(40):
        frame = _frame(np.random.default_rng(100 + r), between=3.0, within=0.0)
        hits += mixed_effect(frame, "auc", PROBE).p < 0.05
    assert hits <= 6


def test_mixed_model_reports_why_it_is_undefined():
    rng = np.random.default_rng(2)
    two = _frame(rng, seeds=2)
    assert "2 seed(s) < 3" in mixed_effect(two, "auc", PROBE).reason
    flat = _frame(rng)
    flat["auc"] = 1.0
    assert mixed_effect(flat, "auc", PROBE).reason == "constant target"
    with pytest.raises(ValueError, match="valid choices: ranks, raw"):
        mixed_effect(flat, "auc", PROBE, scale="log")


def test_censored_recovery_takes_the_worst_rank():
    frame = _frame(np.random.default_rng(3), within=-1.0)
    frame["steps"] = -frame["auc"]
    worst = frame["steps"].idxmax()
    frame.loc[worst, "steps"] = math.inf
    ranks = mixed_effect(frame, "steps", PROBE, scale="ranks")
    raw = mixed_effect(frame, "steps", PROBE, scale="raw")
    assert ranks.n_rows == len(frame) and ranks.low > 0
    assert raw.n_rows == len(frame) - 1 and raw.note == "1 censored row(s) dropped"


def test_cluster_bootstrap_is_wider_than_row_bootstrap_when_shifts_correlate():
    rng = np.random.default_rng(4)
    seeds = np.repeat(np.arange(6), 10)
    values = np.repeat(rng.normal(size=6), 10) + 0.1 * rng.normal(size=60)  # seed effects
    cluster = bootstrap_mean(values, seeds, n_resamples=1000)
    row = bootstrap_mean(values, None, n_resamples=1000)
    assert cluster.estimate == row.estimate == pytest.approx(values.mean())
    assert (cluster.high - cluster.low) > 2.0 * (row.high - row.low)
    assert cluster.n_seeds == 6
    # independent shifts: both intervals have about the same width
    flat = rng.normal(size=60)
    c, r = bootstrap_mean(flat, seeds, n_resamples=1000), bootstrap_mean(flat, None, n_resamples=1000)
    assert 0.6 < (c.high - c.low) / (r.high - r.low) < 1.6
    assert bootstrap_mean(values, seeds, n_resamples=1000) == cluster  # fixed seed


def test_bootstrap_diff_pairs_seeds_and_needs_three():
    rng = np.random.default_rng(5)
    seeds = np.repeat(np.arange(5), 4)
    shared = np.repeat(rng.normal(size=5), 4)  # the seed's environment, shared by both arms
    a, b = shared + 1.0 + 0.05 * rng.normal(size=20), shared + 0.05 * rng.normal(size=20)
    d = bootstrap_diff(a, seeds, b, seeds, n_resamples=1000)
    assert d.low > 0.9 and d.high < 1.1 and d.p < 0.01  # pairing removes the seed effect
    short = bootstrap_diff(a[:8], seeds[:8], b[:8], seeds[:8])
    assert not short.defined and "2 seed(s) < 3" in short.reason


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
    assert null[0].verdict == NOT_SUPPORTED


def test_lagged_test_separates_prediction_from_an_echo_of_the_past():
    """``echo`` copies the current adaptation (it predicts the next shift only through the
    past); ``lead`` drives the next shift's adaptation."""
    rng = np.random.default_rng(8)
    rows = []
    for s in range(8):
        y, lead = rng.normal(), rng.normal()
        for k in range(1, 13):
            y = 0.7 * y + 1.0 * lead + 0.3 * rng.normal()  # adaptation at shift k
            echo = y + 0.3 * rng.normal()
            lead = rng.normal()  # measured at shift k, acts on shift k+1
            rows.append({"run_id": f"c{s}", "arm": "continual", "seed": s, "shift_index": k,
                         "task_index": float(k), "auc": y,
                         probe_column("init", "q", "on_policy", "echo"): echo,
                         probe_column("init", "q", "on_policy", "lead"): lead})
    frame = pd.DataFrame(rows)
    hyps = _declare({**H_WITHIN, "id": "echo", "probe": "echo"},
                    {**H_WITHIN, "id": "lead", "probe": "lead"}).hypotheses
    out = {(t.hypothesis.id, t.variant): t for t in evaluate(frame, hyps)}
    assert out[("echo", "effect")].verdict == SUPPORTED      # co-occurs with adaptation ...
    assert out[("echo", "lagged")].verdict == NOT_SUPPORTED  # ... but adds nothing to the past
    assert out[("lead", "lagged")].verdict == SUPPORTED
    assert out[("lead", "lagged")].estimate > 0
    assert len(out) == 4  # one family: 2 hypotheses x (effect, lagged)


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
    out = {t.hypothesis.id: t for t in evaluate(frame, hyps, n_resamples=500)}
    assert out["H2"].verdict == SUPPORTED and out["H2"].estimate == pytest.approx(
        low[PROBE].mean() - high[PROBE].mean())
    assert out["H3"].verdict == SUPPORTED and out["H3"].variant == "trend"
    assert out["H4"].verdict == NOT_SUPPORTED and "no finished run" in out["H4"].reason
    assert out["H4"].p_holm == 1.0


def test_a_gap_hypothesis_without_a_reference_is_not_testable():
    frame = _frame(np.random.default_rng(10))
    frame["gap_auc"] = math.nan
    (effect, lagged) = evaluate(frame, _declare({**H_WITHIN, "target": "gap_auc"}).hypotheses)
    assert effect.verdict == NOT_SUPPORTED and "no matched fresh reference" in effect.reason


@pytest.mark.parametrize(("hypothesis", "message"), [
    ({**H_WITHIN, "kind": "correlation"}, "kind = 'correlation'; valid choices: within_arm"),
    ({**H_WITHIN, "sign": "up"}, "sign = 'up'; valid choices: +, -"),
    ({k: v for k, v in H_WITHIN.items() if k != "target"}, "needs both probe and target"),
    ({k: v for k, v in H_WITHIN.items() if k != "network"}, "needs network"),
    ({**H_WITHIN, "kind": "between_arms"}, "tests one quantity"),
    ({**H_WITHIN, "probe": 3}, "probe = 3; expected a column name"),
    ({**H_WITHIN, "phase": "after"}, "phase = 'after'; valid choices: pre, init"),
    ({**H_WITHIN, "expected": "+"}, "unknown key 'expected'"),
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
        f["auc"] += {1e-6: 0.0, 1e-4: 0.5, 1e-3: 1.0}[dose]
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
    out = {t.hypothesis.id: t for t in evaluate(frame, hyps, n_resamples=500)}
    assert out["dose"].verdict == SUPPORTED and out["dose"].arm == "er_low, er_mid, er_high"
    assert out["tr"].verdict == SUPPORTED and out["tr"].estimate == pytest.approx(1.0, abs=0.1)
    with pytest.raises(ConfigError, match="one number per arm"):
        _declare({"id": "d", "kind": "dose_response", "target": "auc", "sign": "+",
                  "arms": ["a", "b"], "doses": [1.0]})
