"""Pieces both agents share: config checks, the hooked optimiser step, RNG state, metrics.

The optimiser step is the one place where mitigation hooks meet the training loop, so
DQN and PPO call the same function and a mitigation sees the same order of events in
both: ``backward -> gradient clipping -> before_optimizer_step -> optimizer.step ->
after_step``. Mitigation gradient terms (coupled L2, L2-init) are therefore added *after*
clipping: clipping bounds the loss gradient, the regulariser is applied as written.
"""

from __future__ import annotations

import math
import weakref
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import Tensor, nn
from torch.nn.modules import module as torch_module
from torch.nn.utils import clip_grads_with_norm_

from agents.base import AgentError, DivergenceError, Mitigation, check_choice
from agents.networks import ACTIVATIONS, INITS, MLP

# ---------------------------------------------------------------------------- config checks


def check_field(name: str, value: Any, ok: bool, expected: str) -> None:
    """Raise :class:`AgentError` naming the config field, its value and the valid range."""
    if not ok:
        raise AgentError(f"invalid {name}={value!r}; expected {expected}")


def check_positive_int(name: str, value: Any) -> None:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0
    check_field(name, value, ok, "a positive integer")


def check_network_fields(config: Any) -> None:
    """Checks shared by every config with ``widths``, ``activation``, ``init`` and Adam fields."""
    check_choice("activation", config.activation, tuple(ACTIVATIONS))
    check_choice("init", config.init, INITS)
    widths = tuple(config.widths)
    ok = all(isinstance(w, (int, np.integer)) and not isinstance(w, bool) and w > 0 for w in widths)
    check_field("widths", config.widths, ok, "a sequence of positive integers, e.g. (64, 64)")
    config.widths = tuple(int(w) for w in widths)
    check_field("learning_rate", config.learning_rate, config.learning_rate > 0, "> 0")
    betas = tuple(config.adam_betas)
    ok = len(betas) == 2 and all(0.0 <= b < 1.0 for b in betas)
    check_field("adam_betas", config.adam_betas, ok, "two numbers in [0, 1)")
    config.adam_betas = (float(betas[0]), float(betas[1]))
    check_field("adam_eps", config.adam_eps, config.adam_eps > 0, "> 0")
    check_field("gamma", config.gamma, 0.0 <= config.gamma <= 1.0, "a number in [0, 1]")
    mgn = config.max_grad_norm
    check_field("max_grad_norm", mgn, mgn is None or mgn > 0, "None (off) or > 0")


def observation_spec(space: spaces.Space) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, flattened size) of a Box observation space; other spaces are refused."""
    if not isinstance(space, spaces.Box):
        raise AgentError(
            f"observation space {space} is not supported; valid: a gymnasium Box (wrap MiniGrid "
            "dict observations with minigrid.wrappers.ImgObsWrapper or a flat-observation wrapper)"
        )
    return tuple(space.shape), space.dtype, int(np.prod(space.shape, dtype=np.int64))


# ------------------------------------------------------------------------------- networks


def act_forward(mlp: MLP, x: Tensor) -> Tensor:
    """``mlp(x)`` without ``nn.Module.__call__`` and attribute lookups, via a cached plan.

    Used for acting and for the target network, where per-module call overhead is most of
    the cost on small networks. Forward hooks (probes, mitigations) therefore see only the
    training forward passes (loss computations), never acting. The plan holds the
    parameter tensors themselves, which every update, reset and ``load_state_dict`` changes
    in place, so it never goes stale.
    """
    x = x.flatten(1)
    for weight, bias, norm, act in _plan(mlp):
        x = F.linear(x, weight, bias)
        if norm is not None:
            x = norm(x)
        if act is not None:
            x = act(x)
    return x


# Plans are cached per network object, outside it, so copies of a network (deepcopy for a
# target network, pickling) never carry a plan that points at the original's storage.
_PLANS: weakref.WeakKeyDictionary[MLP, list] = weakref.WeakKeyDictionary()
_MODULES: weakref.WeakKeyDictionary[MLP, tuple] = weakref.WeakKeyDictionary()
_NUMPY_PLANS: weakref.WeakKeyDictionary[MLP, list | None] = weakref.WeakKeyDictionary()


def _plan(mlp: MLP) -> list[tuple[Tensor, Tensor | None, Any, Any]]:
    plan = _PLANS.get(mlp)
    if plan is None:
        plan = []
        for block in mlp.hidden:
            norm = None if isinstance(block.norm, nn.Identity) else block.norm.forward
            act = torch.relu if type(block.act) is nn.ReLU else block.act.forward
            plan.append((block.linear.weight, block.linear.bias, norm, act))
        plan.append((mlp.head.weight, mlp.head.bias, None, None))
        _PLANS[mlp] = plan
        _MODULES[mlp] = tuple(mlp.modules())
    return plan


#: Activations with a numpy twin for :func:`numpy_forward` (others fall back to torch).
_NUMPY_ACTIVATIONS = {nn.ReLU: lambda x: np.maximum(x, 0.0, out=x), nn.Tanh: np.tanh}


def numpy_forward(mlp: MLP, obs: np.ndarray) -> np.ndarray | None:
    """``mlp(obs)`` for ONE observation in numpy, or None where unsupported (LayerNorm,
    activations other than ReLU/tanh).

    Acting on one observation is dominated by torch's per-op overhead (~15 us per linear
    layer); numpy on views of the same parameter storage is ~5x cheaper. The views share
    memory with the parameters, which are only ever changed in place, so they stay current.
    """
    plan = _NUMPY_PLANS.get(mlp, False)
    if plan is False:
        plan = []
        for block in mlp.hidden:
            act = _NUMPY_ACTIVATIONS.get(type(block.act))
            if act is None or not isinstance(block.norm, nn.Identity):
                plan = None
                break
            plan.append((block.linear.weight.detach().numpy().T, block.linear.bias.detach().numpy(), act))
        if plan is not None:
            plan.append((mlp.head.weight.detach().numpy().T, mlp.head.bias.detach().numpy(), None))
        _NUMPY_PLANS[mlp] = plan
    if plan is None:
        return None
    x = np.asarray(obs, dtype=np.float32).reshape(-1)
    for weight_t, bias, act in plan:
        x = x @ weight_t + bias
        if act is not None:
            x = act(x)
    return x


def train_forward(mlp: MLP, x: Tensor) -> Tensor:
    """``mlp(x)`` for a training loss: through ``__call__`` whenever any module hook is
    registered (a probe or mitigation is listening), else the cheaper :func:`act_forward`.
    The result is the same either way."""
    if has_module_hooks(mlp):
        return mlp(x)
    return act_forward(mlp, x)


def has_module_hooks(mlp: MLP) -> bool:
    """Whether a module hook (forward or backward; global, or on any module of ``mlp``) is
    listening: the training forward must then go through ``__call__``."""
    _plan(mlp)
    return _global_hooks() or any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                                  or m._backward_pre_hooks for m in _MODULES[mlp])


def _global_hooks() -> bool:
    return bool(torch_module._global_forward_hooks or torch_module._global_forward_pre_hooks
                or torch_module._global_backward_hooks
                or torch_module._global_backward_pre_hooks)


# ------------------------------------------------------------------------- mitigation hooks


def configure(config: Any, mitigations: Sequence[Mitigation]) -> Any:
    """Let each mitigation edit the config before any network exists (LayerNorm, CReLU, betas)."""
    for m in mitigations:
        config = m.configure(config)
    return config


def make_adam(params: Iterable[nn.Parameter], config: Any) -> torch.optim.Adam:
    # The fused kernel (one launch for all tensors) is ~1.7x faster than foreach on small
    # CPU networks; older torch builds without it fall back to foreach.
    params = list(params)
    kwargs = dict(lr=config.learning_rate, betas=config.adam_betas, eps=config.adam_eps)
    try:
        return torch.optim.Adam(params, **kwargs, fused=True)
    except (RuntimeError, TypeError):  # pragma: no cover - depends on the torch build
        return torch.optim.Adam(params, **kwargs, foreach=True)


def optimizer_step(agent: Any, loss: Tensor, params: Sequence[Tensor]) -> Tensor:
    """One hooked gradient step on ``loss``; returns the gradient norm before clipping."""
    for p in params:  # cheaper than optimizer.zero_grad(), which is wrapped in a profiler scope
        p.grad = None
    loss.backward()
    return apply_gradients(agent, params)


def apply_gradients(agent: Any, params: Sequence[Tensor]) -> Tensor:
    """The step after the backward pass, on the ``p.grad`` already set: clipping, the
    mitigation hooks and Adam. Returns the gradient norm before clipping."""
    grads = [p.grad for p in params if p.grad is not None]
    # One concatenated norm: ~3x cheaper than get_total_norm on a handful of small tensors.
    grad_norm = torch.linalg.vector_norm(torch.cat([g.reshape(-1) for g in grads]))
    if agent.config.max_grad_norm is not None:
        clip_grads_with_norm_(params, agent.config.max_grad_norm, grad_norm, foreach=True)
    for m in agent.mitigations:
        m.before_optimizer_step(agent)
    agent.optimizer.step()
    for m in agent.mitigations:
        m.after_step(agent)
    return grad_norm


def load_mitigation_states(mitigations: Sequence[Mitigation], states: Sequence[dict]) -> None:
    if len(states) != len(mitigations):
        names = [m.name for m in mitigations]
        raise AgentError(
            f"checkpoint has {len(states)} mitigation states but the agent has {names}"
        )
    for m, m_state in zip(mitigations, states, strict=True):
        m.load_state_dict(m_state)


def reset_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """Zero Adam's moments and step counts (state is re-created lazily on the next step)."""
    optimizer.state.clear()


# ---------------------------------------------------------------------------- divergence


def check_finite(step: int, what: str, value: float) -> float:
    if not math.isfinite(value):
        raise DivergenceError(step, what, value)
    return value


def check_parameters_finite(step: int, networks: dict[str, nn.Module]) -> None:
    for net_name, net in networks.items():
        for p_name, p in net.named_parameters():
            if not torch.isfinite(p).all():
                bad = p[~torch.isfinite(p)].flatten()[0].item()
                raise DivergenceError(step, f"parameter {net_name}.{p_name}", bad)


# ------------------------------------------------------------------------------ RNG state


def rng_state(rng: np.random.Generator, generator: torch.Generator) -> dict[str, Any]:
    return {"numpy": rng.bit_generator.state, "torch": generator.get_state()}


def load_rng_state(rng: np.random.Generator, generator: torch.Generator, state: dict) -> None:
    rng.bit_generator.state = state["numpy"]
    generator.set_state(state["torch"])


# -------------------------------------------------------------------------------- metrics


class MetricMeans:
    """Running sums of scalar metrics; ``means()`` gives the per-update means."""

    def __init__(self) -> None:
        self._sums: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)

    def add(self, **values: float) -> None:
        for key, value in values.items():
            self._sums[key] += value
            self._counts[key] += 1

    def means(self) -> dict[str, float]:
        return {k: self._sums[k] / self._counts[k] for k in self._sums}


class EpisodeTracker:
    """Undiscounted return and length of each sub-env's current episode (raw rewards)."""

    def __init__(self, num_envs: int) -> None:
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.lengths = np.zeros(num_envs, dtype=np.int64)

    def step(
        self, rewards: np.ndarray, ends: np.ndarray, global_step: int, out: list, counted=None
    ) -> None:
        """Add one step's rewards; append ``(global_step, return, length)`` for ended episodes.

        ``counted`` masks the sub-envs whose step is a real transition (not an autoreset).
        """
        if counted is None:
            self.returns += rewards
            self.lengths += 1
        else:
            self.returns += np.where(counted, rewards, 0.0)
            self.lengths += counted
        for i in np.flatnonzero(ends):
            out.append((global_step, float(self.returns[i]), int(self.lengths[i])))
            self.returns[i] = 0.0
            self.lengths[i] = 0
