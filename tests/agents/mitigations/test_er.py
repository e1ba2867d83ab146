from __future__ import annotations

import numpy as np
import pytest
import torch

import spectral
import spectral.features
from agents.base import AgentError
from agents.mitigations import ER, L2ER, NonStationaryAdam
from agents.mitigations._common import capture_features
from tests.agents.mitigations.mitigation_fakes import FakeAgent as make_agent
from tests.agents.mitigations.mitigation_fakes import FakeConfig as fake_config
from tests.agents.mitigations.mitigation_fakes import make_obs_batch

obs_batch = make_obs_batch()


def _erank_numpy(phi: np.ndarray) -> float:
    s = np.linalg.svd(phi, compute_uv=False)
    p = s / s.sum()
    return float(np.exp(-(p * np.log(p + 1e-8)).sum()))


def _probe_eranks(net, obs) -> dict[str, float]:
    """What the feature probe reports for each hidden layer of ``net`` on ``obs``."""
    out = spectral.probe(
        net, lambda: net(obs).pow(2).mean(), layers=net.layers(), inputs=obs, metrics=["features"]
    )
    return {name: out[f"features/{name}/effective_rank"] for name in net.layers()}


def test_er_loss_is_minus_the_sum_over_networks_of_the_probed_layer_ranks():
    er = ER()
    agent = make_agent(mitigations=[er], nets=("actor", "critic"))
    loss = er.er_loss(agent, obs_batch)
    expected = 0.0
    for net_name, net in agent.nets.items():
        probed = _probe_eranks(net, obs_batch["obs"])
        for layer, value in probed.items():
            assert er.last_erank[f"{net_name}.{layer}"] == value  # the same number, bit for bit
            phi = capture_features(net, obs_batch["obs"])[layer].detach().double().numpy()
            assert value == pytest.approx(_erank_numpy(phi), rel=1e-5)
        expected -= np.mean(list(probed.values()))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_changing_the_shared_rank_function_changes_both_er_and_the_probe(monkeypatch):
    er = ER()
    agent = make_agent(mitigations=[er])
    net = agent.nets["q"]
    loss, probed = er.er_loss(agent, obs_batch).item(), _probe_eranks(net, obs_batch["obs"])
    original = spectral.features.effective_rank
    monkeypatch.setattr(spectral.features, "effective_rank", lambda phi: 2 * original(phi) + 1)
    assert er.er_loss(agent, obs_batch).item() == pytest.approx(2 * loss - 1, rel=1e-6)
    for layer, value in _probe_eranks(net, obs_batch["obs"]).items():
        assert value == pytest.approx(2 * probed[layer] + 1, rel=1e-6)


def _mean_erank(agent, obs):
    with torch.no_grad():
        feats = capture_features(agent.nets["q"], obs)
    return {k: spectral.effective_rank(v).item() for k, v in feats.items()}


def test_er_step_increases_feature_erank_and_leaves_optimizer_and_grads_alone():
    er = ER(lr=0.05, steps_per_update=1)
    agent = make_agent(mitigations=[er])
    with torch.no_grad():  # make hidden.0's units nearly collinear: low effective rank
        w = agent.nets["q"].hidden[0].linear.weight
        w.copy_(w[0] + 0.05 * w)
    agent.train_step(obs_batch["obs"][:32])
    adam_state = {k: v.clone() for k, v in agent.optimizer.state[w].items()}
    agent.optimizer.zero_grad(set_to_none=True)
    before = _mean_erank(agent, obs_batch["obs"])
    agent.update_phase(obs_batch)
    after = _mean_erank(agent, obs_batch["obs"])
    assert after["hidden.0"] > before["hidden.0"] + 0.05
    assert np.mean(list(after.values())) > np.mean(list(before.values()))
    for k, v in agent.optimizer.state[w].items():
        assert torch.equal(v, adam_state[k])
    assert all(p.grad is None for p in agent.nets["q"].parameters())


def test_er_takes_steps_per_update_steps():
    er = ER(lr=1e-3, steps_per_update=3)
    agent = make_agent(mitigations=[er])
    calls = []
    original = er.step
    er.step = lambda a, b: (calls.append(1), original(a, b))
    agent.update_phase(obs_batch)
    assert len(calls) == 3


def test_l2_er_sets_paper_betas_and_composes_l2_and_er():
    method = L2ER(weight_decay=0.5, lr=0.05, steps_per_update=1)
    agent = make_agent(mitigations=[method])
    assert agent.config.adam_betas == (0.99, 0.99)
    assert agent.optimizer.param_groups[0]["betas"] == (0.99, 0.99)
    head = agent.nets["q"].head
    agent.optimizer.zero_grad(set_to_none=True)
    method.before_optimizer_step(agent)
    torch.testing.assert_close(head.weight.grad, 0.5 * head.weight.detach())
    w0 = agent.nets["q"].hidden[0].linear.weight.detach().clone()
    agent.update_phase(obs_batch)
    assert not torch.equal(agent.nets["q"].hidden[0].linear.weight, w0)
    assert make_agent(mitigations=[L2ER(adam_betas=None)]).config.adam_betas == (0.9, 0.999)


def test_conflicting_adam_betas_are_reported():
    with pytest.raises(AgentError, match="betas"):
        make_agent(mitigations=[L2ER(), NonStationaryAdam(beta=0.95)])


def test_er_needs_hidden_layers_and_an_obs_batch():
    with pytest.raises(AgentError, match="no hidden layers"):
        make_agent(config=fake_config(widths=()), mitigations=[ER()])
    agent = make_agent(mitigations=[ER()])
    with pytest.raises(AgentError, match="'obs'"):
        agent.update_phase({})
