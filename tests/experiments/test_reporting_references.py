"""Matched fresh references: automatic matching on every learning setting, declared
references checked seed by seed, a mismatched reference refused, gaps only against a match."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from experiments.errors import ConfigError
from experiments.reporting.declarations import Reference
from experiments.reporting.frame import probe_column, shift_frame
from experiments.reporting.references import config_differences, match_references


def _config(arm, seed, reference="continual", mitigations=(), **agent):
    return json.dumps({
        "experiment": {"name": "study", "arm": arm, "seed": seed, "reference": reference,
                       "steps": 6000, "out": f"/somewhere/{arm}-seed{seed}"},
        "env": {"id": "plasticity/Synthetic-v0", "period": 2000},
        "agent": {"algo": "dqn", "learning_rate": 1e-3, **agent},
        "mitigations": {"names": list(mitigations), "options": {}},
        "probes": {"batch_size": 64 if reference == "fresh" else 128}})


def _runs(*arms):
    rows = []
    for arm, reference, mitigations in arms:
        for seed in range(3):
            rows.append({"run_id": f"runs/{arm}-seed{seed}", "arm": arm, "seed": seed,
                         "reference": reference, "status": "done",
                         "config": _config(arm, seed, reference, mitigations)})
    return pd.DataFrame(rows)


ARMS = (("continual", "continual", ()), ("fresh", "fresh", ()), ("l2", "continual", ("l2",)),
        ("fresh_l2", "fresh", ("l2",)), ("head_reset", "continual", ("reset_on_switch",)))


def test_each_arm_gets_the_fresh_run_of_its_own_settings():
    refs = match_references(_runs(*ARMS))
    assert set(refs) == {"continual", "l2", "head_reset"}
    assert refs["continual"].pairs == {f"runs/continual-seed{s}": f"runs/fresh-seed{s}"
                                       for s in range(3)}
    assert refs["l2"].pairs == {f"runs/l2-seed{s}": f"runs/fresh_l2-seed{s}" for s in range(3)}
    # no fresh run with reset_on_switch: no reference, never the plain fresh arm
    assert not refs["head_reset"].matched and refs["head_reset"].missing == (0, 1, 2)


def test_a_mismatched_declared_reference_is_refused():
    runs = _runs(*ARMS)
    with pytest.raises(ConfigError, match=r"\[report.references\] l2 = 'fresh' is refused: run "
                       r"'runs/fresh-seed0' differs from 'runs/l2-seed0' in mitigations.names"):
        match_references(runs, {"l2": Reference("fresh")})
    with pytest.raises(ConfigError, match="the runs of 'l2' are not fresh reference runs"):
        match_references(runs, {"continual": Reference("l2")})
    # a declared reference arm without runs (a partial sweep): no gap, nothing borrowed
    partial = match_references(runs, {"l2": Reference("fresh_er")})["l2"]
    assert not partial.matched and partial.missing == (0, 1, 2)


def test_a_declared_reference_may_ignore_named_keys_with_a_reason():
    why = "resetting the head is a no-op in a run re-initialised at every switch"
    refs = match_references(_runs(*ARMS), {"head_reset": Reference("fresh", ("mitigations",), why)})
    assert refs["head_reset"].declared and refs["head_reset"].reason == why
    assert refs["head_reset"].pairs["runs/head_reset-seed1"] == "runs/fresh-seed1"


def test_config_differences_ignore_bookkeeping_only():
    a, b = _config("l2", 0, mitigations=("l2",)), _config("fresh", 0, "fresh")
    assert config_differences(a, b) == ["mitigations.names"]
    assert config_differences(_config("x", 0, learning_rate=1e-4), _config("y", 0)) == [
        "agent.learning_rate"]
    assert config_differences(_config("x", 0), _config("y", 1)) == ["experiment.seed"]


def test_gaps_come_from_the_matched_run_and_censoring_is_kept():
    runs = _runs(*ARMS)
    adaptation = []
    for run in runs.itertuples():
        for k in (1, 2):
            base = {"fresh": 0.9, "fresh_l2": 0.5}.get(run.arm, 0.4)
            adaptation.append({"run_id": run.run_id, "shift_index": k, "task_id": k,
                               "step": 2000 * k, "mean_return": base + 0.01 * run.seed,
                               "steps_to_threshold": math.nan if run.arm == "l2" else 300.0,
                               "censored": run.arm == "l2"})
    adaptation = pd.DataFrame(adaptation)
    probes = pd.DataFrame([{"run_id": r, "step": 2000, "task_id": 1, "phase": "init",
                            "network": "q", "erank": 3.0} for r in runs["run_id"]])
    shifts = pd.DataFrame([{"run_id": r, "shift_index": k, "step": 2000 * k, "from_task": k - 1,
                            "to_task": k, "oracle": False} for r in runs["run_id"] for k in (1, 2)])
    frame = shift_frame(runs, adaptation, probes, shifts, match_references(runs))
    by = frame.set_index(["arm", "seed", "shift_index"])
    assert by.at[("continual", 1, 1), "gap_mean_return"] == pytest.approx(0.4 - 0.9)
    assert by.at[("l2", 1, 1), "gap_mean_return"] == pytest.approx(0.4 - 0.5)  # vs fresh_l2
    assert math.isnan(by.at[("head_reset", 0, 2), "gap_mean_return"])
    assert by.at[("l2", 0, 1), "steps_to_threshold"] == math.inf  # censored: worst
    assert by.at[("l2", 0, 1), "gap_steps_to_threshold"] == math.inf
    column = probe_column("init", "q", "on_policy", "erank")
    assert by.at[("l2", 2, 1), column] == 3.0 and math.isnan(by.at[("l2", 2, 2), column])


def test_a_study_file_naming_an_arm_it_lacks_is_refused_when_loaded():
    from experiments.sweep import build_sweep

    data = {"arms": [{"name": "continual"}, {"name": "fresh", "experiment.reference": "fresh"}],
            "report": {"references": {"continual": "fresh_l2"}}}
    with pytest.raises(ConfigError, match="name the arm 'fresh_l2', which this sweep does not "
                       "have; its arms: continual, fresh"):
        build_sweep(data, name="bad", out="/nonexistent")
    data["report"] = {"key_arm": []}
    with pytest.raises(ConfigError, match="unknown key 'key_arm'"):
        build_sweep(data, name="bad", out="/nonexistent")


def test_probes_join_by_phase_step_and_task_nearest_step_as_fallback():
    runs = _runs(("continual", "continual", ()))[:1]
    run_id = runs["run_id"].iloc[0]
    shifts = pd.DataFrame([{"run_id": run_id, "shift_index": k, "step": 2000 * k,
                            "from_task": k - 1, "to_task": k, "oracle": False} for k in (1, 2)])
    adaptation = pd.DataFrame([{"run_id": run_id, "shift_index": k, "task_id": k,
                                "step": 2000 * k, "auc": 0.5, "censored": False} for k in (1, 2)])
    probes = pd.DataFrame([
        {"run_id": run_id, "step": 1500, "task_id": 0, "phase": "cadence", "network": "q",
         "erank": 99.0},
        {"run_id": run_id, "step": 2000, "task_id": 0, "phase": "pre", "network": "q",
         "erank": 5.0, "dormant": 0.25},
        {"run_id": run_id, "step": 2000, "task_id": 1, "phase": "init", "network": "q",
         "erank": 6.0},
        {"run_id": run_id, "step": 4000, "task_id": 1, "phase": "pre", "network": "q",
         "erank": 7.0},
        # off by a PPO rollout: no exact step, matched by the new task id (nearest wins)
        {"run_id": run_id, "step": 4096, "task_id": 2, "phase": "init", "network": "q",
         "erank": 8.0},
        {"run_id": run_id, "step": 4608, "task_id": 2, "phase": "init", "network": "q",
         "erank": 9.0},
        {"run_id": run_id, "step": 4000, "task_id": 2, "phase": "init", "network": "q",
         "data": "fixed", "erank": 1.5},
    ])
    frame = shift_frame(runs, adaptation, probes, shifts, {}).set_index("shift_index")
    col = lambda phase, metric, data="on_policy": probe_column(phase, "q", data, metric)  # noqa: E731
    assert frame.at[1, col("pre", "erank")] == 5.0 and frame.at[1, col("pre", "dormant")] == 0.25
    assert frame.at[1, col("init", "erank")] == 6.0 and frame.at[2, col("pre", "erank")] == 7.0
    assert frame.at[2, col("init", "erank")] == 8.0
    assert frame.at[2, col("init", "erank", "fixed")] == 1.5
    assert math.isnan(frame.at[2, col("pre", "dormant")])
    assert not any(c.startswith("cadence/") for c in frame.columns)
