from __future__ import annotations

import torch

from agents.mitigations import SpectralNormReg
from tests.agents.mitigations.mitigation_fakes import FakeAgent as make_agent
from tests.agents.mitigations.mitigation_fakes import FakeConfig as fake_config


def test_gradient_matches_closed_form():
    reg = SpectralNormReg(coefficient=0.1)
    agent = make_agent(config=fake_config(widths=(5,), layer_norm=True), mitigations=[reg])
    net = agent.nets["q"]
    with torch.no_grad():
        net.hidden[0].norm.weight.fill_(1.5)
    agent.optimizer.zero_grad(set_to_none=True)
    reg.before_optimizer_step(agent)
    for linear in (net.hidden[0].linear, net.head):
        w = linear.weight.detach().double()
        u, s, vh = torch.linalg.svd(w)
        sigma = s[0]
        expected = 0.1 * 2 * (sigma**2 - 2) * 2 * sigma * torch.outer(u[:, 0], vh[0])
        torch.testing.assert_close(linear.weight.grad.double(), expected, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(linear.bias.grad, 0.1 * 2 * linear.bias.detach())
    torch.testing.assert_close(net.hidden[0].norm.weight.grad, torch.full((5,), 0.1 * 2 * 0.5))
