"""Feature capture with forward hooks that are always removed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spectral import FeatureCapture, SpectralError, capture_features
from tests.spectral.helpers import mlp


def _hook_count(net: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in net.modules())


def test_captures_outputs_and_inputs_of_named_layers():
    net = mlp([4, 8, 6, 2], nn.ReLU)
    x = torch.randn(10, 4, dtype=torch.float64)
    outputs, inputs = capture_features(net, ["1", "3"], x, with_inputs=True)
    pre1 = net[0](x)
    torch.testing.assert_close(inputs["1"], pre1)
    torch.testing.assert_close(outputs["1"], torch.relu(pre1))
    torch.testing.assert_close(outputs["3"], torch.relu(net[2](torch.relu(pre1))))
    assert _hook_count(net) == 0
    assert not outputs["1"].requires_grad


def test_mapping_of_modules_and_graph_kept_when_asked():
    net = mlp([4, 8, 2], nn.Tanh)
    x = torch.randn(5, 4, dtype=torch.float64)
    with FeatureCapture({"h": net[1]}, detach=False) as cap:
        net(x)
    assert cap.outputs["h"].requires_grad  # usable for a differentiable regulariser
    assert _hook_count(net) == 0


def test_hooks_removed_on_error_and_bad_names():
    net = mlp([4, 8, 2], nn.Tanh)
    with pytest.raises(RuntimeError):
        capture_features(net, ["1"], torch.randn(5, 3, dtype=torch.float64))  # wrong input width
    assert _hook_count(net) == 0
    with pytest.raises(SpectralError, match="unknown layer 'hidden.9'"):
        capture_features(net, ["hidden.9"], torch.randn(5, 4, dtype=torch.float64))
    unused = nn.ReLU()
    with pytest.raises(SpectralError, match="not called"):
        capture_features(net, {"u": unused}, torch.randn(5, 4, dtype=torch.float64))
