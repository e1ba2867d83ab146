"""The contract between agents and the rest of the testbed.

The runner (``experiments``), the probes (``spectral``) and the mitigations talk to an
agent only through what is defined here:

* :class:`ProbeTarget` -- one network of the agent with the loss it trains on, its named
  hidden layers and a way to draw a batch, so a probe can measure it without knowing
  whether it belongs to DQN or PPO.
* :class:`Mitigation` -- a composable intervention that plugs into the agent's hooks
  (after every optimiser step, after every update phase, on an oracle task switch)
  without any ``if use_x`` in the training loop.
* :class:`AgentError` -- raised for bad user input (a ValueError whose message names the
  bad value and the valid choices).

An agent never imports ``envs`` and never learns that a shift happened, except through
:meth:`on_task_switch`, which only oracle arms call.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

import spectral
from agents.validation import Mismatch, conform, describe

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Sequence

Batch = dict[str, Tensor]
"""A batch is a dict of tensors with a shared leading dimension (``obs``, ``actions``, ...)."""


class AgentError(ValueError):
    """Bad user input to an agent, network or mitigation (names the value and the choices)."""


def check_choice(kind: str, value: Any, choices: Sequence[Any]) -> None:
    """Raise :class:`AgentError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise AgentError(f"unknown {kind} {value!r}; valid choices: {', '.join(map(repr, choices))}")


#: What a ``device`` setting may name (``cuda:N``: the N-th GPU).
DEVICE_CHOICES = ("cpu", "cuda", "cuda:N")


def parse_device(value: Any, key: str = "device") -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"`` as a :class:`torch.device`; anything else raises
    :class:`AgentError` naming ``key``, the value and the valid choices. Whether the device
    exists on this machine is not checked here (``experiments.resolve`` does, for runs)."""
    if isinstance(value, str) and re.fullmatch(r"cpu|cuda(:\d+)?", value):
        return torch.device(value)
    raise AgentError(f"{key} = {value!r} is not a valid device; valid choices: "
                     + ", ".join(map(repr, DEVICE_CHOICES)))


def check_field_types(cls: type, values: Mapping[str, Any]) -> None:
    """Raise :class:`AgentError` naming the first of ``values`` (dataclass ``cls``'s fields)
    whose type does not fit the field's annotation, e.g. ``learning_rate="fast"``.

    Config dataclasses call this first in ``__post_init__`` (and the mitigation registry
    before constructing one), so a wrong type is one clear line rather than a
    ``TypeError`` from a comparison further down."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in values:
            try:
                conform(values[f.name], hints[f.name])
            except Mismatch:
                raise AgentError(f"invalid {f.name}={values[f.name]!r} for {cls.__name__}; "
                                 f"expected {describe(hints[f.name])}") from None


def _as_float(obs: Tensor) -> Tensor:
    return obs.float()


@dataclass
class ProbeTarget:
    """One network of an agent, as a probe sees it.

    Attributes:
        name: "q" (DQN), "policy", "value" or "actor_critic" (PPO; the full PPO loss
            over both networks as one parameter vector).
        module: the network (an ``nn.Module``) whose parameters the probe differentiates.
        layers: named hidden layers whose *outputs* are the post-activation features
            (e.g. ``{"hidden.0": act0, "hidden.1": act1}``); forward hooks read them.
        loss: ``loss(batch) -> scalar`` -- the loss this network is trained on (TD loss,
            clipped PPO policy loss with entropy bonus, value loss), built fresh on each
            call so it can be differentiated twice (Hessian-vector products).
        sample_batch: ``sample_batch(n, generator) -> Batch`` -- n samples of the agent's
            own training data (replay sample for DQN, last rollout for PPO), drawn with the
            given generator so that probing never consumes the agent's RNG.
        inputs: ``inputs(batch) -> Tensor`` -- the network input for a batch (used to
            capture features with a forward pass).
        fixed_loss: ``fixed_loss(batch) -> scalar`` on *fixed probe data* (transitions not
            drawn by this agent: ``obs``, ``actions``, ``rewards``, ``next_obs``,
            ``terminated`` as float tensors, observations already mapped by ``observe``);
            a loss that is well defined off-policy (TD regression for value networks, the
            policy's Fisher for policies; see the agents). None: no fixed-data probes.
        observe: ``observe(raw_obs) -> Tensor`` -- env observations to network inputs
            (e.g. PPO's running observation normaliser, read without updating it).
        ggn: ``ggn(batch) -> (output_fn, output_loss)`` for the Gauss-Newton matrix
            ``Jᵀ H_L J`` of the loss (``spectral.GGNOperator``): the network output on the
            batch and the loss as a convex function of it. ``None`` where the loss is not
            such a function of one output (``actor_critic``).
    """

    name: str
    module: nn.Module
    layers: Mapping[str, nn.Module]
    loss: Callable[[Batch], Tensor]
    sample_batch: Callable[[int, torch.Generator | None], Batch]
    inputs: Callable[[Batch], Tensor]
    ggn: Callable[[Batch], tuple[Callable[[], Tensor], Callable[[Tensor], Tensor]]] | None = None
    fixed_loss: Callable[[Batch], Tensor] | None = None
    observe: Callable[[Tensor], Tensor] = _as_float

    def fresh_module(self, generator: torch.Generator) -> nn.Module:
        """A newly initialised network of the same architecture, drawn with ``generator``:
        a hook-free copy of ``module`` (:func:`spectral.network_copy`) whose
        ``reset_parameters(generator)`` re-draws every parameter from the initial
        distribution (``agents.networks.MLP`` has it). ``module`` is untouched."""
        return self._redrawn("reset_parameters", generator)

    def head_reset_module(self, generator: torch.Generator) -> nn.Module:
        """A hook-free copy of ``module`` with its hidden layers as they are and its output
        layer re-drawn from the initial distribution with ``generator``
        (``reset_head(generator)``, as ``agents.networks.MLP`` has it). ``module`` is
        untouched."""
        return self._redrawn("reset_head", generator)

    def output_layer(self) -> nn.Module:
        """The network's output layer (``module.head``, as ``agents.networks.MLP`` has it)."""
        head = getattr(self.module, "head", None)
        if not isinstance(head, nn.Module):
            raise AgentError(f"probe target {self.name!r}: {type(self.module).__name__} has no "
                             "output layer `head`; valid: an agents.networks.MLP or a module "
                             "with that attribute")
        return head

    def _redrawn(self, method: str, generator: torch.Generator) -> nn.Module:
        twin = spectral.network_copy(self.module)
        reset = getattr(twin, method, None)
        if not callable(reset):
            raise AgentError(f"probe target {self.name!r}: {type(self.module).__name__} has no "
                             f"{method}(generator); valid: an agents.networks.MLP or a module "
                             "with that method")
        reset(generator)
        return twin


class Mitigation:
    """Base class of a plasticity mitigation; every hook is a no-op by default.

    Life cycle, driven by the agent:

    1. ``configure(config)`` before the networks are built: may return a modified config
       (LayerNorm, CReLU, Adam betas are network/optimiser options reached this way).
    2. ``attach(agent)`` once the networks and optimiser exist: remember initial
       parameters, allocate state.
    3. ``before_optimizer_step(agent)`` after ``backward()`` and before ``optimizer.step()``
       (coupled weight decay, L2-init gradients).
    4. ``after_step(agent)`` after every optimiser step (soft shrink-and-perturb, CBP).
    5. ``after_update(agent, batch)`` after each update phase: every PPO rollout/update,
       every ``DQNConfig.update_phase`` env steps for DQN (ER, ReDo, periodic resets).
    6. ``on_task_switch(agent)`` only when the runner tells the agent about a switch
       (oracle arms: head reset, optimiser reset on switch).

    ``state_dict``/``load_state_dict`` carry the mitigation's own state (CBP utilities,
    stored initial parameters) through checkpoints.
    """

    name: str = "none"
    oracle: bool = False  # True when the method uses knowledge of the task switch

    def configure(self, config: Any) -> Any:
        return config

    def attach(self, agent: Any) -> None:
        pass

    def before_optimizer_step(self, agent: Any) -> None:
        pass

    def after_step(self, agent: Any) -> None:
        pass

    def after_update(self, agent: Any, batch: Batch | None) -> None:
        pass

    def on_task_switch(self, agent: Any) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class DivergenceError(RuntimeError):
    """A loss or parameter became NaN/inf. Carries the env step and what diverged."""

    def __init__(self, step: int, what: str, value: float) -> None:
        super().__init__(f"divergence at env step {step}: {what} = {value}")
        self.step = step
        self.what = what
        self.value = value


@dataclass(frozen=True)
class ShiftPolicy:
    """What an agent does with its state when it is *told* about a task switch.

    The one owner of the shift settings: the ``[shift]`` table of a run config is this
    dataclass (without ``reinitialize``, which ``experiment.reference = "fresh"`` sets), so
    its fields, choices and checks are defined here only.

    The default keeps everything: the agent is not told about the shift, which is the
    setting the study is about. Every other value is an *oracle* arm (it uses knowledge of
    the switch) and the runner labels it so in ``shifts.jsonl``.

    Attributes:
        optimizer: "keep" | "reset" (zero Adam moments and step counts).
        exploration: "keep" | "rewarm" (restart DQN's epsilon schedule from the switch).
        buffer: "keep" | "flush" (empty DQN's replay buffer).
        target: "keep" | "sync" (copy the online Q network into the target network).
        normalization: "keep" (the agents keep their running statistics; recorded for
            clarity).
        reinitialize: re-initialise networks, optimiser, buffer and exploration schedule
            (the "fresh" full-plasticity reference arm).
    """

    optimizer: str = "keep"
    exploration: str = "keep"
    buffer: str = "keep"
    target: str = "keep"
    normalization: str = "keep"
    reinitialize: bool = False

    CHOICES = {
        "optimizer": ("keep", "reset"),
        "exploration": ("keep", "rewarm"),
        "buffer": ("keep", "flush"),
        "target": ("keep", "sync"),
        "normalization": ("keep",),
    }

    def __post_init__(self) -> None:
        for field, choices in self.CHOICES.items():
            value = getattr(self, field)
            if value not in choices:
                raise AgentError(f"shift.{field} = {value!r} is not valid; valid choices: "
                                 + ", ".join(map(repr, choices)))

    def check_knobs(self, agent: str, knobs: Sequence[str]) -> None:
        """Raise :class:`AgentError` unless every setting outside ``knobs`` (what ``agent``
        has to change) is "keep"."""
        for field, choices in self.CHOICES.items():
            value = getattr(self, field)
            if field not in knobs and value != choices[0]:
                raise AgentError(f"shift.{field} = {value!r}: {agent} has no {field} to "
                                 f"change; valid choices for {agent}: {choices[0]!r}")

    @property
    def is_oracle(self) -> bool:
        return self.reinitialize or any(getattr(self, f) != c[0] for f, c in self.CHOICES.items())


@dataclass
class LearnResult:
    """What one ``agent.learn(env, until)`` call returns to the runner.

    Attributes:
        global_step: env steps taken so far (all sub-envs counted).
        episodes: finished episodes, as ``(global_step_at_end, return, length)``.
        metrics: means over the updates made in this call, keyed like TensorBoard tags
            (``losses/td_loss``, ``losses/entropy``, ``charts/sps``, ...). Empty if no update.
        updates: number of optimiser steps taken in this call.
        diverged: in a population, the divergence of this member (its first non-finite loss
            or parameter; the member's numbers are meaningless from then on, the other
            members are unaffected); a single run raises :class:`DivergenceError` instead.
    """

    global_step: int
    episodes: list[tuple[int, float, int]]
    metrics: dict[str, float]
    updates: int
    diverged: DivergenceError | None = None
