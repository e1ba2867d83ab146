"""Shift-aware probing: which probes run at a step, on which data, and what they cost.

Phases (docs/architecture.md): ``pre`` on the current task's data just before a switch
(the agent's own replay sample / last rollout); ``init`` on the *new* task's data from a
side rollout under the current policy that does not train the agent, before any update on
the new task; ``trained_once`` (fresh reference only) the same on the trained network just
before it is re-initialised; ``cadence`` every ``probes.cadence`` env steps in between.

Data: every probe row says which data it used. ``"on_policy"``: the batches above.
``"fixed"`` (at the phases in ``probes.fixed_phases``): the task's fixed probe data
(:mod:`experiments.probe_data`), identical for every arm and seed that sees the task, on
which each probe target's ``fixed_loss`` (well defined off-policy) replaces its training
loss; spectral groups see at most ``probes.batch_size`` of its transitions (a subset drawn
from the task's data seed, so also identical across arms). ``one_step_gain`` runs on
on-policy rows only.

The ``trainability`` group (fixed rows only): from a hook-free copy of each network, fit
``spectral.fit_curve`` for ``probes.trainability_steps`` Adam steps on the fixed data's
distinct observations, with (a) *random targets*: the standardised outputs of an
independently initialised network of the same architecture, seeded by (run seed, task,
network), and (b) where the stream has the ``optimal_action_values`` hook, the *exact*
new-task targets (Q* for a Q network, V* = max_a Q* for a value network, MSE on the raw
values; the greedy action distribution for a policy, KL). Each fit is repeated from a
freshly initialised network of the same architecture (seeded likewise), and every row
carries both and their ratio::

    trainability/{random,exact}_{initial_loss,final_loss,auc}[_fresh]
    trainability/{random,exact}_{final,auc}_ratio        (network / fresh; > 1 = worse)

A network whose outputs are large starts its fit at a large loss and ends it higher than a
fresh network without having lost any ability to learn (Adam moves each weight about
``lr`` a step, so a large head shrinks slowly). Three views separate output scale from
features:

    trainability/{random,exact}_final_fraction           final / initial loss of its own fit
    trainability/{random,exact}_final_fraction_logratio  log(fraction / fresh's fraction)
    trainability/features_{final_loss,final_ratio,auc_ratio}
        the random-target fit from the network's hidden layers under a newly drawn output
        layer (the network's own init distribution, seeded by run seed, task, network),
        its final loss, and its final loss and area over the fresh network's
    weights/output_layer_norm, outputs/mean_abs          the head's L2 norm and mean |output|
                                                         (logits, V or Q) on the fit's inputs

Tests (tests/experiments/test_trainability_probe.py): a head scaled x10 reads "worse" on
the raw ratio but within 1.5x of fresh on the fraction and the feature fit; 58 of 64 ReLU
units dead in each hidden layer reads > 5x fresh on all three; a re-initialised network
within 1.5x on all.

Probes must never change training. They run inside ``torch.random.fork_rng`` with their
own generator seeded from (run seed, step, phase), draw batches with that generator, roll
out on separate envs and fit copies of the networks, so the agent's generators, networks,
optimiser, buffer and step count are untouched (tested: a run with probes and one without
give identical training metrics).
"""

from __future__ import annotations

import math
import time
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

import spectral
from experiments import probe_data, streams
from experiments.config import PROBE_PHASES, ProbeConfig

__all__ = ["Prober", "PHASES", "PROBE_GROUPS", "PROBE_KEYS", "is_slq_metric", "list_probe_groups"]

PHASES = PROBE_PHASES
#: The expensive spectral metric groups (SLQ densities, Hutch++ trace), thinned at shifts.
SLQ_METRICS = ("hessian_density", "ggn_density", "hessian_trace")
#: Groups that need a target's Gauss-Newton form (``ProbeTarget.ggn``; none on fixed data).
GGN_METRICS = ("ggn_density", "ggn_eps_count")
#: Probe groups run here rather than by ``spectral.probe`` (they need the fixed data).
PROBE_GROUPS = {
    "trainability": "fixed-data fit of random/exact targets, network copy vs fresh: final "
                    "loss, curve area",
}
#: The keys each group of :data:`PROBE_GROUPS` writes (``plasticity list metrics``).
PROBE_KEYS = {
    "trainability": (
        "trainability/{random,exact}_{initial_loss,final_loss,auc}[_fresh]",
        "trainability/{random,exact}_{final,auc}_ratio",
        "trainability/{random,exact}_final_fraction[_logratio]",
        "trainability/features_{final_loss,final_ratio,auc_ratio}",
        "weights/output_layer_norm, outputs/mean_abs",
    ),
}


def list_probe_groups() -> dict[str, str]:
    """``{group: one-line description}``: spectral's metric groups and :data:`PROBE_GROUPS`."""
    return spectral.list_metrics() | PROBE_GROUPS


def is_slq_metric(name: str) -> bool:
    """True for the spectral-density (stochastic Lanczos quadrature) metrics, which cost
    about three quarters of a full probe set and can be thinned with slq_every_n_shifts."""
    return name in SLQ_METRICS


def _greedy(action_values: Tensor) -> Tensor:
    best = action_values >= action_values.max(dim=1, keepdim=True).values - 1e-6
    return best.float() / best.sum(dim=1, keepdim=True)


#: Exact targets per probe-target name: Q* -> (targets, fit loss).
EXACT_TARGETS: dict[str, Callable[[Tensor], tuple[Tensor, str]]] = {
    "q": lambda q: (q, "mse"),
    "value": lambda q: (q.max(dim=1, keepdim=True).values, "mse"),
    "policy": lambda q: (_greedy(q), "kl"),
}


class Prober:
    """Runs the configured metrics on every probe target of an agent and times itself.

    Args:
        fixed_env: a single-env stream used only for the fixed probe data (None: no fixed
            rows); the prober sets its task.

    Attributes:
        seconds: wall time spent probing so far (side rollouts included).
    """

    def __init__(self, config: ProbeConfig, metrics: Sequence[str], seed: int,
                 fixed_env: Any = None) -> None:
        self.config = config
        self.metrics = list(metrics)
        self.cheap = [m for m in self.metrics if not is_slq_metric(m)]
        self.seed = int(seed)
        self.settings = spectral.ProbeConfig(**config.settings)
        self.fixed_env = fixed_env
        self.seconds = 0.0
        self._fixed: dict[int, tuple[dict[str, Tensor], dict[str, Tensor]]] = {}
        self._exact: dict[tuple[int, float], tuple[Tensor, Tensor] | None] = {}
        self._fresh_fits: dict[tuple, spectral.FitCurve] = {}

    def metrics_at(self, shift_index: int | None, phase: str = "init") -> list[str]:
        """All metrics, except SLQ ones at shifts off the ``slq_every_n_shifts`` grid or in
        a phase not in ``slq_phases`` (``trained_once`` counts as ``init``; shift_index
        None = a cadence probe: always all)."""
        if shift_index is None:
            return self.metrics
        phase = "init" if phase == "trained_once" else phase
        if shift_index % self.config.slq_every_n_shifts == 0 and phase in self.config.slq_phases:
            return self.metrics
        return self.cheap

    def _generator(self, step: int, phase: str) -> torch.Generator:
        # Deterministic per (seed, step, phase): reruns and resumes probe identically.
        return torch.Generator().manual_seed(
            (self.seed * 1_000_003 + step) * len(PHASES) + PHASES.index(phase)
        )

    def probe(
        self,
        agent: Any,
        *,
        phase: str,
        step: int,
        task_id: int,
        shift_index: int | None = None,
        side_env: Any = None,
    ) -> list[dict[str, Any]]:
        """One on-policy row per probe target, then (at ``probes.fixed_phases``) one fixed-
        data row per target that has a ``fixed_loss``. ``side_env`` (phases ``init`` and
        ``trained_once``): an env already set to the new task; the probe batch is
        ``agent.collect`` on it."""
        start = time.perf_counter()
        metrics = self.metrics_at(shift_index, phase)
        spectral_metrics = [m for m in metrics if m not in PROBE_GROUPS]
        rows = []
        gen = self._generator(step, phase)
        head = {"step": step, "task_id": task_id, "phase": phase}
        with torch.random.fork_rng(devices=[]):
            shared = None
            if phase in ("init", "trained_once"):
                seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen, device="cpu"))
                shared = agent.collect(side_env, self.config.init_rollout_steps, seed)
            gain = "one_step_gain" in metrics
            # One generator state for every target's batch: the networks of one agent are
            # probed on the same samples (actor_critic's spectrum is then exactly the union
            # of policy's and value's, as the block-diagonal Hessian says).
            batch_state = gen.get_state()
            for target in agent.probe_targets() if spectral_metrics else ():
                if target.name not in self.config.networks:
                    continue
                if shared is not None:  # one side rollout: probe on one half, evaluate on the other
                    batch, held_out = _split(shared) if gain else (shared, None)
                else:  # every target draws the same rows of the agent's data
                    draw = torch.Generator()
                    draw.set_state(batch_state)
                    batch = target.sample_batch(self.config.batch_size, draw)
                    held_out = target.sample_batch(self.config.batch_size, draw) if gain else None
                batch = _head(batch, self.config.batch_size)
                # A target without a Gauss-Newton form (actor_critic) skips that group.
                wanted = [m for m in spectral_metrics if m not in GGN_METRICS or target.ggn is not None]
                values = spectral.probe(
                    target.module,
                    lambda target=target, batch=batch: target.loss(batch),
                    layers=target.layers,
                    inputs=target.inputs(batch),
                    metrics=wanted,
                    generator=gen,
                    config=self.settings,
                    eval_loss_fn=None if held_out is None else (
                        lambda target=target, b=held_out: target.loss(b)),
                    ggn=None if target.ggn is None else target.ggn(batch),
                )
                rows.append({**head, "network": target.name, "data": "on_policy", **values})
            if self.fixed_env is not None and phase in self.config.fixed_phases:
                rows.extend(self._fixed_rows(agent, head, metrics, gen))
        self.seconds += time.perf_counter() - start
        return rows

    # ------------------------------------------------------------------ fixed probe data
    def _fixed_data(self, task_id: int) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """(the task's fixed transitions, the subset spectral groups see), cached per task."""
        if task_id not in self._fixed:
            streams.set_task(self.fixed_env, task_id)
            data = probe_data.fixed_transitions(self.fixed_env, self.config.fixed_steps)
            n = len(data["obs"])
            subset = data
            if n > self.config.batch_size:
                params = streams.stream_wrappers(self.fixed_env)[0].task_params
                order = torch.Generator().manual_seed(probe_data.data_seed(params))
                idx = torch.randperm(n, generator=order, device="cpu")[: self.config.batch_size]
                subset = {k: v[idx] for k, v in data.items()}
            self._fixed[task_id] = (data, subset)
        return self._fixed[task_id]

    def fixed_observations(self, task_id: int) -> Tensor:
        """The distinct raw observations of task ``task_id``'s fixed probe data (host tensor;
        what an oracle perturbation acting on the fixed data is given)."""
        return torch.unique(self._fixed_data(task_id)[0]["obs"], dim=0)

    def _exact_targets(self, task_id: int, gamma: float | None) -> tuple[Tensor, Tensor] | None:
        if gamma is None:
            return None
        key = (task_id, float(gamma))
        if key not in self._exact:
            streams.set_task(self.fixed_env, task_id)
            self._exact[key] = probe_data.optimal_action_values(self.fixed_env, float(gamma))
        return self._exact[key]

    def _fixed_rows(self, agent: Any, head: dict[str, Any], metrics: list[str],
                    gen: torch.Generator) -> list[dict[str, Any]]:
        task_id = head["task_id"]
        data, subset = self._fixed_data(task_id)
        # No held-out fixed batch (one_step_gain) and no Gauss-Newton form of the fixed losses.
        spectral_metrics = [m for m in metrics
                            if m not in PROBE_GROUPS and m not in ("one_step_gain", *GGN_METRICS)]
        trainability = "trainability" in metrics
        exact = self._exact_targets(task_id, getattr(agent.config, "gamma", None)) if trainability else None
        rows = []
        for target in agent.probe_targets():
            if target.fixed_loss is None or target.name not in self.config.networks:
                continue
            batch = _on_device(subset, target.module)
            batch = {**batch, "obs": target.observe(batch["obs"]),
                     "next_obs": target.observe(batch["next_obs"])}
            values: dict[str, float] = {}
            if spectral_metrics:
                values = spectral.probe(
                    target.module,
                    lambda target=target, batch=batch: target.fixed_loss(batch),
                    layers=target.layers,
                    inputs=target.inputs(batch),
                    metrics=spectral_metrics,
                    generator=gen,
                    config=self.settings,
                )
            if trainability:
                t0 = time.perf_counter()
                values.update(self._trainability(target, task_id, data["obs"], exact))
                values["time/trainability"] = time.perf_counter() - t0
            rows.append({**head, "network": target.name, "data": "fixed", **values})
        return rows

    # ------------------------------------------------------------------ trainability
    def _task_generator(self, task_id: int, purpose: str, network: str) -> torch.Generator:
        # Fixed per (run seed, task, network): the same targets for every arm of a seed.
        key = f"{self.seed}/{task_id}/{purpose}/{network}"
        return torch.Generator().manual_seed(zlib.crc32(key.encode()))

    def _trainability(self, target: Any, task_id: int, obs: Tensor,
                      exact: tuple[Tensor, Tensor] | None) -> dict[str, float]:
        x = torch.unique(target.observe(_on_device(obs, target.module)), dim=0)
        with torch.no_grad():
            y = spectral.standardized(
                target.fresh_module(self._task_generator(task_id, "targets", target.name))(x))
            # The head's scale: a large raw fit ratio with a small one here is "large outputs".
            out = {"weights/output_layer_norm": spectral.weight_norm(
                       list(target.output_layer().parameters())),
                   "outputs/mean_abs": spectral.network_copy(target.module)(x).abs().mean().item()}
        out.update(self._fit_pair("random", target, task_id, x, y, "mse"))
        out.update(self._feature_fit(target, task_id, x, y))
        if exact is not None and target.name in EXACT_TARGETS:
            obs_e, action_values = exact
            y_e, loss = EXACT_TARGETS[target.name](_on_device(action_values, target.module))
            out.update(self._fit_pair("exact", target, task_id,
                                      target.observe(_on_device(obs_e, target.module)), y_e, loss))
        return out

    def _budget(self, loss: str) -> dict[str, Any]:
        return dict(steps=self.config.trainability_steps, lr=self.config.trainability_lr, loss=loss)

    def _fresh_fit(self, kind: str, target: Any, task_id: int, x: Tensor, y: Tensor,
                   loss: str) -> spectral.FitCurve:
        # The fresh network's fit depends only on its seed and the data: compute it once.
        key = (kind, task_id, target.name, zlib.crc32(x.cpu().numpy().tobytes()))
        if key not in self._fresh_fits:
            fresh = target.fresh_module(self._task_generator(task_id, "fresh", target.name))
            self._fresh_fits[key] = spectral.fit_curve(fresh, x, y, **self._budget(loss))
        return self._fresh_fits[key]

    def _fit_pair(self, kind: str, target: Any, task_id: int, x: Tensor, y: Tensor,
                  loss: str) -> dict[str, float]:
        curve = spectral.fit_curve(target.module, x, y, **self._budget(loss))
        fresh = self._fresh_fit(kind, target, task_id, x, y, loss)
        p = f"trainability/{kind}_"
        # final / initial divides out the starting loss, which large outputs inflate.
        fraction, fresh_fraction = _ratio(curve.final, curve.initial), _ratio(fresh.final, fresh.initial)
        return {
            p + "initial_loss": curve.initial, p + "final_loss": curve.final, p + "auc": curve.auc,
            p + "initial_loss_fresh": fresh.initial, p + "final_loss_fresh": fresh.final,
            p + "auc_fresh": fresh.auc,
            p + "final_ratio": _ratio(curve.final, fresh.final),
            p + "auc_ratio": _ratio(curve.auc, fresh.auc),
            p + "final_fraction": fraction,
            p + "final_fraction_logratio": _log(_ratio(fraction, fresh_fraction)),
        }

    def _feature_fit(self, target: Any, task_id: int, x: Tensor, y: Tensor) -> dict[str, float]:
        """The random-target fit from the network's hidden layers under a newly drawn output
        layer (seeded by run seed, task and network), against the fresh network's fit: the
        features' trainability, whatever the trained head's scale."""
        module = target.head_reset_module(self._task_generator(task_id, "head", target.name))
        curve = spectral.fit_curve(module, x, y, **self._budget("mse"))
        fresh = self._fresh_fit("random", target, task_id, x, y, "mse")
        return {"trainability/features_final_loss": curve.final,
                "trainability/features_final_ratio": _ratio(curve.final, fresh.final),
                "trainability/features_auc_ratio": _ratio(curve.auc, fresh.auc)}


def _on_device(data: Any, module: nn.Module) -> Any:
    """A tensor (or a dict of them) of the host-side probe data on ``module``'s device."""
    device = next(module.parameters()).device
    if isinstance(data, dict):
        return {k: v.to(device) for k, v in data.items()}
    return data.to(device)


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def _log(x: float) -> float:
    return math.log(x) if x > 0 else float("nan")


def _split(batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """First and second half of a batch (probe data and held-out data for one_step_gain)."""
    n = min(v.shape[0] for v in batch.values() if v.dim() > 0)
    half = max(n // 2, 1)
    return ({k: v[:half] if v.dim() > 0 else v for k, v in batch.items()},
            {k: v[half:] if v.dim() > 0 else v for k, v in batch.items()})


def _head(batch: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor]:
    """At most ``n`` samples of a batch (a side rollout may be longer than a probe batch)."""
    sizes = {v.shape[0] for v in batch.values() if hasattr(v, "shape") and v.dim() > 0}
    if len(sizes) != 1 or sizes.pop() <= n:
        return batch  # only cut batches whose tensors all share one leading dimension
    return {k: v[:n] if hasattr(v, "shape") and v.dim() > 0 else v for k, v in batch.items()}
