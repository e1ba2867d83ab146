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
"""

from __future__ import annotations

import dataclasses
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.base import DivergenceError, ShiftPolicy
from experiments import rundir, streams
from experiments.checkpoint import load_latest, save_checkpoint
from experiments.config import RunConfig, agent_class, load_config, save_config, to_dict
from experiments.divergence import NormRule, parameter_norms
from experiments.errors import ConfigError, RunDiverged
from experiments.logging import JsonlWriter, TensorBoardWriter
from experiments.probing import Prober
from experiments.progress import Progress
from experiments.resolve import resolve

__all__ = ["RunResult", "run", "comparable_config"]


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
    s = config.shift
    return ShiftPolicy(optimizer=s.optimizer, exploration=s.exploration, buffer=s.buffer,
                       target=s.target, reinitialize=config.experiment.reference == "fresh")


def _stops(config: RunConfig, switches: list[int]) -> list[int]:
    e = config.experiment
    points = set(switches) | set(range(e.log_every, e.steps, e.log_every)) | {e.steps}
    if e.checkpoint_every:
        points |= set(range(e.checkpoint_every, e.steps, e.checkpoint_every))
    return sorted(points)


def _make_agent(config: RunConfig, env: Any) -> Any:
    from agents.mitigations import make_mitigations

    settings = config.agent.settings
    fields = {f.name for f in dataclasses.fields(settings)}
    extra = {k: v for k, v in (("seed", config.experiment.seed),
                                ("num_envs", config.env.num_envs)) if k in fields}
    settings = dataclasses.replace(settings, **extra)
    mitigations = make_mitigations(_mitigation_specs(config))
    space = env.single_observation_space if streams.is_vector(env) else env.observation_space
    actions = env.single_action_space if streams.is_vector(env) else env.action_space
    return agent_class(config.agent.algo)(space, actions, settings, mitigations)


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
    config = resolve(config)
    rundir.check_out(config.run_dir)
    with rundir.locked(config.run_dir):
        return _run(config, overwrite, on_progress)


def _run(config: RunConfig, overwrite: bool,
         on_progress: Callable[[int, str], None] | None) -> RunResult:
    e = config.experiment
    run_dir = config.run_dir
    mode = _prepare_dir(config, overwrite)
    torch.set_num_threads(e.torch_threads)

    stationary = e.reference == "stationary"
    env = streams.make_stream(config, stationary=stationary, seed=e.seed)
    # Same schedule seed as the training env, so set_task(k) gives the same task k.
    side_env = streams.make_stream(config, stationary=True, seed=e.seed)
    _check_snapshot(config, env)
    agent = _make_agent(config, env)
    switches = streams.schedule_of(env).switch_steps(e.steps)
    vector_size = config.env.num_envs if streams.is_vector(env) else 1
    policy = shift_policy(config)
    tell_agent = policy.is_oracle or any(getattr(m, "oracle", False) for m in agent.mitigations)
    prober = Prober(config.probes, config.probes.metrics, e.seed)
    norm_rule = NormRule(e.divergence_factor, parameter_norms(agent.networks()))
    interval = _Interval()
    wall_before = 0.0
    resumed_from = None

    # -- directory: fresh start, or resume from the newest intact checkpoint
    notes: list[str] = []
    loaded = load_latest(run_dir / rundir.CHECKPOINTS) if mode == "resume" else None
    if loaded is not None:
        notes.extend(loaded.skipped)
        if loaded.path is None:
            notes.append("no intact checkpoint to resume from; started again from step 0")
    if loaded is None or loaded.path is None:
        rundir.clear(run_dir)
        save_config(config, run_dir / rundir.CONFIG)
    else:
        state = loaded.state
        if "norm_baseline" not in state:
            raise ConfigError(f"{loaded.path} was written by an older version that did not save "
                              "the env's state, so the run cannot resume exactly; pass "
                              "--overwrite to start it again")
        resumed_from = int(state["step"])
        for name in rundir.JSONL_FILES:
            rewound = rundir.rewind_jsonl(run_dir / name, resumed_from)
            if rewound.torn is not None:
                notes.append(f"{name}: removed a torn last line ({len(rewound.torn)} characters "
                             "cut short by the process that stopped)")
        env.close()
        side_env.close()
        env, side_env = streams.restore(state["env"]), streams.restore(state["side_env"])
        agent.load_state_dict(state["agent"], env=env)  # continues the episode in progress
        _set_global_rng(state["global_rng"])
        interval.load(state["interval"])
        norm_rule.baseline = state["norm_baseline"]
        wall_before = float(state["wall_time"])
        prober.seconds = float(state["probe_time"])
    for note in notes:
        print(f"plasticity: {run_dir}: {note}", file=sys.stderr, flush=True)
    if resumed_from is not None:
        print(f"plasticity: resuming {run_dir} from step {resumed_from}"
              + (f" ({loaded.path.name})" if loaded.skipped else ""), file=sys.stderr, flush=True)
    rundir.start_segment(run_dir, resumed_from, notes)
    schedule = streams.schedule_of(env)

    writers = {name: JsonlWriter(run_dir / name) for name in rundir.JSONL_FILES}
    tb = None
    if config.logging.tensorboard:
        tb = TensorBoardWriter(run_dir, purge_step=None if resumed_from is None else resumed_from + 1)
    progress = Progress(e.steps, config.logging.progress, label=f"{e.arm or e.reference} ")
    started = time.perf_counter()
    step = agent.global_step
    last_return: float | None = None

    def wall() -> float:
        return wall_before + time.perf_counter() - started

    def write(name: str, row: dict[str, Any]) -> None:
        writers[name].write(row)

    try:
        for stop in _stops(config, switches):
            if stop <= step:
                continue
            # -- train to the next stop
            t0, before = time.perf_counter(), step
            try:
                result = agent.learn(env, stop)
                ratios = norm_rule.check(result.global_step, agent.networks())
            except DivergenceError as err:
                _record_divergence(run_dir, writers, tb, err, streams.current_task(env), wall())
                raise RunDiverged(f"run {str(run_dir)!r} diverged at env step {err.step}: "
                                  f"{err.what} = {err.value}") from err
            step = result.global_step
            interval.add(result, time.perf_counter() - t0, before)
            for end, ret, length in result.episodes:
                task = schedule.task_at(max(end - length * vector_size, 0))
                last_return = float(ret)
                if config.logging.episodes:
                    write(rundir.EPISODES, {"step": end, "task_id": task, "return": ret,
                                             "length": length})

            # -- log
            if stop % e.log_every == 0 or stop == e.steps:
                row = interval.row(step, streams.current_task(env), wall())
                row["perf/probe_seconds"] = round(prober.seconds, 3)
                row.update({f"params/{net}/norm_ratio": r for net, r in ratios.items()})
                write(rundir.METRICS, row)
                if tb is not None:
                    tb.scalars({k: v for k, v in row.items() if "/" in k}, step)
                    if row["episodic_return"] is not None:
                        tb.scalars({"charts/episodic_return": row["episodic_return"]}, step)
                interval = _Interval()

            # -- shift: pre probe, record (and maybe tell the agent), init probe
            if stop in switches:
                index = switches.index(stop)
                old, new = schedule.task_at(stop - 1), schedule.task_at(stop)
                if config.probes.enabled and config.probes.pre:
                    _probe_rows(prober.probe(agent, phase="pre", step=step, task_id=old,
                                             shift_index=index), write, tb)
                if tell_agent:
                    agent.on_task_switch(policy)
                write(rundir.SHIFTS, _shift_row(config, policy, agent, stop, old, new,
                                                 schedule.task_params(new)))
                if config.probes.enabled and config.probes.init:
                    streams.set_task(side_env, new)
                    _probe_rows(prober.probe(agent, phase="init", step=step, task_id=new,
                                             shift_index=index, side_env=side_env), write, tb)
            elif config.probes.enabled and config.probes.cadence and stop % config.probes.cadence == 0:
                _probe_rows(prober.probe(agent, phase="cadence", step=step,
                                         task_id=streams.current_task(env)), write, tb)

            # -- checkpoint last: every row at or before this step is already written. The
            # final one keeps the trained agent for later analysis.
            if (e.checkpoint_every and stop % e.checkpoint_every == 0) or stop == e.steps:
                save_checkpoint(run_dir / rundir.CHECKPOINTS, step, {
                    "step": step, "agent": agent.state_dict(), "env": streams.snapshot(env),
                    "side_env": streams.snapshot(side_env), "global_rng": _global_rng(),
                    "norm_baseline": norm_rule.baseline,
                    "interval": interval.state(), "wall_time": wall(),
                    "probe_time": prober.seconds,
                })

            status = f"task {streams.current_task(env)}"
            if last_return is not None:
                status += f" | return {last_return:.3g}"
            progress.update(step, status)
            if on_progress is not None:
                on_progress(step, status)
        total = wall()
        done = {"steps": step, "wall_time": round(total, 3), "probe_time": round(prober.seconds, 3),
                "probe_fraction": round(prober.seconds / total, 4) if total else 0.0}
        rundir.write_json_atomic(run_dir / rundir.DONE, done)
        progress.update(step, f"done in {total:.0f}s", force=True)
    finally:
        progress.close()
        for w in writers.values():
            w.close()
        if tb is not None:
            tb.close()
        for closable in (env, side_env):
            closable.close()
    return RunResult(run_dir, "done", step, total, prober.seconds, resumed_from)


def _probe_rows(rows: list[dict[str, Any]], write: Callable, tb: TensorBoardWriter | None) -> None:
    for row in rows:
        write(rundir.PROBES, row)
        if tb is not None:
            values = {k: v for k, v in row.items()
                      if k not in ("step", "task_id", "phase", "network")}
            tb.scalars(values, row["step"], prefix=f"probes/{row['network']}/{row['phase']}/")


def _shift_row(config: RunConfig, policy: ShiftPolicy, agent: Any, step: int, old: int,
               new: int, params: Any) -> dict[str, Any]:
    oracle_mitigations = [getattr(m, "name", type(m).__name__) for m in agent.mitigations
                          if getattr(m, "oracle", False)]
    at_shift = {
        "optimizer": policy.optimizer,
        "exploration": policy.exploration,
        "buffer": policy.buffer,
        "target": policy.target,
        "normalization": config.shift.normalization,
        "reinitialize": policy.reinitialize,
        "oracle_mitigations": oracle_mitigations,
        "oracle": policy.is_oracle or bool(oracle_mitigations),
    }
    return {"step": step, "from_task": old, "to_task": new, "params": dict(params),
            "at_shift": at_shift}


def _record_divergence(run_dir: Path, writers: dict[str, JsonlWriter], tb: Any,
                       err: DivergenceError, task: int, wall: float) -> None:
    info = {"step": int(err.step), "what": err.what, "value": str(err.value)}
    writers[rundir.METRICS].write({"step": int(err.step), "task_id": task, "time": round(wall, 3),
                                    "diverged": True, "what": err.what, "value": str(err.value)})
    rundir.write_json_atomic(run_dir / rundir.DIVERGED, info)
