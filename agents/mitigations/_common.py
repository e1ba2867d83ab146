"""Helpers shared by the mitigations (one place for each piece of bookkeeping).

* validation of hyperparameters and config fields (errors name the value and the choices);
* the agent's networks, checked to be :class:`~agents.networks.MLP`;
* a private ``torch.Generator`` seeded from the agent seed, so that re-initialisations are
  reproducible and never consume the global RNG (a probe or a logging call cannot change
  what a mitigation draws);
* :class:`HiddenLayer`: one hidden block seen as units, with the incoming parameters of a
  unit (its row of the linear layer, plus its LayerNorm gain and bias) and its outgoing
  columns in the next linear layer (two columns per unit with CReLU);
* Adam state surgery for selected rows/columns of a parameter;
* feature capture on ``MLP.layers()`` with :class:`spectral.FeatureCapture` (the hooks the
  probes use).
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from agents._common import to_device
from agents.base import AgentError, Batch
from agents.networks import MLP, initialize_linear
from agents.validation import in_range, range_text
from spectral import FeatureCapture

# --------------------------------------------------------------------------- validation


def check_number(
    method: str,
    param: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> None:
    """Raise :class:`AgentError` unless ``value`` is a finite number in the given interval
    (:func:`agents.validation.in_range`)."""
    bounds = dict(low=low, high=high, low_open=low_open, high_open=high_open, integer=integer)
    if not in_range(value, **bounds):
        raise AgentError(f"mitigation {method!r}: invalid {param}={value!r}; "
                         f"valid: {range_text(**bounds)}")


def check_option(method: str, param: str, value: Any, choices: tuple[Any, ...]) -> None:
    if value not in choices:
        raise AgentError(
            f"mitigation {method!r}: invalid {param}={value!r}; valid choices: "
            + ", ".join(map(repr, choices))
        )


def check_betas(method: str, betas: Any) -> tuple[float, float]:
    """Validate an Adam ``(beta1, beta2)`` pair (a list from TOML is accepted)."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise AgentError(
            f"mitigation {method!r}: invalid adam_betas={betas!r}; valid: two numbers in [0, 1)"
        )
    for b in betas:
        check_number(method, "adam_betas", b, low=0.0, high=1.0, high_open=True)
    return (float(betas[0]), float(betas[1]))


def replace_config(method: str, config: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` that names the missing field if the agent config lacks one."""
    if not dataclasses.is_dataclass(config):
        raise AgentError(
            f"mitigation {method!r} needs a dataclass agent config, got {type(config).__name__}"
        )
    names = {f.name for f in dataclasses.fields(config)}
    for key in changes:
        if key not in names:
            raise AgentError(
                f"mitigation {method!r} sets config field {key!r}, which {type(config).__name__} "
                f"does not have; its fields: {', '.join(sorted(names))}"
            )
    return dataclasses.replace(config, **changes)


# --------------------------------------------------------------------------- networks


def agent_networks(method: str, agent: Any) -> dict[str, MLP]:
    """The agent's trained networks (``{"q": ...}`` or ``{"actor": ..., "critic": ...}``)."""
    nets = dict(agent.networks())
    for name, net in nets.items():
        if not isinstance(net, MLP):
            raise AgentError(
                f"mitigation {method!r} works on agents.networks.MLP; network {name!r} is a "
                f"{type(net).__name__}"
            )
    return nets


def chosen_networks(method: str, agent: Any, networks: str | Sequence[str]) -> dict[str, MLP]:
    """The agent's networks a mitigation acts on: all of them (``"all"``) or the named ones
    (an unknown name raises, listing the agent's networks)."""
    nets = agent_networks(method, agent)
    if networks == "all":
        return nets
    for name in networks:
        if name not in nets:
            raise AgentError(f"mitigation {method!r}: the agent has no network {name!r}; "
                             "its networks: " + ", ".join(nets))
    return {name: nets[name] for name in networks}


def require_hidden_layers(method: str, nets: Mapping[str, MLP]) -> None:
    """Raise unless every network has at least one hidden layer (the method acts on units)."""
    for name, net in nets.items():
        if len(net.hidden) == 0:
            raise AgentError(
                f"mitigation {method!r} does not apply to network {name!r}: it has no hidden "
                f"layers (widths={net.widths}); give it hidden widths or drop {method!r}"
            )


def named_parameters(nets: Mapping[str, nn.Module]) -> Iterator[tuple[str, nn.Parameter]]:
    """``("actor.hidden.0.linear.weight", param)``: qualified names across networks."""
    for net_name, net in nets.items():
        for name, param in net.named_parameters():
            if param.requires_grad:
                yield f"{net_name}.{name}", param


def make_generator(agent: Any, method: str) -> torch.Generator:
    """A CPU generator seeded from the agent seed and the method name (not the global RNG)."""
    seed = int(getattr(getattr(agent, "config", None), "seed", 0) or 0)
    generator = torch.Generator()
    generator.manual_seed((seed * 1_000_003 + zlib.crc32(method.encode())) % (2**63))
    return generator


def fresh_linear(
    layer: nn.Linear, scheme: str, gain: float, generator: torch.Generator
) -> nn.Linear:
    """A new linear layer of ``layer``'s shape drawn from the initial distribution.

    ``skip_init`` avoids nn.Linear's own initialisation, which would draw from the global RNG.
    """
    new = nn.utils.skip_init(
        nn.Linear, layer.in_features, layer.out_features, bias=layer.bias is not None
    )
    initialize_linear(new, scheme, gain, generator)
    return new.to(device=layer.weight.device, dtype=layer.weight.dtype)


def network_input(net: MLP, batch: Batch | None, method: str) -> Tensor:
    """``batch["obs"]`` as a float tensor on the network's device."""
    if batch is None or "obs" not in batch:
        raise AgentError(f"mitigation {method!r} needs an update batch with key 'obs'")
    param = next(net.parameters())
    return to_device(batch["obs"], param.device, param.dtype)


def capture_features(net: MLP, inputs: Tensor) -> dict[str, Tensor]:
    """Forward ``inputs`` and return each hidden layer's post-activation features.

    Gradients flow through the returned tensors if grad mode is on (ER differentiates them).
    """
    with FeatureCapture(net.layers(), detach=False) as capture:
        net(inputs)
    return capture.outputs


@dataclass
class HiddenLayer:
    """Hidden block ``index`` of a network, seen as ``width`` units.

    Unit ``j`` owns row ``j`` of ``block.linear`` (weight and bias) and entry ``j`` of the
    LayerNorm gain/bias (both belong with its incoming weights), and column ``j`` of the
    next linear layer -- plus column ``j + width`` with CReLU, whose block outputs
    ``[relu(x), relu(-x)]`` and so doubles the next layer's fan-in.
    """

    network: str
    index: int
    net: MLP

    @property
    def name(self) -> str:
        return f"hidden.{self.index}"

    @property
    def key(self) -> str:
        return f"{self.network}.hidden.{self.index}"

    @property
    def block(self) -> nn.Module:
        return self.net.hidden[self.index]

    @property
    def width(self) -> int:
        return self.block.linear.out_features

    @property
    def crelu(self) -> bool:
        return self.net.activation == "crelu"

    @property
    def outgoing(self) -> nn.Linear:
        last = self.index == len(self.net.hidden) - 1
        return self.net.head if last else self.net.hidden[self.index + 1].linear

    def incoming_params(self) -> list[nn.Parameter]:
        """Parameters whose dim 0 indexes this layer's units."""
        params = [self.block.linear.weight]
        if self.block.linear.bias is not None:
            params.append(self.block.linear.bias)
        if isinstance(self.block.norm, nn.LayerNorm):
            params.extend(
                p for p in (self.block.norm.weight, self.block.norm.bias) if p is not None
            )
        return params

    def outgoing_columns(self, units: Tensor) -> Tensor:
        """Columns of the next layer's weight fed by ``units``."""
        return torch.cat([units, units + self.width]) if self.crelu else units

    def per_unit(self, feature_stat: Tensor) -> Tensor:
        """Fold a per-feature statistic (length ``width`` or ``2*width``) onto units (sum)."""
        if self.crelu:
            return feature_stat[: self.width] + feature_stat[self.width :]
        return feature_stat


def hidden_layers(nets: Mapping[str, MLP]) -> list[HiddenLayer]:
    return [HiddenLayer(name, i, net) for name, net in nets.items() for i in range(len(net.hidden))]


# --------------------------------------------------------------------------- surgery


def reset_adam_state(
    optimizer: torch.optim.Optimizer, param: Tensor, index: Tensor | None = None, dim: int = 0
) -> None:
    """Zero Adam's moments of ``param`` (all of it, or the slices ``index`` along ``dim``).

    A whole-parameter reset also zeroes the step count (bias correction restarts). Adam's
    ``step`` is one number per tensor, so a partial reset leaves it: the zeroed moments then
    regrow from 0 without bias correction, which is what ReDo and CBP's reference code do.
    """
    state = optimizer.state.get(param)
    if not state:
        return  # no step taken yet: nothing to reset
    for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
        if key in state and torch.is_tensor(state[key]):
            if index is None:
                state[key].zero_()
            else:
                state[key].index_fill_(dim, index.to(state[key].device), 0.0)
    if index is None and "step" in state:
        if torch.is_tensor(state["step"]):
            state["step"].zero_()
        else:
            state["step"] = 0


def reinitialize_units(
    layer: HiddenLayer,
    units: Tensor,
    generator: torch.Generator,
    optimizer: torch.optim.Optimizer | None,
) -> None:
    """Recycle ``units`` of ``layer`` (ReDo / CBP).

    Incoming weights and bias are redrawn from the network's initial distribution, the
    units' LayerNorm gain/bias go back to 1/0, the outgoing weights are zeroed (so the
    network's output is unchanged at the moment of recycling), and Adam's moments of exactly
    those rows and columns are zeroed.
    """
    if units.numel() == 0:
        return
    units = units.to(torch.long)
    block = layer.block
    fresh = fresh_linear(block.linear, layer.net.init, layer.net.hidden_gain, generator)
    columns = layer.outgoing_columns(units)
    with torch.no_grad():
        block.linear.weight[units] = fresh.weight[units]
        if block.linear.bias is not None:
            block.linear.bias[units] = fresh.bias[units]
        if isinstance(block.norm, nn.LayerNorm):
            if block.norm.weight is not None:
                block.norm.weight[units] = 1.0
            if block.norm.bias is not None:
                block.norm.bias[units] = 0.0
        layer.outgoing.weight[:, columns] = 0.0
    if optimizer is not None:
        for param in layer.incoming_params():
            reset_adam_state(optimizer, param, units, dim=0)
        reset_adam_state(optimizer, layer.outgoing.weight, columns, dim=1)


def generator_state(generator: torch.Generator) -> Tensor:
    return generator.get_state().clone()
