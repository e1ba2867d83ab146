"""The hook-free fast forward equals the module forward, and hooks still see training passes."""

from __future__ import annotations

import torch

from agents._common import act_forward, train_forward
from agents.networks import MLP


def test_fast_forward_matches_module_call_with_layer_norm_and_crelu():
    g = torch.Generator().manual_seed(0)
    for kwargs in ({"activation": "relu"}, {"activation": "crelu", "layer_norm": True}):
        net = MLP(6, 3, (8, 5), generator=g, **kwargs)
        x = torch.randn(4, 2, 3, generator=g)  # flattened to 6 inputs
        assert torch.allclose(act_forward(net, x), net(x))
        assert torch.allclose(train_forward(net, x), net(x))


def test_train_forward_goes_through_hooks_when_someone_listens():
    net = MLP(3, 2, (4,))
    seen = []
    handle = net.hidden[0].act.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    train_forward(net, torch.zeros(5, 3))
    act_forward(net, torch.zeros(5, 3))  # acting never triggers hooks
    handle.remove()
    train_forward(net, torch.zeros(5, 3))
    assert seen == [torch.Size([5, 4])]
