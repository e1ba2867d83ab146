"""The run configuration: one dataclass per TOML table, validated up front.

A run config is a TOML file with the tables below (every key optional; the ``[base]``
of ``experiments/defaults/default.toml`` is an example, and every run directory's
``config.toml`` is a complete one):

``[experiment]`` name, arm, seed, steps, reference, torch_threads, device, out,
checkpoint_every, log_every, divergence_factor, imports -- ``[env]`` id, period, num_envs, kwargs -- ``[agent]`` algo plus the fields of
the chosen agent's own dataclass (``agents.dqn.DQNConfig`` / ``agents.ppo.PPOConfig``; they
are not duplicated here) -- ``[mitigations]`` names, options -- ``[probes]`` metrics, pre,
init, cadence, batch_size, init_rollout_steps, slq_every_n_shifts, slq_phases, networks,
settings, trained_once, fixed_phases, fixed_steps, trainability_steps, trainability_lr -- ``[shift]`` what
happens to the agent's state at a switch -- ``[logging]`` tensorboard, episodes, progress.

Every mistake (unknown table or key, wrong type, out-of-range value, unknown name) raises
one :class:`ConfigError` naming the key, the value and the valid choices, before anything
is written. :func:`resolve` fills in defaults that depend on other packages (the stream's
period, the default probe set) so the saved ``config.toml`` reproduces the run exactly.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.base import AgentError, ShiftPolicy, parse_device
from agents.validation import Mismatch, conform
from experiments.errors import ConfigError
from experiments.tomlio import dumps_toml, load_toml, parse_value

__all__ = [
    "default_name",
    "AgentConfig",
    "EnvConfig",
    "ExperimentConfig",
    "LoggingConfig",
    "MitigationsConfig",
    "ProbeConfig",
    "RunConfig",
    "REFERENCES",
    "PROBE_PHASES",
    "AGENTS",
    "agent_config_class",
    "apply_overrides",
    "from_dict",
    "load_config",
    "parse_overrides",
    "save_config",
    "to_dict",
]

#: ``experiment.reference``: the arm's relation to the shift (see docs/architecture.md).
REFERENCES = ("continual", "fresh", "stationary")
#: ``agent.algo`` -> (module, config class, agent class).
AGENTS = {"dqn": ("agents.dqn", "DQNConfig", "DQN"), "ppo": ("agents.ppo", "PPOConfig", "PPO")}
#: Agent-config fields the runner sets itself (from the key named), never from ``[agent]``.
RUNNER_OWNED = {"seed": "experiment.seed", "num_envs": "env.num_envs",
                "device": "experiment.device"}
PROGRESS = ("auto", "bar", "lines", "off")
#: Probe phases (docs/architecture.md): before a switch, at the new task's start, the fresh
#: reference's trained network on the new task before re-initialisation, and cadence probes.
PROBE_PHASES = ("pre", "init", "trained_once", "cadence")


@dataclass
class ExperimentConfig:
    """What is run and where.

    Attributes:
        name: study name (used in the default ``out``); empty (the default): named after
            what runs, ``<stream>-<agent>`` (:func:`default_name`, e.g. ``cartpoledynamics-dqn``),
            so runs of different streams or agents never share a directory.
        arm: label of this arm in a study (e.g. ``"l2"``); defaults to ``reference``.
        seed: seeds the env, the agent and the probes.
        steps: total env steps (all sub-envs counted).
        reference: ``"continual"`` (the study arm), ``"fresh"`` (re-initialise the agent at
            every shift: the full-plasticity reference) or ``"stationary"`` (same stream,
            never shifts: the instability control).
        torch_threads: ``torch.set_num_threads`` for this run (1: runs scale by processes).
        device: where the agent's tensors live: ``"cpu"`` (the default), ``"cuda"`` or
            ``"cuda:N"``. Networks, Adam state, replay batches, rollouts and probes follow
            it; envs, replay storage and every RNG stay on the host, so a CUDA run draws the
            same actions and batches as a CPU run (its numbers still differ in the last
            bits: CUDA kernels round differently). A CUDA device on a machine without one
            is refused when the config is resolved.
        out: run directory; ``{name}``, ``{arm}``, ``{seed}``, ``{reference}`` are filled in.
        checkpoint_every: env steps between checkpoints (0: only at the end).
        log_every: env steps between ``metrics.jsonl`` rows.
        divergence_factor: a network whose parameter norm exceeds this many times its norm
            at initialisation has diverged (``DIVERGED``, exit 1), like NaN/inf; 0 turns
            this rule off (NaN/inf is always caught). See ``experiments/divergence.py``.
        imports: Python modules imported before the config is resolved (in every worker),
            so user-defined streams (``envs.register_stream``) and mitigations
            (``agents.mitigations.register_mitigation``) can be named without editing the
            package.
    """

    name: str = ""
    arm: str = ""
    seed: int = 0
    steps: int = 100_000
    reference: str = "continual"
    torch_threads: int = 1
    device: str = "cpu"
    out: str = "runs/{name}/{arm}-seed{seed}"
    checkpoint_every: int = 50_000
    log_every: int = 2048
    divergence_factor: float = 1000.0
    imports: list[str] = field(default_factory=list)


@dataclass
class EnvConfig:
    """The non-stationary stream (an id from ``plasticity envs``).

    Attributes:
        id: registered stream id, e.g. ``plasticity/ShiftingCartPole-v0``.
        period: env steps per task; 0 takes the stream's default (written out on resolve).
        num_envs: parallel sub-envs (PPO only; DQN uses one env).
        kwargs: extra keyword arguments for ``envs.make`` (e.g. a schedule seed).
    """

    id: str = "plasticity/MiniGridHiddenGoal-v0"
    period: int = 0
    num_envs: int = 4
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class AgentConfig:
    """``algo`` plus the chosen agent's own config dataclass (``settings``).

    In TOML the agent's fields sit next to ``algo`` in ``[agent]``; they are validated
    against ``dataclasses.fields`` of ``DQNConfig`` / ``PPOConfig``.
    """

    algo: str = "ppo"
    settings: Any = None  # DQNConfig | PPOConfig, built by from_dict


@dataclass
class MitigationsConfig:
    """Plasticity mitigations (``plasticity list mitigations``) and their options.

    Attributes:
        names: mitigation names, applied in order (empty: plain backprop).
        options: per-name keyword arguments, e.g. ``[mitigations.options.l2] coef = 1e-3``.
    """

    names: list[str] = field(default_factory=list)
    options: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class ProbeConfig:
    """Which probes run, when, and on how much data.

    Attributes:
        enabled: False turns every probe off (training is identical either way).
        metrics: ``spectral`` metric groups (``plasticity list metrics``); empty takes
            ``experiments.resolve.DEFAULT_PROBE_METRICS``.
        pre: probe on the current task's data just before each switch.
        init: probe on the *new* task's data (a side rollout that does not train the
            agent) right after the switch, before any update on it.
        cadence: also probe every ``cadence`` env steps (0: off; a multiple of
            ``experiment.log_every`` so probes never move where training pauses).
        batch_size: samples per probe batch (pre/cadence: the agent's own data; init: at
            most this many of the side rollout's first half -- the second half is the
            held-out batch of one_step_gain). The default 128 equals the probe half of the
            default 256-step side rollout, so pre and init probes see as many samples.
        init_rollout_steps: env steps of the side rollout on the new task.
        slq_every_n_shifts: run the expensive metrics (SLQ density and Hessian trace)
            only at every n-th shift, counting from the first (1: every shift); the cheap
            metrics run at every shift. Cadence probes always run everything.
        slq_phases: the shift phases at which the expensive metrics run (default only
            ``init``, where the spectral-collapse paper measures; add ``pre`` to compare
            both ends of a task at about twice the cost).
        networks: the probe targets measured, by their row name (``network`` in
            probes.jsonl): DQN ``q``; PPO ``policy``, ``value`` and ``actor_critic`` (the
            full PPO loss over both networks as one parameter vector, as the
            spectral-collapse paper; opt-in: it about doubles PPO's probe cost). Empty takes
            ``experiments.resolve.DEFAULT_PROBE_NETWORKS`` of the agent.
        settings: fields of ``spectral.ProbeConfig`` (Lanczos/SLQ budgets, thresholds),
            e.g. ``[probes.settings] slq_iters = 100``; unset fields keep the defaults below.
        trained_once: for the ``fresh`` reference, also probe the trained network on the
            new task's data just before it is re-initialised (phase ``trained_once``, same
            step as ``init``; off by default: it adds a side rollout and a probe set per
            shift to the fresh arm, which the default 5% probe budget has no room for).
        fixed_phases: phases at which each probe target is probed a second time, on the
            task's *fixed probe data* (rows tagged ``"data": "fixed"``; identical for every
            arm and seed that sees the task, see experiments/probe_data.py); empty (the
            default, for the same budget reason): off. The ``trainability`` group runs only
            on these rows; the study files turn both on and say what they cost.
        fixed_steps: transitions of the uniform-random behaviour policy that make a task's
            fixed data when the stream has no ``probe_transitions`` hook.
        trainability_steps / trainability_lr: the fitting budget of the ``trainability``
            group (full-batch Adam steps, step size). The step size 2e-3 (was 1e-3) is
            where, at 100 steps, known 64-64 ReLU networks read as they are on every
            view for each of 20 seeds (tests/experiments/test_trainability_probe.py): 58
            dead units of 64 > 8x fresh (at 1e-3: ~5x, too close to fresh's fit), and a
            re-drawn network within 1.44x (at 3e-3 the spread of two fresh draws' final
            losses reaches 1.9x).
    """

    enabled: bool = True
    metrics: list[str] = field(default_factory=list)
    pre: bool = True
    init: bool = True
    cadence: int = 0
    batch_size: int = 128
    init_rollout_steps: int = 256
    slq_every_n_shifts: int = 6
    slq_phases: list[str] = field(default_factory=lambda: ["init"])
    networks: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    trained_once: bool = False
    fixed_phases: list[str] = field(default_factory=list)
    fixed_steps: int = 512
    trainability_steps: int = 100
    trainability_lr: float = 2e-3


@dataclass
class LoggingConfig:
    """Extra outputs. ``progress``: "auto" (a bar on a TTY, plain lines otherwise), "bar",
    "lines" or "off"."""

    tensorboard: bool = True
    episodes: bool = True
    progress: str = "auto"


@dataclass
class RunConfig:
    """The whole run: one attribute per TOML table."""

    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    mitigations: MitigationsConfig = field(default_factory=MitigationsConfig)
    probes: ProbeConfig = field(default_factory=ProbeConfig)
    shift: ShiftPolicy = field(default_factory=ShiftPolicy)  # without reinitialize (reference)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    @property
    def run_dir(self) -> Path:
        """``experiment.out`` with its ``{name}``/``{arm}``/``{seed}`` fields filled in."""
        e = self.experiment
        try:
            return Path(e.out.format(name=e.name or default_name(self), arm=e.arm or e.reference,
                                     seed=e.seed, reference=e.reference))
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"experiment.out = {e.out!r} has a bad field ({exc}); valid fields: "
                "{name}, {arm}, {seed}, {reference}"
            ) from None


def default_name(config: RunConfig) -> str:
    """``experiment.name`` when none is given: the stream's short name and the agent,
    ``plasticity/CartPoleDynamics-v0`` + dqn -> ``cartpoledynamics-dqn``."""
    short = config.env.id.rsplit("/", 1)[-1].rsplit("-v", 1)[0].lower() or "run"
    return f"{short}-{config.agent.algo}"


#: TOML table name -> its dataclass.
TABLES: dict[str, type] = typing.get_type_hints(RunConfig)


# ----------------------------------------------------------------------------- agent classes
def agent_config_class(algo: str) -> type:
    """The agent's config dataclass for ``algo`` ("dqn" | "ppo")."""
    if algo not in AGENTS:
        raise ConfigError(f"agent.algo = {algo!r} is not a known agent; valid choices: "
                          + ", ".join(map(repr, AGENTS)))
    module, cls, _ = AGENTS[algo]
    return getattr(importlib.import_module(module), cls)


def agent_class(algo: str) -> type:
    """The agent class (``DQN`` / ``PPO``) for ``algo``."""
    agent_config_class(algo)
    module, _, cls = AGENTS[algo]
    return getattr(importlib.import_module(module), cls)


# ----------------------------------------------------------------------------- coercion
def coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against the annotation ``tp`` by the agents' validator
    (:func:`agents.validation.conform`: lists become tuples where the field is a tuple);
    :class:`ConfigError` naming the (innermost) key otherwise."""
    try:
        return conform(value, tp)
    except Mismatch as bad:
        if bad.choices is not None:
            raise ConfigError(f"{key}{bad.where} = {bad.value!r}: valid choices: "
                              + ", ".join(map(repr, bad.choices))) from None
        raise ConfigError(f"{key}{bad.where} = {bad.value!r}: expected {bad.expected}") from None


def _build(cls: type, data: Mapping[str, Any], table: str, skip: Sequence[str] = ()) -> Any:
    """Instantiate dataclass ``cls`` from ``data``, rejecting unknown keys."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init and f.name not in skip]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"unknown key {table}.{key}; valid keys in [{table}]: "
                              + ", ".join(names))
        kwargs[key] = coerce(value, hints[key], f"{table}.{key}")
    return cls(**kwargs)


# ----------------------------------------------------------------------------- dict <-> config
def from_dict(data: Mapping[str, Any]) -> RunConfig:
    """Build and validate a :class:`RunConfig` from nested mappings (a parsed TOML file)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a config must be a table, got {data!r}")
    for table, value in data.items():
        if table not in TABLES:
            raise ConfigError(f"unknown table [{table}]; valid tables: " + ", ".join(TABLES))
        if not isinstance(value, Mapping):
            raise ConfigError(f"[{table}] must be a table, got {table} = {value!r}")
    parts: dict[str, Any] = {}
    for table, cls in TABLES.items():
        section = dict(data.get(table, {}))
        if table == "agent":
            parts[table] = _build_agent(section)
        elif table == "shift":  # agents.base.ShiftPolicy owns the settings and their checks
            try:
                parts[table] = _build(cls, section, table, skip=("reinitialize",))
            except AgentError as exc:
                raise ConfigError(str(exc)) from None
        else:
            parts[table] = _build(cls, section, table)
    config = RunConfig(**parts)
    validate(config)
    return config


def _build_agent(section: dict[str, Any]) -> AgentConfig:
    algo = coerce(section.pop("algo", AgentConfig.algo), str, "agent.algo")
    cls = agent_config_class(algo)
    for key, source in RUNNER_OWNED.items():
        if key in section:
            raise ConfigError(f"agent.{key} is set by {source}; remove it from [agent]")
    return AgentConfig(algo=algo, settings=_build(cls, section, "agent", skip=tuple(RUNNER_OWNED)))


def to_dict(config: RunConfig) -> dict[str, Any]:
    """Nested plain dicts (TOML-ready) of a config; the agent's fields sit next to ``algo``."""
    out: dict[str, Any] = {}
    for table in TABLES:
        value = getattr(config, table)
        if table == "agent":
            settings = dataclasses.asdict(value.settings) if value.settings is not None else {}
            out[table] = {"algo": value.algo, **{k: v for k, v in settings.items()
                                                  if k not in RUNNER_OWNED}}
        else:
            out[table] = dataclasses.asdict(value)
    out["shift"].pop("reinitialize")  # set by experiment.reference, not a [shift] key
    return _plain(out)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """Load a TOML run config (or the defaults) and apply ``--set``-style overrides."""
    data = load_toml(path) if path is not None else {}
    return from_dict(apply_overrides(data, parse_overrides(overrides)))


def save_config(config: RunConfig, path: str | Path) -> None:
    """Write the resolved config as TOML (``load_config`` of it gives the same config)."""
    Path(path).write_text(dumps_toml(to_dict(config)), encoding="utf-8")


# ----------------------------------------------------------------------------- overrides
def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["agent.lr=3e-4", "probes.pre=false"]`` -> ``{"agent.lr": 0.0003, ...}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or "." not in key or not key.split(".")[0]:
            raise ConfigError(f"override {item!r} is not of the form table.key=value "
                              "(e.g. agent.lr=3e-4)")
        out[key] = parse_value(text.strip())
    return out


def apply_overrides(data: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return a copy of nested ``data`` with dotted-key ``overrides`` set.

    Setting ``agent.algo`` to another agent drops the old agent's fields (they would not
    be valid for the new one) unless the same overrides set them.
    """
    result = _deepcopy(data)
    for dotted, value in overrides.items():
        *tables, key = dotted.split(".")
        node = result
        for t in tables:
            child = node.setdefault(t, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {dotted}: {t} is not a table")
            node = child
        if tables == ["agent"] and key == "algo" and node.get("algo", AgentConfig.algo) != value:
            node.clear()
        node[key] = _deepcopy(value)
    return result


def _deepcopy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _deepcopy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deepcopy(v) for v in value]
    return value


# ----------------------------------------------------------------------------- validation
def _positive(key: str, value: int, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{key} = {value!r} is out of range; it must be {bound}")


def _choice(key: str, value: Any, choices: Sequence[Any]) -> None:
    if value not in choices:
        raise ConfigError(f"{key} = {value!r} is not valid; valid choices: "
                          + ", ".join(map(repr, choices)))


def validate(config: RunConfig) -> None:
    """Range and choice checks that need no other package (see :func:`resolve`)."""
    e, p = config.experiment, config.probes
    _positive("experiment.steps", e.steps)
    _positive("experiment.seed", e.seed, allow_zero=True)
    _positive("experiment.torch_threads", e.torch_threads)
    _positive("experiment.checkpoint_every", e.checkpoint_every, allow_zero=True)
    _positive("experiment.log_every", e.log_every)
    if e.divergence_factor != 0 and not e.divergence_factor > 1:
        raise ConfigError(f"experiment.divergence_factor = {e.divergence_factor!r} is out of "
                          "range; it must be > 1 (times the initial parameter norm) or 0 (off)")
    _choice("experiment.reference", e.reference, REFERENCES)
    try:
        parse_device(e.device, "experiment.device")
    except AgentError as exc:
        raise ConfigError(str(exc)) from None
    if not e.out:
        raise ConfigError("experiment.out is empty; give a run directory")
    config.run_dir  # noqa: B018 -- checks the format fields
    _positive("env.period", config.env.period, allow_zero=True)
    _positive("env.num_envs", config.env.num_envs)
    _positive("probes.cadence", p.cadence, allow_zero=True)
    _positive("probes.batch_size", p.batch_size)
    _positive("probes.init_rollout_steps", p.init_rollout_steps)
    _positive("probes.slq_every_n_shifts", p.slq_every_n_shifts)
    for phase in p.slq_phases:
        if phase not in ("pre", "init"):
            raise ConfigError(f"probes.slq_phases has unknown phase {phase!r}; valid choices: 'pre', 'init'")
    for phase in p.fixed_phases:
        _choice("probes.fixed_phases entry", phase, PROBE_PHASES)
    _positive("probes.fixed_steps", p.fixed_steps)
    _positive("probes.trainability_steps", p.trainability_steps)
    if not p.trainability_lr > 0:
        raise ConfigError(f"probes.trainability_lr = {p.trainability_lr!r} is out of range; it must be > 0")
    if p.cadence and p.cadence % e.log_every:
        raise ConfigError(
            f"probes.cadence = {p.cadence} must be a multiple of experiment.log_every = "
            f"{e.log_every} (so probes never move the points where training pauses)"
        )
    _choice("logging.progress", config.logging.progress, PROGRESS)
    unknown = sorted(set(config.mitigations.options) - set(config.mitigations.names))
    if unknown:
        raise ConfigError(f"mitigations.options has {unknown[0]!r}, which is not in "
                          f"mitigations.names = {config.mitigations.names!r}")
