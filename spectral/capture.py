"""Read a model's hidden activations with forward hooks that are always removed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType

import torch
from torch import Tensor, nn

from spectral.errors import SpectralError

Layers = Mapping[str, nn.Module] | Sequence[str]


def resolve_layers(module: nn.Module | None, layers: Layers) -> dict[str, nn.Module]:
    """``{name: submodule}`` from a mapping, or from names looked up in ``module``."""
    if isinstance(layers, Mapping):
        resolved = dict(layers)
    else:
        if module is None:
            raise SpectralError("layer names need the module to look them up in")
        names = [n for n, _ in module.named_modules() if n]
        resolved = {}
        for name in layers:
            try:
                resolved[name] = module.get_submodule(name)
            except AttributeError:
                raise SpectralError(
                    f"unknown layer {name!r}; valid choices: {', '.join(names)}"
                ) from None
    if not resolved:
        raise SpectralError("no layers given: pass {name: module} or a list of submodule names")
    for name, m in resolved.items():
        if not isinstance(m, nn.Module):
            raise SpectralError(f"layer {name!r} is a {type(m).__name__}, expected an nn.Module")
    return resolved


class FeatureCapture:
    """Context manager that records each layer's output (and input) on every forward pass.

    ``outputs[name]`` is the layer's output and ``inputs[name]`` its first positional input
    (for an activation module: the pre-activation), flattened to ``(batch, -1)``; the last
    forward pass wins. Tensors keep their graph unless ``detach=True``, so a caller can
    differentiate through them (effective-rank regularisation). Hooks are removed on exit.
    """

    def __init__(self, layers: Mapping[str, nn.Module], *, detach: bool = True) -> None:
        self.layers = dict(layers)
        self.detach = detach
        self.outputs: dict[str, Tensor] = {}
        self.inputs: dict[str, Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, name: str):
        def record(_module: nn.Module, args: tuple, output: Tensor) -> None:
            if not isinstance(output, Tensor):
                raise SpectralError(
                    f"layer {name!r} returned a {type(output).__name__}, expected a tensor"
                )
            out = output.detach() if self.detach else output
            self.outputs[name] = out.reshape(out.shape[0], -1) if out.ndim != 2 else out
            if args and isinstance(args[0], Tensor):
                inp = args[0].detach() if self.detach else args[0]
                self.inputs[name] = inp.reshape(inp.shape[0], -1) if inp.ndim != 2 else inp

        return record

    def __enter__(self) -> FeatureCapture:
        for name, layer in self.layers.items():
            self._handles.append(layer.register_forward_hook(self._hook(name)))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def capture_features(
    module: nn.Module, layers: Layers, inputs: Tensor, *, with_inputs: bool = False
) -> dict[str, Tensor] | tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Forward ``inputs`` through ``module`` (no grad) and return each layer's output.

    ``layers`` is ``{name: submodule}`` or a list of submodule names. With
    ``with_inputs=True`` also returns each layer's input (pre-activations for activation
    modules). The model's mode is left as it is; hooks are removed even on error.
    """
    resolved = resolve_layers(module, layers)
    with FeatureCapture(resolved) as cap, torch.no_grad():
        module(inputs)
    missing = [n for n in resolved if n not in cap.outputs]
    if missing:
        raise SpectralError(f"layers {missing} were not called in the forward pass of the module")
    return (cap.outputs, cap.inputs) if with_inputs else cap.outputs
