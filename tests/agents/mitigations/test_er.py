from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.base import AgentError
from agents.mitigations import ER, L2ER, NonStationaryAdam, differentiable_erank
from agents.mitigations._common import capture_features
from tests.agents.mitigations.mitigation_fakes import FakeAgent as make_agent
from tests.agents.mitigations.mitigation_fakes import FakeConfig as fake_config
from tests.agents.mitigations.mitigation_fakes import make_obs_batch

obs_batch = make_obs_batch()


def _erank_numpy(phi: np.ndarray) -> float:
    s = np.linalg.svd(phi, compute_uv=False)
    p = s / (s.sum() + 1e-8)
    return float(np.exp(-(p * np.log(p + 1e-8)).sum()))


def test_differentiable_erank_matches_dense_formula_and_limits():
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(40, 12))
    assert differentiable_erank(torch.tensor(phi)).item() == pytest.approx(
        _erank_numpy(phi), rel=1e-10
    )
    assert differentiable_erank(torch.eye(8, dtype=torch.float64)).item() == pytest.approx(
        8.0, rel=1e-6
    )
    rank_one = np.outer(rng.normal(size=30), rng.normal(size=5))
    assert differentiable_erank(torch.tensor(rank_one)).item() == pytest.approx(1.0, abs=1e-5)
    assert torch.isfinite(differentiable_erank(torch.zeros(5, 4)))  # the 1e-8 guards


def test_differentiable_erank_gradient_matches_finite_differences():
    phi = torch.randn(
        7, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1), requires_grad=True
    )
    assert torch.autograd.gradcheck(differentiable_erank, (phi,))


def _mean_erank(agent, obs):
    with torch.no_grad():
        feats = capture_features(agent.nets["q"], obs)
    return {k: differentiable_erank(v).item() for k, v in feats.items()}


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


def test_er_loss_is_sum_over_networks_of_layer_means():
    er = ER()
    agent = make_agent(mitigations=[er], nets=("actor", "critic"))
    loss = er.er_loss(agent, obs_batch)
    expected = 0.0
    for net in agent.nets.values():
        with torch.no_grad():
            feats = capture_features(net, obs_batch["obs"])
        expected -= np.mean([_erank_numpy(f.double().numpy()) for f in feats.values()])
    assert loss.item() == pytest.approx(expected, rel=1e-4)


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
