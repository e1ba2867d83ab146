"""``plasticity power``: on a synthetic pilot with known variance components, the printed
detectable effect of a between-arms test is within 15% of the analytic one (the noncentral-t
solution for Welch's t on seed means), and P(equivalent | true zero) rises with the sesoi."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from experiments.reporting.declarations import parse_declarations
from experiments.reporting.inference import detectable
from experiments.reporting.power import components, power_rows

SEED_SD, SHIFT_SD, SHIFTS = 0.15, 0.2, 10


def _pilot(rng, arms=("a", "b"), seeds=200):
    """Many pilot seeds per arm, so the components are known to a few percent."""
    rows = []
    for arm in arms:
        for s in range(seeds):
            level = rng.normal(0, SEED_SD)
            for k in range(1, SHIFTS + 1):
                rows.append({"run_id": f"{arm}-{s}", "arm": arm, "seed": s, "shift_index": k,
                             "task_index": float(k),
                             "mean_return": level + rng.normal(0, SHIFT_SD)})
    return pd.DataFrame(rows)


STUDY = {
    "seeds": [0, 1, 2, 3, 4],
    "arms": [{"name": "a"}, {"name": "b", "seeds": list(range(10, 20))}],
    "hypotheses": [{"id": "H", "kind": "between_arms", "target": "mean_return", "sign": "+",
                    "arms": ["a"], "versus": "b", "paired": False, "sesoi": 0.15}],
}


def test_components_are_recovered_from_the_pilot():
    frame = _pilot(np.random.default_rng(0))
    decl = parse_declarations(STUDY)
    comp = components(frame, decl.hypotheses[0], ["a", "b"], "mean_return")
    assert math.sqrt(comp.between) == pytest.approx(SEED_SD, rel=0.15)
    assert math.sqrt(comp.within) == pytest.approx(SHIFT_SD, rel=0.05)


def test_detectable_effect_is_within_15_percent_of_the_analytic_one():
    frame = _pilot(np.random.default_rng(1))
    decl = parse_declarations(STUDY)
    (row,) = power_rows(frame, decl, STUDY, SHIFTS, n_sims=300)
    # analytic: Welch's t on 5 and 10 seed means of variance SEED_SD^2 + SHIFT_SD^2 / SHIFTS
    v = SEED_SD ** 2 + SHIFT_SD ** 2 / SHIFTS
    se = math.sqrt(v * (1 / 5 + 1 / 10))
    df = (1 / 5 + 1 / 10) ** 2 / ((1 / 5) ** 2 / 4 + (1 / 10) ** 2 / 9)
    analytic = detectable(se, df)
    assert row.seeds == "5 / 10" and row.shifts == SHIFTS
    assert row.detectable == pytest.approx(analytic, rel=0.15)
    assert row.detectable_holm >= row.detectable
    # a true zero is called equivalent only when the sesoi is wide against the se
    assert 0.0 <= row.p_equivalent < 0.3
    wide = {**STUDY, "hypotheses": [{**STUDY["hypotheses"][0], "sesoi": 1.0}]}
    (wide_row,) = power_rows(frame, parse_declarations(wide), wide, SHIFTS, n_sims=100)
    assert wide_row.p_equivalent > 0.95


def test_power_command_refuses_a_missing_tables_directory(tmp_path, capsys):
    from experiments.cli import main

    study = tmp_path / "s.toml"
    study.write_text('seeds = [0]\n[[hypotheses]]\nid = "H"\nkind = "trend"\ntarget = "auc"\n'
                     'sign = "+"\narms = ["a"]\n')
    assert main(["power", str(study), "--from", str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err
