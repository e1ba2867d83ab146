"""Read run directories (and sweep directories) into plain Python structures.

The input is the run-directory schema of ``docs/architecture.md``::

    RUN_DIR/config.toml  metrics.jsonl  episodes.jsonl  probes.jsonl  shifts.jsonl  DONE  DIVERGED
    SWEEP_DIR/sweep.toml  runs/<run_name>/

Nothing here computes a statistic: a :class:`Run` holds the parsed files, with the episode
log as numpy arrays, so that :mod:`experiments.analysis.adaptation` can slice it.

Config keys read (with fall-backs, so that older or hand-written configs still load):

* ``[experiment]``: ``name``, ``arm`` (default: ``reference``, then the directory name),
  ``seed`` (default: ``[agent] seed``), ``reference`` (default ``"continual"``),
  ``steps``, ``command``.
* env id: ``[env] id`` (or ``env_id``, ``name``); period: ``[env] period``, ``[schedule]
  period`` or ``[env.schedule] period``.
* agent algorithm: ``[agent] algo`` (or ``algorithm``, ``name``, ``type``).
* mitigations: ``[mitigations] names`` with ``[mitigations.options.<name>]`` (the runner's
  layout), or any table / list under ``[mitigations]`` or ``[agent] mitigations``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from experiments import rundir
from experiments.errors import ConfigError
from experiments.rundir import read_jsonl, read_marker
from experiments.tomlio import load_toml

__all__ = ["Run", "load_run", "load_runs", "find_run_dirs", "read_jsonl", "is_run_dir"]

REFERENCES = ("continual", "fresh", "stationary")


@dataclass
class Run:
    """One run directory, parsed.

    Attributes:
        path: the run directory.
        config: the resolved ``config.toml`` as nested dicts.
        episodes: ``{"step", "task_id", "return", "length"}`` -> 1-D arrays, one entry per
            finished episode, sorted by step (``step`` = global env step at episode end).
        shifts: rows of ``shifts.jsonl`` sorted by step.
        probes: rows of ``probes.jsonl``.
        metrics: rows of ``metrics.jsonl``.
        done: the parsed ``DONE`` marker, or ``None`` if the run did not finish.
        diverged: the parsed ``DIVERGED`` marker, or ``None``.
        episodes_from_metrics: True when ``episodes.jsonl`` was missing and the episode log
            was rebuilt from ``metrics.jsonl`` (one pseudo-episode per logging row).
    """

    path: Path
    config: dict[str, Any]
    episodes: dict[str, np.ndarray]
    shifts: list[dict[str, Any]]
    probes: list[dict[str, Any]]
    metrics: list[dict[str, Any]] = field(default_factory=list)
    done: dict[str, Any] | None = None
    diverged: dict[str, Any] | None = None
    episodes_from_metrics: bool = False

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def experiment(self) -> dict[str, Any]:
        return dict(self.config.get("experiment", {}))

    @property
    def arm(self) -> str:
        """``[experiment] arm``; empty or missing means the reference (as the runner does)."""
        exp = self.experiment
        return str(exp.get("arm") or exp.get("reference") or self.path.name)

    @property
    def seed(self) -> int | None:
        seed = self.experiment.get("seed", self.config.get("agent", {}).get("seed"))
        return None if seed is None else int(seed)

    @property
    def reference(self) -> str:
        return str(self.experiment.get("reference", "continual"))

    @property
    def env_id(self) -> str | None:
        env = self.config.get("env", {})
        value = _first(env, ("id", "env_id", "name"))
        return None if value is None else str(value)

    @property
    def algo(self) -> str | None:
        agent = self.config.get("agent", {})
        value = _first(agent, ("algo", "algorithm", "name", "type"))
        return None if value is None else str(value)

    @property
    def period(self) -> int | None:
        env = self.config.get("env", {})
        for table in (env, self.config.get("schedule", {}), env.get("schedule", {})):
            if isinstance(table, Mapping) and table.get("period") is not None:
                return int(table["period"])
        return None

    @property
    def steps(self) -> int | None:
        """Total env steps: the ``DONE`` marker's, else ``[experiment] steps``."""
        for source in (self.done or {}, self.experiment):
            if source.get("steps") is not None:
                return int(source["steps"])
        return None

    @property
    def command(self) -> str | None:
        cmd = self.experiment.get("command")
        if isinstance(cmd, (list, tuple)):
            return " ".join(map(str, cmd))
        return None if cmd is None else str(cmd)

    @property
    def wall_time(self) -> float | None:
        """Wall seconds from the ``DONE`` marker (keys ``wall_time``, ``wall_s``, ...)."""
        done = self.done or {}
        value = _first(done, ("wall_time", "wall_s", "wall_time_s", "wall", "time", "seconds"))
        return None if value is None else float(value)

    @property
    def mitigations(self) -> str:
        """A one-line description of the mitigations ("none" if there are none)."""
        mit = self.config.get("mitigations")
        if mit is None:
            mit = self.config.get("agent", {}).get("mitigations")
        return describe_mitigations(mit)

    @property
    def status(self) -> str:
        if self.diverged is not None:
            return "diverged"
        if self.done is not None:
            return "done"
        return "unfinished"

    @property
    def end_step(self) -> int:
        """Last env step covered by the run (for the end of the final segment)."""
        candidates = [self.steps or 0]
        if self.diverged and self.diverged.get("step") is not None:
            candidates = [int(self.diverged["step"])]
        if len(self.episodes["step"]):
            candidates.append(int(self.episodes["step"][-1]))
        return max(candidates)


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


def _episode_arrays(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    rows = sorted(rows, key=lambda r: r["step"])
    return {
        "step": np.array([int(r["step"]) for r in rows], dtype=np.int64),
        "task_id": np.array([int(r.get("task_id", -1)) for r in rows], dtype=np.int64),
        "return": np.array([_float(r.get("return")) for r in rows], dtype=np.float64),
        "length": np.array([int(r.get("length") or 1) for r in rows], dtype=np.int64),
    }


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def is_run_dir(path: Path) -> bool:
    """A run directory has a ``config.toml`` next to a JSONL log."""
    return (path / rundir.CONFIG).is_file() and any(
        (path / name).is_file() for name in (rundir.METRICS, rundir.EPISODES, rundir.SHIFTS)
    )


def find_run_dirs(paths: Iterable[str | Path]) -> list[Path]:
    """Expand each path into run directories: a run directory is itself; a sweep directory
    (``runs/`` inside) or any directory holding run directories gives its children, sorted.
    A path that is none of these is a :class:`ConfigError`."""
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
    for p in found:
        if p.resolve() not in {u.resolve() for u in unique}:
            unique.append(p)
    return unique


def load_run(path: str | Path) -> Run:
    """Parse one run directory (see the module docstring for the keys read).

    ``episodes.jsonl`` is the episode log; when it is missing, each ``metrics.jsonl`` row with
    a non-null ``episodic_return`` becomes one pseudo-episode (return = that mean, length 1)
    and ``Run.episodes_from_metrics`` is set, which the report flags.
    """
    path = Path(path)
    if not (path / rundir.CONFIG).is_file():
        raise ConfigError(f"{str(path)!r} is not a run directory (no config.toml)")
    config = load_toml(path / rundir.CONFIG)
    reference = str(config.get("experiment", {}).get("reference", "continual"))
    if reference not in REFERENCES:
        raise ConfigError(f"{path}/config.toml: [experiment] reference = {reference!r}; "
                          f"valid choices: {', '.join(REFERENCES)}")
    # A finished run cannot end in a torn line (refuse); an unfinished one may (warn).
    torn = "raise" if rundir.run_status(path) in ("done", "diverged") else "warn"
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
    shifts = sorted(read_jsonl(path / rundir.SHIFTS, torn=torn), key=lambda r: r["step"])
    return Run(
        path=path,
        config=config,
        episodes=_episode_arrays(episode_rows),
        shifts=shifts,
        probes=read_jsonl(path / rundir.PROBES, torn=torn),
        metrics=metrics,
        done=read_marker(path / rundir.DONE),
        diverged=read_marker(path / rundir.DIVERGED),
        episodes_from_metrics=from_metrics,
    )


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """:func:`load_run` on every run directory that :func:`find_run_dirs` finds."""
    return [load_run(p) for p in find_run_dirs(paths)]
