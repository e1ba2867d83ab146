"""Induced collapse: an ORACLE PERTURBATION that silences a dose of hidden units at each switch.

A positive control for the spectral probes (issue 26), not a mitigation: at every task switch
it makes a chosen fraction ``dose`` of each hidden layer's units inactive on the *new task's
fixed probe data* (experiments/probe_data.py), so the collapse is causal, dose-controlled and
measured on the very data the fixed-data probes see.

* ReLU: *dead*. The unit's pre-activation ``z_j(x)`` is shifted by ``-(max_x z_j(x) + margin)``
  over the fixed inputs, so ``z_j(x) <= -margin < 0`` on every one of them: the unit outputs
  0 and passes no gradient there. By the spectral-collapse paper's Theorem 6.2 the unit's
  incoming weights and its outgoing column then drop out of the loss Hessian on those data.
* tanh: *saturated*. The shift puts ``|z_j(x)| >= saturation_bound + margin`` on every fixed
  input (towards the side of the unit's mean pre-activation, the smaller shift), where
  ``tanh' < 1 - tanh(bound)^2`` (0.0099 at the default bound 3): the unit is nearly a
  constant and its incoming weights nearly stop contributing. The same bound is the
  probe's ``ProbeConfig.saturation_bound`` (``spectral.saturated_fraction``).

The shift is added to the unit's bias: the LayerNorm bias when the block has one (it acts
after normalisation, so the shift is exact), else the linear layer's bias. The dose is the
layer's inactive fraction *after* the intervention: units are taken in a seeded random order
(a function of agent seed, new task, network and layer), skipping units already inactive,
until ``round(dose * width)`` units are inactive (a layer already past the dose is left
alone). So a larger dose silences a superset of a smaller one's units on the same network,
and natural collapse (including the units that die because the layer below lost units) counts
towards the dose. Layers are processed in order, each on the features the already-perturbed
layers below it produce.
Nothing else changes (weights, Adam moments, the DQN target network): whether the units
come back is the optimiser's business. ``dose = 0`` changes nothing at all.

The runner hands the perturbation the new task's fixed observations (``set_task_data``)
just before ``on_task_switch``; it is labelled in ``shifts.jsonl`` (``at_shift.
oracle_perturbations`` with the units silenced per layer) and in the report's arm roles.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from agents.base import AgentError, Mitigation
from agents.mitigations._common import check_number, chosen_networks, require_hidden_layers
from agents.networks import MLP

__all__ = ["InducedCollapse", "SUPPORTED_ACTIVATIONS", "collapse_layer", "unit_order"]

SUPPORTED_ACTIVATIONS = ("relu", "tanh")


def unit_order(width: int, key: str) -> Tensor:
    """A fixed random order of ``width`` units, a function of ``key`` only."""
    generator = torch.Generator().manual_seed(zlib.crc32(("induced-collapse:" + key).encode()))
    return torch.randperm(width, generator=generator)


def _bias_of(block: nn.Module) -> Tensor:
    """The parameter whose entry j is added to unit j's pre-activation."""
    norm = block.norm
    if isinstance(norm, nn.LayerNorm):
        if norm.bias is None:
            raise AgentError("induced_collapse needs a LayerNorm with a bias (elementwise_affine)")
        return norm.bias
    if block.linear.bias is None:
        raise AgentError("induced_collapse needs hidden linear layers with a bias")
    return block.linear.bias


def collapse_layer(block: nn.Module, activation: str, preactivations: Tensor, units: Tensor,
                   *, margin: float, saturation_bound: float) -> None:
    """Shift the bias of ``units`` so they are dead (ReLU) / saturated (tanh) on every row of
    ``preactivations`` (``(batch, width)``, the block's pre-activations on the fixed data)."""
    if units.numel() == 0:
        return
    z = preactivations[:, units]
    if activation == "relu":
        shift = -(z.max(dim=0).values + margin)
    else:
        up = saturation_bound + margin - z.min(dim=0).values      # z + up >= bound + margin
        down = -(saturation_bound + margin) - z.max(dim=0).values  # z + down <= -(bound + margin)
        shift = torch.where(z.mean(dim=0) >= 0, up, down)
    bias = _bias_of(block)
    with torch.no_grad():
        bias[units.to(bias.device)] += shift.to(bias.dtype)


@dataclass
class InducedCollapse(Mitigation):
    """ORACLE PERTURBATION: at each switch silence ``dose`` of every hidden layer's units on the new task's fixed data.

    ReLU units are made dead, tanh units saturated (see the module docstring). A positive
    control for the probes, never a mitigation.

    Attributes:
        dose: fraction of each hidden layer's units inactive on the new task's fixed data
            after every switch, in [0, 1)
            (the issue's doses: 0, 0.25, 0.5, 0.75, 0.9).
        margin: how far past the boundary (0 for ReLU, ``saturation_bound`` for tanh) the
            pre-activation is pushed on the least-affected fixed input (default 0.1).
        saturation_bound: tanh: a unit is saturated where ``|z| > saturation_bound``
            (default 3.0, the probe's ``ProbeConfig.saturation_bound``).
        networks: "all" (default) or a list of the agent's network names (PPO: actor,
            critic; DQN: q).
    """

    dose: float = 0.5
    margin: float = 0.1
    saturation_bound: float = 3.0
    networks: Any = "all"
    #: units silenced at the last switch per layer ("q.hidden.0": n), for shifts.jsonl
    report: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    name = "induced_collapse"
    oracle = True
    #: an oracle *perturbation* (a positive control), labelled so in shifts.jsonl and reports
    perturbation = True

    def __post_init__(self) -> None:
        check_number(self.name, "dose", self.dose, low=0.0, high=1.0, high_open=True)
        check_number(self.name, "margin", self.margin, low=0.0)
        check_number(self.name, "saturation_bound", self.saturation_bound, low=0.0, low_open=True)
        if self.networks != "all" and not (
                isinstance(self.networks, (list, tuple)) and self.networks
                and all(isinstance(n, str) for n in self.networks)):
            raise AgentError(f"mitigation {self.name!r}: invalid networks={self.networks!r}; valid: "
                             "'all' or a list of the agent's network names (PPO: actor, critic; DQN: q)")
        self._task: int | None = None
        self._obs: Tensor | None = None

    def _networks(self, agent: Any) -> dict[str, MLP]:
        return chosen_networks(self.name, agent, self.networks)

    def attach(self, agent: Any) -> None:
        nets = self._networks(agent)
        require_hidden_layers(self.name, nets)
        for name, net in nets.items():
            if net.activation not in SUPPORTED_ACTIVATIONS:
                raise AgentError(f"mitigation {self.name!r}: network {name!r} has activation "
                                 f"{net.activation!r}; valid choices: {', '.join(SUPPORTED_ACTIVATIONS)}")

    def _inactive(self, z: Tensor, activation: str) -> Tensor:
        """Units already inactive on every input: ReLU ``z <= 0``, tanh ``|z| > bound``."""
        return (z <= 0).all(dim=0) if activation == "relu" else (z.abs() > self.saturation_bound).all(dim=0)

    def units_to_silence(self, order: Tensor, inactive: Tensor) -> Tensor:
        """The first units of ``order`` not yet inactive, as many as bring the layer's
        inactive count to ``round(dose * width)`` (none if it is there already)."""
        missing = int(round(self.dose * order.numel())) - int(inactive.sum())
        alive = order[~inactive[order]]
        return alive[:max(missing, 0)]

    def set_task_data(self, task_id: int, obs: Tensor) -> None:
        """The new task's fixed observations (raw env observations, one row per input)."""
        self._task, self._obs = int(task_id), obs

    def on_task_switch(self, agent: Any) -> None:
        if self.dose == 0:
            self.report = {}
            return
        if self._obs is None or self._task is None:
            raise AgentError(f"mitigation {self.name!r} needs the new task's fixed data at the "
                             "switch (experiments' runner calls set_task_data); none was given")
        seed = int(getattr(getattr(agent, "config", None), "seed", 0) or 0)
        observe = {id(t.module): t.observe for t in agent.probe_targets()}
        report: dict[str, int] = {}
        for net_name, net in self._networks(agent).items():
            x = observe.get(id(net), lambda o: o.float())(self._obs)
            param = next(net.parameters())
            x = net.flatten(x.to(device=param.device, dtype=param.dtype))
            with torch.no_grad():
                for i, block in enumerate(net.hidden):
                    z = block.norm(block.linear(x))
                    width = z.shape[1]
                    order = unit_order(width, f"{seed}/{self._task}/{net_name}/hidden.{i}")
                    units = self.units_to_silence(order, self._inactive(z, net.activation))
                    collapse_layer(block, net.activation, z, units, margin=self.margin,
                                   saturation_bound=self.saturation_bound)
                    report[f"{net_name}.hidden.{i}"] = int(units.numel())
                    x = block(x)  # the next layer sees this layer's perturbed features
        self.report = report
