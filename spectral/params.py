"""Parameter lists, flat vectors and loss evaluation shared by the curvature code.

A *parameter list* is an ordered list of distinct leaf tensors that require grad (a whole
network's or one layer's). Curvature operators act on *flat* vectors: the concatenation
of every parameter's entries in list order, so that ``flatten(unflatten(v, params)) == v``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from spectral.errors import SpectralError

LossFn = Callable[[], Tensor]
Params = Iterable[Tensor] | nn.Module


def as_parameter_list(params: Params) -> list[Tensor]:
    """Validate ``params`` and return them as a list.

    An ``nn.Module`` stands for its parameters that require grad. Raises
    :class:`SpectralError` for an empty list, a non-tensor, a tensor that does not require
    grad, or the same tensor twice (it would count its curvature twice).
    """
    if isinstance(params, nn.Module):
        plist = [p for p in params.parameters() if p.requires_grad]
    elif isinstance(params, Tensor):
        plist = [params]
    else:
        plist = list(params)
    if not plist:
        raise SpectralError(
            "empty parameter list: pass a non-empty sequence of tensors that require grad "
            "(e.g. list(module.parameters()))"
        )
    seen: set[int] = set()
    for i, p in enumerate(plist):
        if not isinstance(p, Tensor):
            raise SpectralError(f"parameter {i} is a {type(p).__name__}, expected a torch.Tensor")
        if not p.requires_grad:
            raise SpectralError(
                f"parameter {i} (shape {tuple(p.shape)}) does not require grad; "
                "curvature is only defined w.r.t. tensors with requires_grad=True"
            )
        if id(p) in seen:
            raise SpectralError(f"parameter {i} (shape {tuple(p.shape)}) appears twice in the list")
        seen.add(id(p))
    return plist


def num_entries(params: Sequence[Tensor]) -> int:
    """Total number of scalar entries, i.e. the dimension of the flat vector space."""
    return sum(p.numel() for p in params)


def flatten(tensors: Sequence[Tensor], dtype: torch.dtype | None = None) -> Tensor:
    """Concatenate ``tensors`` into one flat vector (optionally cast to ``dtype``)."""
    return torch.cat([t.reshape(-1).to(dtype) if dtype else t.reshape(-1) for t in tensors])


def unflatten(vector: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Split a flat vector into tensors shaped, typed and placed like ``like``."""
    if vector.ndim != 1 or vector.numel() != num_entries(like):
        raise SpectralError(
            f"vector of shape {tuple(vector.shape)} does not match the parameters' "
            f"{num_entries(like)} entries"
        )
    out, start = [], 0
    for p in like:
        n = p.numel()
        out.append(vector[start : start + n].view(p.shape).to(device=p.device, dtype=p.dtype))
        start += n
    return out


def evaluate_scalar_loss(loss_fn: LossFn) -> Tensor:
    """Call ``loss_fn()`` and check that it returned a 0-dim tensor that carries a graph."""
    if not callable(loss_fn):
        raise SpectralError(
            f"loss_fn must be a callable () -> scalar tensor, got {type(loss_fn).__name__}"
        )
    loss = loss_fn()
    if not isinstance(loss, Tensor):
        raise SpectralError(
            f"loss_fn returned a {type(loss).__name__}, expected a scalar torch.Tensor"
        )
    if loss.ndim != 0:
        raise SpectralError(
            f"loss_fn returned a tensor of shape {tuple(loss.shape)}; it must be a scalar "
            "(0-dim) tensor -- reduce it with .mean() or .sum()"
        )
    if not loss.requires_grad:
        raise SpectralError(
            "the loss does not depend on any parameter that requires grad "
            "(was loss_fn evaluated under torch.no_grad()?)"
        )
    return loss


def gradients(loss: Tensor, params: Sequence[Tensor], *, create_graph: bool) -> list[Tensor]:
    """``d loss / d params`` with zeros for parameters the loss does not depend on.

    Uses :func:`torch.autograd.grad`, so no ``.grad`` field is read or written.
    """
    grads = torch.autograd.grad(loss, params, create_graph=create_graph, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def zeros_for_none(grads: Sequence[Tensor | None], like: Sequence[Tensor]) -> list[Tensor]:
    """Replace ``None`` (an unused input of ``autograd.grad``) by zeros shaped like ``like``."""
    return [torch.zeros_like(p) if g is None else g for p, g in zip(like, grads, strict=True)]
