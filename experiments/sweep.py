"""Sweeps: a grid of run configs x seeds (x named arms), each run in its own directory.

Sweep file (TOML)::

    name = "lr_study"            # optional; default: the file's stem
    seeds = [0, 1, 2]            # default [0]
    out = "runs/sweeps/{name}"   # optional sweep directory (``--out`` wins)
    population = true            # default true: the seeds of each arm (and grid point) run
                                 # as one population in one process (agents/population.py);
                                 # --no-population / --population on the command line win

    [base]                       # a run config: the same tables as a run TOML
    experiment = { steps = 360_000 }
    env = { id = "plasticity/MiniGridHiddenGoal-v0" }
    agent = { algo = "ppo" }

    [grid]                       # dotted run-config keys -> lists of values (product)
    "agent.learning_rate" = [3e-4, 1e-3]

    [[arms]]                     # optional named override sets (default: one arm from base)
    name = "continual"
    seeds = [0, 1, 2, 3, 4]      # (optional) this arm's seeds instead of the sweep's
                                 # (--smoke uses the smoke seeds for every arm)
    [[arms]]
    name = "fresh"
    "experiment.reference" = "fresh"

    [smoke]                      # overrides applied by --smoke: a few-thousand-step setting
    "experiment.steps" = 4096
    seeds = [0]                  # (optional) the seeds of the smoke sweep

    [report] / [[hypotheses]]    # what the report declares: arm roles, fresh references and
                                 # signed hypotheses (experiments/reporting/declarations.py)

Runs = arms x grid points x seeds, named ``<arm>[-<key>=<value>...]-seed<s>``, written to
``SWEEP_DIR/runs/<name>/``. Overrides apply in the order base < grid < arm < smoke, then
``experiment.name/arm/seed/out`` are set by the sweep. Re-running a sweep skips finished
runs and resumes interrupted ones; a failing run is reported and the others go on. With
``population`` the pending runs that differ only in their seed form one job (a population
whose members each write their own run directory), 2-3x the env steps per core of single
runs (benchmarks/RESULTS.md); a job is a single run otherwise. Jobs start largest first,
and the one that would finish last alone is split into two populations while that
shortens the simulated schedule (:func:`pack_jobs`).
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import re
import sys
import threading
import time
import traceback
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments import rundir
from experiments.checkpoint import checkpoint_steps
from experiments.config import apply_overrides, from_dict, load_config, to_dict
from experiments.errors import ConfigError
from experiments.progress import Progress
from experiments.reporting.declarations import parse_declarations
from experiments.resolve import resolve
from experiments.tomlio import load_toml

__all__ = ["Sweep", "SweepRun", "load_sweep", "build_sweep", "run_sweep", "BACKENDS",
           "population_groups", "resume_point", "pack_jobs", "simulate_makespan", "member_cost",
           "job_cost"]

BACKENDS = ("local", "ray")
SWEEP_KEYS = ("name", "seeds", "out", "population", "base", "grid", "arms", "smoke", "report",
              "hypotheses")


@dataclass
class SweepRun:
    """One run of a sweep: its name and its full (validated) config as nested dicts."""

    name: str
    config: dict[str, Any]

    @property
    def run_dir(self) -> Path:
        return Path(self.config["experiment"]["out"])


@dataclass
class Sweep:
    name: str
    directory: Path
    runs: list[SweepRun]
    source: str = ""  # the sweep file's text, copied to SWEEP_DIR/sweep.toml
    population: bool = True  # group each arm's seeds into one population job


@dataclass
class SweepResult:
    directory: Path
    outcomes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def failed(self) -> list[str]:
        return [n for n, o in self.outcomes.items() if o["status"] not in ("done", "skipped")]


# ----------------------------------------------------------------------------- building
def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"experiment": {"reference": "fresh"}}`` -> ``{"experiment.reference": "fresh"}``
    (only down to run-config keys: ``env.kwargs`` stays one value)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and dotted.count(".") < 1:
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _slug(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        text = "+".join(_slug(v) for v in value) or "none"
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", text)


def build_sweep(data: Mapping[str, Any], *, name: str, out: str | Path | None = None,
                smoke: bool = False, overrides: Mapping[str, Any] | None = None,
                source: str = "") -> Sweep:
    """Expand a parsed sweep file into validated runs (raises ConfigError; writes nothing)."""
    for key in data:
        if key not in SWEEP_KEYS:
            raise ConfigError(f"unknown sweep key {key!r}; valid keys: {', '.join(SWEEP_KEYS)} "
                              "(run-config tables go under [base])")
    name = str(data.get("name", name))
    population = data.get("population", True)
    if not isinstance(population, bool):
        raise ConfigError(f"population = {population!r}: expected true or false")
    smoke_table = dict(data.get("smoke", {})) if smoke else {}
    seeds = _check_seeds(smoke_table.pop("seeds", data.get("seeds", [0])), "seeds")
    base = data.get("base", {})
    grid = data.get("grid", {})
    if not isinstance(base, Mapping) or not isinstance(grid, Mapping):
        raise ConfigError("[base] and [grid] must be tables")
    grid = _flatten(grid)
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid key {key!r} = {values!r}: expected a non-empty list of values")
    arms = data.get("arms", [{}])
    if not isinstance(arms, list) or not arms or not all(isinstance(a, Mapping) for a in arms):
        raise ConfigError(f"arms = {arms!r}: expected a non-empty array of tables ([[arms]] with "
                          "name = ... and overrides; leave arms out for one arm from [base])")
    smoke_overrides = _flatten(smoke_table)
    if smoke and "smoke" not in data:
        raise ConfigError(f"--smoke: the sweep {name!r} has no [smoke] table")
    directory = Path(out if out is not None else str(data.get("out", "runs/sweeps/{name}"))
                     .format(name=name)).resolve()

    base = apply_overrides(base, dict(overrides or {}))
    runs: list[SweepRun] = []
    names = set()
    for arm in arms:
        arm = _flatten(arm)
        arm_name = str(arm.pop("name", base.get("experiment", {}).get("arm", "") or "run"))
        arm_seeds = arm.pop("seeds", None)
        arm_seeds = (seeds if arm_seeds is None or smoke
                     else _check_seeds(arm_seeds, f"arm {arm_name!r}: seeds"))
        for point in itertools.product(*grid.values()):
            grid_point = dict(zip(grid, point, strict=True))
            for seed in arm_seeds:
                parts = [arm_name] + [f"{k.split('.')[-1]}={_slug(v)}" for k, v in grid_point.items()]
                run_name = _slug("-".join(parts)) + f"-seed{seed}"
                if run_name in names:
                    raise ConfigError(f"two runs are named {run_name!r}; give each [[arms]] a "
                                      "distinct name")
                names.add(run_name)
                fixed = {"experiment.name": name, "experiment.arm": arm_name,
                         "experiment.seed": seed,
                         "experiment.out": str(directory / rundir.SWEEP_RUNS / run_name)}
                merged = apply_overrides(base, {**grid_point, **arm, **smoke_overrides, **fixed})
                try:
                    config = resolve(from_dict(merged))
                except ValueError as exc:
                    raise type(exc)(f"run {run_name!r}: {exc}") from None
                runs.append(SweepRun(run_name, to_dict(config)))
    arm_names = {r.config["experiment"]["arm"] for r in runs}
    unknown = sorted(parse_declarations(data).arms_named() - arm_names)
    if unknown:
        raise ConfigError(f"[report] / [[hypotheses]] name the arm {unknown[0]!r}, which this "
                          f"sweep does not have; its arms: {', '.join(sorted(arm_names))}")
    return Sweep(name, directory, runs, source, population)


def _check_seeds(seeds: Any, where: str) -> list[int]:
    if not isinstance(seeds, list) or not seeds or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds):
        raise ConfigError(f"{where} = {seeds!r}: expected a non-empty list of integers >= 0")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(f"{where} = {seeds!r} lists seed {repeated[0]} more than once; give "
                          "each seed once")
    return seeds


def load_sweep(path: str | Path, *, out: str | Path | None = None, smoke: bool = False,
               overrides: Mapping[str, Any] | None = None,
               seeds: list[int] | None = None) -> Sweep:
    """Read and expand a sweep file; ``overrides`` apply to ``[base]``, ``seeds`` replaces
    the file's seeds."""
    path = Path(path)
    data = load_toml(path)
    if seeds is not None:
        data["seeds"] = seeds
    return build_sweep(data, name=path.stem, out=out, smoke=smoke, overrides=overrides,
                       source=path.read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- one run
def run_group(configs: list[dict[str, Any]], overwrite: bool = False) -> list[dict[str, Any]]:
    """Run sweep members that differ only in their seed as one population in this process
    (one member: a single run); one outcome per member; never raises (the sweep reports
    failures)."""
    from experiments.runner import run_population

    try:
        results = run_population([from_dict(c) for c in configs], overwrite=overwrite)
    except Exception as exc:  # noqa: BLE001 -- one job's failure must not stop the sweep
        return [{"status": "failed", "message": f"{type(exc).__name__}: {exc}",
                 "traceback": traceback.format_exc()}] * len(configs)
    outcomes = []
    for r in results:
        if r.status == "diverged":
            d = r.diverged
            outcomes.append({"status": "diverged", "message": f"run {str(r.run_dir)!r} diverged "
                             f"at env step {d['step']}: {d['what']} = {d['value']}"})
        else:
            outcomes.append({"status": "done", "steps": r.steps, "wall_time": r.wall_time,
                             "probe_time": r.probe_time})
    return outcomes


def population_groups(runs: Sequence[SweepRun], population: bool,
                      resume_point=None) -> list[list[SweepRun]]:
    """The jobs of a sweep: runs that may share a population (``runner.population_key``:
    they differ only in seed and directory) together when ``population``, else one run
    each; in the sweep's order. ``resume_point(run)`` (the sweep passes
    :func:`resume_point` unless it overwrites) also parts runs that would resume from
    different steps: a population resumes from the newest step every member has, so
    members that ran in different (packed) populations and got to different checkpoints
    would otherwise all start again."""
    if not population:
        return [[r] for r in runs]
    from experiments.runner import population_key

    groups: dict[str, list[SweepRun]] = {}
    for r in runs:
        key = population_key(from_dict(r.config))
        if resume_point is not None:
            key["resume_point"] = resume_point(r)
        groups.setdefault(json.dumps(key, sort_keys=True, default=str), []).append(r)
    return list(groups.values())


def resume_point(run: SweepRun) -> int | None:
    """The step of a run's newest checkpoint (None: it has none)."""
    steps = checkpoint_steps(run.run_dir / rundir.CHECKPOINTS)
    return steps[-1] if steps else None


#: A member-step of a population of K costs about ``FLOOR + (1 - FLOOR) / K`` of a single
#: run's: the measured per-core speed-ups of populations, 2.6-2.8x at K = 8-16
#: (benchmarks/RESULTS.md), give FLOOR ~ 1/3. Only the packing below uses it.
POPULATION_COST_FLOOR = 1 / 3


def member_cost(k: int) -> float:
    """Relative CPU cost of one member-step in a population of ``k`` (1.0 at k = 1)."""
    return POPULATION_COST_FLOOR + (1 - POPULATION_COST_FLOOR) / k


def job_cost(job: Sequence[SweepRun]) -> float:
    """A job's cost in single-run env steps: its members' steps at its population's rate."""
    return sum(r.config["experiment"]["steps"] for r in job) * member_cost(len(job))


def simulate_makespan(costs: Sequence[float], workers: int) -> float:
    """Finish time of jobs handed out in this order, each to the first free of ``workers``
    (what the process pool does with jobs submitted at once)."""
    free = [0.0] * workers
    for cost in costs:
        i = free.index(min(free))
        free[i] += cost
    return max(free)


def pack_jobs(jobs: Sequence[list[SweepRun]], workers: int, cost=job_cost) -> list[list[SweepRun]]:
    """The order (and split) the jobs run in on ``workers``: largest first, then, while it
    shortens the simulated makespan, the job that finishes last is split into two
    populations of its first and last members, so the tail is not one population alone on
    one core while the others idle. A member trains exactly as in the whole population
    (a population's members are independent; tested), so splitting changes only speed."""
    order = sorted(jobs, key=cost, reverse=True)  # stable: ties keep the sweep's order
    if workers < 2:
        return list(order)
    best = simulate_makespan([cost(j) for j in order], workers)
    while True:
        last = _last_finishing(order, workers, cost)
        job = order[last]
        if len(job) < 2:
            return order
        half = len(job) // 2
        trial = sorted(order[:last] + [job[:len(job) - half], job[len(job) - half:]]
                       + order[last + 1:], key=cost, reverse=True)
        span = simulate_makespan([cost(j) for j in trial], workers)
        if span >= best:
            return order
        order, best = trial, span


def _last_finishing(order: Sequence[list[SweepRun]], workers: int, cost) -> int:
    free, end = [0.0] * workers, []
    for job in order:
        i = free.index(min(free))
        free[i] += cost(job)
        end.append(free[i])
    return end.index(max(end))


#: Exit status of a worker that stopped because its sweep process was gone.
ORPHANED_EXIT = 75


def _init_worker(parent: int) -> None:
    import torch

    torch.set_num_threads(1)
    _exit_when_orphaned(parent)


def _exit_when_orphaned(parent: int, interval: float = 1.0) -> None:
    """Stop this worker within ``interval`` seconds once process ``parent`` (the sweep) is
    no longer its parent. A sweep killed without cleanup (SIGKILL, or SIGTERM, which skips
    the pool's shutdown) would otherwise leave its workers finishing their runs unseen, and
    a restarted sweep would resume the same run directories beside them. The run stops as
    if killed, so the next sweep resumes it from its last checkpoint."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(ORPHANED_EXIT)

    threading.Thread(target=watch, name="sweep-parent-watch", daemon=True).start()


# ----------------------------------------------------------------------------- the sweep
def _last_step(run_dir: Path) -> int:
    """Step of the last row of a run's metrics.jsonl (reads only the file's tail)."""
    path = run_dir / rundir.METRICS
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - 4096, 0))
            lines = f.read().splitlines()
    except OSError:
        return 0
    for line in reversed(lines):
        m = re.match(rb'\{"step": (\d+)', line)
        if m:
            return int(m.group(1))
    return 0


def run_sweep(sweep: Sweep, *, workers: int = 1, backend: str = "local",
              address: str | None = None, progress: str = "auto",
              overwrite: bool = False, population: bool | None = None) -> SweepResult:
    """Run every member of ``sweep``; skip finished ones, resume interrupted ones
    (``overwrite``: run every member again from scratch and delete the old report).

    The sweep directory is locked while the sweep runs (each run locks its own directory
    too), so a second sweep on it refuses with a line naming the owner. ``population``
    (default: the sweep file's ``population``) groups each arm's seeds into one job."""
    if backend not in BACKENDS:
        raise ConfigError(f"backend {backend!r} is not valid; valid choices: {', '.join(BACKENDS)}")
    if workers < 1:
        raise ConfigError(f"--workers {workers} is out of range; it must be >= 1")
    rundir.check_out(sweep.directory)
    # Connect first: a cluster that is not there is refused before anything is written.
    ray_started = backend == "ray" and any(
        overwrite or rundir.run_status(m.run_dir) not in ("done", "diverged") for m in sweep.runs
    ) and _connect_ray(address, workers)
    try:
        with rundir.locked(sweep.directory, what="sweep directory"):
            return _run_sweep(sweep, workers, backend, progress, overwrite,
                              sweep.population if population is None else population)
    finally:
        if ray_started:
            import ray

            ray.shutdown()


def _run_sweep(sweep: Sweep, workers: int, backend: str, progress: str,
               overwrite: bool, population: bool) -> SweepResult:
    from experiments.runner import comparable_config

    if overwrite:
        rundir.clear_report(sweep.directory)
    if sweep.source:
        (sweep.directory / rundir.SWEEP_FILE).write_text(sweep.source, encoding="utf-8")
    result = SweepResult(sweep.directory)
    pending: list[SweepRun] = []
    for member in sweep.runs:
        status = "empty" if overwrite else rundir.run_status(member.run_dir)
        if status in ("done", "diverged"):
            saved = load_config(member.run_dir / rundir.CONFIG)
            if comparable_config(saved) != comparable_config(from_dict(member.config)):
                result.outcomes[member.name] = _outcome(member, {
                    "status": "failed", "message": f"{member.run_dir} holds a finished run of "
                    "another config; delete it or use another sweep directory"})
            elif status == "done":
                result.outcomes[member.name] = {"status": "skipped"}
            else:
                result.outcomes[member.name] = {"status": "diverged",
                                                "message": "diverged earlier (see DIVERGED)"}
        else:
            member.config["logging"]["progress"] = "off"  # the sweep shows one bar for all
            pending.append(member)
    total = sum(m.config["experiment"]["steps"] for m in sweep.runs) or 1
    done_steps = total - sum(m.config["experiment"]["steps"] for m in pending)
    bar = Progress(total, progress, label=f"{sweep.name} ")

    def show(outcomes_done: int) -> None:
        steps = done_steps + sum(_last_step(m.run_dir) for m in pending)
        bar.update(steps, f"runs {outcomes_done}/{len(pending)} finished")

    jobs = pack_jobs(population_groups(pending, population,
                                       None if overwrite else resume_point), workers)
    try:
        if backend == "local":
            _run_local(jobs, workers, result, show, overwrite)
        else:
            _run_ray(jobs, result, show, overwrite)
    finally:
        bar.close()
    return result


def _run_local(jobs: Sequence[list[SweepRun]], workers: int, result: SweepResult, show,
               overwrite: bool) -> None:
    if not jobs:
        return
    context = multiprocessing.get_context("spawn")  # fork + torch threads is unsafe
    with ProcessPoolExecutor(max_workers=workers, mp_context=context,
                             initializer=_init_worker, initargs=(os.getpid(),)) as pool:
        futures = {pool.submit(run_group, [m.config for m in job], overwrite): job for job in jobs}
        remaining = set(futures)
        while remaining:
            finished, remaining = wait(remaining, timeout=1.0, return_when=FIRST_COMPLETED)
            for fut in finished:
                _record(result, futures[fut], fut.result())
            show(sum(len(j) for f, j in futures.items() if f not in remaining))


def _connect_ray(address: str | None, workers: int) -> bool:
    """Connect to the Ray cluster at ``address`` (None: start a local instance of
    ``workers`` CPUs); True if this call started Ray (the sweep shuts it down)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--backend ray needs ray: pip install 'plasticity-testbed[ray]'") from None
    if ray.is_initialized():
        return False
    if address:
        try:
            ray.init(address=address)
        except ConnectionError as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError(f"--address {address!r}: no Ray cluster to connect to ({reason}); "
                              "start one with `ray start --head`, or leave out --address for "
                              "a local Ray instance") from None
    else:
        # Local workers must import our packages the way this process does.
        root = str(Path(__file__).resolve().parent.parent)
        path = os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path, "OMP_NUM_THREADS": "1"}})
    return True


def _run_ray(jobs: Sequence[list[SweepRun]], result: SweepResult, show, overwrite: bool) -> None:
    if not jobs:
        return
    import ray

    remote = ray.remote(num_cpus=1)(run_group)
    refs = {remote.remote([m.config for m in job], overwrite): job for job in jobs}
    remaining = list(refs)
    while remaining:
        finished, remaining = ray.wait(remaining, num_returns=1, timeout=1.0)
        for ref in finished:
            _record(result, refs[ref], ray.get(ref))
        show(sum(len(j) for r, j in refs.items() if r not in remaining))


def _record(result: SweepResult, job: list[SweepRun], outcomes: list[dict[str, Any]]) -> None:
    for member, outcome in zip(job, outcomes, strict=True):
        result.outcomes[member.name] = _outcome(member, outcome)


def _outcome(member: SweepRun, outcome: dict[str, Any]) -> dict[str, Any]:
    if outcome["status"] in ("failed", "diverged"):
        print(f"plasticity: run {member.name} {outcome['status']}: {outcome['message']}",
              file=sys.stderr, flush=True)
    return outcome


def summary(result: SweepResult) -> str:
    """One line per run: name, status, wall time."""
    lines = []
    for name, o in sorted(result.outcomes.items()):
        extra = f"{o['wall_time']:.1f}s" if "wall_time" in o else o.get("message", "")
        lines.append(f"  {o['status']:<9} {name}  {extra}")
    return "\n".join(lines)


