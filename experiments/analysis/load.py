"""Read run directories (and sweep directories) into a :class:`RunData`.

The input is the run-directory schema of ``docs/architecture.md``::

    RUN_DIR/config.toml  metrics.jsonl  episodes.jsonl  probes.jsonl  shifts.jsonl
            provenance.json  DONE  DIVERGED
    SWEEP_DIR/sweep.toml  runs/<run_name>/

``run_id`` is the run directory relative to the common root of the inputs (a run
directory given on its own counts as its parent), so one sweep gives ``runs/<name>`` and
several sweeps ``<sweep dir>/runs/<name>``. Nothing here computes a statistic except the
per-shift adaptation table, which :func:`load_runs` adds with
:func:`experiments.analysis.adaptation.adaptation_frame`.

Config keys read (with fall-backs, so that older or hand-written configs still load):

* ``[experiment]``: ``arm`` (default: ``reference``, then the directory name), ``seed``
  (default: ``[agent] seed``), ``reference`` (default ``"continual"``), ``steps``,
  ``command``.
* env id: ``[env] id`` (or ``env_id``, ``name``); period: ``[env] period``, ``[schedule]
  period`` or ``[env.schedule] period``.
* agent algorithm: ``[agent] algo`` (or ``algorithm``, ``name``, ``type``).
* mitigations: ``[mitigations] names`` with ``[mitigations.options.<name>]`` (the runner's
  layout), or any table / list under ``[mitigations]`` or ``[agent] mitigations``.

The ``config`` column is the resolved config, except that an absolute ``[experiment] out``
inside the working directory is made relative to it (as ``RunData.root`` is).

File names, markers and JSONL reading are :mod:`experiments.rundir`'s: a torn last line is
refused in a finished (DONE/DIVERGED) run and warned about in an unfinished one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from experiments import rundir
from experiments.analysis.adaptation import AdaptationSpec, adaptation_frame
from experiments.analysis.run import Run, runs_of
from experiments.analysis.rundata import RunData, canonical, is_tables_dir, read_tables
from experiments.errors import ConfigError
from experiments.rundir import read_jsonl, read_marker
from experiments.tomlio import load_toml

__all__ = ["load_runs", "load_data", "load_run", "find_run_dirs", "is_run_dir",
           "describe_mitigations", "REFERENCES"]

REFERENCES = ("continual", "fresh", "stationary")


def describe_mitigations(mit: Any) -> str:
    """Render a ``[mitigations]`` table / list as ``"l2(coef=0.001), redo"``."""
    if mit is None or mit == {} or mit == []:
        return "none"
    if isinstance(mit, str):
        return mit
    if isinstance(mit, Mapping) and "names" in mit:
        # The runner's layout: names = [...] in order, options = {name: {key: value}}.
        options = mit.get("options") or {}
        return describe_mitigations({n: options.get(n) or True for n in mit["names"]})
    if isinstance(mit, Mapping):
        parts = []
        for name, params in mit.items():
            if isinstance(params, Mapping):
                inner = ", ".join(f"{k}={v}" for k, v in params.items())
                parts.append(f"{name}({inner})" if inner else str(name))
            elif params is True:
                parts.append(str(name))
            elif params is False:
                continue
            else:
                parts.append(f"{name}={params}")
        return ", ".join(parts) if parts else "none"
    if isinstance(mit, Iterable):
        return ", ".join(describe_mitigations(m) for m in mit) or "none"
    return str(mit)


def _first(table: Mapping[str, Any], keys: Iterable[str]) -> Any:
    for key in keys:
        if isinstance(table, Mapping) and table.get(key) is not None:
            return table[key]
    return None


def is_run_dir(path: Path) -> bool:
    """A run directory has a ``config.toml`` next to a JSONL log."""
    return (path / rundir.CONFIG).is_file() and any(
        (path / name).is_file() for name in (rundir.METRICS, rundir.EPISODES, rundir.SHIFTS)
    )


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Expand each path into run directories: a run directory is itself; a sweep directory
    (``runs/`` inside) or any directory holding run directories gives its children, sorted.
    A path that is none of these, or no path at all, is a :class:`ConfigError`."""
    paths = list(paths)
    if not paths:
        raise ConfigError("no directory given; give run directories (with config.toml) or "
                          "sweep directories (with runs/), e.g. load_runs(['runs/sweeps/my_sweep'])")
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            raise ConfigError(f"{str(path)!r} is not a directory; expected a run directory "
                              "(with config.toml) or a sweep directory (with runs/)")
        if is_run_dir(path):
            found.append(path)
            continue
        parent = path / rundir.SWEEP_RUNS if (path / rundir.SWEEP_RUNS).is_dir() else path
        children = sorted(p for p in parent.iterdir() if p.is_dir() and is_run_dir(p))
        if not children:
            raise ConfigError(f"{str(path)!r} holds no run directories; expected a run directory "
                              "(config.toml + metrics.jsonl/episodes.jsonl) or a sweep directory "
                              "(runs/<name>/)")
        found.extend(children)
    unique: list[Path] = []
    seen: set[Path] = set()
    for p in found:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p)
    return unique


def _portable(path: Path) -> str:
    """``path`` relative to the working directory when inside it, else absolute (POSIX)."""
    path = path.resolve()
    try:
        return path.relative_to(Path.cwd().resolve()).as_posix() or "."
    except ValueError:
        return path.as_posix()


def _root(paths: Iterable[Path]) -> Path:
    """The common root of the inputs, a run directory given on its own counting as its parent."""
    starts = [(p.resolve().parent if is_run_dir(p) else p.resolve()) for p in paths]
    return Path(os.path.commonpath([str(s) for s in starts]))


def _sweep_dir(run_dir: Path) -> Path | None:
    """The sweep directory of ``SWEEP_DIR/runs/<name>/``, when it has its ``sweep.toml``."""
    parent = run_dir.resolve().parent
    if parent.name == rundir.SWEEP_RUNS and (parent.parent / rundir.SWEEP_FILE).is_file():
        return parent.parent
    return None


def _identity(config: dict[str, Any], path: Path, status: str, done: dict[str, Any] | None,
              diverged: dict[str, Any] | None, last_episode: int | None) -> dict[str, Any]:
    """The ``runs`` columns read from the config and the markers (fall-backs: module doc)."""
    exp = config.get("experiment", {})
    env = config.get("env", {})
    agent = config.get("agent", {})
    reference = str(exp.get("reference", "continual"))
    if reference not in REFERENCES:
        raise ConfigError(f"{path}/config.toml: [experiment] reference = {reference!r}; "
                          f"valid choices: {', '.join(REFERENCES)}")
    seed = exp.get("seed", agent.get("seed"))
    period = None
    for table in (env, config.get("schedule", {}), env.get("schedule", {})):
        if isinstance(table, Mapping) and table.get("period") is not None:
            period = int(table["period"])
            break
    steps = next((int(s["steps"]) for s in (done or {}, exp) if s.get("steps") is not None),
                 None)
    end = [steps or 0]
    if diverged and diverged.get("step") is not None:
        end = [int(diverged["step"])]
    if last_episode is not None:
        end.append(last_episode)
    command = exp.get("command")
    if isinstance(command, (list, tuple)):
        command = " ".join(map(str, command))
    wall = _first(done or {}, ("wall_time", "wall_s", "wall_time_s", "wall", "time", "seconds"))
    mitigations = config.get("mitigations")
    if mitigations is None:
        mitigations = agent.get("mitigations")
    env_id = _first(env, ("id", "env_id", "name"))
    algo = _first(agent, ("algo", "algorithm", "name", "type"))
    return {
        "arm": str(exp.get("arm") or exp.get("reference") or path.name),
        "seed": None if seed is None else int(seed),
        "reference": reference,
        "algo": None if algo is None else str(algo),
        "env_id": None if env_id is None else str(env_id),
        "period": period,
        "steps": steps,
        "end_step": max(end),
        "status": status,
        "mitigations": describe_mitigations(mitigations),
        "command": None if command is None else str(command),
        "wall_time": None if wall is None else float(wall),
    }


def _episodes(run_id: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Episode columns sorted by step (stable); one list comprehension per column, since a
    study has about 10^6 episode rows."""
    step = np.array([r["step"] for r in rows], dtype=np.int64)
    order = np.argsort(step, kind="stable")
    columns = {
        "step": step,
        "task_id": np.array([r.get("task_id", -1) for r in rows], dtype=np.int64),
        "return": np.array([r.get("return") for r in rows], dtype=np.float64),  # None -> NaN
        "length": np.array([r.get("length") or 1 for r in rows], dtype=np.int64),
    }
    return {"run_id": np.full(len(rows), run_id, dtype=object)} | {
        k: v[order] for k, v in columns.items()}


def _dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=str)


def _read_run(path: Path, run_id: str, sweep_id: str | None) -> dict[str, Any]:
    """Every table's rows of one run directory."""
    if not (path / rundir.CONFIG).is_file():
        raise ConfigError(f"{str(path)!r} is not a run directory (no config.toml)")
    config = load_toml(path / rundir.CONFIG)
    out = config.get("experiment", {}).get("out")
    if isinstance(out, str) and Path(out).is_absolute():
        # as the root: relative to the working directory when inside it, so tables built in
        # a checkout carry no machine's absolute path
        config["experiment"]["out"] = _portable(Path(out))
    status = rundir.run_status(path)
    # A finished run cannot end in a torn line (refuse); an unfinished one may (warn).
    torn = "raise" if status in ("done", "diverged") else "warn"
    metrics = read_jsonl(path / rundir.METRICS, torn=torn)
    episode_rows = read_jsonl(path / rundir.EPISODES, torn=torn)
    from_metrics = False
    if not episode_rows and not (path / rundir.EPISODES).is_file():
        from_metrics = True
        episode_rows = [
            {"step": r["step"], "task_id": r.get("task_id", -1),
             "return": r["episodic_return"], "length": 1}
            for r in metrics if r.get("episodic_return") is not None
        ]
    episodes = _episodes(run_id, episode_rows)
    done, diverged = read_marker(path / rundir.DONE), read_marker(path / rundir.DIVERGED)
    provenance = rundir.read_provenance(path)
    last = int(episodes["step"][-1]) if len(episodes["step"]) else None
    run = {"run_id": run_id, "sweep_id": sweep_id}
    run.update(_identity(config, path, status, done, diverged, last))
    run.update({
        "git_commit": (provenance or {}).get("git_commit"),
        "git_dirty": (provenance or {}).get("git_dirty"),
        "episodes_from_metrics": from_metrics,
        "done": _dumps(done), "diverged": _dumps(diverged), "provenance": _dumps(provenance),
        "config": _dumps(config),
    })
    shifts = sorted(read_jsonl(path / rundir.SHIFTS, torn=torn), key=lambda r: r["step"])
    return {
        "run": run,
        "episodes": episodes,
        "metrics": [{"run_id": run_id, **r} for r in metrics],
        "probes": [{"run_id": run_id, "data": "on_policy", **r}
                   for r in read_jsonl(path / rundir.PROBES, torn=torn)],
        "shifts": [{"run_id": run_id, "shift_index": k, "step": int(s["step"]),
                    "from_task": s.get("from_task"), "to_task": s.get("to_task"),
                    "oracle": bool((s.get("at_shift") or {}).get("oracle", False)),
                    "params": _dumps(s.get("params") or {}),
                    "at_shift": _dumps(s.get("at_shift") or {})}
                   for k, s in enumerate(shifts, start=1)],
    }


def load_runs(paths: Iterable[str | Path], spec: AdaptationSpec | None = None) -> RunData:
    """Every run directory that :func:`find_run_dirs` finds in ``paths``, as tidy tables.

    Args:
        paths: run directories, sweep directories (``runs/*/``) or directories of runs.
        spec: the adaptation definition of the ``adaptation`` table; default
            :func:`~experiments.analysis.adaptation.spec_for` each run's env id.

    Example (a notebook)::

        from experiments.analysis import load_runs
        data = load_runs(["runs/studies/e2_dqn_hidden_goal"])
        data.adaptation.merge(data.runs[["run_id", "arm", "seed"]]) \\
            .groupby("arm")["auc"].mean()
    """
    paths = [Path(p) for p in paths]
    run_dirs = find_run_dirs(paths)
    root = _root(paths)
    parts = []
    sweeps: dict[str, dict[str, Any]] = {}
    for run_dir in run_dirs:
        run_id = run_dir.resolve().relative_to(root).as_posix()
        sweep = _sweep_dir(run_dir)
        sweep_id = None
        if sweep is not None and sweep.is_relative_to(root):
            sweep_id = sweep.relative_to(root).as_posix() or "."
            if sweep_id not in sweeps:
                source = (sweep / rundir.SWEEP_FILE).read_text(encoding="utf-8")
                name = load_toml(sweep / rundir.SWEEP_FILE).get("name", sweep.name)
                sweeps[sweep_id] = {"sweep_id": sweep_id, "name": str(name), "source": source}
        parts.append(_read_run(run_dir, run_id, sweep_id))
    episodes = [p["episodes"] for p in parts]
    data = RunData(
        runs=canonical("runs", pd.DataFrame([p["run"] for p in parts])),
        sweeps=canonical("sweeps", pd.DataFrame(list(sweeps.values()))),
        episodes=canonical("episodes", pd.DataFrame(
            {k: np.concatenate([e[k] for e in episodes]) if episodes else []
             for k in ("run_id", "step", "task_id", "return", "length")})),
        metrics=canonical("metrics", pd.DataFrame([r for p in parts for r in p["metrics"]])),
        probes=canonical("probes", pd.DataFrame([r for p in parts for r in p["probes"]])),
        shifts=canonical("shifts", pd.DataFrame([r for p in parts for r in p["shifts"]])),
        adaptation=canonical("adaptation", pd.DataFrame()),
        root=_portable(root),
    )
    data.adaptation = adaptation_frame(data, spec)
    return data


def load_run(path: str | Path) -> Run:
    """The :class:`~experiments.analysis.run.Run` view of one run directory."""
    path = Path(path)
    if not (path / rundir.CONFIG).is_file():
        raise ConfigError(f"{str(path)!r} is not a run directory (no config.toml)")
    (run,) = runs_of(load_runs([path]))
    return run


def load_data(paths: Iterable[str | Path], spec: AdaptationSpec | None = None) -> RunData:
    """The RunData of ``paths``: one tables directory (:func:`read_tables`), or run and sweep
    directories (:func:`load_runs`)."""
    paths = [Path(p) for p in paths]
    tables = [p for p in paths if is_tables_dir(p)]
    if not tables:
        return load_runs(paths, spec)
    if len(paths) > 1:
        raise ConfigError(f"{', '.join(repr(str(p)) for p in tables)}: a tables directory is "
                          "read on its own; give either one tables directory or run and sweep "
                          "directories")
    return read_tables(tables[0])
