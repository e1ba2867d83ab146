"""DQN (Mnih et al. 2015) in the style of CleanRL's ``dqn.py``, pausable and probe-able.

One training loop (:meth:`DQN.learn`): epsilon-greedy acting from a linear schedule,
1-step transitions into a preallocated :class:`~agents.replay.ReplayBuffer`, and every
``train_frequency`` env steps (after ``learning_starts``) ``gradient_steps`` Adam steps on
the n-step TD loss against a target network that is hard-copied (``tau = 1``) or
Polyak-averaged every ``target_network_frequency`` env steps.

The agent is a *population* of K members (``seeds``; default one, ``config.seed``) trained
in lockstep, each exactly as a run of its own seed (:mod:`agents.population`): its own
env, replay rows, RNG streams, network and Adam moments (slices of stacked tensors,
:mod:`agents.batched`), mitigations. A single run is a population of one. Each member is
seen by the runner, the probes and the mitigations as a :class:`DQNMember` with the
interface of a single agent.

All randomness comes from each member's own generators (numpy for epsilon-greedy and
replay sampling, torch for network initialisation), so probes and :meth:`DQNMember.collect`
cannot change training.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import Tensor

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
    check_choice,
    check_field_types,
    parse_device,
)
from agents.batched import StackedMLP
from agents.networks import MLP
from agents.replay import ReplayBuffer


# TD losses per member (mean over the batch, the last axis) and, beside each, its gradient
# with respect to Q(s, a) -- what the closed-form backward of StackedMLP starts from.
def _huber(q_taken: Tensor, target: Tensor) -> Tensor:
    return F.smooth_l1_loss(q_taken, target, reduction="none").mean(-1)


def _huber_grad(q_taken: Tensor, target: Tensor) -> Tensor:
    return (q_taken - target).clamp_(-1.0, 1.0).div_(q_taken.shape[-1])


def _mse(q_taken: Tensor, target: Tensor) -> Tensor:
    return (q_taken - target).square().mean(-1)


def _mse_grad(q_taken: Tensor, target: Tensor) -> Tensor:
    return (q_taken - target).mul_(2.0 / q_taken.shape[-1])


TD_LOSSES = {"huber": (_huber, _huber_grad), "mse": (_mse, _mse_grad)}
LOSSES = tuple(TD_LOSSES)


# The TD loss, written once: the update (on a population's ``(K, B)`` batch, stacked
# networks) and the probe target ``q`` (on one member's ``(B,)`` batch, through its module)
# both call these two functions (tested to agree on the update's own batch).
@torch.no_grad()
def td_target(batch: Batch, target_q: Callable[[Tensor], Tensor],
              online_q: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """``rewards + discounts * Q_target(next_obs, a*)``, held fixed (no grad): ``a*`` greedy
    under the target network, or under the online network ``online_q`` (double DQN)."""
    next_q = target_q(batch["next_obs"])
    if online_q is not None:
        best = online_q(batch["next_obs"]).argmax(-1, keepdim=True)
        bootstrap = next_q.gather(-1, best).squeeze(-1)
    else:
        bootstrap = next_q.max(-1).values
    return batch["rewards"] + batch["discounts"] * bootstrap


def td_loss(q_values: Tensor, actions: Tensor, target: Tensor, loss: str) -> tuple[Tensor, Tensor]:
    """(the ``loss`` of :data:`TD_LOSSES` between ``Q(s, a)`` and ``target``, mean over the
    batch, the last axis; ``Q(s, a)``) for ``q_values = Q(s, ·)`` and the taken ``actions``."""
    q_taken = q_values.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    return TD_LOSSES[loss][0](q_taken, target), q_taken
#: ``DQNConfig.horizon`` when unset: CleanRL's 500k-step CartPole run.
DEFAULT_HORIZON = 500_000


@dataclass
class DQNConfig:
    """DQN hyperparameters; defaults are CleanRL's CartPole ``dqn.py`` settings.

    ``DQNConfig()`` is CleanRL's CartPole-v1 run (MSE loss, epsilon decayed over half of 500k
    steps, 10k warm-up steps), which reaches CartPole's maximum return of 500 (see
    ``benchmarks/RESULTS.md``); Huber loss with these settings diverges (see ``loss``).
    Exploration and warm-up are fractions of ``horizon`` unless given in env steps, so a
    run of any length gets a complete epsilon schedule; a run config resolves ``horizon``
    to one task's length (``experiments.resolve``).

    Attributes:
        seed: seeds network init, epsilon-greedy, replay sampling and the first env reset.
        learning_rate: Adam step size.
        buffer_size: replay capacity (transitions).
        gamma: discount.
        tau: target update rate (1.0 = hard copy).
        target_network_frequency: env steps between target updates.
        batch_size: transitions per gradient step.
        start_e / end_e: epsilon at the start / end of the linear decay.
        horizon: env steps the two fractions below refer to (None: 500,000, CleanRL's run;
            a run config resolves it to ``env.period``, or ``experiment.steps`` when the run
            never shifts).
        exploration_fraction: epsilon decays from ``start_e`` to ``end_e`` over this
            fraction of ``horizon`` (CleanRL: 0.5 of the run; SB3: 0.1).
        exploration_steps: the decay in env steps, from step 0 or from a re-warm (None:
            ``exploration_fraction * horizon``).
        learning_starts_fraction: warm-up before the first update as a fraction of
            ``horizon`` (CleanRL: 10k of 500k = 0.02).
        learning_starts: the warm-up in env steps (None: ``learning_starts_fraction *
            horizon``).
        train_frequency: env steps between updates.
        gradient_steps: optimiser steps per update (replay ratio = this / train_frequency).
        n_step: length of the n-step return (1 = classic DQN).
        double_dqn: pick the bootstrap action with the online net (van Hasselt et al.).
        loss: "mse" (CleanRL) or "huber" (smooth L1, delta 1). With the other defaults
            Huber diverges on CartPole (Q-values ~2e6 at 200k steps, ~4e7 at 500k, return
            ~10; ``benchmarks/RESULTS.md``). A likely reason, not isolated: every CartPole
            reward is 1, so only the rare terminal transitions pin the values down, and
            Huber gives their large errors no more gradient than any other sample, so the
            max-operator's overestimation in the bootstrapped targets compounds.
        max_grad_norm: clip the global gradient norm (None = off).
        widths / activation / layer_norm / init: the Q network (:class:`agents.networks.MLP`).
        adam_betas / adam_eps: Adam options.
        update_phase: env steps between ``after_update`` mitigation hooks (after learning_starts).
        checkpoint_buffer: include the replay buffer in ``state_dict`` (``buffer.nbytes``).
        device: where networks, Adam state and sampled batches live ("cpu", "cuda",
            "cuda:N"; a run config sets it from ``experiment.device``). Replay storage and
            the RNGs stay on the host, so a GPU run draws what a CPU run draws.
    """

    seed: int = 1
    learning_rate: float = 2.5e-4
    buffer_size: int = 10_000
    gamma: float = 0.99
    tau: float = 1.0
    target_network_frequency: int = 500
    batch_size: int = 128
    start_e: float = 1.0
    end_e: float = 0.05
    horizon: int | None = None
    exploration_fraction: float = 0.5
    exploration_steps: int | None = None
    learning_starts_fraction: float = 0.02
    learning_starts: int | None = None
    train_frequency: int = 10
    gradient_steps: int = 1
    n_step: int = 1
    double_dqn: bool = False
    loss: str = "mse"
    max_grad_norm: float | None = None
    widths: tuple[int, ...] = field(default=(120, 84))
    activation: str = "relu"
    layer_norm: bool = False
    init: str = "default"
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    update_phase: int = 1_000
    checkpoint_buffer: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        check_field_types(type(self), self.__dict__)
        parse_device(self.device)
        common.check_network_fields(self)
        check_choice("loss", self.loss, LOSSES)
        for name in (
            "buffer_size",
            "target_network_frequency",
            "batch_size",
            "train_frequency",
            "gradient_steps",
            "n_step",
            "update_phase",
        ):
            common.check_positive_int(name, getattr(self, name))
        for name in ("exploration_steps", "learning_starts"):
            value = getattr(self, name)
            common.check_field(name, value, value is None or value >= 0, "None or an integer >= 0")
        for name in ("exploration_fraction", "learning_starts_fraction"):
            value = getattr(self, name)
            common.check_field(name, value, 0.0 <= value <= 1.0, "a fraction in [0, 1]")
        common.check_field("horizon", self.horizon, self.horizon is None or self.horizon > 0,
                           "None or a positive integer")
        common.check_field("tau", self.tau, 0.0 < self.tau <= 1.0, "a number in (0, 1]")
        for name in ("start_e", "end_e"):
            value = getattr(self, name)
            common.check_field(name, value, 0.0 <= value <= 1.0, "a probability in [0, 1]")
        common.check_field(
            "batch_size",
            self.batch_size,
            self.batch_size <= self.buffer_size,
            f"at most buffer_size={self.buffer_size}",
        )

    def schedule(self) -> tuple[int, int]:
        """(epsilon decay, warm-up) in env steps: ``exploration_steps`` / ``learning_starts``
        where given, else their fractions of ``horizon`` (default 500,000)."""
        horizon = DEFAULT_HORIZON if self.horizon is None else self.horizon
        decay = self.exploration_steps
        warmup = self.learning_starts
        if decay is None:
            decay = round(self.exploration_fraction * horizon)
        if warmup is None:
            warmup = round(self.learning_starts_fraction * horizon)
        return int(decay), int(warmup)


class DQNMember:
    """One member of a :class:`DQN` population, with the interface of a single DQN agent.

    What the runner, probes and mitigations use: ``config`` (this member's seed),
    ``global_step``, ``q`` / ``networks()`` / ``target_network`` (plain :class:`MLP` s whose
    parameters are views of the population's stacked tensors), ``optimizer`` (this member's
    view of Adam, :class:`~agents.population.MemberOptimizer`), ``buffer`` (the population's;
    this member's transitions are row ``index``), ``mitigations``, ``rng`` / ``torch_rng``,
    ``epsilon()``, ``td_loss``, ``probe_targets()``, ``collect``, ``state_dict()``.
    """

    def __init__(self, agent: DQN, index: int, config: DQNConfig,
                 mitigations: list[Mitigation], in_dim: int, num_actions: int) -> None:
        self.agent = agent
        self.index = index
        self.mitigations = mitigations
        self.config: DQNConfig = common.configure(config, mitigations)
        c = self.config
        self.rng = np.random.default_rng(c.seed)
        self.torch_rng = torch.Generator().manual_seed(c.seed)
        self.q = MLP(in_dim, num_actions, c.widths, c.activation, c.layer_norm, c.init,
                     generator=self.torch_rng, device=agent.device)
        self.target_network = copy.deepcopy(self.q).requires_grad_(False)
        self.optimizer: population.MemberOptimizer | None = None  # set by the population
        self._env: gym.Env | None = None
        self._obs: np.ndarray | None = None
        self._episode_return, self._episode_length = 0.0, 0

    @property
    def global_step(self) -> int:
        return self.agent.global_step

    @property
    def buffer(self) -> ReplayBuffer:
        return self.agent.buffer

    @property
    def exploration_origin(self) -> int:
        return self.agent.exploration_origin

    def networks(self) -> dict[str, MLP]:
        return {"q": self.q}

    def epsilon(self) -> float:
        return self.agent.epsilon()

    def act(self, obs: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
        """Epsilon-greedy action of this member for one observation."""
        if rng.random() < epsilon:
            return int(rng.integers(self.agent.num_actions))
        q_values = self.agent._q.numpy_forward(obs, member=self.index)
        if q_values is None:
            x = common.to_device(obs, self.agent.device, torch.float32).unsqueeze(0)
            q_values = self.agent._q.member_inference(self.index, x)[0].cpu().numpy()
        return int(q_values.argmax())

    def td_loss(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """(:func:`td_loss` of this member on an n-step replay batch -- the update's loss on
        it --, mean Q of the taken actions). Through the module (``self.q(...)``), so the
        hooks of a probe see the features."""
        loss, q_taken = td_loss(self.q(batch["obs"]), batch["actions"],
                                self._member_td_target(batch), self.config.loss)
        return loss, q_taken.detach().mean()

    def _member_td_target(self, batch: Batch) -> Tensor:
        """:func:`td_target` of this member."""
        k, agent = self.index, self.agent
        online = partial(agent._q.member_inference, k) if self.config.double_dqn else None
        return td_target(batch, partial(agent._target.member_inference, k), online)

    # ----------------------------------------------------------------- probes and rollouts

    def probe_targets(self) -> list[ProbeTarget]:
        return [
            ProbeTarget(
                name="q",
                module=self.q,
                layers=self.q.layers(),
                loss=lambda batch: self.td_loss(batch)[0],
                sample_batch=self._probe_batch,
                inputs=lambda batch: batch["obs"],
                fixed_loss=self.fixed_td_loss,
                ggn=self._td_ggn,
            )
        ]

    def fixed_td_loss(self, batch: Batch) -> Tensor:
        """The training TD loss (same loss, same target network) on fixed 1-step transitions
        ``obs, actions, rewards, next_obs, terminated``: Q-learning's target
        ``r + gamma (1 - terminated) max_a' Q_target(s', a')`` does not depend on the policy
        that collected the data, so the loss is well defined off-policy."""
        discounts = self.config.gamma * (1.0 - batch["terminated"])
        return self.td_loss({**batch, "discounts": discounts})[0]

    def _td_ggn(self, batch: Batch) -> tuple[Any, Any]:
        """Gauss-Newton matrix of the TD loss in ``Q(s, ·)``: the target is fixed, so the loss
        is convex in the output (Huber: no curvature where ``|Q(s, a) − target| > 1``)."""
        target = self._member_td_target(batch)

        def output_loss(z: Tensor) -> Tensor:
            return td_loss(z, batch["actions"], target, self.config.loss)[0]

        return (lambda: self.q(batch["obs"])), output_loss

    def _probe_batch(self, n: int, generator: torch.Generator | None = None) -> Batch:
        """Up to ``n`` distinct replay transitions, drawn with ``generator`` (not the agent's RNG)."""
        if len(self.buffer) == 0:
            raise AgentError("the replay buffer is empty: call learn() first or use collect()")
        idx = torch.randperm(len(self.buffer), generator=generator, device="cpu")[:n].numpy()
        return self.buffer.gather(idx, member=self.index)

    def collect(self, env: gym.Env, num_steps: int, seed: int) -> Batch:
        """A side rollout of ``num_steps`` under the current epsilon-greedy policy (no training).

        Resets ``env`` with ``seed`` and acts with a generator seeded by ``seed``; the agent's
        RNGs, buffer, step count and training env are untouched. Returns every collected
        transition as an n-step batch (the format :meth:`td_loss` takes).
        """
        common.check_positive_int("num_steps", num_steps)
        rng = np.random.default_rng(seed)
        buffer = ReplayBuffer(num_steps, self.agent.obs_shape, self.buffer.obs.dtype,
                              self.config.n_step, self.config.gamma, device=self.agent.device)
        epsilon = self.epsilon()
        obs, _ = env.reset(seed=seed)
        for _ in range(num_steps):
            action = self.act(obs, epsilon, rng)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            buffer.add(obs, next_obs, action, reward, terminated, truncated)
            obs = env.reset()[0] if terminated or truncated else next_obs
        return buffer.gather(np.arange(num_steps))

    # ------------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """This member's checkpoint, in the format of a single run's; the replay rows only if
        ``config.checkpoint_buffer``."""
        state = {
            "config": asdict(self.config),
            "q": self.q.state_dict(),
            "target_network": self.target_network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "global_step": self.global_step,
            "exploration_origin": self.exploration_origin,
            "rng": common.rng_state(self.rng, self.torch_rng),
            "mitigations": [m.state_dict() for m in self.mitigations],
            # the episode in progress on the training env, for an exact resume
            "episode": None if self._obs is None else {
                "obs": self._obs, "return": self._episode_return, "length": self._episode_length},
        }
        state = copy.deepcopy(state)  # detach from the live tensors
        state["buffer"] = (self.buffer.state_dict(self.index) if self.config.checkpoint_buffer
                           else None)
        return state

    def load_state_dict(self, state: dict[str, Any], env: gym.Env | None = None) -> None:
        """Restore this member (the population's step count, exploration origin and buffer
        position are shared: load every member from checkpoints of one step). Without
        ``env`` the next ``learn`` resets its env; with ``env`` -- the training env restored
        to its state at the checkpoint -- it continues the episode in progress there."""
        self.q.load_state_dict(state["q"])
        self.target_network.load_state_dict(state["target_network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.agent.global_step = int(state["global_step"])
        self.agent.exploration_origin = int(state["exploration_origin"])
        common.load_rng_state(self.rng, self.torch_rng, state["rng"])
        if state["buffer"] is not None:
            self.buffer.load_state_dict(state["buffer"], self.index)
        else:
            self.buffer.clear()
        common.load_mitigation_states(self.mitigations, state["mitigations"])
        self._env = None
        episode = state.get("episode")
        if env is not None and episode is not None:
            self._env, self._obs = env, np.array(episode["obs"])
            self._episode_return, self._episode_length = episode["return"], episode["length"]


class DQN(population.Population):
    """Deep Q-learning on ``gym.Env`` s with a Box observation and Discrete actions: a
    population of ``len(seeds)`` members (default one, ``config.seed``) in lockstep.

    ``mitigations`` is the arm's list: member 0 uses these objects, every other member a
    copy. ``members[k]`` (:class:`DQNMember`) is member k as a single agent; a population of
    one also answers every attribute of its member (``agent.q``, ``agent.optimizer``,
    ``agent.probe_targets()``...), so it is used exactly like a single agent.
    Population-level: ``config``, ``global_step``, ``q`` / ``target_network``
    (:class:`~agents.batched.StackedMLP`, for K > 1), ``buffer``, ``learn``,
    ``on_task_switch``, ``state_dict``.
    """

    member_env = gym.Env

    #: The :class:`~agents.base.ShiftPolicy` settings DQN can act on.
    SHIFT_KNOBS = ("optimizer", "exploration", "buffer", "target")

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        config: DQNConfig | None = None,
        mitigations: tuple[Mitigation, ...] | list[Mitigation] = (),
        *,
        seeds: Sequence[int] | None = None,
    ) -> None:
        if not isinstance(action_space, spaces.Discrete):
            raise AgentError(
                f"DQN needs a Discrete action space, got {action_space}; valid: Discrete "
                "(use PPO for Box actions)"
            )
        base = config or DQNConfig()
        seeds = population.seeds_of(base.seed, seeds)
        self.obs_shape, obs_dtype, in_dim = common.observation_spec(observation_space)
        self.num_actions = int(action_space.n)
        self.device = parse_device(base.device)
        self.members = [
            DQNMember(self, k, dataclasses.replace(base, seed=s),
                      population.member_mitigations(mitigations, k), in_dim, self.num_actions)
            for k, s in enumerate(seeds)
        ]
        self.config: DQNConfig = self.members[0].config
        for m in self.members[1:]:
            if dataclasses.replace(m.config, seed=self.config.seed) != self.config:
                raise AgentError("population members' mitigations configured different networks")
        c = self.config
        self.k = len(self.members)
        self._q = StackedMLP([m.q for m in self.members])
        self._target = StackedMLP([m.target_network for m in self.members], requires_grad=False)
        self._optimizer = common.make_adam(self._q.params, c)
        for k, m in enumerate(self.members):
            m.optimizer = population.MemberOptimizer(self._optimizer, self._q.params,
                                                     self._q.member_params(k), k)
        self.buffer = ReplayBuffer(c.buffer_size, self.obs_shape, obs_dtype, c.n_step, c.gamma,
                                   members=self.k, device=self.device)
        self.global_step = 0
        self.exploration_steps, self.learning_starts = self.config.schedule()
        self.exploration_origin = 0  # env step at which epsilon's decay (re)started
        self._rngs = [m.rng for m in self.members]
        self._attach_mitigations()

    @property
    def q(self) -> MLP | StackedMLP:
        """The Q network: member 0's MLP for a single run, the stacked networks otherwise."""
        return self.members[0].q if self.k == 1 else self._q

    @property
    def target_network(self) -> MLP | StackedMLP:
        return self.members[0].target_network if self.k == 1 else self._target

    def epsilon(self) -> float:
        """Linear decay from ``start_e`` to ``end_e`` over ``exploration_steps`` from the origin."""
        c = self.config
        if self.exploration_steps == 0:
            return c.end_e
        frac = (self.global_step - self.exploration_origin) / self.exploration_steps
        return max(c.start_e + frac * (c.end_e - c.start_e), c.end_e)

    # ------------------------------------------------------------------------ the update

    def _backward(self, batch: Batch) -> tuple[Tensor, Tensor, bool]:
        """Set the stacked ``.grad`` to the gradient of the summed members' TD losses of a
        ``(K, B)`` batch; return (per-member loss, per-member mean Q of the taken actions,
        whether the closed form ran).

        For ReLU/tanh Q networks with no hook listening the gradient is computed in closed
        form (:meth:`StackedMLP.backward_into_grad` from the loss gradient beside each
        loss in :data:`TD_LOSSES`), which is what autograd computes (tested) at a fraction
        of the cost; otherwise autograd.
        """
        c = self.config
        target = td_target(batch, self._target.inference,
                           self._q.inference if c.double_dqn else None)
        if self._q.closed_form_ready():
            with torch.no_grad():
                q_all, inputs = self._q.forward_saving(batch["obs"])
                loss, q_taken = td_loss(q_all, batch["actions"], target, c.loss)
                grad_taken = TD_LOSSES[c.loss][1](q_taken, target).unsqueeze(-1)
                actions = batch["actions"].long().unsqueeze(-1)
                grad_out = torch.zeros_like(q_all).scatter_(-1, actions, grad_taken)
                self._q.backward_into_grad(inputs, grad_out)
            return loss, q_taken.mean(-1), True
        self._q.clear_grads()
        loss, q_taken = td_loss(self._q.forward(batch["obs"]), batch["actions"], target, c.loss)
        loss.sum().backward()
        self._q.finish_backward()
        return loss.detach(), q_taken.detach().mean(-1), False

    def _apply_gradients(self) -> Tensor:
        """Per-member clipping, the mitigation hooks and Adam; the norms before clipping."""
        norms = population.clip_per_member(self._q.params, self.config.max_grad_norm)
        for k, hooks in enumerate(self._hooks["before_optimizer_step"]):
            if hooks:
                self._q.link_grads(k)
                for m in hooks:
                    m.before_optimizer_step(self.members[k])
        self._optimizer.step()
        for k, hooks in enumerate(self._hooks["after_step"]):
            for m in hooks:
                m.after_step(self.members[k])
        return norms

    def _update_target(self, tau: float) -> None:
        if tau == 1.0:
            self._target.copy_(self._q)
        else:
            self._target.lerp_(self._q, tau)

    # ---------------------------------------------------------------------- training loop

    def learn(self, envs: gym.Env | Sequence[gym.Env], until: int) -> LearnResult | list[LearnResult]:
        """Train until ``global_step >= until``; resumes the episodes in progress.

        ``envs``: one env per member (a single run may pass the env itself, and then gets
        one :class:`LearnResult` back instead of a list). An env other than a member's last
        one (or the first call, or after ``load_state_dict``) is reset with
        ``seed = member seed + global_step``. A single run raises :class:`DivergenceError`
        at a non-finite loss or parameter; a population records it in that member's result
        and trains on (a member's numbers never reach another member's).
        """
        single = isinstance(envs, gym.Env)
        envs = [envs] if single else list(envs)
        if len(envs) != self.k:
            raise AgentError(f"learn got {len(envs)} envs for a population of {self.k}; "
                             "give one env per member")
        c = self.config
        members = self.members
        for m, env in zip(members, envs, strict=True):
            if env is not m._env:
                m._env = env
                m._obs, _ = env.reset(seed=m.config.seed + self.global_step)
                m._episode_return, m._episode_length = 0.0, 0
        episodes: list[list[tuple[int, float, int]]] = [[] for _ in members]
        # per member: loss, Q, grad norm (host floats: one read of each per update, which the
        # finiteness check needs anyway); and the updates that ran in closed form
        sums = [[0.0] * 3 for _ in members]
        closed_updates = 0
        diverged: list[DivergenceError | None] = [None] * self.k
        updates = 0
        start_step, start_time = self.global_step, time.perf_counter()
        obs = np.stack([m._obs for m in members])
        next_obs = np.empty_like(obs)
        actions = np.empty(self.k, dtype=np.int64)
        rewards = np.empty(self.k, dtype=np.float32)
        terms = np.empty(self.k, dtype=np.bool_)
        truncs = np.empty(self.k, dtype=np.bool_)
        while self.global_step < until:
            epsilon = self.epsilon()
            greedy = None
            for k, rng in enumerate(self._rngs):
                if rng.random() < epsilon:
                    actions[k] = rng.integers(self.num_actions)
                else:
                    if greedy is None:
                        greedy = self._greedy(obs)
                    actions[k] = greedy[k]
            for k, env in enumerate(envs):
                next_obs[k], rewards[k], terms[k], truncs[k], _ = env.step(int(actions[k]))
            self.buffer.add(obs, next_obs, actions, rewards, terms, truncs)
            self.global_step += 1
            step = self.global_step
            for k, m in enumerate(members):
                m._episode_return += float(rewards[k])
                m._episode_length += 1
                if terms[k] or truncs[k]:
                    episodes[k].append((step, m._episode_return, m._episode_length))
                    m._episode_return, m._episode_length = 0.0, 0
                    obs[k], _ = envs[k].reset()
                else:
                    obs[k] = next_obs[k]

            if step > self.learning_starts and len(self.buffer) >= c.batch_size:
                if step % c.train_frequency == 0:
                    for _ in range(c.gradient_steps):
                        batch = self.buffer.sample(c.batch_size, self._rngs)
                        loss, q_mean, closed = self._backward(batch)
                        losses = loss.tolist()
                        population.check_losses_finite(step, "losses/td_loss", losses, diverged,
                                                       self.k == 1)
                        norms = self._apply_gradients()
                        values = zip(losses, q_mean.tolist(), norms.tolist(), strict=True)
                        for k, row in enumerate(values):
                            sums[k] = [t + v for t, v in zip(sums[k], row, strict=True)]
                        closed_updates += closed
                        updates += 1
                if step % c.target_network_frequency == 0:
                    self._update_target(c.tau)
                if step % c.update_phase == 0 and any(self._hooks["after_update"]):
                    batch = self.buffer.sample(c.batch_size, self._rngs)
                    for k, hooks in enumerate(self._hooks["after_update"]):
                        member_batch = {key: value[k] for key, value in batch.items()}
                        for m in hooks:
                            m.after_update(members[k], member_batch)
        for k, m in enumerate(members):
            m._obs = obs[k].copy()
        population.check_members_finite(self.global_step, members, diverged, single)
        elapsed = max(time.perf_counter() - start_time, 1e-9)
        results = []
        for k in range(self.k):
            metrics: dict[str, float] = {}
            if updates:
                means = [value / updates for value in sums[k]]
                metrics = {"losses/td_loss": means[0], "losses/q_values": means[1],
                           "losses/grad_norm": means[2], "perf/closed_form": closed_updates / updates}
            metrics["charts/epsilon"] = self.epsilon()
            metrics["charts/sps"] = (self.global_step - start_step) / elapsed
            results.append(LearnResult(self.global_step, episodes[k], metrics, updates, diverged[k]))
        return results[0] if single else results

    def _greedy(self, obs: np.ndarray) -> np.ndarray:
        """Each member's greedy action for its observation ``obs[k]``."""
        q_values = self._q.numpy_forward(obs)
        if q_values is None:
            x = common.to_device(obs, self.device, torch.float32).unsqueeze(1)
            q_values = self._q.inference(x)[:, 0].cpu().numpy()
        return q_values.argmax(-1)

    # ------------------------------------------------------------------ oracle and state

    def on_task_switch(self, policy: ShiftPolicy) -> None:
        """Apply the oracle knobs of ``policy`` to every member, then each member's
        mitigations' ``on_task_switch``."""
        if policy.reinitialize:
            # In place, so references held by the runner or mitigations stay valid.
            for m in self.members:
                m.q.reset_parameters(m.torch_rng)
            common.reset_optimizer(self._optimizer)
            self.buffer.clear()
            self.exploration_origin = self.global_step
            self._update_target(1.0)
            for m in self.members:
                for mitigation in m.mitigations:
                    mitigation.attach(m)
        if policy.optimizer == "reset":
            common.reset_optimizer(self._optimizer)
        if policy.exploration == "rewarm":
            self.exploration_origin = self.global_step
        if policy.buffer == "flush":
            self.buffer.clear()
        if policy.target == "sync":
            self._update_target(1.0)
        self._switch_mitigations()

