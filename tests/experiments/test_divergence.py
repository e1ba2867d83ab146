"""Divergence beyond NaN: a parameter norm grown past ``experiment.divergence_factor`` times
its initial norm marks the run DIVERGED and exits non-zero; the rule is exact at its limit
and can be turned off."""

from __future__ import annotations

import json

import pytest
import torch

import experiments
from agents.base import DivergenceError
from agents.networks import MLP
from experiments import rundir
from experiments.cli import main
from experiments.divergence import NormRule, parameter_norms
from experiments.errors import ConfigError
from experiments.tomlio import dumps_toml
from tests.experiments.conftest import DQN_RUN, PPO_RUN, SHORT_DQN, make_config


def test_the_rule_trips_exactly_above_its_factor():
    net = MLP(4, 2, (8,), "relu", False, "default", generator=torch.Generator().manual_seed(0))
    dense = torch.cat([p.detach().reshape(-1) for p in net.parameters()]).norm().item()
    assert parameter_norms({"q": net}) == {"q": pytest.approx(dense)}
    rule = NormRule(100.0, parameter_norms({"q": net}))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(99.0)
    assert rule.check(7, {"q": net})["q"] == pytest.approx(99.0)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(101.0 / 99.0)
    with pytest.raises(DivergenceError, match=r"parameter norm of q \(101x its initial norm"):
        rule.check(7, {"q": net})
    assert NormRule(0.0, rule.baseline).check(7, {"q": net})["q"] == pytest.approx(101.0)


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_a_learning_rate_of_1e6_is_caught_marked_and_exits_non_zero(algo, tmp_path, capsys):
    base = DQN_RUN if algo == "dqn" else PPO_RUN
    out = tmp_path / "run"
    config = tmp_path / "run.toml"
    config.write_text(dumps_toml({**base, "experiment": {**base["experiment"], "steps": 1024,
                                                         "out": str(out)},
                                  "agent": {**base["agent"], "learning_rate": 1e6,
                                            # the issue's case: Huber's bounded gradient keeps
                                            # the loss finite while the weights blow up
                                            **({"loss": "huber"} if algo == "dqn" else {})}}))
    assert main(["run", str(config)]) == 1
    assert "diverged at env step" in capsys.readouterr().err
    marker = json.loads((out / rundir.DIVERGED).read_text())
    assert marker["what"].startswith("parameter norm of ") and float(marker["value"]) > 0
    assert rundir.run_status(out) == "diverged"
    last = rundir.read_jsonl(out / rundir.METRICS)[-1]
    assert last["diverged"] is True and last["step"] == marker["step"] <= 512


def test_healthy_rows_record_the_ratio_and_the_rule_can_be_turned_off(dqn_config, tmp_path):
    healthy = experiments.run(dqn_config(**{"experiment.steps": 600, **SHORT_DQN}))
    ratios = [r["params/q/norm_ratio"] for r in rundir.read_jsonl(healthy.run_dir / rundir.METRICS)]
    assert len(ratios) == 3 and 1.0 < max(ratios) < 10.0
    off = make_config(DQN_RUN, tmp_path / "off", **{"experiment.steps": 400, **SHORT_DQN,
                                                    "agent.learning_rate": 1e6,
                                                    "agent.loss": "huber",  # finite loss
                                                    "experiment.divergence_factor": 0})
    assert experiments.run(off).status == "done"  # finite, however absurd: not stopped
    ratios = [r["params/q/norm_ratio"] for r in rundir.read_jsonl(off.run_dir / rundir.METRICS)]
    assert min(ratios) > 1e6  # what the rule, when on, stops at 1000


def test_a_divergence_factor_of_one_or_less_is_refused(dqn_config):
    with pytest.raises(ConfigError, match=r"experiment.divergence_factor = 0.5 is out of range"):
        experiments.run(dqn_config(**{"experiment.divergence_factor": 0.5}))
