"""``run(config) -> RunResult``: one experiment, probes bracketing every shift, all recorded.

The loop, top to bottom: build the stream and the agent, read the switch steps from the
schedule, then train to the next stop (a switch, a log point, a checkpoint point, the
end); at a log point write a metrics row; at a switch probe ``pre``, record the shift
(telling the agent only for oracle arms and the fresh reference), and probe ``init`` on
a side rollout of the new task; checkpoint last, so every row at or before a checkpoint
step exists when the checkpoint does. The stops never depend on the probe settings, so
probing cannot move where training pauses.

A run directory that holds an unfinished run of the same config is resumed from its
newest intact checkpoint; rows past the checkpoint are removed first. A checkpoint holds
everything training depends on -- the agent with its episode in progress, the envs'
complete state, the global RNGs -- so the resumed run writes exactly the rows of an
uninterrupted one, wall-clock fields aside (see docs/architecture.md). The directory is
locked while the run owns it (``rundir.locked``).

``run_population(configs)`` runs K configs that differ only in their seed (and run
directory) as one population (:mod:`agents.population`) in this process: the same loop,
each member writing exactly the run directory ``run`` writes for its seed. A member that
diverges gets its ``DIVERGED`` and stops writing; the others go on. A killed population
resumes from the newest checkpoint step every member has. ``run(config)`` is a population
of one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.base import DivergenceError, LearnResult, ShiftPolicy
from experiments import rundir, streams
from experiments.checkpoint import load_common, save_checkpoint
from experiments.config import RunConfig, agent_class, load_config, save_config, to_dict
from experiments.divergence import NormRule, parameter_norms
from experiments.errors import ConfigError, RunDiverged
from experiments.logging import JsonlWriter, TensorBoardWriter
from experiments.probing import Prober
from experiments.progress import Progress
from experiments.resolve import resolve

__all__ = ["RunResult", "run", "run_population", "comparable_config"]


@dataclass
class RunResult:
    """What a finished (or diverged) run reports.

    Attributes:
        run_dir: the run directory.
        status: "done" or "diverged".
        steps: env steps trained.
        wall_time: seconds, summed over resumed segments.
        probe_time: seconds spent probing (side rollouts included).
        resumed_from: checkpoint step this call resumed from (None: started fresh).
    """

    run_dir: Path
    status: str
    steps: int
    wall_time: float
    probe_time: float
    resumed_from: int | None = None
    diverged: dict[str, Any] = field(default_factory=dict)

    @property
    def probe_fraction(self) -> float:
        return self.probe_time / self.wall_time if self.wall_time > 0 else 0.0


# ----------------------------------------------------------------------------- run directory
def comparable_config(config: RunConfig) -> dict[str, Any]:
    # Where the run lives and how progress is shown do not change what it computes.
    data = to_dict(config)
    data["experiment"].pop("out", None)
    data["logging"].pop("progress", None)
    return data


def _first_difference(a: Any, b: Any, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
    return f"{prefix.rstrip('.')} = {a!r} (saved) vs {b!r} (now)"


def _prepare_dir(config: RunConfig, overwrite: bool) -> str:
    """Check the run directory; return "fresh" or "resume". Writes nothing on error."""
    run_dir = config.run_dir
    status = rundir.run_status(run_dir)
    if status in ("done", "diverged") and not overwrite:
        raise ConfigError(f"run directory {str(run_dir)!r} holds a {'finished' if status == 'done' else 'diverged'} "
                          "run; pass --overwrite to replace it or choose another --out")
    if status == "partial" and not overwrite:
        saved = load_config(run_dir / rundir.CONFIG)
        if comparable_config(saved) != comparable_config(config):
            raise ConfigError(
                f"run directory {str(run_dir)!r} holds a run of another config "
                f"({_first_difference(comparable_config(saved), comparable_config(config))}); "
                "pass --overwrite to replace it or choose another --out"
            )
        return "resume"
    return "fresh"


# ----------------------------------------------------------------------------- bookkeeping
class _Interval:
    """Accumulates ``LearnResult``s between two metrics rows."""

    def __init__(self) -> None:
        self.returns: list[float] = []
        self.sums: dict[str, float] = {}
        self.weights: dict[str, float] = {}
        self.charts: dict[str, float] = {}
        self.updates = 0
        self.train_seconds = 0.0
        self.start_step: int | None = None

    def add(self, result: Any, seconds: float, start_step: int) -> None:
        if self.start_step is None:
            self.start_step = start_step
        self.returns.extend(float(r) for _, r, _ in result.episodes)
        self.updates += result.updates
        self.train_seconds += seconds
        for key, value in result.metrics.items():
            if key.startswith("charts/"):
                self.charts[key] = float(value)  # a state (epsilon), not an average
            elif result.updates:
                self.sums[key] = self.sums.get(key, 0.0) + float(value) * result.updates
                self.weights[key] = self.weights.get(key, 0.0) + result.updates

    def row(self, step: int, task_id: int, wall: float) -> dict[str, Any]:
        row: dict[str, Any] = {
            "step": step,
            "task_id": task_id,
            "time": round(wall, 3),
            "episodic_return": sum(self.returns) / len(self.returns) if self.returns else None,
            "episodes": len(self.returns),
            "updates": self.updates,
        }
        row.update({k: self.sums[k] / self.weights[k] for k in self.sums})
        row.update(self.charts)
        steps = step - (self.start_step if self.start_step is not None else step)
        row["charts/sps"] = steps / self.train_seconds if self.train_seconds > 0 else None
        return row

    def state(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def load(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def shift_policy(config: RunConfig) -> ShiftPolicy:
    """``[shift]`` with ``reinitialize`` for the fresh reference arm."""
    return dataclasses.replace(config.shift, reinitialize=config.experiment.reference == "fresh")


def _stops(config: RunConfig, switches: list[int]) -> list[int]:
    e = config.experiment
    points = set(switches) | set(range(e.log_every, e.steps, e.log_every)) | {e.steps}
    if e.checkpoint_every:
        points |= set(range(e.checkpoint_every, e.steps, e.checkpoint_every))
    return sorted(points)


def _make_agent(config: RunConfig, env: Any, seeds: list[int]) -> Any:
    from agents.mitigations import make_mitigations

    settings = config.agent.settings
    fields = {f.name for f in dataclasses.fields(settings)}
    extra = {k: v for k, v in (("seed", config.experiment.seed),
                                ("num_envs", config.env.num_envs),
                                ("device", config.experiment.device)) if k in fields}
    settings = dataclasses.replace(settings, **extra)
    mitigations = make_mitigations(_mitigation_specs(config))
    space = env.single_observation_space if streams.is_vector(env) else env.observation_space
    actions = env.single_action_space if streams.is_vector(env) else env.action_space
    return agent_class(config.agent.algo)(space, actions, settings, mitigations, seeds=seeds)


def _check_snapshot(config: RunConfig, env: Any) -> None:
    """Refuse, before anything is written, a stream that cannot be checkpointed exactly."""
    try:
        streams.snapshot(env)
    except Exception as exc:  # noqa: BLE001 -- pickling can fail in many ways
        raise ConfigError(f"env.id = {config.env.id!r} cannot be checkpointed: saving its "
                          f"state failed ({type(exc).__name__}: {exc}); a user shift or "
                          "schedule must be picklable (a class defined at module level)") from None


def _global_rng() -> dict[str, Any]:
    # Agents, probes and mitigations draw from their own generators; the global ones are
    # saved too so that a library drawing from them cannot make a resume inexact.
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
            "random": random.getstate()}


def _set_global_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["random"])


def _mitigation_specs(config: RunConfig) -> list[Any]:
    m = config.mitigations
    return [{"name": name, **m.options[name]} if name in m.options else name for name in m.names]


# ----------------------------------------------------------------------------- the run
def run(
    config: RunConfig,
    *,
    overwrite: bool = False,
    on_progress: Callable[[int, str], None] | None = None,
) -> RunResult:
    """Run (or resume) one experiment into ``config.run_dir``; see the module docstring.

    Raises:
        ConfigError (or another package's ValueError): bad config; nothing is written.
        RunDiverged: NaN/inf in a loss or parameters, or a parameter norm beyond
            ``experiment.divergence_factor`` x its initial norm; ``DIVERGED`` and a final
            metrics row record it, every row written before stays.
        RunDirLocked: another live process owns the run directory.
    """
    result = run_population([config], overwrite=overwrite, on_progress=on_progress)[0]
    if result.status == "diverged":
        d = result.diverged
        raise RunDiverged(f"run {str(result.run_dir)!r} diverged at env step {d['step']}: "
                          f"{d['what']} = {d['value']}")
    return result


def _finished(config: RunConfig) -> RunResult | None:
    """The result of ``config``'s run when its directory holds it finished (``DONE``, same
    comparable config), else None (a finished run of another config is refused later)."""
    run_dir = config.run_dir
    if rundir.run_status(run_dir) != "done":
        return None
    if comparable_config(load_config(run_dir / rundir.CONFIG)) != comparable_config(config):
        return None
    done = rundir.read_marker(run_dir / rundir.DONE) or {}
    return RunResult(run_dir, "done", int(done.get("steps", config.experiment.steps)),
                     float(done.get("wall_time", 0.0)), float(done.get("probe_time", 0.0)))


def population_key(config: RunConfig) -> dict[str, Any]:
    """What members of one population share: the config without seed and run directory."""
    data = comparable_config(config)
    data["experiment"].pop("seed", None)
    return data


def run_population(
    configs: Sequence[RunConfig],
    *,
    overwrite: bool = False,
    on_progress: Callable[[int, str], None] | None = None,
    skip_finished: bool = False,
) -> list[RunResult]:
    """Run (or resume) configs that differ only in seed and run directory as one population;
    one :class:`RunResult` per member (status "done" or "diverged"; a member's divergence
    is recorded in its directory, never raised). Bad configs raise before anything is
    written. With ``skip_finished`` a member whose directory already holds this config's
    finished run (e.g. one resumed on its own) is reported from its ``DONE`` marker and the
    others run as a smaller population (members are independent, so their rows are the
    same); without it such a member is refused, as a single run is."""
    configs = [resolve(c) for c in configs]
    if skip_finished and not overwrite:
        finished = {k: r for k, c in enumerate(configs) if (r := _finished(c)) is not None}
        rest = [c for k, c in enumerate(configs) if k not in finished]
        ran = iter(run_population(rest, on_progress=on_progress) if rest else [])
        return [finished[k] if k in finished else next(ran) for k in range(len(configs))]
    if not configs:
        raise ConfigError("a population needs at least one run config")
    key = population_key(configs[0])
    for c in configs[1:]:
        if population_key(c) != key:
            raise ConfigError(
                f"runs {str(configs[0].run_dir)!r} and {str(c.run_dir)!r} cannot be one "
                f"population: {_first_difference(key, population_key(c))}; members may differ "
                "only in experiment.seed and experiment.out")
    seeds = [c.experiment.seed for c in configs]
    if len(set(seeds)) != len(seeds) or len({c.run_dir for c in configs}) != len(configs):
        raise ConfigError(f"population seeds {seeds} and run directories must be distinct")
    for c in configs:
        rundir.check_out(c.run_dir)
    with contextlib.ExitStack() as stack:
        for c in configs:
            stack.enter_context(rundir.locked(c.run_dir))
        return _run(configs, overwrite, on_progress)


@dataclass
class _Member:
    """One member's side of the loop: its run directory, streams, writers and bookkeeping."""

    config: RunConfig
    env: Any
    side_env: Any
    prober: Prober
    norm_rule: Any = None
    interval: _Interval = field(default_factory=_Interval)
    writers: dict[str, JsonlWriter] = field(default_factory=dict)
    tb: Any = None
    wall_before: float = 0.0
    resumed_from: int | None = None
    diverged: dict[str, Any] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir


def _resume(members: list[_Member], agent: Any, modes: list[str]) -> None:
    """Load every member from the newest checkpoint step all of them have intact (or start
    them all fresh), rewinding their rows to it; write each one's provenance segment."""
    notes: list[list[str]] = [[] for _ in members]
    loaded = None
    if all(mode == "resume" for mode in modes):
        loaded = load_common([m.run_dir / rundir.CHECKPOINTS for m in members])
        for k, skipped in enumerate(loaded.skipped):
            notes[k].extend(skipped)
        if loaded.step is None:
            for k in range(len(members)):
                notes[k].append("no intact checkpoint to resume from; started again from step 0")
    elif "resume" in modes:
        for k, mode in enumerate(modes):
            if mode == "resume":
                notes[k].append("another member of its population had no checkpoint to resume "
                                "from; started again from step 0")
    resumed = loaded is not None and loaded.step is not None
    for k in range(len(members)):
        if resumed and "norm_baseline" not in loaded.states[k]:
            raise ConfigError(f"{loaded.paths[k]} was written by an older version that did not "
                              "save the env's state, so the run cannot resume exactly; pass "
                              "--overwrite to start it again")
    for k, m in enumerate(members):
        run_dir = m.run_dir
        if not resumed:
            rundir.clear(run_dir)
            save_config(m.config, run_dir / rundir.CONFIG)
        else:
            state = loaded.states[k]
            m.resumed_from = int(state["step"])
            for name in rundir.JSONL_FILES:
                rewound = rundir.rewind_jsonl(run_dir / name, m.resumed_from)
                if rewound.torn is not None:
                    notes[k].append(f"{name}: removed a torn last line ({len(rewound.torn)} "
                                    "characters cut short by the process that stopped)")
            m.env.close()
            m.side_env.close()
            m.env, m.side_env = streams.restore(state["env"]), streams.restore(state["side_env"])
            # continues the member's episode in progress
            agent.members[k].load_state_dict(state["agent"], env=m.env)
            _set_global_rng(state["global_rng"])  # the process's: the same in every member's
            m.interval.load(state["interval"])
            m.norm_rule.baseline = state["norm_baseline"]
            m.wall_before = float(state["wall_time"])
            m.prober.seconds = float(state["probe_time"])
        for note in notes[k]:
            print(f"plasticity: {run_dir}: {note}", file=sys.stderr, flush=True)
        if m.resumed_from is not None:
            print(f"plasticity: resuming {run_dir} from step {m.resumed_from}"
                  + (f" ({loaded.paths[k].name})" if loaded.skipped[k] else ""),
                  file=sys.stderr, flush=True)
        rundir.start_segment(run_dir, m.resumed_from, notes[k])


def _run(configs: list[RunConfig], overwrite: bool,
         on_progress: Callable[[int, str], None] | None) -> list[RunResult]:
    config = configs[0]
    e = config.experiment
    modes = [_prepare_dir(c, overwrite) for c in configs]
    torch.set_num_threads(e.torch_threads)

    stationary = e.reference == "stationary"
    members: list[_Member] = []
    for c in configs:
        seed = c.experiment.seed
        # The side env has the training env's schedule seed, so set_task(k) gives task k.
        # The fixed probe data's own single env (same schedule seed: set_task(k) gives task k).
        # Also built for a perturbation that acts on the new task's fixed data.
        fixed_env = (streams.make_stream(c, stationary=True, seed=seed, single=True)
                     if (c.probes.enabled and c.probes.fixed_phases) or _wants_task_data(c)
                     else None)
        members.append(_Member(c, streams.make_stream(c, stationary=stationary, seed=seed),
                               streams.make_stream(c, stationary=True, seed=seed),
                               Prober(c.probes, c.probes.metrics, seed, fixed_env=fixed_env)))
    _check_snapshot(config, members[0].env)
    agent = _make_agent(config, members[0].env, [c.experiment.seed for c in configs])
    views = agent.members  # member k as a single agent (probes, checkpoints)
    switches = streams.schedule_of(members[0].env).switch_steps(e.steps)
    if any(streams.schedule_of(m.env).switch_steps(e.steps) != switches for m in members[1:]):
        raise ConfigError("the members' streams switch tasks at different steps; a population "
                          "needs one switch schedule (a periodic stream) for every seed")
    vector_size = config.env.num_envs if streams.is_vector(members[0].env) else 1
    policy = shift_policy(config)
    tell_agent = policy.is_oracle or any(getattr(m, "oracle", False) for m in views[0].mitigations)
    for m, view in zip(members, views, strict=True):
        m.norm_rule = NormRule(e.divergence_factor, parameter_norms(view.networks()))

    _resume(members, agent, modes)
    schedules = [streams.schedule_of(m.env) for m in members]
    for m in members:
        m.writers = {name: JsonlWriter(m.run_dir / name) for name in rundir.JSONL_FILES}
        if config.logging.tensorboard:
            m.tb = TensorBoardWriter(m.run_dir, purge_step=None if m.resumed_from is None
                                     else m.resumed_from + 1)
    label = f"{e.arm or e.reference} "
    if len(configs) > 1:
        label += "seeds " + ",".join(str(c.experiment.seed) for c in configs) + " "
    progress = Progress(e.steps, config.logging.progress, label=label)
    started = time.perf_counter()
    step = agent.global_step
    last_return: float | None = None
    single = len(members) == 1
    envs = members[0].env if single else [m.env for m in members]
    totals = [0.0] * len(members)

    def wall(m: _Member) -> float:
        return m.wall_before + time.perf_counter() - started

    try:
        for stop in _stops(config, switches):
            if stop <= step:
                continue
            if all(m.diverged for m in members):
                break
            # -- train to the next stop
            t0, before = time.perf_counter(), step
            try:
                results = agent.learn(envs, stop)
            except DivergenceError as err:  # a single run raises; a population reports
                results = LearnResult(err.step, [], {}, 0, err)
            results = [results] if single else results
            seconds = time.perf_counter() - t0
            shift = stop in switches
            if shift:
                index = switches.index(stop)
                old, new = schedules[0].task_at(stop - 1), schedules[0].task_at(stop)
            for k, (m, result) in enumerate(zip(members, results, strict=True)):
                if m.diverged:
                    continue
                err = result.diverged
                ratios: dict[str, float] = {}
                if err is None:
                    try:
                        ratios = m.norm_rule.check(result.global_step, views[k].networks())
                    except DivergenceError as norm_err:
                        err = norm_err
                if err is not None:
                    m.diverged = _record_divergence(m.run_dir, m.writers, m.tb, err,
                                                    streams.current_task(m.env), wall(m))
                    totals[k] = wall(m)
                    continue
                step = result.global_step
                m.interval.add(result, seconds, before)
                for end, ret, length in result.episodes:
                    task = schedules[k].task_at(max(end - length * vector_size, 0))
                    last_return = float(ret)
                    if config.logging.episodes:
                        m.writers[rundir.EPISODES].write({"step": end, "task_id": task,
                                                          "return": ret, "length": length})
                    if m.tb is not None:  # CleanRL's charts: one point per episode, at its end
                        m.tb.scalars({"charts/episodic_return": ret,
                                      "charts/episodic_length": length}, end)
                # -- log
                if stop % e.log_every == 0 or stop == e.steps:
                    row = m.interval.row(step, streams.current_task(m.env), wall(m))
                    row["perf/probe_seconds"] = round(m.prober.seconds, 3)
                    row.update({f"params/{net}/norm_ratio": r for net, r in ratios.items()})
                    m.writers[rundir.METRICS].write(row)
                    if m.tb is not None:
                        m.tb.scalars({k: v for k, v in row.items() if "/" in k}, step)
                    m.interval = _Interval()
                # -- shift: pre probe (before the agent is told); or a cadence probe
                if shift and config.probes.enabled and config.probes.pre:
                    _probe_rows(m.prober.probe(views[k], phase="pre", step=step, task_id=old,
                                               shift_index=index), m)
                elif (not shift and config.probes.enabled and config.probes.cadence
                      and stop % config.probes.cadence == 0):
                    _probe_rows(m.prober.probe(views[k], phase="cadence", step=step,
                                               task_id=streams.current_task(m.env)), m)
            step = agent.global_step
            # -- shift: record (and maybe tell the agent), init probe on the new task
            if shift:
                if policy.reinitialize and config.probes.enabled and config.probes.trained_once:
                    # fresh reference: the trained network on the new task's data, before
                    # it is re-initialised (same step and task as the init probe)
                    for k, m in enumerate(members):
                        if not m.diverged:
                            streams.set_task(m.side_env, new)
                            _probe_rows(m.prober.probe(views[k], phase="trained_once", step=step,
                                                       task_id=new, shift_index=index,
                                                       side_env=m.side_env), m)
                if tell_agent:
                    for k, m in enumerate(members):
                        _give_task_data(views[k], m.prober, new)
                    agent.on_task_switch(policy)
                for k, m in enumerate(members):
                    if m.diverged:
                        continue
                    m.writers[rundir.SHIFTS].write(_shift_row(
                        policy, views[k], stop, old, new, schedules[k].task_params(new)))
                    if config.probes.enabled and config.probes.init:
                        streams.set_task(m.side_env, new)
                        _probe_rows(m.prober.probe(views[k], phase="init", step=step,
                                                   task_id=new, shift_index=index,
                                                   side_env=m.side_env), m)
            # -- checkpoint last: every row at or before this step is already written. The
            # final one keeps the trained agent for later analysis.
            if (e.checkpoint_every and stop % e.checkpoint_every == 0) or stop == e.steps:
                for k, m in enumerate(members):
                    if not m.diverged:
                        save_checkpoint(m.run_dir / rundir.CHECKPOINTS, step, {
                            "step": step, "agent": views[k].state_dict(),
                            "env": streams.snapshot(m.env),
                            "side_env": streams.snapshot(m.side_env),
                            "global_rng": _global_rng(), "norm_baseline": m.norm_rule.baseline,
                            "interval": m.interval.state(), "wall_time": wall(m),
                            "probe_time": m.prober.seconds,
                        })

            status = f"task {streams.current_task(members[0].env)}"
            if last_return is not None:
                status += f" | return {last_return:.3g}"
            progress.update(step, status)
            if on_progress is not None:
                on_progress(step, status)
        for k, m in enumerate(members):
            if m.diverged:
                continue
            totals[k] = total = wall(m)
            done = {"steps": step, "wall_time": round(total, 3),
                    "probe_time": round(m.prober.seconds, 3),
                    "probe_fraction": round(m.prober.seconds / total, 4) if total else 0.0}
            rundir.write_json_atomic(m.run_dir / rundir.DONE, done)
        progress.update(step, f"done in {max(totals):.0f}s", force=True)
    finally:
        progress.close()
        for m in members:
            for w in m.writers.values():
                w.close()
            if m.tb is not None:
                m.tb.close()
            m.env.close()
            m.side_env.close()
            if m.prober.fixed_env is not None:
                m.prober.fixed_env.close()
    return [RunResult(m.run_dir, "diverged" if m.diverged else "done",
                      int(m.diverged["step"]) if m.diverged else step, totals[k],
                      m.prober.seconds, m.resumed_from, m.diverged)
            for k, m in enumerate(members)]


def _wants_task_data(config: RunConfig) -> bool:
    """True when a configured mitigation takes the new task's fixed data at a switch (an
    oracle perturbation such as ``induced_collapse``): the member then gets a fixed env."""
    from agents.mitigations import MITIGATIONS

    return any(callable(getattr(MITIGATIONS.get(name), "set_task_data", None))
               for name in config.mitigations.names)


def _give_task_data(agent: Any, prober: Prober, task_id: int) -> None:
    """Hand each mitigation with a ``set_task_data`` hook the new task's fixed observations
    (experiments/probe_data.py: the data the fixed-data probes see), before the agent is
    told of the switch. agents never import envs: the data cross as a tensor."""
    hooks = [m.set_task_data for m in agent.mitigations if callable(getattr(m, "set_task_data", None))]
    if hooks:
        obs = prober.fixed_observations(task_id)
        for hook in hooks:
            hook(task_id, obs)


def _probe_rows(rows: list[dict[str, Any]], m: _Member) -> None:
    tb = m.tb
    for row in rows:
        m.writers[rundir.PROBES].write(row)
        if tb is not None:
            values = {k: v for k, v in row.items()
                      if k not in ("step", "task_id", "phase", "network", "data")}
            data = "" if row["data"] == "on_policy" else f"{row['data']}/"
            tb.scalars(values, row["step"], prefix=f"probes/{row['network']}/{row['phase']}/{data}")


def _shift_row(policy: ShiftPolicy, agent: Any, step: int, old: int, new: int,
               params: Any) -> dict[str, Any]:
    oracle_mitigations = [getattr(m, "name", type(m).__name__) for m in agent.mitigations
                          if getattr(m, "oracle", False) and not getattr(m, "perturbation", False)]
    # Oracle perturbations (positive controls, e.g. induced_collapse) with what they did.
    perturbations = {m.name: {"dose": getattr(m, "dose", None), "units": dict(getattr(m, "report", {}))}
                     for m in agent.mitigations if getattr(m, "perturbation", False)}
    at_shift = {
        "optimizer": policy.optimizer,
        "exploration": policy.exploration,
        "buffer": policy.buffer,
        "target": policy.target,
        "normalization": policy.normalization,
        "reinitialize": policy.reinitialize,
        "oracle_mitigations": oracle_mitigations,
        "oracle": policy.is_oracle or bool(oracle_mitigations) or bool(perturbations),
    }
    if perturbations:
        at_shift["oracle_perturbations"] = perturbations
    return {"step": step, "from_task": old, "to_task": new, "params": dict(params),
            "at_shift": at_shift}


def _record_divergence(run_dir: Path, writers: dict[str, JsonlWriter], tb: Any,
                       err: DivergenceError, task: int, wall: float) -> dict[str, Any]:
    info = {"step": int(err.step), "what": err.what, "value": str(err.value)}
    writers[rundir.METRICS].write({"step": int(err.step), "task_id": task, "time": round(wall, 3),
                                    "diverged": True, "what": err.what, "value": str(err.value)})
    rundir.write_json_atomic(run_dir / rundir.DIVERGED, info)
    return info
