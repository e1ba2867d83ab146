"""Small float64 models with losses and their dense Hessians, for exact checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class Problem:
    """A model, a batch, a loss closure and the loss as a function of the flat parameters."""

    net: nn.Sequential
    x: Tensor
    y: Tensor
    loss_of_output: Callable[[Tensor], Tensor]

    def loss_fn(self) -> Tensor:
        return self.loss_of_output(self.net(self.x))

    @property
    def params(self) -> list[Tensor]:
        return list(self.net.parameters())

    def flat_params(self) -> Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    def loss_of_flat(self, flat: Tensor) -> Tensor:
        return self.loss_of_output(self.output_of_flat(flat))

    def dense_hessian(self) -> Tensor:
        """Row by row: row i is d/dθ of the i-th gradient entry (double backward on a flat θ)."""
        flat = self.flat_params().requires_grad_(True)
        (grad,) = torch.autograd.grad(self.loss_of_flat(flat), flat, create_graph=True)
        rows = [
            torch.autograd.grad(grad[i], flat, retain_graph=True)[0] for i in range(flat.numel())
        ]
        return torch.stack(rows)

    def output_of_flat(self, flat: Tensor) -> Tensor:
        values, start = {}, 0
        for name, p in self.net.named_parameters():
            values[name] = flat[start : start + p.numel()].view(p.shape)
            start += p.numel()
        return torch.func.functional_call(self.net, values, (self.x,))

    def dense_jacobian(self) -> Tensor:
        """``∂ vec(f(θ)) / ∂θ`` (row-major flattening of the output), one backward per output entry."""
        flat = self.flat_params().requires_grad_(True)
        out = self.output_of_flat(flat).reshape(-1)
        rows = [torch.autograd.grad(out[i], flat, retain_graph=True)[0] for i in range(out.numel())]
        return torch.stack(rows)


def mlp(widths: list[int], activation: type[nn.Module] = nn.Tanh, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            layers.append(activation())
    return nn.Sequential(*layers).double()


def mse_problem(
    widths: list[int] = (5, 16, 12, 3), batch: int = 64, seed: int = 0, activation=nn.Tanh
) -> Problem:
    net = mlp(list(widths), activation, seed)
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.randn(batch, widths[0], generator=g, dtype=torch.float64)
    y = torch.randn(batch, widths[-1], generator=g, dtype=torch.float64)
    return Problem(net, x, y, lambda out: F.mse_loss(out, y))


def ce_problem(
    widths: list[int] = (6, 20, 4), batch: int = 64, seed: int = 0, activation=nn.Tanh
) -> Problem:
    net = mlp(list(widths), activation, seed)
    g = torch.Generator().manual_seed(seed + 100)
    x = torch.randn(batch, widths[0], generator=g, dtype=torch.float64)
    y = torch.randint(0, widths[-1], (batch,), generator=g)
    return Problem(net, x, y, lambda out: F.cross_entropy(out, y))
