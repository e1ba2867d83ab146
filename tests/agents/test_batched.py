"""StackedMLP: member views alias the stacked storage; every speed path equals the modules."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from agents.base import AgentError
from agents.batched import StackedMLP
from agents.networks import MLP


def members(k=3, seed=0, **kwargs):
    g = torch.Generator().manual_seed(seed)
    return [MLP(6, 3, (8, 5), generator=g, **kwargs) for _ in range(k)]


@pytest.mark.parametrize("kwargs", [{"activation": "relu"}, {"activation": "tanh"},
                                    {"activation": "crelu", "layer_norm": True},
                                    {"activation": "gelu"}])
def test_forward_paths_equal_each_member_module(kwargs):
    nets = members(**kwargs)
    plain = [copy.deepcopy(n) for n in nets]
    stacked = StackedMLP(nets)
    x = torch.randn(3, 4, 2, 3, generator=torch.Generator().manual_seed(1))
    expected = torch.stack([n(x[k]) for k, n in enumerate(plain)])
    assert torch.allclose(stacked.forward(x), expected, atol=1e-6)
    assert torch.allclose(stacked.inference(x), expected, atol=1e-6)
    assert not stacked.inference(x).requires_grad  # in grad mode: no graph to the parameters
    for k in range(3):
        assert torch.allclose(stacked.member_inference(k, x[k]), expected[k], atol=1e-6)
        assert not stacked.member_inference(k, x[k]).requires_grad
        assert torch.allclose(nets[k](x[k]), expected[k], atol=1e-6)  # the views themselves
    obs = x[:, 0].numpy()
    out = stacked.numpy_forward(obs)
    if kwargs.get("activation") in ("relu", "tanh") and not kwargs.get("layer_norm"):
        assert np.allclose(out, expected[:, 0].detach().numpy(), atol=1e-6)
        assert np.allclose(stacked.numpy_forward(obs[2], member=2), expected[2, 0].detach().numpy(),
                           atol=1e-6)
    else:
        assert out is None


def test_member_views_alias_the_stacked_storage_both_ways():
    nets = members()
    stacked = StackedMLP(nets)
    with torch.no_grad():
        nets[1].head.bias.add_(5.0)  # a mitigation's in-place change of one member
        nets[2].reset_parameters(torch.Generator().manual_seed(9))
        stacked.param("hidden.0.linear.weight")[0].zero_()  # an optimiser step on the stack
    assert torch.equal(stacked.param("head.bias")[1], nets[1].head.bias)
    assert torch.equal(stacked.param("hidden.1.linear.weight")[2], nets[2].hidden[1].linear.weight)
    assert nets[0].hidden[0].linear.weight.abs().sum() == 0
    assert stacked.param("head.bias")[0].abs().max() < 2  # other members untouched
    # the no-grad paths' operands (built once) see every in-place change
    nets[0].load_state_dict(copy.deepcopy(nets[2]).state_dict())
    x = torch.randn(3, 4, 6, generator=torch.Generator().manual_seed(2))
    expected = torch.stack([net(x[k]) for k, net in enumerate(nets)]).detach()
    assert torch.allclose(stacked.member_inference(0, x[2]), expected[2], atol=1e-6)  # loaded
    assert torch.allclose(stacked.inference(x), expected, atol=1e-6)
    with torch.no_grad():
        out, _ = stacked.forward_saving(x)
    assert torch.allclose(out, expected, atol=1e-6)
    twin = copy.deepcopy(nets[0])  # a copy is independent storage
    with torch.no_grad():
        twin.head.bias.add_(1.0)
    assert not torch.equal(twin.head.bias, nets[0].head.bias)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_closed_form_gradient_equals_autograd_per_member(activation):
    nets = members(activation=activation)
    plain = [copy.deepcopy(n) for n in nets]
    stacked = StackedMLP(nets)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 7, 6, generator=g)
    weights = torch.randn(3, 7, 3, generator=g)  # loss = sum(net_k(x_k) * weights_k)
    assert stacked.closed_form_ready()
    with torch.no_grad():
        out, inputs = stacked.forward_saving(x)
        stacked.backward_into_grad(inputs, weights)
    for k, net in enumerate(plain):
        (net(x[k]) * weights[k]).sum().backward()
        assert torch.allclose(out[k], net(x[k]), atol=1e-6)
        for p, (name, q) in zip(stacked.params, net.named_parameters(), strict=True):
            assert torch.allclose(p.grad[k], q.grad, atol=1e-5), (activation, name)


def test_autograd_and_member_by_member_backward_agree_and_hooks_see_member_features():
    nets = members()
    stacked = StackedMLP(nets)
    x = torch.randn(3, 5, 6, generator=torch.Generator().manual_seed(3))
    stacked.forward(x).square().sum().backward()
    stacked.finish_backward()
    batched = [p.grad.clone() for p in stacked.params]
    seen = []
    handle = nets[1].hidden[0].act.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    assert stacked.hooked() and not stacked.closed_form_ready()
    stacked.clear_grads()
    stacked.forward(x).square().sum().backward()
    stacked.finish_backward()
    handle.remove()
    assert len(seen) == 1 and seen[0].shape == (5, 8)
    assert torch.allclose(seen[0], torch.relu(nets[1].hidden[0].linear(x[1])))
    for a, b in zip(batched, stacked.params, strict=True):
        assert torch.allclose(a, b.grad, atol=1e-6)
    stacked.link_grads(2)  # a hook editing member 2's gradient edits the stacked one
    nets[2].head.weight.grad.add_(1.0)
    assert torch.allclose(stacked.param("head.weight").grad[2], batched[-2][2] + 1.0)


@pytest.mark.parametrize("kwargs", [{"activation": "tanh"}, {"activation": "relu", "layer_norm": True}])
def test_a_population_of_one_runs_its_member_and_its_gradients_reach_the_stack(kwargs):
    (net,) = members(k=1, **kwargs)
    plain = copy.deepcopy(net)
    stacked = StackedMLP([net])
    x = torch.randn(1, 5, 6, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(stacked.inference(x)[0], plain(x[0]), atol=1e-6)
    for _ in range(2):  # a second step: gradients cleared, not accumulated
        stacked.clear_grads()
        (stacked.forward(x) ** 2).sum().backward()
        stacked.finish_backward()
        plain.zero_grad()
        (plain(x[0]) ** 2).sum().backward()
        for p, (name, q) in zip(stacked.params, plain.named_parameters(), strict=True):
            assert p.grad.shape == p.shape and torch.allclose(p.grad[0], q.grad, atol=1e-6), name
        with torch.no_grad():  # a step on the stack is a step of the member, and back
            for p, q in zip(stacked.params, plain.parameters(), strict=True):
                p.sub_(0.1 * p.grad)
                q.sub_(0.1 * q.grad)
    assert torch.allclose(net(x[0]), plain(x[0]), atol=1e-6)
    assert torch.allclose(stacked.forward(x)[0], plain(x[0]), atol=1e-6)
    # its minibatches without the member dimension: the same outputs, gradients to the stack
    stacked.clear_grads()
    out = stacked.single_forward(x[0])
    assert out.shape == (5, 3) and torch.allclose(out, plain(x[0]), atol=1e-6)
    out.square().sum().backward()
    stacked.finish_backward()
    assert torch.allclose(stacked.param("head.weight").grad[0], net.head.weight.grad)
    with pytest.raises(AgentError, match="population of one; this one has 3"):
        StackedMLP(members()).single_forward(x[0])


def test_closed_form_is_refused_where_it_would_be_wrong():
    assert not StackedMLP(members(layer_norm=True)).closed_form_ready()
    assert not StackedMLP(members(activation="crelu")).closed_form_ready()
    nets = members()
    stacked = StackedMLP(nets)
    assert stacked.closed_form_ready()
    handle = nets[2].head.weight.register_hook(lambda g: 2 * g)  # autograd would call it
    assert not stacked.closed_form_ready()
    handle.remove()
    handle = nets[0].hidden[0].register_full_backward_hook(lambda m, gi, go: None)
    assert not stacked.closed_form_ready()
    handle.remove()
    handle = torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: None)
    assert not stacked.closed_form_ready()  # a global hook, registered after construction
    handle.remove()
    assert stacked.closed_form_ready()
