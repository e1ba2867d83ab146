"""Action distributions for PPO, written out so sampling takes an explicit generator.

``torch.distributions`` validates arguments on every call and draws from the global RNG;
here every draw uses the agent's own ``torch.Generator`` (so probes and side rollouts never
change training) and the maths is a few tensor ops:

* :class:`CategoricalPolicy` (Discrete actions): ``log pi(a|s) = log_softmax(logits)[a]``,
  ``H = -sum_a pi(a) log pi(a)``; sampling by inverting the CDF.
* :class:`GaussianPolicy` (Box actions): diagonal Gaussian with a state-independent
  ``log_std`` parameter; ``log pi(a|s) = sum_d [-(a_d-mu_d)^2 / (2 sigma_d^2) - log sigma_d
  - log(2 pi)/2]``, ``H = sum_d [1/2 + log(2 pi)/2 + log sigma_d]``.

Each ``sample`` has a numpy twin, ``sample_numpy``, for acting on the CPU (the same draws
from the same generators; tests/agents/test_distributions_and_config.py holds them equal).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)

Generators = torch.Generator | list[torch.Generator] | tuple[torch.Generator, ...]


def _draw(fn, shape: tuple[int, ...], generator: Generators, dtype: torch.dtype) -> Tensor:
    """``fn(shape)`` from ``generator``, on the generator's device; with one generator per
    member (a population, leading axis of ``shape``), member k's slice is drawn from
    ``generator[k]`` exactly as its own run would draw it. Drawn on the generator's device
    (the host's, for the agents), so a CPU generator gives the same actions to a network on
    any device."""
    # A list or tuple is asked for first: isinstance against torch.Generator goes through a
    # Python-level metaclass check, dear at one call per env step.
    if not isinstance(generator, (list, tuple)):
        return fn(shape, generator=generator, dtype=dtype, device=generator.device)
    if len(generator) == 1:  # a single run: its draw, without a stack
        g = generator[0]
        return fn(shape[1:], generator=g, dtype=dtype, device=g.device).unsqueeze(0)
    return torch.stack([fn(shape[1:], generator=g, dtype=dtype, device=g.device)
                        for g in generator])


def _draw_numpy(fn, shape: tuple[int, ...], generator: Generators) -> np.ndarray:
    """:func:`_draw` of float32 as a numpy array; a single run's draw gets its member axis
    in numpy (a torch view op is dear beside a draw this small, at every env step)."""
    if isinstance(generator, (list, tuple)) and len(generator) == 1:
        return _draw(fn, shape[1:], generator[0], torch.float32).numpy()[None]
    return _draw(fn, shape, generator, torch.float32).numpy()


def _on(x: Tensor, like: Tensor) -> Tensor:
    return x if x.device == like.device else x.to(like.device)


class CategoricalPolicy:
    """Maps actor logits to a categorical distribution over ``n`` actions."""

    continuous = False

    def sample(self, logits: Tensor, generator: Generators) -> tuple[Tensor, Tensor]:
        # Inverse-CDF sampling: one uniform per row (cheaper than torch.multinomial on
        # the tiny batches of acting).
        log_probs = torch.log_softmax(logits, dim=-1)
        cdf = log_probs.exp().cumsum(-1)
        u = _on(_draw(torch.rand, (*logits.shape[:-1], 1), generator, logits.dtype), logits)
        actions = (cdf < u * cdf[..., -1:]).sum(-1, keepdim=True).clamp_(max=logits.shape[-1] - 1)
        return actions.squeeze(-1), log_probs.gather(-1, actions).squeeze(-1)

    def sample_numpy(self, logits: np.ndarray, generator: Generators) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`sample` for float32 numpy logits (acting on the CPU, where numpy's per-op
        cost is a fraction of torch's): the same uniforms, so the same actions but where a
        uniform falls within rounding of a CDF step; log-probabilities to float32 rounding."""
        z = logits - logits.max(-1, keepdims=True)
        cdf = np.exp(z).cumsum(-1)  # unnormalised: its last entry is the softmax denominator
        u = _draw_numpy(torch.rand, (*logits.shape[:-1], 1), generator)
        total = cdf[..., -1:]
        # The first CDF entry >= u * total is the number of entries below it (what sample
        # counts): the CDF rises, and its last entry, total, is >= u * total as u < 1.
        actions = (cdf >= u * total).argmax(-1)
        rows = z.reshape(-1, z.shape[-1])  # a flat pick: np.take_along_axis costs several ops
        picked = rows[np.arange(len(rows)), actions.reshape(-1)].reshape(actions.shape)
        return actions, picked - np.log(total[..., 0])

    def log_prob_entropy(self, logits: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        log_probs = torch.log_softmax(logits, dim=-1)
        log_prob = log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
        entropy = -(log_probs.exp() * log_probs).sum(-1)
        return log_prob, entropy

    def fisher_loss(self, logits: Tensor) -> Tensor:
        """Per row ``KL(p0 || softmax(logits))`` with ``p0 = softmax(logits)`` held fixed:
        0, zero gradient, Hessian = the Fisher information of the logits' parameters."""
        log_q = torch.log_softmax(logits, dim=-1)
        log_p0 = log_q.detach()
        return (log_p0.exp() * (log_p0 - log_q)).sum(-1)


class GaussianPolicy:
    """Diagonal Gaussian around the actor output with a learned, state-independent log-std
    (a population's: ``(K, 1, action_dim)``, broadcasting over each member's batch)."""

    continuous = True

    def __init__(self, log_std: nn.Parameter) -> None:
        self.log_std = log_std

    def sample(self, mean: Tensor, generator: Generators) -> tuple[Tensor, Tensor]:
        noise = _on(_draw(torch.randn, tuple(mean.shape), generator, mean.dtype), mean)
        actions = mean + self.log_std.exp() * noise
        log_prob = (-0.5 * noise.square() - self.log_std - _HALF_LOG_2PI).sum(-1)
        return actions, log_prob

    def sample_numpy(self, mean: np.ndarray, generator: Generators) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`sample` for float32 numpy means (a CPU log-std): the same noise, the same
        actions and log-probabilities to float32 rounding."""
        log_std = self.log_std.detach().numpy()
        noise = _draw_numpy(torch.randn, mean.shape, generator)
        actions = mean + np.exp(log_std) * noise
        log_prob = (-0.5 * np.square(noise) - log_std - _HALF_LOG_2PI).sum(-1)
        return actions, log_prob

    def log_prob_entropy(self, mean: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        z = (actions - mean) * torch.exp(-self.log_std)
        log_prob = (-0.5 * z.square() - self.log_std - _HALF_LOG_2PI).sum(-1)
        entropy = (0.5 + _HALF_LOG_2PI + self.log_std).sum(-1).expand(log_prob.shape)
        return log_prob, entropy

    def fisher_loss(self, mean: Tensor) -> Tensor:
        """Per row ``KL(N(mu0, sigma0) || N(mean, sigma))`` with ``mu0, sigma0`` the current
        values held fixed: 0, zero gradient, Hessian = the Fisher information."""
        log_std0, mean0 = self.log_std.detach(), mean.detach()
        var = torch.exp(2 * self.log_std)
        kl = (self.log_std - log_std0
              + (torch.exp(2 * log_std0) + (mean0 - mean).square()) / (2 * var) - 0.5)
        return kl.sum(-1)
