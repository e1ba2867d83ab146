"""Checks and defaults that need the other packages (envs, spectral, agents.mitigations).

``config.from_dict`` checks what a config says on its own; :func:`resolve` checks the
names it uses against what is registered, and writes out every default that would
otherwise depend on another package's version (the stream's period, the default probe
set), so the saved ``config.toml`` reproduces the run.
"""

from __future__ import annotations

import dataclasses
import importlib

from agents.base import AgentError, ShiftPolicy
from experiments.config import RunConfig, agent_class
from experiments.errors import ConfigError

__all__ = ["resolve", "rollout_size", "probe_metric_names", "DEFAULT_PROBE_METRICS",
           "PROBE_NETWORKS", "DEFAULT_PROBE_NETWORKS"]


def _choices(values) -> str:
    return ", ".join(map(repr, values))


#: The default probe set: spectral's cheap set plus the SLQ density (eps-rank), the Hessian
#: trace and the one-step gain (SLQ is thinned by probes.slq_every_n_shifts).
DEFAULT_PROBE_METRICS = ("hessian_top", "hessian_density", "hessian_trace", "features",
                         "gradient", "weights", "one_step_gain")
#: Budgets that keep the SLQ density and the trace to a fraction of a second per network
#: (spectral's defaults, 100 x 4 SLQ steps, cost ~2 s per network on the default study).
DEFAULT_PROBE_SETTINGS = {"slq_iters": 50, "slq_probes": 1, "trace_samples": 30}
#: spectral metric groups the runner cannot feed (it has no stored initial parameters).
UNSUPPORTED_METRICS = ("distance_from_init",)
#: The probe targets each agent offers (``agent.probe_targets()`` names; tested to agree).
PROBE_NETWORKS = {"dqn": ("q",), "ppo": ("policy", "value", "actor_critic")}
#: The ones probed unless ``probes.networks`` says otherwise: one row per trained network.
DEFAULT_PROBE_NETWORKS = {"dqn": ("q",), "ppo": ("policy", "value")}


def probe_metric_names() -> list[str]:
    """Metric groups a run may ask for (``spectral.list_metrics`` less the unsupported)."""
    import spectral

    return [m for m in spectral.list_metrics() if m not in UNSUPPORTED_METRICS]


def rollout_size(config: RunConfig) -> int:
    """Env steps per agent update boundary: PPO ``num_envs * num_steps``, DQN 1."""
    if config.agent.algo != "ppo":
        return 1
    return config.env.num_envs * int(getattr(config.agent.settings, "num_steps", 1))


def resolve(config: RunConfig) -> RunConfig:
    """A copy of ``config`` with names checked and defaults written out (idempotent)."""
    import envs
    import spectral
    from agents.mitigations import available_mitigations

    config = dataclasses.replace(
        config,
        experiment=dataclasses.replace(config.experiment),
        env=dataclasses.replace(config.env),
        probes=dataclasses.replace(config.probes),
    )
    e, env, probes = config.experiment, config.env, config.probes
    if not e.arm:
        e.arm = e.reference
    for module in e.imports:
        # User plug-ins register their streams/mitigations on import.
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"experiment.imports: cannot import {module!r} ({err}); give an "
                              "importable module name (on sys.path / PYTHONPATH)") from err

    streams = {s.id: s for s in envs.list_streams()}
    if env.id not in streams:
        raise ConfigError(f"env.id = {env.id!r} is not a registered stream; valid choices: "
                          f"{_choices(sorted(streams))} (see `plasticity envs`)")
    if env.period == 0:
        env.period = int(streams[env.id].default_period or 0)

    valid = probe_metric_names()
    if not probes.metrics:
        probes.metrics = list(DEFAULT_PROBE_METRICS)
    for name in probes.metrics:
        if name not in valid:
            raise ConfigError(f"probes.metrics has unknown metric {name!r}; valid choices: "
                              f"{_choices(valid)}")

    algo = config.agent.algo
    if not probes.networks:
        probes.networks = list(DEFAULT_PROBE_NETWORKS[algo])
    for name in probes.networks:
        if name not in PROBE_NETWORKS[algo]:
            raise ConfigError(f"probes.networks has {name!r}, which agent {algo!r} does not "
                              f"offer; valid choices: {_choices(PROBE_NETWORKS[algo])}")

    settings = dict(DEFAULT_PROBE_SETTINGS) | dict(probes.settings)
    valid_settings = [f.name for f in dataclasses.fields(spectral.ProbeConfig) if f.name != "dtype"]
    for key in settings:
        if key not in valid_settings:
            raise ConfigError(f"unknown key probes.settings.{key}; valid keys: "
                              + ", ".join(valid_settings))
    spectral.ProbeConfig(**settings)  # range checks (SpectralError names the field)
    probes.settings = settings

    known = list(available_mitigations())
    for name in config.mitigations.names:
        if name not in known:
            raise ConfigError(f"mitigations.names has unknown mitigation {name!r}; valid "
                              f"choices: {_choices(known)}")

    knobs = getattr(agent_class(config.agent.algo), "SHIFT_KNOBS", tuple(ShiftPolicy.CHOICES))
    try:
        config.shift.check_knobs(config.agent.algo.upper(), knobs)
    except AgentError as exc:
        raise ConfigError(str(exc)) from None
    rollout = rollout_size(config)
    if env.period % rollout:
        lower = max(env.period // rollout, 1) * rollout
        raise ConfigError(
            f"env.period = {env.period} is not a multiple of the PPO rollout "
            f"(env.num_envs * agent.num_steps = {rollout}), so switches would fall inside "
            f"a rollout; use e.g. env.period = {lower} or {lower + rollout}"
        )
    return config
