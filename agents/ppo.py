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
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from torch import Tensor, nn

from agents import _common as common
from agents.base import (
    AgentError,
    Batch,
    LearnResult,
    Mitigation,
    ProbeTarget,
    ShiftPolicy,
    check_field_types,
)
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
        max_grad_norm: clip the global gradient norm (None = off).
        target_kl: stop the epochs of a rollout early when approx KL exceeds it (None = off).
        widths / activation / layer_norm / init: both networks (:class:`agents.networks.MLP`).
        actor_head_gain / critic_head_gain: orthogonal gains of the output layers.
        init_log_std: initial log standard deviation of the Gaussian policy (Box actions).
        normalize_observation / normalize_reward: running normalisation (agent state).
        obs_clip / reward_clip: clipping after normalisation.
        adam_betas / adam_eps: Adam options.
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

    def __post_init__(self) -> None:
        check_field_types(type(self), self.__dict__)
        common.check_network_fields(self)
        for name in ("num_envs", "num_steps", "total_steps", "num_minibatches", "update_epochs"):
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
        for name in ("ent_coef", "vf_coef"):
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


@dataclass
class _RolloutState:
    """Where a vector env stands between steps (the agent's own, or a side rollout's)."""

    obs: np.ndarray  # raw observations from the env
    resetting: np.ndarray  # NEXT_STEP autoreset: the next step of these sub-envs is a reset
    episodes: common.EpisodeTracker


class PPO:
    """PPO agent on a ``gymnasium.vector.VectorEnv``.

    ``observation_space`` / ``action_space`` are the *single* sub-env spaces
    (``envs.single_observation_space``): a Box observation, Discrete or 1-D Box actions.
    Attributes the runner, probes and mitigations use: ``config``, ``global_step``,
    ``actor`` / ``critic`` / ``networks()``, ``optimizer``, ``mitigations``,
    ``obs_normalizer`` / ``reward_normalizer`` (None when off).
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        config: PPOConfig | None = None,
        mitigations: tuple[Mitigation, ...] | list[Mitigation] = (),
    ) -> None:
        self.mitigations = list(mitigations)
        self.config: PPOConfig = common.configure(config or PPOConfig(), self.mitigations)
        c = self.config
        self.obs_shape, _, in_dim = common.observation_spec(observation_space)
        self.rng = np.random.default_rng(c.seed)
        self.torch_rng = torch.Generator().manual_seed(c.seed)
        if isinstance(action_space, spaces.Discrete):
            out_dim = int(action_space.n)
        elif isinstance(action_space, spaces.Box) and len(action_space.shape) == 1:
            out_dim = int(action_space.shape[0])
        else:
            raise AgentError(
                f"PPO cannot act in {action_space}; valid: Discrete or a 1-D Box action space"
            )
        self.action_space = action_space
        net = dict(widths=c.widths, activation=c.activation, layer_norm=c.layer_norm, init=c.init)
        self.actor = MLP(
            in_dim, out_dim, **net, head_gain=c.actor_head_gain, generator=self.torch_rng
        )
        self.critic = MLP(in_dim, 1, **net, head_gain=c.critic_head_gain, generator=self.torch_rng)
        if isinstance(action_space, spaces.Box):
            # Registered on the actor so probes, checkpoints and the optimiser include it.
            self.actor.log_std = nn.Parameter(torch.full((out_dim,), float(c.init_log_std)))
            self.policy: CategoricalPolicy | GaussianPolicy = GaussianPolicy(self.actor.log_std)
            self._low, self._high = action_space.low, action_space.high
        else:
            self.policy = CategoricalPolicy()
        self._params = [*self.actor.parameters(), *self.critic.parameters()]
        self.optimizer = common.make_adam(self._params, c)
        self.obs_normalizer = (
            ObservationNormalizer(self.obs_shape, c.obs_clip) if c.normalize_observation else None
        )
        self.reward_normalizer = (
            RewardNormalizer(c.num_envs, c.gamma, c.reward_clip) if c.normalize_reward else None
        )
        self.global_step = 0
        self.last_rollout: Batch | None = None
        self._env: VectorEnv | None = None
        self._state: _RolloutState | None = None
        for m in self.mitigations:
            m.attach(self)

    # ------------------------------------------------------------------------- interface

    def networks(self) -> dict[str, MLP]:
        return {"actor": self.actor, "critic": self.critic}

    def policy_loss(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Clipped surrogate minus ``ent_coef`` x entropy, and its diagnostics."""
        c = self.config
        new_logprob, entropy = self.policy.log_prob_entropy(
            common.train_forward(self.actor, batch["obs"]), batch["actions"]
        )
        log_ratio = new_logprob - batch["logprobs"]
        ratio = log_ratio.exp()
        advantages = batch["advantages"]
        if c.norm_adv and advantages.numel() > 1:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        pg_loss = torch.max(
            -advantages * ratio, -advantages * ratio.clamp(1 - c.clip_coef, 1 + c.clip_coef)
        ).mean()
        entropy = entropy.mean()
        with torch.no_grad():
            stats = {
                "losses/policy_loss": pg_loss.detach(),
                "losses/entropy": entropy.detach(),
                "losses/old_approx_kl": (-log_ratio).mean(),
                "losses/approx_kl": ((ratio - 1) - log_ratio).mean(),
                "losses/clipfrac": ((ratio - 1.0).abs() > c.clip_coef).float().mean(),
            }
        return pg_loss - c.ent_coef * entropy, stats

    def value_loss(self, batch: Batch) -> Tensor:
        """``vf_coef`` x 0.5 x (clipped) squared error of the critic against the GAE returns."""
        c = self.config
        new_value = common.train_forward(self.critic, batch["obs"]).squeeze(-1)
        returns = batch["returns"]
        if c.clip_vloss:
            clipped = batch["values"] + (new_value - batch["values"]).clamp(
                -c.clip_coef, c.clip_coef
            )
            v_loss = (
                0.5 * torch.max((new_value - returns).square(), (clipped - returns).square()).mean()
            )
        else:
            v_loss = 0.5 * (new_value - returns).square().mean()
        return c.vf_coef * v_loss

    # ---------------------------------------------------------------------- training loop

    def learn(self, envs: VectorEnv, until: int) -> LearnResult:
        """Train in whole rollouts until ``global_step >= until``.

        A different ``envs`` object than last call (or the first call, or after
        ``load_state_dict``) is reset with ``seed = config.seed + global_step``.
        """
        c = self.config
        if envs is not self._env:
            self._env, self._state = envs, self._reset(envs, c.seed + self.global_step)
        episodes: list[tuple[int, float, int]] = []
        metrics = common.MetricMeans()
        updates = 0
        start_step, start_time = self.global_step, time.perf_counter()
        while self.global_step < until:
            if c.anneal_lr:
                frac = max(0.0, 1.0 - self.global_step / c.total_steps)
                for group in self.optimizer.param_groups:
                    group["lr"] = frac * c.learning_rate
            batch = self._rollout(envs, self._state, c.num_steps, self.torch_rng, episodes, True)
            self.last_rollout = batch

            size = len(batch["obs"])
            for _epoch in range(c.update_epochs):
                order = self.rng.permutation(size)
                for mb_idx in np.array_split(order, c.num_minibatches):
                    minibatch = {k: v[torch.from_numpy(mb_idx)] for k, v in batch.items()}
                    pg_loss, stats = self.policy_loss(minibatch)
                    v_loss = self.value_loss(minibatch)
                    loss = pg_loss + v_loss
                    common.check_finite(self.global_step, "loss", loss.item())
                    grad_norm = common.optimizer_step(self, loss, self._params)
                    metrics.add(
                        **{k: v.item() for k, v in stats.items()},
                        **{
                            "losses/value_loss": v_loss.item() / max(c.vf_coef, 1e-12),
                            "losses/grad_norm": grad_norm.item(),
                        },
                    )
                    updates += 1
                if c.target_kl is not None and stats["losses/approx_kl"].item() > c.target_kl:
                    break
            for m in self.mitigations:
                m.after_update(self, batch)
            values, returns = batch["values"], batch["returns"]
            var_returns = returns.var(correction=0).item()
            residual = (returns - values).var(correction=0).item()
            explained = 1.0 - residual / var_returns if var_returns > 0 else float("nan")
            metrics.add(**{"losses/explained_variance": explained})
        common.check_parameters_finite(self.global_step, self.networks())
        result = metrics.means()
        result["charts/learning_rate"] = self.optimizer.param_groups[0]["lr"]
        result["charts/sps"] = (self.global_step - start_step) / max(
            time.perf_counter() - start_time, 1e-9
        )
        return LearnResult(self.global_step, episodes, result, updates)

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

    def _normalize_obs(self, obs: np.ndarray, update: bool) -> np.ndarray:
        if self.obs_normalizer is not None:
            return self.obs_normalizer(obs, update)
        return np.asarray(obs, dtype=np.float32)

    def _rollout(
        self,
        envs: VectorEnv,
        state: _RolloutState,
        num_steps: int,
        generator: torch.Generator,
        episodes: list,
        train: bool,
    ) -> Batch:
        """Step ``envs`` ``num_steps`` times under the current policy; GAE batch of real steps.

        ``train`` advances ``global_step`` and updates normalisation statistics; a side
        rollout (``train=False``) only reads them.
        """
        c = self.config
        n = envs.num_envs
        same_step = envs.metadata.get("autoreset_mode") == AutoresetMode.SAME_STEP
        # numpy storage: per-step writes into numpy are much cheaper than torch indexing.
        obs = np.zeros((num_steps, n, *self.obs_shape), dtype=np.float32)
        action_dtype = np.float32 if self.policy.continuous else np.int64
        actions = np.zeros((num_steps, n, *self.action_space.shape), dtype=action_dtype)
        logprobs = np.zeros((num_steps, n), dtype=np.float32)
        values = np.zeros((num_steps + 1, n), dtype=np.float32)
        rewards = np.zeros((num_steps, n), dtype=np.float32)
        terminated = np.zeros((num_steps, n), dtype=np.float32)
        ends = np.zeros((num_steps, n), dtype=np.float32)
        valid = np.ones((num_steps, n), dtype=bool)
        final_values: dict[tuple[int, int], float] = {}
        next_obs = self._normalize_obs(state.obs, update=False)
        for t in range(num_steps):
            obs[t] = next_obs
            valid[t] = ~state.resetting
            with torch.inference_mode():
                x = torch.from_numpy(next_obs)
                action, logprob = self.policy.sample(common.act_forward(self.actor, x), generator)
                values[t] = common.act_forward(self.critic, x).squeeze(-1).numpy()
            env_action = actions[t] = action.numpy()
            logprobs[t] = logprob.numpy()
            if self.policy.continuous:
                env_action = np.clip(env_action, self._low, self._high)
            raw_obs, reward, term, trunc, info = envs.step(env_action)
            done = term | trunc
            if train:
                self.global_step += n
            state.episodes.step(
                reward, done, self.global_step, episodes, counted=None if same_step else valid[t]
            )
            if self.reward_normalizer is not None:
                reward = self.reward_normalizer(reward, done, update=train)
            rewards[t], terminated[t], ends[t] = reward, term, done
            if same_step and trunc.any():  # the reset obs replaced the final one: value it now
                for i in np.flatnonzero(trunc & ~term):
                    final = self._normalize_obs(info["final_obs"][i][None], update=False)
                    with torch.inference_mode():
                        final_values[(t, i)] = self.critic(torch.from_numpy(final)).item()
            state.obs = raw_obs
            state.resetting = np.zeros(n, dtype=bool) if same_step else done
            next_obs = self._normalize_obs(raw_obs, update=train)
        with torch.inference_mode():
            values[num_steps] = self.critic(torch.from_numpy(next_obs)).squeeze(-1).numpy()

        # GAE. next_values[t] is V of the state after step t: in NEXT_STEP mode obs[t+1] is
        # the final observation of an ended episode, so truncation bootstraps from it.
        next_values = values[1:].copy()
        for (t, i), v in final_values.items():
            next_values[t, i] = v
        advantages = np.zeros((num_steps, n), dtype=np.float32)
        last_gae = np.zeros(n, dtype=np.float32)
        for t in reversed(range(num_steps)):
            delta = rewards[t] + c.gamma * next_values[t] * (1.0 - terminated[t]) - values[t]
            last_gae = delta + c.gamma * c.gae_lambda * (1.0 - ends[t]) * last_gae
            advantages[t] = last_gae
        returns = advantages + values[:-1]

        keep = valid.reshape(-1)
        flat = {
            "obs": obs.reshape(-1, *self.obs_shape),
            "actions": actions.reshape(-1, *self.action_space.shape),
            "logprobs": logprobs.reshape(-1),
            "advantages": advantages.reshape(-1),
            "returns": returns.reshape(-1),
            "values": values[:-1].reshape(-1),
        }
        return {k: torch.from_numpy(np.ascontiguousarray(v[keep])) for k, v in flat.items()}

    # ----------------------------------------------------------------- probes and rollouts

    def probe_targets(self) -> list[ProbeTarget]:
        def inputs(batch: Batch) -> Tensor:
            return batch["obs"]

        return [
            ProbeTarget(
                "policy",
                self.actor,
                self.actor.layers(),
                lambda b: self.policy_loss(b)[0],
                self._probe_batch,
                inputs,
            ),
            ProbeTarget(
                "value",
                self.critic,
                self.critic.layers(),
                self.value_loss,
                self._probe_batch,
                inputs,
            ),
        ]

    def _probe_batch(self, n: int, generator: torch.Generator | None = None) -> Batch:
        """Up to ``n`` distinct samples of the last rollout, drawn with ``generator``."""
        if self.last_rollout is None:
            raise AgentError("no rollout yet: call learn() first or use collect()")
        idx = torch.randperm(len(self.last_rollout["obs"]), generator=generator)[:n]
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
        return self._rollout(envs, state, math.ceil(num_steps / n), generator, [], train=False)

    # ------------------------------------------------------------------ oracle and state

    def on_task_switch(self, policy: ShiftPolicy) -> None:
        """Apply the oracle knobs of ``policy``, then each mitigation's ``on_task_switch``.

        PPO has no epsilon schedule, replay buffer or target network: those knobs must stay
        "keep". ``reinitialize`` re-draws both networks (and log-std) and resets Adam;
        normalisation statistics are kept.
        """
        for knob in ("exploration", "buffer", "target"):
            if getattr(policy, knob) != "keep":
                raise AgentError(
                    f"PPO has no {knob} to change: shift policy {knob}={getattr(policy, knob)!r}; "
                    "valid: 'keep'"
                )
        if policy.reinitialize:
            self.actor.reset_parameters(self.torch_rng)
            self.critic.reset_parameters(self.torch_rng)
            if self.policy.continuous:
                with torch.no_grad():
                    self.actor.log_std.fill_(self.config.init_log_std)
            common.reset_optimizer(self.optimizer)
            for m in self.mitigations:
                m.attach(self)
        if policy.optimizer == "reset":
            common.reset_optimizer(self.optimizer)
        for m in self.mitigations:
            m.on_task_switch(self)

    def state_dict(self) -> dict[str, Any]:
        state = {
            "config": asdict(self.config),
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "global_step": self.global_step,
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
        """Restore a checkpoint. Without ``env`` the next ``learn`` resets its env (see
        :meth:`learn`); with ``env`` -- the training vector env restored to its state at the
        checkpoint -- it continues every sub-env's episode in progress there, exactly."""
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.global_step = int(state["global_step"])
        common.load_rng_state(self.rng, self.torch_rng, state["rng"])
        if self.obs_normalizer is not None:
            self.obs_normalizer.rms.load_state_dict(state["obs_normalizer"])
        if self.reward_normalizer is not None:
            self.reward_normalizer.rms.load_state_dict(state["reward_normalizer"])
        self.last_rollout = copy.deepcopy(state["last_rollout"])
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
