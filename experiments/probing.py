"""Shift-aware probing: which probes run at a step, on which data, and what they cost.

Phases (docs/architecture.md): ``pre`` on the current task's data just before a switch
(the agent's own replay sample / last rollout); ``init`` on the *new* task's data from a
side rollout under the current policy that does not train the agent, before any update on
the new task; ``cadence`` every ``probes.cadence`` env steps in between.

Probes must never change training. They run inside ``torch.random.fork_rng`` with their
own generator seeded from (run seed, step, phase), draw batches with that generator, and
roll out on a separate env, so the agent's generators, buffer and step count are
untouched (tested: a run with probes and one without give identical training metrics).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch

import spectral
from experiments.config import ProbeConfig

__all__ = ["Prober", "PHASES", "is_slq_metric"]

PHASES = ("pre", "init", "cadence")
#: The expensive spectral metric groups (SLQ densities, Hutch++ trace), thinned at shifts.
SLQ_METRICS = ("hessian_density", "ggn_density", "hessian_trace")


def is_slq_metric(name: str) -> bool:
    """True for the spectral-density (stochastic Lanczos quadrature) metrics, which cost
    about three quarters of a full probe set and can be thinned with slq_every_n_shifts."""
    return name in SLQ_METRICS


class Prober:
    """Runs the configured metrics on every probe target of an agent and times itself.

    Attributes:
        seconds: wall time spent probing so far (side rollouts included).
    """

    def __init__(self, config: ProbeConfig, metrics: Sequence[str], seed: int) -> None:
        self.config = config
        self.metrics = list(metrics)
        self.cheap = [m for m in self.metrics if not is_slq_metric(m)]
        self.seed = int(seed)
        self.settings = spectral.ProbeConfig(**config.settings)
        self.seconds = 0.0

    def metrics_at(self, shift_index: int | None, phase: str = "init") -> list[str]:
        """All metrics, except SLQ ones at shifts off the ``slq_every_n_shifts`` grid or in
        a phase not in ``slq_phases`` (shift_index None = a cadence probe: always all)."""
        if shift_index is None:
            return self.metrics
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
        """One row per probe target. ``side_env`` (phase ``init``): an env already set to
        the new task; the probe batch is ``agent.collect`` on it."""
        start = time.perf_counter()
        metrics = self.metrics_at(shift_index, phase)
        rows = []
        gen = self._generator(step, phase)
        with torch.random.fork_rng(devices=[]):
            shared = None
            if phase == "init":
                seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
                shared = agent.collect(side_env, self.config.init_rollout_steps, seed)
            gain = "one_step_gain" in metrics
            for target in agent.probe_targets():
                if target.name not in self.config.networks:
                    continue
                if shared is not None:  # one side rollout: probe on one half, evaluate on the other
                    batch, held_out = _split(shared) if gain else (shared, None)
                else:
                    batch = target.sample_batch(self.config.batch_size, gen)
                    held_out = target.sample_batch(self.config.batch_size, gen) if gain else None
                batch = _head(batch, self.config.batch_size)
                # A target without a Gauss-Newton form (actor_critic) skips that group.
                wanted = [m for m in metrics if m != "ggn_density" or target.ggn is not None]
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
                rows.append({"step": step, "task_id": task_id, "phase": phase,
                             "network": target.name, **values})
        self.seconds += time.perf_counter() - start
        return rows


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
