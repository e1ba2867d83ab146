from __future__ import annotations

import torch

from agents.mitigations import L2, L2Init
from tests.agents.mitigations.mitigation_fakes import FakeAgent as make_agent


def test_l2_shrinks_parameters_geometrically_with_sgd():
    wd, lr, steps = 0.05, 0.1, 20
    agent = make_agent(mitigations=[L2(weight_decay=wd)], optimizer="sgd")
    agent.optimizer.param_groups[0]["lr"] = lr
    before = [p.detach().clone() for p in agent.nets["q"].parameters()]
    for _ in range(steps):
        agent.train_step()  # no loss: the only gradient is the decay
    for p0, p in zip(before, agent.nets["q"].parameters(), strict=True):
        torch.testing.assert_close(p, p0 * (1 - lr * wd) ** steps)


def test_l2_is_coupled_so_adam_moves_each_parameter_by_lr_toward_zero():
    # Coupled decay goes through Adam's normalisation: each step is ~lr*sign(theta),
    # not lr*wd*theta as decoupled (AdamW) decay would be.
    lr, steps = 1e-3, 5
    agent = make_agent(mitigations=[L2(weight_decay=0.1)])
    agent.optimizer.param_groups[0]["lr"] = lr
    weight = agent.nets["q"].hidden[0].linear.weight
    w0 = weight.detach().clone()
    for _ in range(steps):
        agent.train_step()
    big = w0.abs() > 0.2
    shrink = (w0.abs() - weight.detach().abs())[big]
    torch.testing.assert_close(shrink, torch.full_like(shrink, steps * lr), rtol=5e-3, atol=0)


def test_l2_adds_decay_to_the_loss_gradient():
    agent = make_agent()
    l2 = L2(weight_decay=0.3)
    head = agent.nets["q"].head
    head.weight.grad = torch.ones_like(head.weight)
    l2.before_optimizer_step(agent)
    torch.testing.assert_close(head.weight.grad, 1 + 0.3 * head.weight.detach())
    assert agent.nets["q"].hidden[0].linear.bias.grad is not None  # biases decay too


def _perturb(agent, scale=0.5):
    with torch.no_grad():
        for p in agent.nets["q"].parameters():
            p.add_(scale * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))


def test_l2_init_squared_pulls_toward_initial_parameters_at_the_expected_rate():
    c, lr, steps = 0.1, 0.2, 10
    mitigation = L2Init(coefficient=c)
    agent = make_agent(mitigations=[mitigation], optimizer="sgd")
    agent.optimizer.param_groups[0]["lr"] = lr
    init = [p.detach().clone() for p in agent.nets["q"].parameters()]
    _perturb(agent)
    start = [p.detach().clone() for p in agent.nets["q"].parameters()]
    for _ in range(steps):
        agent.train_step()
    for p0, ps, p in zip(init, start, agent.nets["q"].parameters(), strict=True):
        torch.testing.assert_close(p - p0, (ps - p0) * (1 - 2 * lr * c) ** steps)


def test_l2_init_abs_variant_adds_sign_of_the_displacement():
    mitigation = L2Init(coefficient=0.01, variant="abs")
    agent = make_agent(mitigations=[mitigation])
    init = agent.nets["q"].head.weight.detach().clone()
    _perturb(agent)
    agent.optimizer.zero_grad(set_to_none=True)
    mitigation.before_optimizer_step(agent)
    head = agent.nets["q"].head.weight
    torch.testing.assert_close(head.grad, 0.01 * torch.sign(head.detach() - init))


def test_l2_init_state_round_trip_and_reattach():
    first = L2Init()
    agent = make_agent(mitigations=[first])
    state = first.state_dict()
    other = make_agent(config=None, mitigations=[L2Init()])
    with torch.no_grad():
        for p in other.nets["q"].parameters():
            p.add_(1.0)
    restored = L2Init()
    restored.attach(other)  # stores other's (shifted) parameters
    restored.load_state_dict(state)
    for name, value in first.initial.items():
        assert torch.equal(restored.initial[name], value)
    # a fresh re-initialisation followed by attach stores the new start point
    agent.nets["q"].reset_parameters(torch.Generator().manual_seed(99))
    first.attach(agent)
    assert torch.equal(first.initial["q.head.weight"], agent.nets["q"].head.weight)
