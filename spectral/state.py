"""Snapshot and restore everything a probe could disturb.

A probe promises: parameters (values), ``.grad`` fields, ``requires_grad`` flags, buffers
(e.g. BatchNorm running statistics a training-mode forward would update), train/eval
modes and the global torch RNG state (CPU and the CUDA devices in use) are exactly as
before. Probes avoid touching them in the first place; this is the safety net, and cheap
(a copy of the parameters).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def preserved_state(module: nn.Module) -> Iterator[None]:
    """Restore ``module``'s parameters, grads, flags, buffers, modes and the RNG on exit."""
    params = list(module.parameters())
    values = [p.detach().clone() for p in params]
    # Keep the .grad tensor objects themselves (an optimiser may hold them) and their values.
    grads = [(p.grad, None if p.grad is None else p.grad.detach().clone()) for p in params]
    flags = [p.requires_grad for p in params]
    buffers = [(b, b.detach().clone()) for b in module.buffers()]
    modes = [(m, m.training) for m in module.modules()]
    cuda_devices = sorted({t.device.index or 0 for t in values if t.device.type == "cuda"})
    with torch.random.fork_rng(devices=cuda_devices):
        try:
            yield
        finally:
            with torch.no_grad():
                for p, v, (grad, grad_value), f in zip(params, values, grads, flags, strict=True):
                    _restore(p, v)
                    if grad is not None:
                        _restore(grad, grad_value)
                    if p.grad is not grad:
                        p.grad = grad
                    p.requires_grad_(f)
                for b, v in buffers:
                    _restore(b, v)
            for m, mode in modes:
                m.training = mode


def _restore(tensor: torch.Tensor, value: torch.Tensor) -> None:
    # Copy only when changed, so an untouched tensor keeps its autograd version counter.
    if not torch.equal(tensor, value):
        tensor.copy_(value)
