"""DQN (Mnih et al. 2015) in the style of CleanRL's ``dqn.py``, pausable and probe-able.

One training loop (:meth:`DQN.learn`): epsilon-greedy acting from a linear schedule,
1-step transitions into a preallocated :class:`~agents.replay.ReplayBuffer`, and every
``train_frequency`` env steps (after ``learning_starts``) ``gradient_steps`` Adam steps on
the n-step TD loss against a target network that is hard-copied (``tau = 1``) or
Polyak-averaged every ``target_network_frequency`` env steps.

All randomness comes from the agent's own generators (numpy for epsilon-greedy and replay
sampling, torch for network initialisation), so probes and :meth:`DQN.collect` cannot
change training.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import Tensor

from agents import _common as common
from agents.base import (
    AgentError,
    Batch,
    LearnResult,
    Mitigation,
    ProbeTarget,
    ShiftPolicy,
    check_choice,
    check_field_types,
)
from agents.networks import MLP
from agents.replay import ReplayBuffer

LOSSES = ("huber", "mse")
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
            Huber diverges on CartPole (Q-values ~2e6 at 200k steps, ~3e7 at 450k, return
            ~10; ``benchmarks/RESULTS.md``). A likely reason, not isolated: every CartPole
            reward is 1, so only the rare terminal transitions pin the values down, and
            Huber gives their large errors no more gradient than any other sample, so the
            max-operator's overestimation in the bootstrapped targets compounds.
        max_grad_norm: clip the global gradient norm (None = off).
        widths / activation / layer_norm / init: the Q network (:class:`agents.networks.MLP`).
        adam_betas / adam_eps: Adam options.
        update_phase: env steps between ``after_update`` mitigation hooks (after learning_starts).
        checkpoint_buffer: include the replay buffer in ``state_dict`` (``buffer.nbytes``).
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

    def __post_init__(self) -> None:
        check_field_types(type(self), self.__dict__)
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


class DQN:
    """Deep Q-learning agent on a single ``gym.Env`` with a Box observation, Discrete actions.

    Attributes the runner, probes and mitigations use: ``config``, ``global_step``,
    ``q`` / ``networks()``, ``target_network``, ``optimizer``, ``buffer``, ``mitigations``.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        config: DQNConfig | None = None,
        mitigations: tuple[Mitigation, ...] | list[Mitigation] = (),
    ) -> None:
        if not isinstance(action_space, spaces.Discrete):
            raise AgentError(
                f"DQN needs a Discrete action space, got {action_space}; valid: Discrete "
                "(use PPO for Box actions)"
            )
        self.mitigations = list(mitigations)
        self.config: DQNConfig = common.configure(config or DQNConfig(), self.mitigations)
        c = self.config
        self.obs_shape, obs_dtype, in_dim = common.observation_spec(observation_space)
        self.num_actions = int(action_space.n)
        self.rng = np.random.default_rng(c.seed)
        self.torch_rng = torch.Generator().manual_seed(c.seed)
        self.q = MLP(
            in_dim,
            self.num_actions,
            c.widths,
            c.activation,
            c.layer_norm,
            c.init,
            generator=self.torch_rng,
        )
        self.target_network = copy.deepcopy(self.q).requires_grad_(False)
        self.optimizer = common.make_adam(self.q.parameters(), c)
        self._params = list(self.q.parameters())
        self.buffer = ReplayBuffer(c.buffer_size, self.obs_shape, obs_dtype, c.n_step, c.gamma)
        self.global_step = 0
        self.exploration_steps, self.learning_starts = c.schedule()
        self.exploration_origin = 0  # env step at which epsilon's decay (re)started
        self._env: gym.Env | None = None
        self._obs: np.ndarray | None = None
        self._episode_return, self._episode_length = 0.0, 0
        for m in self.mitigations:
            m.attach(self)

    # ------------------------------------------------------------------------- interface

    def networks(self) -> dict[str, MLP]:
        return {"q": self.q}

    def epsilon(self) -> float:
        """Linear decay from ``start_e`` to ``end_e`` over ``exploration_steps`` from the origin."""
        c = self.config
        if self.exploration_steps == 0:
            return c.end_e
        frac = (self.global_step - self.exploration_origin) / self.exploration_steps
        return max(c.start_e + frac * (c.end_e - c.start_e), c.end_e)

    def act(self, obs: np.ndarray, epsilon: float, rng: np.random.Generator) -> int:
        """Epsilon-greedy action for one observation."""
        if rng.random() < epsilon:
            return int(rng.integers(self.num_actions))
        q_values = common.numpy_forward(self.q, obs)
        if q_values is not None:
            return int(q_values.argmax())
        with torch.inference_mode():
            x = torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0)
            q_values = common.act_forward(self.q, x)
        return int(q_values.argmax())

    def td_loss(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """(TD loss, mean Q of the taken actions) for an n-step batch from the replay buffer."""
        q_taken = (
            common.train_forward(self.q, batch["obs"])
            .gather(1, batch["actions"].long().unsqueeze(1))
            .squeeze(1)
        )
        target = self._td_target(batch)
        return self._loss(q_taken, target), q_taken.detach().mean()

    @torch.no_grad()
    def _td_target(self, batch: Batch) -> Tensor:
        """``rewards + discounts * Q_target(next_obs, a*)``, a* greedy under the target net
        (or the online net for double DQN)."""
        next_q = common.act_forward(self.target_network, batch["next_obs"])
        if self.config.double_dqn:
            best = common.act_forward(self.q, batch["next_obs"]).argmax(dim=1, keepdim=True)
            bootstrap = next_q.gather(1, best).squeeze(1)
        else:
            bootstrap = next_q.max(dim=1).values
        return batch["rewards"] + batch["discounts"] * bootstrap

    def _loss(self, q_taken: Tensor, target: Tensor) -> Tensor:
        if self.config.loss == "huber":
            return F.smooth_l1_loss(q_taken, target)
        return F.mse_loss(q_taken, target)

    def _backward(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Set every ``p.grad`` to the gradient of the TD loss of ``batch``; return (loss,
        mean Q of the taken actions).

        For a plain ReLU/tanh Q network with no forward hook listening, the gradient is
        computed in closed form (:func:`agents._common.backward_into_grad`), which is what
        autograd computes (tested) at a fraction of the cost on these small networks: with
        ``d = Q(s, a) - target`` the loss gradient w.r.t. ``Q(s, a)`` is
        ``clamp(d, -1, 1) / B`` for Huber and ``2 d / B`` for MSE, and 0 for other actions.
        """
        if not common.closed_form_ready(self.q):
            for p in self._params:
                p.grad = None
            loss, q_mean = self.td_loss(batch)
            loss.backward()
            return loss.detach(), q_mean
        with torch.no_grad():
            q_all, inputs = common.forward_saving(self.q, batch["obs"])
            actions = batch["actions"].long().unsqueeze(1)
            q_taken = q_all.gather(1, actions).squeeze(1)
            target = self._td_target(batch)
            loss = self._loss(q_taken, target)
            diff = q_taken - target
            if self.config.loss == "huber":
                grad_taken = diff.clamp_(-1.0, 1.0).mul_(1.0 / len(diff))
            else:
                grad_taken = diff.mul_(2.0 / len(diff))
            grad_out = torch.zeros_like(q_all).scatter_(1, actions, grad_taken.unsqueeze(1))
            common.backward_into_grad(self.q, inputs, grad_out)
        return loss, q_taken.mean()

    # ---------------------------------------------------------------------- training loop

    def learn(self, env: gym.Env, until: int) -> LearnResult:
        """Train until ``global_step >= until``; resumes the episode in progress on ``env``.

        A different ``env`` object than last call (or the first call, or after
        ``load_state_dict``) is reset with ``seed = config.seed + global_step``.
        """
        c = self.config
        if env is not self._env:
            self._reset_env(env)
        episodes: list[tuple[int, float, int]] = []
        metrics = common.MetricMeans()
        updates = 0
        start_step, start_time = self.global_step, time.perf_counter()
        obs = self._obs
        while self.global_step < until:
            action = self.act(obs, self.epsilon(), self.rng)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            self.buffer.add(obs, next_obs, action, reward, terminated, truncated)
            self.global_step += 1
            step = self.global_step
            self._episode_return += float(reward)
            self._episode_length += 1
            if terminated or truncated:
                episodes.append((step, self._episode_return, self._episode_length))
                self._episode_return, self._episode_length = 0.0, 0
                obs, _ = env.reset()
            else:
                obs = next_obs

            if step > self.learning_starts and len(self.buffer) >= c.batch_size:
                if step % c.train_frequency == 0:
                    for _ in range(c.gradient_steps):
                        batch = self.buffer.sample(c.batch_size, self.rng)
                        loss, q_mean = self._backward(batch)
                        loss_value = common.check_finite(step, "losses/td_loss", loss.item())
                        grad_norm = common.apply_gradients(self, self._params)
                        metrics.add(
                            **{
                                "losses/td_loss": loss_value,
                                "losses/q_values": q_mean.item(),
                                "losses/grad_norm": grad_norm.item(),
                            }
                        )
                        updates += 1
                if step % c.target_network_frequency == 0:
                    self._update_target(c.tau)
                if self.mitigations and step % c.update_phase == 0:
                    batch = self.buffer.sample(c.batch_size, self.rng)
                    for m in self.mitigations:
                        m.after_update(self, batch)
        self._obs = obs
        common.check_parameters_finite(self.global_step, self.networks())
        result = metrics.means()
        result["charts/epsilon"] = self.epsilon()
        elapsed = max(time.perf_counter() - start_time, 1e-9)
        result["charts/sps"] = (self.global_step - start_step) / elapsed
        return LearnResult(self.global_step, episodes, result, updates)

    def _reset_env(self, env: gym.Env) -> None:
        self._env = env
        self._obs, _ = env.reset(seed=self.config.seed + self.global_step)
        self._episode_return, self._episode_length = 0.0, 0

    def _update_target(self, tau: float) -> None:
        with torch.no_grad():
            target = list(self.target_network.parameters())
            if tau == 1.0:
                torch._foreach_copy_(target, self._params)
            else:
                torch._foreach_lerp_(target, self._params, tau)

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
            )
        ]

    def _probe_batch(self, n: int, generator: torch.Generator | None = None) -> Batch:
        """Up to ``n`` distinct replay transitions, drawn with ``generator`` (not the agent's RNG)."""
        if len(self.buffer) == 0:
            raise AgentError("the replay buffer is empty: call learn() first or use collect()")
        idx = torch.randperm(len(self.buffer), generator=generator)[:n].numpy()
        return self.buffer.gather(idx)

    def collect(self, env: gym.Env, num_steps: int, seed: int) -> Batch:
        """A side rollout of ``num_steps`` under the current epsilon-greedy policy (no training).

        Resets ``env`` with ``seed`` and acts with a generator seeded by ``seed``; the agent's
        RNGs, buffer, step count and training env are untouched. Returns every collected
        transition as an n-step batch (the format :meth:`td_loss` takes).
        """
        common.check_positive_int("num_steps", num_steps)
        rng = np.random.default_rng(seed)
        buffer = ReplayBuffer(
            num_steps, self.obs_shape, self.buffer.obs.dtype, self.config.n_step, self.config.gamma
        )
        epsilon = self.epsilon()
        obs, _ = env.reset(seed=seed)
        for _ in range(num_steps):
            action = self.act(obs, epsilon, rng)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            buffer.add(obs, next_obs, action, reward, terminated, truncated)
            obs = env.reset()[0] if terminated or truncated else next_obs
        return buffer.gather(np.arange(num_steps))

    # ------------------------------------------------------------------ oracle and state

    def on_task_switch(self, policy: ShiftPolicy) -> None:
        """Apply the oracle knobs of ``policy``, then each mitigation's ``on_task_switch``."""
        if policy.reinitialize:
            # In place, so references held by the runner or mitigations stay valid.
            self.q.reset_parameters(self.torch_rng)
            common.reset_optimizer(self.optimizer)
            self.buffer.clear()
            self.exploration_origin = self.global_step
            self._update_target(1.0)
            for m in self.mitigations:
                m.attach(self)
        if policy.optimizer == "reset":
            common.reset_optimizer(self.optimizer)
        if policy.exploration == "rewarm":
            self.exploration_origin = self.global_step
        if policy.buffer == "flush":
            self.buffer.clear()
        if policy.target == "sync":
            self._update_target(1.0)
        for m in self.mitigations:
            m.on_task_switch(self)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume; the replay buffer only if ``config.checkpoint_buffer``."""
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
        state["buffer"] = self.buffer.state_dict() if self.config.checkpoint_buffer else None
        return state

    def load_state_dict(self, state: dict[str, Any], env: gym.Env | None = None) -> None:
        """Restore a checkpoint. Without ``env`` the next ``learn`` resets its env (see
        :meth:`learn`); with ``env`` -- the training env restored to its state at the
        checkpoint -- it continues the episode that was in progress there, exactly."""
        self.q.load_state_dict(state["q"])
        self.target_network.load_state_dict(state["target_network"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.global_step = int(state["global_step"])
        self.exploration_origin = int(state["exploration_origin"])
        common.load_rng_state(self.rng, self.torch_rng, state["rng"])
        if state["buffer"] is not None:
            self.buffer.load_state_dict(state["buffer"])
        else:
            self.buffer.clear()
        common.load_mitigation_states(self.mitigations, state["mitigations"])
        self._env = None
        episode = state.get("episode")
        if env is not None and episode is not None:
            self._env, self._obs = env, np.array(episode["obs"])
            self._episode_return, self._episode_length = episode["return"], episode["length"]
