"""Resets: periodic (primacy bias, Nikishin et al. 2022) and oracle on task switch."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

from agents.base import AgentError, Batch, Mitigation
from agents.mitigations._common import (
    check_number,
    check_option,
    chosen_networks,
    generator_state,
    make_generator,
    reset_adam_state,
)
from agents.networks import MLP

_LAYER_NAME = re.compile(r"hidden\.\d+|head")


def _normalise_which(method: str, which: Any) -> str | tuple[str, ...]:
    if which in ("head", "all"):
        return which
    names = [which] if isinstance(which, str) else which
    if isinstance(names, (list, tuple)) and names and all(isinstance(w, str) for w in names):
        if all(_LAYER_NAME.fullmatch(w) for w in names):
            return tuple(dict.fromkeys(names))
    raise AgentError(
        f"mitigation {method!r}: invalid which={which!r}; valid: 'head', 'all' or a list of "
        "layer names such as ['hidden.1', 'head']"
    )


def chosen_layers(method: str, net_name: str, net: MLP, which: str | tuple[str, ...]) -> list[str]:
    """The layer names ``which`` selects in ``net``; unknown names raise :class:`AgentError`."""
    names = [f"hidden.{i}" for i in range(len(net.hidden))] + ["head"]
    chosen = names if which == "all" else ["head"] if which == "head" else list(which)
    for name in chosen:
        if name not in names:
            raise AgentError(
                f"mitigation {method!r}: network {net_name!r} has no layer {name!r}; its layers: "
                + ", ".join(names)
            )
    return chosen


def reset_layers(
    method: str,
    net_name: str,
    net: MLP,
    which: str | tuple[str, ...],
    generator: torch.Generator,
    optimizer: torch.optim.Optimizer | None,
) -> None:
    """Redraw the chosen layers of ``net`` from the initial distribution.

    With an optimiser, those layers' Adam moments and step counts are reset as well.
    """
    for name in chosen_layers(method, net_name, net, which):
        if name == "head":
            net.reset_head(generator)
            module = net.head
        else:
            index = int(name.split(".")[1])
            net.reset_block(index, generator)
            module = net.hidden[index]
        if optimizer is not None:
            for param in module.parameters():
                reset_adam_state(optimizer, param)


def _normalise_networks(method: str, networks: Any) -> str | tuple[str, ...]:
    if networks == "all":
        return networks
    names = [networks] if isinstance(networks, str) else networks
    if isinstance(names, (list, tuple)) and names and all(isinstance(n, str) for n in names):
        return tuple(dict.fromkeys(names))
    raise AgentError(
        f"mitigation {method!r}: invalid networks={networks!r}; valid: 'all' or a list of the "
        "agent's network names such as ['actor'] (PPO: actor, critic; DQN: q)"
    )


@dataclass
class _LayerReset(Mitigation):
    which: Any = "head"
    reset_optimizer: bool = True
    networks: Any = "all"

    def __post_init__(self) -> None:
        self.which = _normalise_which(self.name, self.which)
        self.networks = _normalise_networks(self.name, self.networks)
        check_option(self.name, "reset_optimizer", self.reset_optimizer, (True, False))
        self.generator: torch.Generator | None = None

    def _networks(self, agent: Any) -> dict[str, MLP]:
        """The agent's networks this reset acts on (unknown names raise)."""
        return chosen_networks(self.name, agent, self.networks)

    def attach(self, agent: Any) -> None:
        if self.generator is None:
            self.generator = make_generator(agent, self.name)
        for net_name, net in self._networks(agent).items():
            chosen_layers(self.name, net_name, net, self.which)

    def reset(self, agent: Any) -> None:
        """Reset the chosen layers of the chosen networks now."""
        assert self.generator is not None, "attach() first"
        optimizer = agent.optimizer if self.reset_optimizer else None
        for net_name, net in self._networks(agent).items():
            reset_layers(self.name, net_name, net, self.which, self.generator, optimizer)

    def _generator_state(self) -> dict[str, Any]:
        return {} if self.generator is None else {"generator": generator_state(self.generator)}

    def _load_generator(self, state: dict[str, Any]) -> None:
        if "generator" in state:
            if self.generator is None:
                self.generator = torch.Generator()
            self.generator.set_state(state["generator"])


@dataclass
class Reset(_LayerReset):
    """Periodic reset of the last layer(s) or the whole network (Nikishin et al. 2022).

    After the first update phase that ends at or past each multiple of ``every_steps`` env
    steps, the chosen layers of every trained network are redrawn from their initial
    distribution (from a generator seeded from the agent seed); the replay buffer and the
    DQN target network are kept (the target catches up at its next sync). Uses no knowledge
    of task switches.

    Attributes:
        every_steps: reset period in env steps (Nikishin et al. reset every 2e5 updates in
            SAC/DMC; choose it relative to the stream's task length).
        which: "head" (default, the last layer), "all", or a list of layer names
            (``"hidden.i"``, ``"head"``), applied to each network (PPO: actor and critic).
        reset_optimizer: also reset the reset layers' Adam moments and step counts (default
            True: stale moments would immediately push the fresh weights).
        networks: "all" (default) or the agent's networks to reset, e.g. ``["actor"]`` (the
            policy only) or ``["critic"]`` (the value network only).
    """

    every_steps: int = 100_000

    name = "reset"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_number(self.name, "every_steps", self.every_steps, low=1, integer=True)
        self.next_at: int | None = None

    def attach(self, agent: Any) -> None:
        super().attach(agent)
        if self.next_at is None:
            self.next_at = int(agent.global_step) + self.every_steps

    def after_update(self, agent: Any, batch: Batch | None) -> None:
        assert self.next_at is not None, "attach() first"
        if agent.global_step >= self.next_at:
            self.reset(agent)
            while self.next_at <= agent.global_step:
                self.next_at += self.every_steps

    def state_dict(self) -> dict[str, Any]:
        return {"next_at": self.next_at, **self._generator_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.next_at = None if state["next_at"] is None else int(state["next_at"])
        self._load_generator(state)


@dataclass
class ResetOnSwitch(_LayerReset):
    """ORACLE: reset layers when the runner announces a task switch (uses switch knowledge).

    Labelled ``oracle = True``: only oracle arms call ``on_task_switch``, and the runner
    records the arm as one that knows when tasks change.

    Attributes:
        which: "head" (default), "all" or a list of layer names, as for ``reset``.
        reset_optimizer: also reset those layers' Adam moments and step counts (default
            False; the whole optimiser can be reset with ``ShiftPolicy(optimizer="reset")``).
        networks: "all" (default) or a list of network names, as for ``reset``.
    """

    reset_optimizer: bool = False

    name = "reset_on_switch"
    oracle = True

    def on_task_switch(self, agent: Any) -> None:
        self.reset(agent)

    def state_dict(self) -> dict[str, Any]:
        return self._generator_state()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_generator(state)
