"""Checks and defaults that need the other packages (envs, spectral, agents.mitigations).

``config.from_dict`` checks what a config says on its own; :func:`resolve` checks the
names it uses against what is registered, and writes out every default that would
otherwise depend on another package's version (the stream's period, the default probe
set, DQN's exploration and warm-up in env steps), so the saved ``config.toml`` reproduces
the run. It also refuses runs that cannot be what the user meant: a CUDA device on a
machine without one, a shifting run that ends before its first shift, a DQN whose epsilon would not finish decaying or that would never
update, a PPO whose learning rate would anneal to 0 before the end.
"""

from __future__ import annotations

import dataclasses
import re

from agents.base import AgentError, ShiftPolicy
from experiments.config import RunConfig, agent_class, default_name
from experiments.errors import ConfigError

__all__ = ["resolve", "rollout_size", "probe_metric_names", "DEFAULT_PROBE_METRICS",
           "PROBE_NETWORKS", "DEFAULT_PROBE_NETWORKS", "GYMNASIUM_TWINS"]


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


#: Plain Gymnasium ids whose stream's task 0 is that env unchanged: ``env.id = "CartPole-v1"``
#: runs ``plasticity/CartPoleDynamics-v0`` with ``experiment.reference = "stationary"``,
#: which is CartPole-v1 itself (the saved config.toml says so).
GYMNASIUM_TWINS = {
    "CartPole-v1": "plasticity/CartPoleDynamics-v0",
    "Acrobot-v1": "plasticity/AcrobotDynamics-v0",
    "MountainCar-v0": "plasticity/MountainCarDynamics-v0",
    "Pendulum-v1": "plasticity/PendulumDynamics-v0",
}


def probe_metric_names() -> list[str]:
    """Metric groups a run may ask for (``experiments.probing.list_probe_groups``: spectral's
    groups and the trainability probe, less the unsupported)."""
    from experiments.probing import list_probe_groups

    return [m for m in list_probe_groups() if m not in UNSUPPORTED_METRICS]


def rollout_size(config: RunConfig) -> int:
    """Env steps per agent update boundary: PPO ``num_envs * num_steps``, DQN 1."""
    if config.agent.algo != "ppo":
        return 1
    return config.env.num_envs * int(getattr(config.agent.settings, "num_steps", 1))


def resolve(config: RunConfig) -> RunConfig:
    """A copy of ``config`` with names checked and defaults written out (idempotent)."""
    import spectral
    from agents.mitigations import available_mitigations

    config = dataclasses.replace(
        config,
        experiment=dataclasses.replace(config.experiment),
        env=dataclasses.replace(config.env),
        probes=dataclasses.replace(config.probes),
    )
    e, env, probes = config.experiment, config.env, config.probes
    if not e.name:  # from the id as given, so the directory is the one run_dir named before
        e.name = default_name(config)
    _check_device(e.device)
    for module in e.imports:
        _import_plugin(module)
    _resolve_stream(config)
    if not e.arm:
        e.arm = e.reference
    _check_stream_options(config)
    config = _resolve_agent(config)

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

    if "trainability" in probes.metrics and not probes.fixed_phases:
        raise ConfigError("probes.metrics has 'trainability', which runs on the fixed probe "
                          "data, but probes.fixed_phases is empty; add a phase, e.g. "
                          "probes.fixed_phases = ['init', 'trained_once'], or drop the metric")

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
    if env.period and env.period % rollout:
        lower = max(env.period // rollout, 1) * rollout
        raise ConfigError(
            f"env.period = {env.period} is not a multiple of the PPO rollout "
            f"(env.num_envs * agent.num_steps = {rollout}), so switches would fall inside "
            f"a rollout; use e.g. env.period = {lower} or {lower + rollout}"
        )
    return config


def _check_device(name: str) -> None:
    """Refuse ``experiment.device`` naming a CUDA device this torch build / machine lacks
    (``config.validate`` has checked the spelling)."""
    import torch

    device = torch.device(name)
    if device.type != "cuda":
        return
    if not torch.cuda.is_available():
        raise ConfigError(f"experiment.device = {name!r} but this torch build/machine has no "
                          "CUDA device; valid here: 'cpu'")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        valid = ", ".join(["'cpu'", "'cuda'", *(f"'cuda:{i}'" for i in range(count))])
        raise ConfigError(f"experiment.device = {name!r} but this machine has {count} CUDA "
                          f"device(s); valid here: {valid}")


def _import_plugin(module: str) -> None:
    """Import a user plug-in named in ``experiment.imports``: a module name (on sys.path /
    PYTHONPATH) or a path to a ``.py`` file (relative to the working directory)."""
    import importlib.util
    import sys
    from pathlib import Path

    if module.endswith(".py"):
        path = Path(module).resolve()
        if not path.is_file():
            raise ConfigError(f"experiment.imports: {module!r} is not a file; give a path to a .py "
                              "file or an importable module name")
        name = "plasticity_plugin_" + re.sub(r"\W", "_", str(path))
        if name in sys.modules:
            return
        spec = importlib.util.spec_from_file_location(name, path)
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[name] = loaded
        try:
            spec.loader.exec_module(loaded)
        except BaseException:
            del sys.modules[name]
            raise
        return
    try:
        importlib.import_module(module)
    except ImportError as err:
        raise ConfigError(f"experiment.imports: cannot import {module!r} ({err}); give an "
                          "importable module name (on sys.path / PYTHONPATH) or a path to a "
                          ".py file") from err


def _resolve_stream(config: RunConfig) -> None:
    """Map a plain Gymnasium id to its stationary stream twin, check the id, fill in the
    period (the stream's default, rounded to whole PPO rollouts so switches fall between
    rollouts) and refuse a shifting run too short for a shift."""
    import envs

    e, env = config.experiment, config.env
    if env.id in GYMNASIUM_TWINS:
        if e.reference == "fresh":
            raise ConfigError(f"env.id = {env.id!r} never shifts, so experiment.reference = "
                              "'fresh' has no shift to re-initialise at; valid choices for a "
                              "plain Gymnasium env: 'stationary' (or use a plasticity/ stream)")
        env.id, e.reference = GYMNASIUM_TWINS[env.id], "stationary"
    streams = {s.id: s for s in envs.list_streams()}
    if env.id not in streams:
        hint = _wrapping_hint(env.id)
        raise ConfigError(f"env.id = {env.id!r} is not a registered stream{hint}; valid "
                          f"choices: {_choices(sorted(streams))} (see `plasticity envs`)")
    if env.period == 0:
        default, rollout = int(streams[env.id].default_period or 0), rollout_size(config)
        env.period = max(round(default / rollout), 1) * rollout if default else 0
    if e.reference != "stationary" and env.period and env.period >= e.steps:
        raise ConfigError(
            f"env.period = {env.period} >= experiment.steps = {e.steps}: the run would end "
            f"before its first shift; give experiment.steps > env.period (e.g. "
            f"{4 * env.period} for 4 tasks), a shorter env.period, or experiment.reference = "
            "'stationary'"
        )


def _wrapping_hint(env_id: str) -> str:
    """For a plain Gymnasium id (or one whose name Gymnasium registers at another version):
    the ``envs.make_nonstationary`` call that makes it a stream, said before the long list of
    valid ids so a user reads it."""
    import gymnasium

    found = env_id if env_id in gymnasium.registry else None
    if found is None and "-v" in env_id:  # e.g. Taxi-v3 after Gymnasium 1.x made it Taxi-v4
        name = env_id.rsplit("-v", 1)[0]
        found = next((k for k in sorted(gymnasium.registry, reverse=True)
                      if k.rsplit("-v", 1)[0] == name), None)
    if found is None:
        return ""
    moved = "" if found == env_id else f" (Gymnasium registers it as {found!r})"
    return (f": it is a plain Gymnasium env{moved}, which does not shift; wrap it as "
            f"envs.make_nonstationary({found!r}, shift=YourShift(), schedule="
            "envs.RandomSchedule(period, {...}, seed=seed)) in a module that calls "
            "envs.register_stream and is named in experiment.imports (README: 'Plugging in a "
            "new environment'); plain ids that run as they are, without shifts: "
            + _choices(GYMNASIUM_TWINS))


def _check_stream_options(config: RunConfig) -> None:
    """Build the stream once when ``env.kwargs`` are given, so a bad option is refused
    before anything is written (and in a sweep, before any run starts)."""
    import envs

    env = config.env
    if not env.kwargs:
        return
    kwargs = dict(env.kwargs, stationary=True, seed=config.experiment.seed)
    if env.period:
        kwargs["period"] = env.period
    try:
        envs.make(env.id, **kwargs).close()
    except envs.EnvError as err:
        raise ConfigError(f"env.kwargs = {dict(env.kwargs)!r} for {env.id}: {err}") from None


def _resolve_agent(config: RunConfig) -> RunConfig:
    """Write out the agent's run-length-dependent settings and refuse inconsistent ones."""
    e, settings = config.experiment, config.agent.settings
    if config.agent.algo == "dqn":
        # One task is the horizon: epsilon finishes decaying within the first task, and a
        # re-warmed or re-initialised agent decays over the same span on every task.
        horizon = settings.horizon or (
            config.env.period if e.reference != "stationary" and config.env.period else e.steps)
        settings = dataclasses.replace(settings, horizon=horizon)
        decay, warmup = settings.schedule()
        settings = dataclasses.replace(settings, exploration_steps=decay, learning_starts=warmup)
        if decay > e.steps:
            raise ConfigError(
                f"agent.exploration_steps = {decay} > experiment.steps = {e.steps}: epsilon "
                f"would not reach end_e = {settings.end_e} within the run; lower "
                "agent.exploration_steps or agent.exploration_fraction (a fraction of "
                "agent.horizon)")
        start = max(warmup + 1, settings.batch_size)
        first_update = -(-start // settings.train_frequency) * settings.train_frequency
        if first_update > e.steps:
            raise ConfigError(
                f"agent.learning_starts = {warmup} (batch_size {settings.batch_size}, "
                f"train_frequency {settings.train_frequency}): the first update would come at "
                f"step {first_update}, after experiment.steps = {e.steps}; lower "
                "agent.learning_starts / agent.learning_starts_fraction")
    elif settings.anneal_lr and settings.total_steps < e.steps:
        raise ConfigError(
            f"agent.total_steps = {settings.total_steps} < experiment.steps = {e.steps} with "
            "agent.anneal_lr = true: the learning rate would be 0 for the last "
            f"{e.steps - settings.total_steps} steps; set agent.total_steps = {e.steps} or "
            "agent.anneal_lr = false")
    return dataclasses.replace(config, agent=dataclasses.replace(config.agent, settings=settings))
