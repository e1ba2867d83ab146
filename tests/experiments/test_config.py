"""Config loading, overrides, TOML round trip and validation errors."""

from __future__ import annotations

import dataclasses

import pytest

from agents.dqn import DQNConfig
from experiments.config import (
    RunConfig,
    apply_overrides,
    from_dict,
    load_config,
    parse_overrides,
    save_config,
    to_dict,
)
from experiments.errors import ConfigError
from experiments.resolve import resolve
from experiments.tomlio import dumps_toml, loads_toml


def test_defaults_and_agent_fields_come_from_the_agent_dataclass():
    config = from_dict({"agent": {"algo": "dqn", "learning_rate": 1e-3, "widths": [16, 16]}})
    assert isinstance(config.agent.settings, DQNConfig)
    assert config.agent.settings.learning_rate == 1e-3
    assert config.agent.settings.widths == (16, 16)  # TOML list -> the field's tuple
    assert config.agent.settings.buffer_size == DQNConfig().buffer_size


def test_overrides_are_typed_from_their_text():
    parsed = parse_overrides(["agent.learning_rate=3e-4", "probes.pre=false",
                              'mitigations.names=["l2", "er"]', "env.id=plasticity/CartPoleDynamics-v0"])
    assert parsed == {"agent.learning_rate": 3e-4, "probes.pre": False,
                      "mitigations.names": ["l2", "er"], "env.id": "plasticity/CartPoleDynamics-v0"}
    config = from_dict(apply_overrides({"agent": {"algo": "ppo"}}, parsed))
    assert config.agent.settings.learning_rate == 3e-4
    assert config.probes.pre is False and config.mitigations.names == ["l2", "er"]


def test_changing_algo_drops_the_old_agent_fields():
    data = apply_overrides({"agent": {"algo": "ppo", "num_steps": 64}}, {"agent.algo": "dqn"})
    assert from_dict(data).agent.algo == "dqn"


def test_saved_config_reloads_to_the_same_resolved_config(tmp_path):
    config = resolve(from_dict({"agent": {"algo": "dqn", "max_grad_norm": 10.0},
                                "env": {"id": "plasticity/CartPoleDynamics-v0"},
                                "mitigations": {"names": ["l2"], "options": {"l2": {"coef": 1e-3}}}}))
    assert config.env.period == 20_000  # the stream's default, written out
    assert config.probes.metrics  # the default probe set, written out
    save_config(config, tmp_path / "config.toml")
    again = load_config(tmp_path / "config.toml")
    assert to_dict(again) == to_dict(config)
    assert to_dict(resolve(again)) == to_dict(config)


def test_toml_writer_round_trips_awkward_values():
    data = {"a": {"s": 'quote " and \\ and \n', "f": 1e-300, "neg": -2.5, "i": 10**12,
                  "b": True, "l": [1, 2], "nested": [["x"], []], "inline": {"k y": 1}},
            "b": {"c": {"d": 1.0}}}
    assert loads_toml(dumps_toml(data)) == data


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"experimnt": {}}, "unknown table [experimnt]; valid tables: experiment"),
        ({"experiment": {"stepz": 1}}, "unknown key experiment.stepz; valid keys"),
        ({"experiment": {"steps": "many"}}, "experiment.steps = 'many': expected an integer"),
        ({"experiment": {"steps": 0}}, "experiment.steps = 0 is out of range"),
        ({"experiment": {"reference": "frozen"}}, "'continual', 'fresh', 'stationary'"),
        ({"agent": {"algo": "sac"}}, "agent.algo = 'sac' is not a known agent; valid choices: 'dqn', 'ppo'"),
        ({"agent": {"algo": "dqn", "lr": 1e-3}}, "unknown key agent.lr; valid keys in [agent]"),
        ({"agent": {"seed": 3}}, "agent.seed is set by experiment.seed"),
        ({"shift": {"optimizer": "zero"}}, "shift.optimizer = 'zero' is not valid; valid choices: 'keep', 'reset'"),
        ({"probes": {"cadence": 100}}, "multiple of experiment.log_every"),
        ({"mitigations": {"options": {"l2": {}}}}, "not in mitigations.names"),
        ({"experiment": {"out": "runs/{nme}"}}, "valid fields: {name}"),
    ],
)
def test_validation_errors_name_the_key_and_the_choices(data, needle):
    with pytest.raises(ConfigError) as info:
        from_dict(data)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"env": {"id": "plasticity/Nope-v0"}}, "not a registered stream; valid choices:"),
        ({"probes": {"metrics": ["hessian_tpo"]}}, "unknown metric 'hessian_tpo'; valid choices:"),
        ({"mitigations": {"names": ["l3"]}}, "unknown mitigation 'l3'; valid choices:"),
        ({"env": {"period": 1000}}, "not a multiple of the PPO rollout"),
        ({"shift": {"buffer": "flush"}}, "PPO has no buffer to change"),
        ({"probes": {"settings": {"slq_iter": 3}}}, "unknown key probes.settings.slq_iter"),
    ],
)
def test_resolve_errors_check_names_against_the_other_packages(data, needle):
    with pytest.raises(ConfigError) as info:
        resolve(from_dict(data))
    assert needle in str(info.value)


def test_run_config_dataclass_has_one_field_per_table():
    assert [f.name for f in dataclasses.fields(RunConfig)] == [
        "experiment", "env", "agent", "mitigations", "probes", "shift", "logging"]
