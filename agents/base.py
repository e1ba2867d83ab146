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

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

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


@dataclass
class ProbeTarget:
    """One network of an agent, as a probe sees it.

    Attributes:
        name: "q" (DQN), "policy" or "value" (PPO).
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
    """

    name: str
    module: nn.Module
    layers: Mapping[str, nn.Module]
    loss: Callable[[Batch], Tensor]
    sample_batch: Callable[[int, torch.Generator | None], Batch]
    inputs: Callable[[Batch], Tensor]


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

    The default keeps everything: the agent is not told about the shift, which is the
    setting the study is about. Every other value is an *oracle* arm (it uses knowledge of
    the switch) and the runner labels it so in ``shifts.jsonl``.

    Attributes:
        optimizer: "keep" | "reset" (zero Adam moments and step counts).
        exploration: "keep" | "rewarm" (restart DQN's epsilon schedule from the switch).
        buffer: "keep" | "flush" (empty DQN's replay buffer).
        target: "keep" | "sync" (copy the online Q network into the target network).
        reinitialize: re-initialise networks, optimiser, buffer and exploration schedule
            (the "fresh" full-plasticity reference arm).
    """

    optimizer: str = "keep"
    exploration: str = "keep"
    buffer: str = "keep"
    target: str = "keep"
    reinitialize: bool = False

    CHOICES = {
        "optimizer": ("keep", "reset"),
        "exploration": ("keep", "rewarm"),
        "buffer": ("keep", "flush"),
        "target": ("keep", "sync"),
    }

    def __post_init__(self) -> None:
        for field, choices in self.CHOICES.items():
            check_choice(f"shift policy {field}", getattr(self, field), choices)

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
