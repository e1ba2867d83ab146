from __future__ import annotations

import pytest

from agents.base import AgentError
from agents.mitigations import (
    MITIGATIONS,
    L2Init,
    Reset,
    available_mitigations,
    make_mitigation,
    make_mitigations,
)


def test_every_method_is_listed_with_a_description():
    listed = available_mitigations()
    expected = {
        "l2",
        "l2_init",
        "er",
        "l2_er",
        "shrink_perturb",
        "redo",
        "cbp",
        "layer_norm",
        "crelu",
        "ns_adam",
        "reset",
        "reset_on_switch",
        "spectral_norm_reg",
        "induced_collapse",
    }
    assert set(listed) == expected == set(MITIGATIONS)
    assert all(desc for desc in listed.values())
    assert "ORACLE" in listed["reset_on_switch"]
    assert "ORACLE PERTURBATION" in listed["induced_collapse"]


def test_specs_by_name_and_table():
    built = make_mitigations(
        [
            "l2",
            {"name": "l2_init", "variant": "abs"},
            {"name": "reset", "which": ["hidden.0", "head"]},
        ]
    )
    assert [m.name for m in built] == ["l2", "l2_init", "reset"]
    assert isinstance(built[1], L2Init) and built[1].variant == "abs"
    assert isinstance(built[2], Reset) and built[2].which == ("hidden.0", "head")
    assert make_mitigation("l2_er", adam_betas=[0.95, 0.95]).adam_betas == (0.95, 0.95)  # TOML list


def test_unknown_name_lists_the_choices():
    with pytest.raises(
        AgentError, match=r"unknown mitigation 'dropout'; valid choices: .*'cbp'.*'l2'"
    ):
        make_mitigations(["dropout"])


def test_unknown_parameter_lists_the_valid_ones():
    with pytest.raises(
        AgentError,
        match=r"unknown parameter 'decay' for mitigation 'redo'; valid parameters: every_updates, tau",
    ):
        make_mitigation("redo", decay=0.9)
    with pytest.raises(AgentError, match="valid parameters: none"):
        make_mitigation("layer_norm", eps=1e-5)


@pytest.mark.parametrize(
    "name, params, fragment",
    [
        ("l2", {"weight_decay": -1.0}, "weight_decay=-1.0"),
        ("l2", {"weight_decay": "big"}, "weight_decay='big'"),
        ("l2_init", {"variant": "cubed"}, "variant='cubed'.*'squared', 'abs'"),
        ("er", {"steps_per_update": 2.5}, "steps_per_update=2.5"),
        ("er", {"lr": float("nan")}, "lr=nan"),
        ("l2_er", {"adam_betas": (0.9,)}, "adam_betas"),
        ("l2_er", {"adam_betas": (1.0, 0.9)}, "adam_betas=1.0"),
        ("shrink_perturb", {"mode": "hard"}, "mode='hard'.*'soft', 'periodic'"),
        ("shrink_perturb", {"noise": "gauss"}, "noise='gauss'.*'init', 'theta0'"),
        ("shrink_perturb", {"shrink": 1.5}, "shrink=1.5"),
        ("redo", {"tau": -0.1}, "tau=-0.1"),
        ("redo", {"every_updates": 0}, "every_updates=0"),
        ("cbp", {"replacement_rate": 2.0}, "replacement_rate=2.0"),
        ("cbp", {"decay": 1.0}, "decay=1.0"),
        ("cbp", {"maturity_threshold": -5}, "maturity_threshold=-5"),
        ("ns_adam", {"beta": 1.0}, "beta=1.0"),
        ("reset", {"every_steps": 0}, "every_steps=0"),
        ("reset", {"which": "middle"}, "which='middle'"),
        ("reset_on_switch", {"reset_optimizer": "yes"}, "reset_optimizer='yes'"),
        ("spectral_norm_reg", {"coefficient": -1}, "coefficient=-1"),
    ],
)
def test_invalid_hyperparameters_name_the_value(name, params, fragment):
    with pytest.raises(AgentError, match=fragment):
        make_mitigation(name, **params)


def test_bad_specs():
    with pytest.raises(AgentError, match="no 'name'"):
        make_mitigations([{"tau": 0.1}])
    with pytest.raises(AgentError, match="listed twice"):
        make_mitigations(["l2", {"name": "l2", "weight_decay": 1e-4}])
    with pytest.raises(AgentError, match="invalid mitigation spec 3"):
        make_mitigations([3])
