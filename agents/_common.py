"""Pieces both agents share: config checks, Adam, mitigation bookkeeping, RNG state, metrics.

DQN and PPO give a mitigation the same order of events at every optimiser step:
``backward -> gradient clipping (per member) -> before_optimizer_step -> optimizer.step ->
after_step``. Mitigation gradient terms (coupled L2, L2-init) are therefore added *after*
clipping: clipping bounds the loss gradient, the regulariser is applied as written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn

from agents.base import AgentError, DivergenceError, Mitigation, check_choice
from agents.networks import ACTIVATIONS, INITS
from agents.validation import in_range

# ---------------------------------------------------------------------------- config checks


def check_field(name: str, value: Any, ok: bool, expected: str) -> None:
    """Raise :class:`AgentError` naming the config field, its value and the valid range."""
    if not ok:
        raise AgentError(f"invalid {name}={value!r}; expected {expected}")


def check_positive_int(name: str, value: Any) -> None:
    check_field(name, value, in_range(value, low=0, low_open=True, integer=True),
                "a positive integer")


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


# ---------------------------------------------------------------------------------- device


def to_device(array: np.ndarray | Tensor, device: torch.device,
              dtype: torch.dtype | None = None) -> Tensor:
    """``array`` as a tensor on ``device`` (and ``dtype``, if given): the one numpy -> torch
    crossing of the agents (never torch's default device: host data starts on the host).

    On the CPU it shares memory with a numpy array of that dtype (no copy), as
    ``torch.from_numpy`` does, so CPU runs are unchanged; elsewhere it is one copy to the
    device."""
    tensor = array if isinstance(array, Tensor) else torch.from_numpy(np.asarray(array))
    if tensor.device == device and (dtype is None or tensor.dtype == dtype):
        return tensor  # what .to() returns, without its dispatch (the replay path's hot spot)
    return tensor.to(device=device, dtype=dtype)


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
