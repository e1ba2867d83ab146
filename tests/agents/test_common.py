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


def test_numpy_forward_matches_torch_and_follows_in_place_updates():
    import copy

    import numpy as np

    from agents._common import numpy_forward

    g = torch.Generator().manual_seed(1)
    for activation in ("relu", "tanh"):
        net = MLP(6, 3, (8, 5), activation=activation, generator=g)
        obs = torch.randn(2, 3, generator=g)
        assert np.allclose(numpy_forward(net, obs.numpy()), net(obs.reshape(1, 6))[0].detach().numpy(),
                           atol=1e-6)
        with torch.no_grad():  # an optimiser step, a reset or load_state_dict: all in place
            net.hidden[0].linear.weight.mul_(-2.0)
            net.head.bias.add_(3.0)
        assert np.allclose(numpy_forward(net, obs.numpy()), net(obs.reshape(1, 6))[0].detach().numpy(),
                           atol=1e-6)
        twin = copy.deepcopy(net)  # a copy gets its own plan, on its own storage
        with torch.no_grad():
            twin.head.bias.add_(1.0)
        assert np.allclose(numpy_forward(twin, obs.numpy()) - numpy_forward(net, obs.numpy()), 1.0,
                           atol=1e-5)
    # Unsupported layers fall back to torch (None).
    assert numpy_forward(MLP(6, 3, (8,), layer_norm=True), np.zeros(6, np.float32)) is None
    assert numpy_forward(MLP(6, 3, (8,), activation="gelu"), np.zeros(6, np.float32)) is None
