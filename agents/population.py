"""What DQN and PPO share to train a population of K seeds in lockstep.

A population is K *members*, each with the config of one seed, its own RNG streams, env,
mitigations and (as slices of stacked tensors, see :mod:`agents.batched`) its own network
parameters and Adam moments. One Adam steps on the stacked tensors: Adam is elementwise,
and the population loss is the *sum* of the members' losses, so each member's parameters get
exactly the update its own loss would give them in a run of its own. Gradient-norm clipping
is per member (:func:`clip_per_member`).

Adam's step count is one number per stacked tensor, shared by the members. That is exact
because members step together, and every event that zeroes a step count -- an optimiser
reset at a shift, a whole-layer reset with ``reset_optimizer``, a fresh re-initialisation
-- happens at the same env step for every member of an arm (partial resets such as ReDo's
and CBP's zero moments, never the count).

Mitigations see a member through :class:`MemberOptimizer`: ``optimizer.state[p]`` of a
member parameter holds views of that member's slice of the moments, so Adam-state surgery
(ReDo, CBP, resets) touches only that member.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from agents._common import check_parameters_finite
from agents.base import AgentError, DivergenceError, Mitigation

__all__ = ["MemberOptimizer", "Population", "check_losses_finite", "check_members_finite",
           "clip_per_member",
           "member_mitigations", "real_hooks", "seeds_of"]


def seeds_of(seed: int, seeds: Sequence[int] | None) -> list[int]:
    """The members' seeds: ``seeds`` (distinct integers), or ``[seed]`` for a single run."""
    if seeds is None:
        return [int(seed)]
    out = [int(s) for s in seeds]
    if not out or len(set(out)) != len(out):
        raise AgentError(f"seeds={list(seeds)!r}: expected a non-empty list of distinct integers")
    return out


def member_mitigations(mitigations: Sequence[Mitigation], k: int) -> list[Mitigation]:
    """Member ``k``'s mitigations: the given objects for member 0, fresh copies for the others
    (mitigations hold per-run state: generators, utilities, stored parameters)."""
    return list(mitigations) if k == 0 else copy.deepcopy(list(mitigations))


def real_hooks(mitigations: Sequence[Mitigation], hook: str) -> list[Mitigation]:
    """The mitigations that override ``hook`` (the others' are no-ops and are skipped)."""
    return [m for m in mitigations if getattr(type(m), hook) is not getattr(Mitigation, hook)]


def member_grad_norms(params: Sequence[Tensor]) -> Tensor:
    """``(K,)`` gradient norms, member k's over the k-th slices of every tensor's ``.grad``."""
    k = params[0].shape[0]
    return torch.linalg.vector_norm(torch.cat([p.grad.reshape(k, -1) for p in params], 1), dim=1)


def clip_per_member(params: Sequence[Tensor], max_norm: float | None) -> Tensor:
    """Scale each member's gradient to norm at most ``max_norm`` (as ``clip_grad_norm_`` does
    for one network: by ``min(1, max_norm / (norm + 1e-6))``); returns the norms before."""
    norms = member_grad_norms(params)
    if max_norm is not None:
        coef = (max_norm / (norms + 1e-6)).clamp_(max=1.0)
        grads = [p.grad for p in params]
        if len(coef) == 1:  # one member: one scalar for every tensor, not a view per tensor
            torch._foreach_mul_(grads, coef[0])
        else:
            torch._foreach_mul_(grads, [coef.view(-1, *([1] * (p.dim() - 1))) for p in params])
    return norms


class _MemberState(Mapping):
    """``optimizer.state`` as member ``k`` sees it: views of its slice of each moment."""

    def __init__(self, optimizer: torch.optim.Optimizer, pairs: dict[Tensor, Tensor], k: int):
        self._optimizer, self._pairs, self._k = optimizer, pairs, k

    def __getitem__(self, param: Tensor) -> dict[str, Any]:
        stacked = self._pairs[param]
        state = self._optimizer.state.get(stacked)
        if not state:
            return {}
        return {key: value if key == "step" else value[self._k] for key, value in state.items()}

    def get(self, param: Tensor, default: Any = None) -> Any:
        return self[param] if param in self._pairs else default

    def __contains__(self, param: object) -> bool:
        return param in self._pairs and bool(self._optimizer.state.get(self._pairs[param]))

    def __iter__(self) -> Iterator[Tensor]:
        return (p for p in self._pairs if p in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def clear(self) -> None:
        """Forget Adam's state (the whole population's: members step together)."""
        for stacked in self._pairs.values():
            self._optimizer.state.pop(stacked, None)


class MemberOptimizer:
    """Member ``k``'s view of the population's Adam, for mitigations and checkpoints.

    ``state[p]`` for one of the member's parameters ``p`` gives views of member k's
    ``exp_avg`` / ``exp_avg_sq`` (and the shared ``step``); ``param_groups`` are the real
    ones; ``state_dict()`` / ``load_state_dict()`` have the format of ``torch.optim.Adam``'s
    for a run of one network, so a member's checkpoint is a single run's, and it loads on
    any device (each tensor is copied to where the population's Adam keeps it).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, stacked: Sequence[Tensor],
                 members: Sequence[nn.Parameter], k: int) -> None:
        self.optimizer = optimizer
        self.k = k
        self._stacked = list(stacked)
        self._members = list(members)
        self.state = _MemberState(optimizer, dict(zip(self._members, self._stacked, strict=True)), k)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the member's parameter gradients (e.g. after a probe's backward)."""
        for p in self._members:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    def state_dict(self) -> dict[str, Any]:
        state = {}
        for i, stacked in enumerate(self._stacked):
            entry = self.optimizer.state.get(stacked)
            if entry:
                state[i] = {key: value.clone() if key == "step" else value[self.k].clone()
                            for key, value in entry.items()}
        groups = [{**{k: v for k, v in g.items() if k != "params"},
                   "params": list(range(len(self._stacked)))} for g in self.optimizer.param_groups]
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        state = state_dict["state"]
        if len(state_dict["param_groups"]) != len(self.optimizer.param_groups):
            raise AgentError("optimizer checkpoint has another number of parameter groups")
        for group, saved in zip(self.optimizer.param_groups, state_dict["param_groups"], strict=True):
            group["lr"] = saved["lr"]
        if not state:
            for stacked in self._stacked:
                self.optimizer.state.pop(stacked, None)
            return
        for i, stacked in enumerate(self._stacked):
            saved = state[i] if i in state else state[str(i)]
            entry = self.optimizer.state.get(stacked)
            if not entry:
                group = self.optimizer.param_groups[0]
                # torch.optim.Adam keeps the step count on the parameter's device for its
                # fused / capturable kernels, on the CPU otherwise (a checkpoint loads on CPU)
                step_device = (stacked.device if group.get("fused") or group.get("capturable")
                               else torch.device("cpu"))
                entry = self.optimizer.state[stacked] = {
                    key: saved["step"].to(step_device, copy=True) if key == "step"
                    else torch.zeros_like(stacked) for key in saved}
            for key, value in saved.items():
                if key == "step":
                    entry[key].copy_(value)
                else:
                    entry[key][self.k].copy_(value)


def check_losses_finite(step: int, what: str, losses: list[float],
                        diverged: list[DivergenceError | None], raise_first: bool) -> None:
    """Record in ``diverged[k]`` member k's first non-finite loss (``losses``: the update's
    per-member losses as host floats, read once); with ``raise_first`` (a population of one)
    raise it instead."""
    if all(map(math.isfinite, losses)):
        return
    for k, value in enumerate(losses):
        if diverged[k] is None and not math.isfinite(value):
            diverged[k] = DivergenceError(step, what, value)
    if raise_first:
        raise diverged[0]


def check_members_finite(step: int, members: Sequence[Any],
                         diverged: list[DivergenceError | None], single: bool) -> None:
    """Record in ``diverged[k]`` the first NaN/inf parameter of each member not yet diverged
    (the others train on); a single run raises it instead."""
    for k, m in enumerate(members):
        if diverged[k] is None:
            try:
                check_parameters_finite(step, m.networks())
            except DivergenceError as err:
                diverged[k] = err
    if single and diverged[0] is not None:
        raise diverged[0]


class Population:
    """What DQN and PPO share as a population of ``members``: the mitigations' attachment
    (each member's own instances, attached to that member) and the hooks that really act
    per member; a population of one answers every attribute as its member does
    (``agent.optimizer``, ``agent.collect``, ...), so a single run reads as before."""

    members: list[Any]
    #: The env one member trains on (``gym.Env`` for DQN, ``VectorEnv`` for PPO).
    member_env: type = object

    def _attach_mitigations(self) -> None:
        for m in self.members:
            for mitigation in m.mitigations:
                mitigation.attach(m)
        self._hooks = {name: [real_hooks(m.mitigations, name) for m in self.members]
                       for name in ("before_optimizer_step", "after_step", "after_update")}

    def __getattr__(self, name: str) -> Any:
        members = self.__dict__.get("members")
        if members is not None and len(members) == 1:
            return getattr(members[0], name)
        raise AttributeError(f"{type(self).__name__} of {len(members or ())} members has no "
                             f"attribute {name!r}; use agent.members[k].{name}")

    def _switch_mitigations(self) -> None:
        """Each member's mitigations hear of the switch (after the oracle knobs acted)."""
        for m in self.members:
            for mitigation in m.mitigations:
                mitigation.on_task_switch(m)

    def state_dict(self) -> dict[str, Any]:
        """A single run: its member's checkpoint; a population: ``{"members": [...]}``."""
        if len(self.members) == 1:
            return self.members[0].state_dict()
        return {"members": [m.state_dict() for m in self.members]}

    def load_state_dict(self, state: dict[str, Any], env: Any = None) -> None:
        """Restore a checkpoint of :meth:`state_dict`. Without ``env`` the next ``learn``
        resets the envs; with ``env`` (one per member, restored to its state at the
        checkpoint; the env itself for a single run) every member continues its episodes in
        progress exactly."""
        k = len(self.members)
        states = [state] if k == 1 else state["members"]
        if len(states) != k:
            raise AgentError(f"checkpoint has {len(states)} members, the population {k}")
        envs = [env] if isinstance(env, self.member_env) or env is None else list(env)
        envs = envs * k if env is None else envs
        for m, member_state, member_env in zip(self.members, states, envs, strict=True):
            m.load_state_dict(member_state, member_env)
