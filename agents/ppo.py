"""PPO (Schulman et al. 2017) in the style of CleanRL's ``ppo.py``, pausable and probe-able.

One training loop (:meth:`PPO.learn`): collect ``num_steps`` steps from each of
``num_envs`` sub-envs of a ``gymnasium.vector.VectorEnv``, compute GAE with the critic,
then ``update_epochs`` passes of ``num_minibatches`` Adam steps on the clipped surrogate
+ entropy bonus + (clipped) value loss. Actor and critic are separate :class:`MLP` s
(probes measure each) trained by one Adam over both.

Differences from CleanRL, all for correctness under gymnasium >= 1.0:

* Time-limit truncation bootstraps from the value of the final observation (CleanRL treats
  it as termination).
* Vector envs in ``NEXT_STEP`` autoreset mode (gymnasium's default) spend one step per
  episode end on the reset; that step's action is ignored by the env, so it is dropped
  from the losses (``SAME_STEP`` mode is supported too).
* Observation/reward normalisation, when on, lives in the agent (see
  :mod:`agents.normalization`), not in env wrappers.

The agent is a *population* of K members (``seeds``; default one, ``config.seed``) trained
in lockstep, each exactly as a run of its own seed (:mod:`agents.population`): its own
vector env, RNG streams, normalisation statistics, rollout, minibatch order, networks and
Adam moments (slices of stacked tensors, :mod:`agents.batched`), mitigations. Members'
rollouts keep different numbers of real steps (autoreset steps are dropped), so each
minibatch is padded to the longest member's and every mean is over a member's own rows.
A single run is a population of one; :class:`PPOMember` is one member with the interface
of a single agent.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from torch import Tensor, nn

from agents import _common as common
from agents import population
from agents.base import (
    AgentError,
    Batch,
    DivergenceError,
    LearnResult,
    Mitigation,
    ProbeTarget,
    ShiftPolicy,
    check_field_types,
    parse_device,
)
from agents.batched import StackedMLP
from agents.distributions import CategoricalPolicy, GaussianPolicy
from agents.networks import MLP
from agents.normalization import ObservationNormalizer, RewardNormalizer


@dataclass
class PPOConfig:
    """PPO hyperparameters; defaults are CleanRL's CartPole ``ppo.py`` settings.

    Attributes:
        seed: seeds network init, action sampling, minibatch order and the first env reset.
        learning_rate: Adam step size (annealed linearly to 0 over ``total_steps`` if
            ``anneal_lr``; the anneal follows ``global_step`` and is not restarted by a shift).
        num_envs / num_steps: sub-envs and steps per sub-env in one rollout.
        total_steps: env steps over which the learning rate anneals.
        gamma / gae_lambda: discount and GAE lambda.
        num_minibatches / update_epochs: minibatches per epoch, epochs per rollout.
        norm_adv: normalise advantages per minibatch.
        clip_coef: surrogate (and value, if ``clip_vloss``) clipping range.
        ent_coef / vf_coef: entropy bonus and value-loss weights.
        rewarm_ent_coef / rewarm_steps: with ``shift.exploration = "rewarm"`` (an ORACLE
            exploration control, PPO's counterpart of DQN's epsilon re-warm) the entropy
            weight jumps to ``rewarm_ent_coef`` at each switch and decays linearly back to
            ``ent_coef`` over ``rewarm_steps`` env steps.
        max_grad_norm: clip the global gradient norm (None = off).
        target_kl: stop the epochs of a rollout early when approx KL exceeds it (None = off).
        widths / activation / layer_norm / init: both networks (:class:`agents.networks.MLP`).
        actor_head_gain / critic_head_gain: orthogonal gains of the output layers.
        init_log_std: initial log standard deviation of the Gaussian policy (Box actions).
        normalize_observation / normalize_reward: running normalisation (agent state).
        obs_clip / reward_clip: clipping after normalisation.
        adam_betas / adam_eps: Adam options.
        device: where networks, Adam state and rollout tensors live ("cpu", "cuda",
            "cuda:N"; a run config sets it from ``experiment.device``). The RNGs and the
            rollout's storage during collection stay on the host, so a GPU run samples
            what a CPU run samples.
    """

    seed: int = 1
    learning_rate: float = 2.5e-4
    num_envs: int = 4
    num_steps: int = 128
    anneal_lr: bool = True
    total_steps: int = 500_000
    gamma: float = 0.99
    gae_lambda: float = 0.95
    num_minibatches: int = 4
    update_epochs: int = 4
    norm_adv: bool = True
    clip_coef: float = 0.2
    clip_vloss: bool = True
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    rewarm_ent_coef: float = 0.1
    rewarm_steps: int = 8_192
    max_grad_norm: float | None = 0.5
    target_kl: float | None = None
    widths: tuple[int, ...] = field(default=(64, 64))
    activation: str = "tanh"
    layer_norm: bool = False
    init: str = "orthogonal"
    actor_head_gain: float = 0.01
    critic_head_gain: float = 1.0
    init_log_std: float = 0.0
    normalize_observation: bool = False
    normalize_reward: bool = False
    obs_clip: float = 10.0
    reward_clip: float = 10.0
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-5
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_field_types(type(self), self.__dict__)
        parse_device(self.device)
        common.check_network_fields(self)
        for name in ("num_envs", "num_steps", "total_steps", "num_minibatches", "update_epochs",
                     "rewarm_steps"):
            common.check_positive_int(name, getattr(self, name))
        common.check_field(
            "num_minibatches",
            self.num_minibatches,
            self.num_minibatches <= self.batch_size,
            f"at most num_envs * num_steps = {self.batch_size}",
        )
        common.check_field(
            "gae_lambda", self.gae_lambda, 0.0 <= self.gae_lambda <= 1.0, "in [0, 1]"
        )
        common.check_field("clip_coef", self.clip_coef, self.clip_coef > 0, "> 0")
        for name in ("ent_coef", "vf_coef", "rewarm_ent_coef"):
            common.check_field(name, getattr(self, name), getattr(self, name) >= 0, ">= 0")
        for name in ("obs_clip", "reward_clip"):
            common.check_field(name, getattr(self, name), getattr(self, name) > 0, "> 0")
        common.check_field(
            "target_kl",
            self.target_kl,
            self.target_kl is None or self.target_kl > 0,
            "None (off) or > 0",
        )

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps


class _ActorCritic(nn.Module):
    """Actor and critic as one module (one parameter vector) for the ``actor_critic`` probe;
    its forward runs both so that feature hooks on either network fire."""

    def __init__(self, actor: MLP, critic: MLP) -> None:
        super().__init__()
        self.actor, self.critic = actor, critic

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.actor(x), self.critic(x)


@dataclass
class _RolloutState:
    """Where a vector env stands between steps (the agent's own, or a side rollout's)."""

    obs: np.ndarray  # raw observations from the env
    resetting: np.ndarray  # NEXT_STEP autoreset: the next step of these sub-envs is a reset
    episodes: common.EpisodeTracker


#: Per-update metrics, in the order of the population's accumulator columns.
_STATS = ("losses/policy_loss", "losses/entropy", "losses/old_approx_kl", "losses/approx_kl",
          "losses/clipfrac", "losses/value_loss", "losses/grad_norm")


class _MemberMeans:
    """Means over each member's real rows of a ``(K, M)`` minibatch padded to the longest
    member's ``M = max(lengths)`` rows: a plain mean over the rows where no member is
    padded, masked sums over the real counts otherwise. A single run's minibatch is its
    ``(M,)`` rows without the member dimension (see :meth:`PPO._minibatch_index`), whose
    means are ``(1,)``."""

    def __init__(self, lengths: Sequence[int], device: torch.device | None = None) -> None:
        width = max(lengths)
        self.flat = len(lengths) == 1
        self.padded = min(lengths) < width
        if self.padded:
            real = np.arange(width) < np.asarray(lengths)[:, None]
            self.mask = common.to_device(real.astype(np.float32), device)
            self.count = torch.tensor(lengths, dtype=torch.float32, device=device)

    def __call__(self, x: Tensor) -> Tensor:
        """``(K,)`` means of ``x`` ``(K, M)`` (or ``(M,)``)."""
        if not self.padded:
            return x.mean(-1, keepdim=self.flat)
        return (x * self.mask).sum(-1) / self.count

    def standardize(self, x: Tensor) -> Tensor:
        """``(x - mean) / (std + 1e-8)`` per member over its real rows (``std`` with Bessel's
        correction, as ``torch.std``); a member with a single row is left as it is."""
        if not self.padded:
            if x.shape[-1] < 2:
                return x
            return (x - x.mean(-1, keepdim=True)) / (x.std(-1, keepdim=True) + 1e-8)
        mean = self(x).unsqueeze(-1)
        var = ((x - mean).square() * self.mask).sum(-1) / (self.count - 1).clamp(min=1)
        standardized = (x - mean) / (var.sqrt().unsqueeze(-1) + 1e-8)
        return torch.where(self.count.unsqueeze(-1) > 1, standardized, x)


# PPO's loss, CleanRL's ``loss = pg_loss - ent_coef * entropy_loss + v_loss * vf_coef`` split
# by network: what the update minimises is ``actor_loss + critic_loss`` of a minibatch, and
# the probe targets ``policy`` / ``value`` / ``actor_critic`` are these same two functions
# on a member's batch (tested to agree with the update's loss on its own minibatch).
def actor_loss(policy: CategoricalPolicy | GaussianPolicy, actor_out: Tensor, batch: Batch,
               c: PPOConfig, ent_coef: float, mean: _MemberMeans) -> tuple[Tensor, list[Tensor]]:
    """Clipped surrogate minus ``ent_coef`` x entropy, per member (``mean`` over its rows),
    and its diagnostics ``[pg_loss, entropy, old_approx_kl, approx_kl, clipfrac]``
    (detached), the first five of :data:`_STATS`."""
    new_logprob, entropy = policy.log_prob_entropy(actor_out, batch["actions"])
    log_ratio = new_logprob - batch["logprobs"]
    ratio = log_ratio.exp()
    advantages = batch["advantages"]
    if c.norm_adv:
        advantages = mean.standardize(advantages)
    pg_loss = mean(torch.max(
        -advantages * ratio, -advantages * ratio.clamp(1 - c.clip_coef, 1 + c.clip_coef)
    ))
    entropy = mean(entropy)
    with torch.no_grad():
        stats = [pg_loss.detach(), entropy.detach(), mean(-log_ratio),
                 mean((ratio - 1) - log_ratio), mean(((ratio - 1.0).abs() > c.clip_coef).float())]
    return pg_loss - ent_coef * entropy, stats


def critic_loss(new_value: Tensor, batch: Batch, c: PPOConfig,
                mean: _MemberMeans) -> tuple[Tensor, Tensor]:
    """``vf_coef`` x the value loss ``0.5 x (clipped) squared error`` of the critic's
    ``new_value`` against the GAE returns, per member; and the value loss (detached, the
    ``losses/value_loss`` diagnostic)."""
    returns = batch["returns"]
    if c.clip_vloss:
        clipped = batch["values"] + (new_value - batch["values"]).clamp(-c.clip_coef, c.clip_coef)
        error = torch.max((new_value - returns).square(), (clipped - returns).square())
    else:
        error = (new_value - returns).square()
    v_loss = 0.5 * mean(error)
    return c.vf_coef * v_loss, v_loss.detach()


class PPOMember:
    """One member of a :class:`PPO` population, with the interface of a single PPO agent.

    What the runner, probes and mitigations use: ``config`` (this member's seed),
    ``global_step``, ``actor`` / ``critic`` / ``networks()`` (plain :class:`MLP` s whose
    parameters are views of the population's stacked tensors), ``optimizer`` (this member's
    view of Adam), ``mitigations``, ``obs_normalizer`` / ``reward_normalizer``,
    ``last_rollout``, ``policy_loss`` / ``value_loss``, ``probe_targets()``, ``collect``,
    ``state_dict()``.
    """

    def __init__(self, agent: PPO, index: int, config: PPOConfig, mitigations: list[Mitigation],
                 in_dim: int, out_dim: int) -> None:
        self.agent = agent
        self.index = index
        self.mitigations = mitigations
        self.config: PPOConfig = common.configure(config, mitigations)
        c = self.config
        self.rng = np.random.default_rng(c.seed)
        self.torch_rng = torch.Generator().manual_seed(c.seed)
        net = dict(widths=c.widths, activation=c.activation, layer_norm=c.layer_norm, init=c.init,
                   device=agent.device)
        self.actor = MLP(
            in_dim, out_dim, **net, head_gain=c.actor_head_gain, generator=self.torch_rng
        )
        self.critic = MLP(in_dim, 1, **net, head_gain=c.critic_head_gain, generator=self.torch_rng)
        if isinstance(agent.action_space, spaces.Box):
            # Registered on the actor so probes, checkpoints and the optimiser include it.
            self.actor.log_std = nn.Parameter(torch.full((out_dim,), float(c.init_log_std),
                                                         device=agent.device))
        self.obs_normalizer = (
            ObservationNormalizer(agent.obs_shape, c.obs_clip) if c.normalize_observation else None
        )
        self.reward_normalizer = (
            RewardNormalizer(c.num_envs, c.gamma, c.reward_clip) if c.normalize_reward else None
        )
        self.optimizer: population.MemberOptimizer | None = None  # set by the population
        self.last_rollout: Batch | None = None
        self._env: VectorEnv | None = None
        self._state: _RolloutState | None = None

    @property
    def global_step(self) -> int:
        return self.agent.global_step

    @property
    def policy(self) -> CategoricalPolicy | GaussianPolicy:
        if isinstance(self.agent.action_space, spaces.Box):
            return GaussianPolicy(self.actor.log_std)
        return CategoricalPolicy()

    def networks(self) -> dict[str, MLP]:
        return {"actor": self.actor, "critic": self.critic}

    def policy_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """:func:`actor_loss` of this member on a batch (the update's loss on it), and its
        diagnostics by name. Through the module, so the hooks of a probe see the features."""
        loss, stats = actor_loss(self.policy, self.actor(batch["obs"]), batch, self.config,
                                 self.agent.entropy_coef(), _MemberMeans([len(batch["obs"])]))
        return loss[0], {key: value[0] for key, value in zip(_STATS[:5], stats, strict=True)}

    def value_loss(self, batch: Batch) -> Tensor:
        """:func:`critic_loss` of this member on a batch (the update's loss on it)."""
        new_value = self.critic(batch["obs"]).squeeze(-1)
        return critic_loss(new_value, batch, self.config, _MemberMeans([len(batch["obs"])]))[0][0]

    def _normalize_obs(self, obs: np.ndarray, update: bool) -> np.ndarray:
        if self.obs_normalizer is not None:
            return self.obs_normalizer(obs, update)
        return np.asarray(obs, dtype=np.float32)

    def _reset(self, envs: VectorEnv, seed: int) -> _RolloutState:
        mode = envs.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise AgentError(f"unsupported autoreset mode {mode}; valid: NEXT_STEP, SAME_STEP")
        if envs.num_envs != self.config.num_envs:
            raise AgentError(
                f"vector env has {envs.num_envs} sub-envs but config.num_envs = "
                f"{self.config.num_envs}; they must match"
            )
        obs, _ = envs.reset(seed=seed)
        if self.reward_normalizer is not None:
            self.reward_normalizer.returns[:] = 0.0
        n = envs.num_envs
        return _RolloutState(obs, np.zeros(n, dtype=bool), common.EpisodeTracker(n))

    # ----------------------------------------------------------------- probes and rollouts

    def probe_targets(self) -> list[ProbeTarget]:
        """``policy`` and ``value`` (each network with its own loss) and ``actor_critic``:
        the full PPO loss (clipped surrogate − entropy bonus + vf_coef × value loss, as
        trained) over actor and critic as one parameter vector, as the spectral-collapse
        paper probes it. The networks share no parameters, so its Hessian is block diagonal
        and its spectrum is the union of the two per-network spectra: what it adds is the
        paper's single ε-rank over both (mass-weighted by parameter count, one λ_max for a
        relative ε). It offers no Gauss-Newton matrix (the surrogate is not convex in the
        logits)."""

        def inputs(batch: Batch) -> Tensor:
            return batch["obs"]

        both = _ActorCritic(self.actor, self.critic)
        layers = {
            f"{net}.{name}": layer
            for net, module in (("actor", self.actor), ("critic", self.critic))
            for name, layer in module.layers().items()
        }
        return [
            ProbeTarget(
                "policy",
                self.actor,
                self.actor.layers(),
                lambda b: self.policy_loss(b)[0],
                self._probe_batch,
                inputs,
                ggn=self._policy_ggn,
                fixed_loss=self.fixed_policy_loss,
                observe=self._observe,
            ),
            ProbeTarget(
                "value",
                self.critic,
                self.critic.layers(),
                self.value_loss,
                self._probe_batch,
                inputs,
                ggn=self._value_ggn,
                fixed_loss=self.fixed_value_loss,
                observe=self._observe,
            ),
            ProbeTarget(
                "actor_critic",
                both,
                layers,
                lambda b: self.policy_loss(b)[0] + self.value_loss(b),
                self._probe_batch,
                inputs,
            ),
        ]

    def _policy_ggn(self, batch: Batch) -> tuple[Any, Any]:
        """The policy's Fisher matrix on the batch's states: the Gauss-Newton matrix of
        ``−log π(a|s)``, whose Hessian in the actor output (softmax: diag p − ppᵀ;
        Gaussian: diag e^{−2 log σ}) does not depend on the actions or advantages."""

        def output_loss(z: Tensor) -> Tensor:
            return -self.policy.log_prob_entropy(z, batch["actions"])[0].mean()

        return (lambda: self.actor(batch["obs"])), output_loss

    def _value_ggn(self, batch: Batch) -> tuple[Any, Any]:
        """Gauss-Newton matrix of the unclipped value loss ``vf_coef · ½ (V − returns)²``."""

        def output_loss(z: Tensor) -> Tensor:
            return self.config.vf_coef * 0.5 * (z.squeeze(-1) - batch["returns"]).square().mean()

        return (lambda: self.critic(batch["obs"])), output_loss

    def _observe(self, obs: Tensor) -> Tensor:
        return common.to_device(self._normalize_obs(obs.cpu().numpy(), update=False),
                                self.agent.device)

    def fixed_policy_loss(self, batch: Batch) -> Tensor:
        """``mean_s KL(pi_theta0(.|s) || pi_theta(.|s))`` on the fixed states, theta0 = the
        current parameters held fixed: 0 with zero gradient here, and its Hessian is the
        policy's Fisher information on those states (a Gauss-Newton matrix), which needs
        no advantages and so is well defined on data this policy did not collect."""
        return self.policy.fisher_loss(self.actor(batch["obs"])).mean()

    def fixed_value_loss(self, batch: Batch) -> Tensor:
        """``vf_coef x 0.5 x mean (V(s) - [r + gamma (1 - terminated) V(s')])^2`` on fixed
        transitions, the bootstrap ``V(s')`` held fixed (semi-gradient TD(0), the critic's
        own regression without GAE, which would need this policy's actions): well defined
        on any transitions. Rewards are the env's (reward normalisation is not applied)."""
        value = self.critic(batch["obs"]).squeeze(-1)
        with torch.no_grad():
            bootstrap = self.critic(batch["next_obs"]).squeeze(-1)
        target = batch["rewards"] + self.config.gamma * (1.0 - batch["terminated"]) * bootstrap
        return self.config.vf_coef * 0.5 * (value - target).square().mean()

    def _probe_batch(self, n: int, generator: torch.Generator | None = None) -> Batch:
        """Up to ``n`` distinct samples of the last rollout, drawn with ``generator``."""
        if self.last_rollout is None:
            raise AgentError("no rollout yet: call learn() first or use collect()")
        idx = torch.randperm(len(self.last_rollout["obs"]), generator=generator, device="cpu")[:n]
        idx = idx.to(self.agent.device)
        return {k: v[idx] for k, v in self.last_rollout.items()}

    def collect(self, envs: VectorEnv, num_steps: int, seed: int) -> Batch:
        """A side rollout of about ``num_steps`` env steps (rounded up to whole vector steps).

        Resets ``envs`` with ``seed``, samples actions with a generator seeded by ``seed`` and
        computes GAE with the current critic; the agent's RNGs, step count, normalisation
        statistics and training env are untouched. Same format as :meth:`policy_loss` takes.
        """
        common.check_positive_int("num_steps", num_steps)
        obs, _ = envs.reset(seed=seed)
        n = envs.num_envs
        state = _RolloutState(obs, np.zeros(n, dtype=bool), common.EpisodeTracker(n))
        generator = torch.Generator().manual_seed(seed)
        batch, counts = self.agent._rollout([envs], [state], math.ceil(num_steps / n),
                                            [generator], [[]], False, [self.index])
        return {k: v[0, : counts[0]] for k, v in batch.items()}

    # ------------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """This member's checkpoint, in the format of a single run's."""
        state = {
            "config": asdict(self.config),
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "global_step": self.global_step,
            "rewarm_origin": self.agent.rewarm_origin,
            "rng": common.rng_state(self.rng, self.torch_rng),
            "obs_normalizer": self.obs_normalizer.rms.state_dict() if self.obs_normalizer else None,
            "reward_normalizer": (
                self.reward_normalizer.rms.state_dict() if self.reward_normalizer else None
            ),
            "last_rollout": self.last_rollout,
            "mitigations": [m.state_dict() for m in self.mitigations],
            # where the training env stands mid-episode, for an exact resume
            "episode": None if self._state is None else {
                "obs": self._state.obs, "resetting": self._state.resetting,
                "returns": self._state.episodes.returns, "lengths": self._state.episodes.lengths,
                "reward_returns": (self.reward_normalizer.returns
                                   if self.reward_normalizer else None)},
        }
        return copy.deepcopy(state)

    def load_state_dict(self, state: dict[str, Any], env: VectorEnv | None = None) -> None:
        """Restore this member (the step count is the population's: load every member from
        checkpoints of one step). Without ``env`` the next ``learn`` resets its env; with
        ``env`` -- the training vector env restored to its state at the checkpoint -- it
        continues every sub-env's episode in progress there, exactly."""
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.agent.global_step = int(state["global_step"])
        self.agent.rewarm_origin = state.get("rewarm_origin")
        common.load_rng_state(self.rng, self.torch_rng, state["rng"])
        if self.obs_normalizer is not None:
            self.obs_normalizer.rms.load_state_dict(state["obs_normalizer"])
        if self.reward_normalizer is not None:
            self.reward_normalizer.rms.load_state_dict(state["reward_normalizer"])
        rollout = copy.deepcopy(state["last_rollout"])  # a checkpoint's tensors: on any device
        self.last_rollout = (None if rollout is None
                             else {k: v.to(self.agent.device) for k, v in rollout.items()})
        common.load_mitigation_states(self.mitigations, state["mitigations"])
        self._env, self._state = None, None
        episode = state.get("episode")
        if env is not None and episode is not None:
            tracker = common.EpisodeTracker(len(episode["returns"]))
            tracker.returns[:], tracker.lengths[:] = episode["returns"], episode["lengths"]
            self._env = env
            self._state = _RolloutState(np.array(episode["obs"]),
                                        np.array(episode["resetting"]), tracker)
            if self.reward_normalizer is not None:
                self.reward_normalizer.returns = np.array(episode["reward_returns"])


class PPO(population.Population):
    """PPO on ``gymnasium.vector.VectorEnv`` s: a population of ``len(seeds)`` members
    (default one, ``config.seed``), one vector env each, in lockstep.

    ``observation_space`` / ``action_space`` are the *single* sub-env spaces
    (``envs.single_observation_space``): a Box observation, Discrete or 1-D Box actions.
    ``mitigations`` is the arm's list: member 0 uses these objects, every other member a
    copy. ``members[k]`` (:class:`PPOMember`) is member k as a single agent; a population of
    one also answers every attribute of its member (``agent.actor``, ``agent.optimizer``,
    ``agent.probe_targets()``...). ``target_kl`` (early stopping per member) needs K = 1.
    """

    member_env = VectorEnv

    #: The :class:`~agents.base.ShiftPolicy` settings PPO can act on (others must be "keep").
    SHIFT_KNOBS = ("optimizer", "exploration")

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        config: PPOConfig | None = None,
        mitigations: tuple[Mitigation, ...] | list[Mitigation] = (),
        *,
        seeds: Sequence[int] | None = None,
    ) -> None:
        base = config or PPOConfig()
        seeds = population.seeds_of(base.seed, seeds)
        self.obs_shape, _, in_dim = common.observation_spec(observation_space)
        if isinstance(action_space, spaces.Discrete):
            out_dim = int(action_space.n)
        elif isinstance(action_space, spaces.Box) and len(action_space.shape) == 1:
            out_dim = int(action_space.shape[0])
        else:
            raise AgentError(
                f"PPO cannot act in {action_space}; valid: Discrete or a 1-D Box action space"
            )
        self.action_space = action_space
        self.device = parse_device(base.device)
        self.continuous = isinstance(action_space, spaces.Box)
        if self.continuous:
            self._low, self._high = action_space.low, action_space.high
        self.members = [
            PPOMember(self, k, dataclasses.replace(base, seed=s),
                      population.member_mitigations(mitigations, k), in_dim, out_dim)
            for k, s in enumerate(seeds)
        ]
        self.config: PPOConfig = self.members[0].config
        for m in self.members[1:]:
            if dataclasses.replace(m.config, seed=self.config.seed) != self.config:
                raise AgentError("population members' mitigations configured different networks")
        self.k = len(self.members)
        if self.k > 1 and self.config.target_kl is not None:
            raise AgentError(
                f"target_kl={self.config.target_kl!r} stops a member's epochs early, which a "
                "lockstep population cannot do; valid: target_kl = None, or one seed per run"
            )
        self._actor = StackedMLP([m.actor for m in self.members])
        self._critic = StackedMLP([m.critic for m in self.members])
        self._params = [*self._actor.params, *self._critic.params]
        self._optimizer = common.make_adam(self._params, self.config)
        self._ones = torch.ones(self.k, device=self.device)
        for k, m in enumerate(self.members):
            owned = [*self._actor.member_params(k), *self._critic.member_params(k)]
            m.optimizer = population.MemberOptimizer(self._optimizer, self._params, owned, k)
        self.global_step = 0
        self.rewarm_origin: int | None = None  # env step of the last entropy re-warm
        self._attach_mitigations()

    def entropy_coef(self) -> float:
        """The entropy weight now: ``ent_coef``, or after a re-warm at step s0
        ``ent_coef + (rewarm_ent_coef - ent_coef) * max(0, 1 - (step - s0) / rewarm_steps)``."""
        c = self.config
        if self.rewarm_origin is None:
            return c.ent_coef
        left = max(0.0, 1.0 - (self.global_step - self.rewarm_origin) / c.rewarm_steps)
        return c.ent_coef + (c.rewarm_ent_coef - c.ent_coef) * left

    def _policy(self) -> CategoricalPolicy | GaussianPolicy:
        """The action distribution of all members (a Gaussian's log-std is ``(K, 1, d)``;
        a single run's ``(1, d)``, for its minibatches without the member dimension)."""
        if not self.continuous:
            return CategoricalPolicy()
        log_std = self._actor.param("log_std")
        return GaussianPolicy(log_std if self.k == 1 else log_std.unsqueeze(1))

    # ---------------------------------------------------------------------- training loop

    def learn(self, envs: VectorEnv | Sequence[VectorEnv], until: int) -> LearnResult | list[LearnResult]:
        """Train in whole rollouts until ``global_step >= until``.

        ``envs``: one vector env per member (a single run may pass it alone, and then gets
        one :class:`LearnResult` back instead of a list). An env other than a member's last
        one (or the first call, or after ``load_state_dict``) is reset with
        ``seed = member seed + global_step``. A single run raises :class:`DivergenceError`;
        a population records it in that member's result and trains on.
        """
        single = isinstance(envs, VectorEnv)
        envs = [envs] if single else list(envs)
        if len(envs) != self.k:
            raise AgentError(f"learn got {len(envs)} envs for a population of {self.k}; "
                             "give one vector env per member")
        c = self.config
        members = self.members
        for m, env in zip(members, envs, strict=True):
            if env is not m._env:
                m._env, m._state = env, m._reset(env, m.config.seed + self.global_step)
        episodes: list[list[tuple[int, float, int]]] = [[] for _ in members]
        sums = torch.zeros(len(_STATS), self.k, dtype=torch.float64, device=self.device)
        explained = np.zeros(self.k)
        diverged: list[DivergenceError | None] = [None] * self.k
        updates = rollouts = 0
        start_step, start_time = self.global_step, time.perf_counter()
        while self.global_step < until:
            if c.anneal_lr:
                frac = max(0.0, 1.0 - self.global_step / c.total_steps)
                for group in self._optimizer.param_groups:
                    group["lr"] = frac * c.learning_rate
            batch, counts = self._rollout(envs, [m._state for m in members], c.num_steps,
                                          [m.torch_rng for m in members], episodes, True,
                                          list(range(self.k)))
            for k, m in enumerate(members):
                m.last_rollout = {key: v[k, : counts[k]] for key, v in batch.items()}
            # Rows of the (K * width, ...) flattened batch: member k's row i is k * width + i.
            flat = {key: v.flatten(0, 1) for key, v in batch.items()}
            width = batch["obs"].shape[1]

            rows = []  # per update, its stats then grad norms, (len(_STATS) * K,) each
            for _epoch in range(c.update_epochs):
                splits = [np.array_split(m.rng.permutation(int(n)), c.num_minibatches)
                          for m, n in zip(members, counts, strict=True)]
                for j in range(c.num_minibatches):
                    parts = [split[j] for split in splits]
                    lengths = [len(p) for p in parts]
                    index = self._minibatch_index(parts, width)
                    minibatch = {key: v[index] for key, v in flat.items()}
                    loss, stats = self._losses(minibatch, lengths)
                    population.check_losses_finite(self.global_step, "loss", loss.tolist(),
                                                   diverged, self.k == 1)
                    rows.append(torch.cat([*stats, self._optimizer_step(loss)]))
                    updates += 1
                if c.target_kl is not None and stats[3].item() > c.target_kl:
                    break
            # One sum per rollout, not an op per update.
            sums += torch.stack(rows).view(len(rows), len(_STATS), self.k).double().sum(0)
            for k, hooks in enumerate(self._hooks["after_update"]):
                for mitigation in hooks:
                    mitigation.after_update(members[k], members[k].last_rollout)
            for k, m in enumerate(members):
                values, returns = m.last_rollout["values"], m.last_rollout["returns"]
                var_returns = returns.var(correction=0).item()
                residual = (returns - values).var(correction=0).item()
                explained[k] += 1.0 - residual / var_returns if var_returns > 0 else float("nan")
            rollouts += 1
        population.check_members_finite(self.global_step, members, diverged, single)
        elapsed = max(time.perf_counter() - start_time, 1e-9)
        results = []
        for k in range(self.k):
            metrics: dict[str, float] = {}
            if updates:
                metrics = dict(zip(_STATS, (sums[:, k] / updates).tolist(), strict=True))
                metrics["losses/explained_variance"] = float(explained[k] / rollouts)
            metrics["charts/learning_rate"] = self._optimizer.param_groups[0]["lr"]
            metrics["charts/ent_coef"] = self.entropy_coef()
            metrics["charts/sps"] = (self.global_step - start_step) / elapsed
            results.append(LearnResult(self.global_step, episodes[k], metrics, updates, diverged[k]))
        return results[0] if single else results

    def _minibatch_index(self, parts: list[np.ndarray], width: int) -> Tensor:
        """Rows of the flattened rollout (member k's row i is ``k * width + i``) for a
        minibatch of the members' ``parts`` (row numbers): ``(K, max length)``, each member
        padded with row 0; a single run's ``(length,)``, its minibatch without the member
        dimension (fewer and cheaper ops than a stack of one, for the same numbers)."""
        if self.k == 1:
            return common.to_device(parts[0], self.device)
        idx = np.zeros((self.k, max(len(p) for p in parts)), dtype=np.int64)
        for k, p in enumerate(parts):
            idx[k, : len(p)] = p + k * width
        return common.to_device(idx, self.device)

    def _train_forward(self, net: StackedMLP, obs: Tensor, lengths: list[int]) -> Tensor:
        """The autograd forward of a minibatch (a single run's without the member dimension)."""
        return net.single_forward(obs) if self.k == 1 else net.forward(obs, lengths)

    def _losses(self, mb: Batch, lengths: list[int]) -> tuple[Tensor, list[Tensor]]:
        """Per-member ``(K,)`` PPO losses :func:`actor_loss` + :func:`critic_loss` of a
        padded ``(K, M)`` minibatch (a single run's ``(M,)``; means over each member's own
        ``lengths[k]`` rows), and the per-member ``(K,)`` diagnostics in the order of
        :data:`_STATS` (without grad norm)."""
        mean = _MemberMeans(lengths, self.device)
        policy_loss, stats = actor_loss(
            self._policy(), self._train_forward(self._actor, mb["obs"], lengths), mb,
            self.config, self.entropy_coef(), mean)
        new_value = self._train_forward(self._critic, mb["obs"], lengths).squeeze(-1)
        value_loss, v_loss = critic_loss(new_value, mb, self.config, mean)
        return policy_loss + value_loss, [*stats, v_loss]

    def _optimizer_step(self, loss: Tensor) -> Tensor:
        """Backward of the summed member losses, per-member clipping, hooks, Adam; the
        per-member gradient norms before clipping."""
        self._actor.clear_grads()
        self._critic.clear_grads()
        loss.backward(self._ones)  # d(sum of the members' losses), without a sum node
        self._actor.finish_backward()
        self._critic.finish_backward()
        for p in self._params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        norms = population.clip_per_member(self._params, self.config.max_grad_norm)
        for k, hooks in enumerate(self._hooks["before_optimizer_step"]):
            if hooks:
                self._actor.link_grads(k)
                self._critic.link_grads(k)
                for m in hooks:
                    m.before_optimizer_step(self.members[k])
        self._optimizer.step()
        for k, hooks in enumerate(self._hooks["after_step"]):
            for m in hooks:
                m.after_step(self.members[k])
        return norms

    def _forward(self, net: StackedMLP, obs: np.ndarray, ks: list[int]) -> np.ndarray | Tensor:
        """Outputs ``(len(ks), n, out)`` of members ``ks`` (all of them, or one) for
        observations ``(len(ks), n, ...)``, without autograd or hooks: in numpy where the
        network allows it (on the CPU, a fraction of torch's per-op cost), else in torch."""
        full = len(ks) == self.k
        out = net.numpy_inference(obs) if full else net.numpy_inference(obs[0], ks[0])
        if out is not None:
            return out if full else out[None]
        x = common.to_device(obs, self.device)
        return net.inference(x) if full else net.member_inference(ks[0], x[0]).unsqueeze(0)

    def _act(self, policy: CategoricalPolicy | GaussianPolicy, obs: np.ndarray, ks: list[int],
             generators: list[torch.Generator]) -> tuple[np.ndarray, np.ndarray]:
        """Actions and their log-probabilities ``(len(ks), n)`` for ``obs``."""
        out = self._forward(self._actor, obs, ks)
        if isinstance(out, np.ndarray):
            return policy.sample_numpy(out, generators)
        action, logprob = policy.sample(out, generators)
        return action.cpu().numpy(), logprob.cpu().numpy()

    def _values(self, obs: np.ndarray, ks: list[int]) -> np.ndarray:
        """Critic values ``(len(ks), n)`` of ``obs``."""
        out = self._forward(self._critic, obs, ks)
        return (out if isinstance(out, np.ndarray) else out.cpu().numpy())[..., 0]

    def _rollout(
        self,
        envs: list[VectorEnv],
        states: list[_RolloutState],
        num_steps: int,
        generators: list[torch.Generator],
        episodes: list[list],
        train: bool,
        ks: list[int],
    ) -> tuple[Batch, np.ndarray]:
        """Step each member ``ks[i]``'s ``envs[i]`` ``num_steps`` times under its policy; the
        GAE batch of real steps, padded ``(len(ks), max real steps, ...)``, and the numbers
        of real steps.

        ``train`` advances ``global_step`` and updates normalisation statistics; a side
        rollout (``train=False``, one member) only reads them.
        """
        c = self.config
        members = [self.members[k] for k in ks]
        m_count, n = len(ks), envs[0].num_envs
        same_step = envs[0].metadata.get("autoreset_mode") == AutoresetMode.SAME_STEP
        if self.continuous:
            log_std = self._actor.param("log_std").detach()
            policy = GaussianPolicy(log_std.unsqueeze(1) if len(ks) == self.k
                                    else log_std[ks[0]].view(1, 1, -1))
        else:
            policy = CategoricalPolicy()
        # numpy storage: per-step writes into numpy are much cheaper than torch indexing.
        shape = (num_steps, m_count, n)
        obs = np.zeros((*shape, *self.obs_shape), dtype=np.float32)
        action_dtype = np.float32 if self.continuous else np.int64
        actions = np.zeros((*shape, *self.action_space.shape), dtype=action_dtype)
        logprobs = np.zeros(shape, dtype=np.float32)
        values = np.zeros((num_steps + 1, m_count, n), dtype=np.float32)
        rewards = np.zeros(shape, dtype=np.float32)
        terminated = np.zeros(shape, dtype=np.float32)
        ends = np.zeros(shape, dtype=np.float32)
        valid = np.ones(shape, dtype=bool)
        final_values: dict[tuple[int, int, int], float] = {}
        next_obs = np.stack([m._normalize_obs(s.obs, update=False)
                             for m, s in zip(members, states, strict=True)])
        for t in range(num_steps):
            obs[t] = next_obs
            for i, s in enumerate(states):
                valid[t, i] = ~s.resetting
            env_actions, logprobs[t] = self._act(policy, next_obs, ks, generators)
            actions[t] = env_actions
            values[t] = self._values(next_obs, ks)
            if self.continuous:
                env_actions = np.clip(env_actions, self._low, self._high)
            if train:
                self.global_step += n
            for i, (env, m, s) in enumerate(zip(envs, members, states, strict=True)):
                raw_obs, reward, term, trunc, info = env.step(env_actions[i])
                done = term | trunc
                s.episodes.step(reward, done, self.global_step, episodes[i],
                                counted=None if same_step else valid[t, i])
                if m.reward_normalizer is not None:
                    reward = m.reward_normalizer(reward, done, update=train)
                rewards[t, i], terminated[t, i], ends[t, i] = reward, term, done
                if same_step and trunc.any():  # the reset obs replaced the final one: value it
                    for j in np.flatnonzero(trunc & ~term):
                        final = m._normalize_obs(info["final_obs"][j][None], update=False)
                        final_values[(t, i, j)] = self._critic.member_inference(
                            ks[i], common.to_device(final, self.device)).item()
                s.obs = raw_obs
                s.resetting = np.zeros(n, dtype=bool) if same_step else done
                next_obs[i] = m._normalize_obs(raw_obs, update=train)
        values[num_steps] = self._values(next_obs, ks)

        # GAE. next_values[t] is V of the state after step t: in NEXT_STEP mode obs[t+1] is
        # the final observation of an ended episode, so truncation bootstraps from it.
        next_values = values[1:].copy()
        for (t, i, j), v in final_values.items():
            next_values[t, i, j] = v
        advantages = np.zeros(shape, dtype=np.float32)
        last_gae = np.zeros((m_count, n), dtype=np.float32)
        for t in reversed(range(num_steps)):
            delta = rewards[t] + c.gamma * next_values[t] * (1.0 - terminated[t]) - values[t]
            last_gae = delta + c.gamma * c.gae_lambda * (1.0 - ends[t]) * last_gae
            advantages[t] = last_gae
        returns = advantages + values[:-1]

        fields = {"obs": obs, "actions": actions, "logprobs": logprobs, "advantages": advantages,
                  "returns": returns, "values": values[:-1]}
        keep = [valid[:, i].reshape(-1) for i in range(m_count)]
        counts = np.array([int(k.sum()) for k in keep])
        width = int(counts.max())
        out = {}
        for key, array in fields.items():
            padded = np.zeros((m_count, width, *array.shape[3:]), dtype=array.dtype)
            for i in range(m_count):
                padded[i, : counts[i]] = array[:, i].reshape(-1, *array.shape[3:])[keep[i]]
            out[key] = common.to_device(padded, self.device)
        return out, counts

    # ------------------------------------------------------------------ oracle and state

    def on_task_switch(self, policy: ShiftPolicy) -> None:
        """Apply the oracle knobs of ``policy`` to every member, then each member's
        mitigations' ``on_task_switch``.

        PPO has no replay buffer or target network: those knobs must stay "keep".
        ``exploration = "rewarm"`` restarts the entropy re-warm (:meth:`entropy_coef`).
        ``reinitialize`` re-draws both networks (and log-std) and resets Adam;
        normalisation statistics are kept.
        """
        policy.check_knobs("PPO", self.SHIFT_KNOBS)
        if policy.reinitialize:
            for m in self.members:
                m.actor.reset_parameters(m.torch_rng)
                m.critic.reset_parameters(m.torch_rng)
                if self.continuous:
                    with torch.no_grad():
                        m.actor.log_std.fill_(m.config.init_log_std)
            common.reset_optimizer(self._optimizer)
            for m in self.members:
                for mitigation in m.mitigations:
                    mitigation.attach(m)
        if policy.optimizer == "reset":
            common.reset_optimizer(self._optimizer)
        if policy.exploration == "rewarm":
            self.rewarm_origin = self.global_step
        self._switch_mitigations()

