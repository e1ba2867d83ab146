from __future__ import annotations

from dataclasses import dataclass

import pytest
from torch import nn

from agents.base import AgentError
from agents.mitigations import CReLU, LayerNorm, NonStationaryAdam
from tests.agents.mitigations.mitigation_fakes import FakeAgent as make_agent
from tests.agents.mitigations.mitigation_fakes import FakeConfig as fake_config


def test_layer_norm_builds_layernorm_blocks():
    agent = make_agent(mitigations=[LayerNorm()])
    assert agent.config.layer_norm
    assert all(isinstance(b.norm, nn.LayerNorm) for b in agent.nets["q"].hidden)


def test_crelu_doubles_block_outputs():
    agent = make_agent(mitigations=[CReLU()])
    assert agent.config.activation == "crelu"
    assert agent.nets["q"].head.in_features == 32


def test_ns_adam_sets_equal_betas():
    agent = make_agent(mitigations=[NonStationaryAdam()])
    assert agent.optimizer.param_groups[0]["betas"] == (0.99, 0.99)
    agent = make_agent(mitigations=[NonStationaryAdam(beta=0.95)])
    assert agent.optimizer.param_groups[0]["betas"] == (0.95, 0.95)


@pytest.mark.parametrize("method", [LayerNorm, CReLU])
def test_network_options_need_hidden_layers(method):
    with pytest.raises(AgentError, match="no hidden layers"):
        make_agent(config=fake_config(widths=()), mitigations=[method()])


def test_config_without_the_field_is_named():
    @dataclass
    class Bare:
        seed: int = 0

    with pytest.raises(AgentError, match="'layer_norm'.*Bare.*seed"):
        LayerNorm().configure(Bare())
    with pytest.raises(AgentError, match="adam_betas"):
        NonStationaryAdam().configure(Bare())


def test_agent_that_ignores_the_config_is_caught():
    class Ignoring(LayerNorm):
        def configure(self, config):
            return config

    with pytest.raises(AgentError, match="without LayerNorm"):
        make_agent(mitigations=[Ignoring()])
