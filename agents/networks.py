"""Networks with stable, addressable hidden layers.

Every network is an :class:`MLP`: ``Flatten -> [Linear -> (LayerNorm) -> activation] * L ->
Linear head``. The hidden blocks live in ``mlp.hidden`` (an ``nn.ModuleList``) so a block
is addressed as ``hidden.0``, ``hidden.1``... and the *output of its activation module*
is the post-activation feature matrix that probes and mitigations read. MiniGrid
observations (egocentric image or one-hot) are flattened by the first module, so the same
network serves vector and grid observations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from agents.base import AgentError, check_choice


class CReLU(nn.Module):
    """Concatenated ReLU (Abbas et al. 2023): ``[relu(x), relu(-x)]``, doubling the width."""

    features_per_unit = 2  # unit i owns features i and i + width (spectral's unit statistics)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([torch.relu(x), torch.relu(-x)], dim=-1)


ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "crelu": CReLU,
}
INITS = ("default", "orthogonal")


def initialize_linear(
    layer: nn.Linear,
    scheme: str = "default",
    gain: float = math.sqrt(2),
    generator: torch.Generator | None = None,
) -> None:
    """(Re-)draw a linear layer's parameters from its initial distribution, in place.

    ``default`` is PyTorch's ``nn.Linear`` init (kaiming-uniform(a=sqrt(5)) weights, i.e.
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the same bound for biases); ``orthogonal`` is
    CleanRL's PPO ``layer_init`` (orthogonal weights with ``gain``, zero bias).
    ``generator`` makes the draw reproducible without touching the global RNG; the values
    are drawn on the generator's device and copied into ``layer`` (on any device).
    """
    check_choice("init scheme", scheme, INITS)
    with torch.no_grad():
        if scheme == "default":
            bound = 1.0 / math.sqrt(layer.in_features)
            layer.weight.copy_(_uniform(layer.weight, bound, generator))
            if layer.bias is not None:
                layer.bias.copy_(_uniform(layer.bias, bound, generator))
        else:
            _orthogonal_(layer.weight, gain, generator)
            if layer.bias is not None:
                layer.bias.zero_()


def _draw_device(like: Tensor, generator: torch.Generator | None) -> torch.device:
    # Draws happen where the generator lives (a CPU generator gives a CUDA network the
    # values it gives a CPU one); without a generator, on the tensor's own device.
    return like.device if generator is None else generator.device


def _uniform(like: Tensor, bound: float, generator: torch.Generator | None) -> Tensor:
    """U(-bound, bound) of ``like``'s shape and dtype, drawn on the generator's device."""
    out = torch.empty(like.shape, dtype=like.dtype, device=_draw_device(like, generator))
    return out.uniform_(-bound, bound, generator=generator)


def _orthogonal_(weight: Tensor, gain: float, generator: torch.Generator | None) -> None:
    # torch.nn.init.orthogonal_ takes a generator only in recent versions; do it by hand.
    rows, cols = weight.shape
    flat = torch.randn(max(rows, cols), min(rows, cols), generator=generator, dtype=weight.dtype,
                       device=_draw_device(weight, generator))
    q, r = torch.linalg.qr(flat)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    if rows < cols:
        q = q.T
    weight.copy_(gain * q[:rows, :cols])


class HiddenBlock(nn.Module):
    """``linear -> norm -> act``. ``act``'s output is the block's feature vector."""

    def __init__(self, in_dim: int, width: int, activation: str, layer_norm: bool,
                 device: torch.device | None = None) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, width, device=device)
        self.norm: nn.Module = nn.LayerNorm(width, device=device) if layer_norm else nn.Identity()
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.linear(x)))


class MLP(nn.Module):
    """Multi-layer perceptron with named hidden blocks and a linear head.

    Args:
        in_dim: flattened input size.
        out_dim: output size (actions for Q / logits, 1 for a value).
        widths: hidden widths, e.g. ``(120, 84)``; may be empty (a linear model).
        activation: one of :data:`ACTIVATIONS` (``relu`` default: dormant units are
            defined for it; ``crelu`` doubles each block's output width).
        layer_norm: LayerNorm between each hidden linear and its activation.
        init: ``default`` (PyTorch) or ``orthogonal`` (CleanRL PPO).
        hidden_gain / head_gain: orthogonal gains (ignored by ``default``).
        generator: RNG for the initial draw (reproducible, global RNG untouched; a CPU
            generator initialises a network on any device to the same values).
        device: where the parameters live (None: torch's default device).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        widths: Sequence[int] = (64, 64),
        activation: str = "relu",
        layer_norm: bool = False,
        init: str = "default",
        hidden_gain: float = math.sqrt(2),
        head_gain: float = 1.0,
        generator: torch.Generator | None = None,
        device: torch.device | None = None,
    ) -> None:
        super().__init__()
        check_choice("activation", activation, tuple(ACTIVATIONS))
        check_choice("init scheme", init, INITS)
        if in_dim <= 0 or out_dim <= 0:
            raise AgentError(f"network input/output sizes must be positive, got {in_dim}/{out_dim}")
        widths = tuple(int(w) for w in widths)
        if any(w <= 0 for w in widths):
            raise AgentError(f"hidden widths must be positive integers, got {widths}")
        self.widths = widths
        self.activation = activation
        self.layer_norm = layer_norm
        self.init = init
        self.hidden_gain = hidden_gain
        self.head_gain = head_gain
        self.flatten = nn.Flatten(start_dim=1)
        blocks = []
        dim = in_dim
        for w in widths:
            blocks.append(HiddenBlock(dim, w, activation, layer_norm, device))
            dim = 2 * w if activation == "crelu" else w
        self.hidden = nn.ModuleList(blocks)
        self.head = nn.Linear(dim, out_dim, device=device)
        self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw every parameter from the initial distribution (LayerNorm to 1/0)."""
        for i in range(len(self.hidden)):
            self.reset_block(i, generator)
        self.reset_head(generator)

    def reset_block(self, i: int, generator: torch.Generator | None = None) -> None:
        block = self.hidden[i]
        initialize_linear(block.linear, self.init, self.hidden_gain, generator)
        if isinstance(block.norm, nn.LayerNorm):
            block.norm.reset_parameters()

    def reset_head(self, generator: torch.Generator | None = None) -> None:
        initialize_linear(self.head, self.init, self.head_gain, generator)

    def layers(self) -> dict[str, nn.Module]:
        """Named hidden layers: ``{"hidden.i": activation module}`` (outputs = features)."""
        return {f"hidden.{i}": block.act for i, block in enumerate(self.hidden)}

    def forward(self, x: Tensor) -> Tensor:
        x = self.flatten(x)
        for block in self.hidden:
            x = block(x)
        return self.head(x)
