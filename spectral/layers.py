"""Per-layer curvature: the same functions on one layer's parameters (a diagonal Hessian block)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from torch import Tensor, nn

from spectral.errors import SpectralError
from spectral.params import LossFn, as_parameter_list

R = TypeVar("R")


def layer_parameters(
    module: nn.Module, names: Sequence[str] | None = None
) -> dict[str, list[Tensor]]:
    """``{layer name: its trainable parameters}``.

    Default: every submodule that directly owns trainable parameters (e.g. each
    ``nn.Linear``), named by its qualified name. With ``names``, those submodules
    (including their children's parameters).
    """
    if names is None:
        out = {}
        for name, m in module.named_modules():
            own = [p for p in m.parameters(recurse=False) if p.requires_grad]
            if own:
                out[name or "root"] = own
        return out
    valid = [n for n, _ in module.named_modules() if n]
    out = {}
    for name in names:
        try:
            sub = module.get_submodule(name)
        except AttributeError:
            raise SpectralError(
                f"unknown layer {name!r}; valid choices: {', '.join(valid)}"
            ) from None
        out[name] = as_parameter_list(sub)
    return out


def per_layer(
    fn: Callable[..., R],
    loss_fn: LossFn,
    layers: Mapping[str, nn.Module | Sequence[Tensor]],
    **kwargs: Any,
) -> dict[str, R]:
    """``{name: fn(loss_fn, layer_params, **kwargs)}`` for each named layer.

    ``fn`` is any curvature function taking ``(loss_fn, params, ...)``, e.g.
    ``per_layer(hessian_eigenvalues, loss_fn, layer_parameters(net), k=3)``.
    """
    if not layers:
        raise SpectralError("no layers given to per_layer")
    return {name: fn(loss_fn, as_parameter_list(ps), **kwargs) for name, ps in layers.items()}
