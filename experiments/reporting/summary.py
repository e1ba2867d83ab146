"""The report as typed objects: every number of a report, computed before anything is drawn
or written (:mod:`.render` turns a :class:`Report` into markdown, :mod:`.figures` into PNGs).

A report has one :class:`StreamSummary` per stream (one sweep: one study file). For each:

* arms, their roles (from the study file's ``[report]`` and the run configs: reference,
  mitigations, shift knobs, whether the switches were announced to the agent, ``oracle``),
  and each continual arm's matched fresh reference (:mod:`.references`);
* the declared hypotheses' tests and verdicts (:mod:`.hypotheses`) -- the only verdicts;
* descriptive results with seed-level intervals: per arm the primary adaptation target and,
  against the matched reference, the gap (overall and per task), return curves, the
  stationary control and whether it converged;
* exploratory results, labelled so: within-arm effects of probes that were not declared,
  probe differences from the reference at init, gap trends over the task index.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from experiments.reporting.declarations import Declarations, Hypothesis
from experiments.reporting.frame import parse_probe_column, probe_column, shift_frame
from experiments.reporting.hypotheses import evaluate
from experiments.reporting.inference import (
    MIN_SEEDS,
    Effect,
    Interval,
    Pooled,
    difference,
    mean_interval,
    pool,
    within_effect,
)
from experiments.reporting.outcome import Outcome
from experiments.reporting.points import Points, probe_points
from experiments.reporting.references import ArmReference, match_references

__all__ = ["Arm", "Curve", "Gap", "Stationary", "Exploratory", "StreamSummary", "Report",
           "StreamInput", "PooledTest", "summarize", "pool_across", "RETURN_BINS"]

RETURN_BINS = 60


@dataclass(frozen=True)
class StreamInput:
    """One stream to summarise: its name, its tidy tables (a RunData or anything with the
    same DataFrame attributes) and its study file's declarations."""

    name: str
    data: Any
    declarations: Declarations
    source: str = ""                  # the study file's text (empty without one)
    commits: tuple[str, ...] = ()     # code commits the runs were made with (provenance)
    versions: tuple[str, ...] = ()    # package versions the runs recorded, with run counts
    spec: str = ""                    # how adaptation was measured, in words


@dataclass(frozen=True)
class Arm:
    name: str
    reference: str
    roles: tuple[str, ...]
    seeds: tuple[int, ...]
    runs_done: int
    runs_total: int
    mitigations: str
    shift_knobs: str
    oracle_switches: bool
    adaptation: Interval | None
    reached: Interval | None   # fraction of shifts whose recovery reached the threshold
    versus_comparison: Interval | None = None  # adaptation minus the comparison arm's
    steps: int | None = None   # env steps per finished run (the largest)
    shifts: int = 0            # task switches per finished run (the largest)
    wall_s: float | None = None  # median wall time of a finished run's process (a
                                 # population's members share one process and its time)


@dataclass(frozen=True)
class Curve:
    """A line with a band: ``x`` and, per x, the interval over seeds."""

    label: str
    x: tuple[float, ...]
    y: tuple[Interval, ...]


@dataclass(frozen=True)
class Gap:
    arm: str
    reference: ArmReference
    mean: Interval | None
    per_task: Curve | None


@dataclass(frozen=True)
class Stationary:
    arm: str
    windows: Curve
    last_spread: tuple[float, ...]   # per seed: max - min of the last windows
    tolerance: float                 # absolute: fraction x the best window's mean return
    n_windows: int

    @property
    def converged_seeds(self) -> int:
        return sum(1 for s in self.last_spread if math.isfinite(s) and s <= self.tolerance)

    @property
    def converged(self) -> bool:
        return bool(self.last_spread) and self.converged_seeds == len(self.last_spread)


@dataclass(frozen=True)
class Exploratory:
    effects: tuple[tuple[str, str, Effect], ...]        # (arm, probe column, effect)
    probe_diffs: tuple[tuple[str, str, str, Interval], ...]  # (arm, reference arm, column, diff)
    gap_trends: tuple[tuple[str, Effect], ...]


@dataclass(frozen=True)
class StreamSummary:
    name: str
    source: str
    declarations: Declarations
    arms: tuple[Arm, ...]
    references: Mapping[str, ArmReference]
    tests: tuple[Outcome, ...]
    gaps: tuple[Gap, ...]
    returns: tuple[Curve, ...]
    shift_steps: tuple[int, ...]
    probe_curves: tuple[tuple[str, tuple[Curve, ...]], ...]
    stationary: tuple[Stationary, ...]
    exploratory: Exploratory
    not_done: tuple[tuple[str, str], ...]
    n_runs: int
    commits: tuple[str, ...]
    versions: tuple[str, ...]
    dirty: int
    target: str
    spec: str
    limitations: tuple[str, ...]
    scatter: tuple[tuple[str, tuple[Points, ...]], ...] = ()  # init probe vs target (.points)

    def arm(self, name: str) -> Arm:
        return next(a for a in self.arms if a.name == name)

    @property
    def key_arms(self) -> tuple[str, ...]:
        declared = [a for a in self.declarations.key_arms if any(x.name == a for x in self.arms)]
        return tuple(declared) or tuple(a.name for a in self.arms)

    @property
    def negative_control(self) -> str | None:
        """The verdict on the study as a negative control (declared only)."""
        if not self.declarations.negative_control:
            return None
        if not self.stationary:
            return "cannot serve as a negative control: it has no stationary control run"
        s = self.stationary[0]
        if not s.converged:
            return (f"cannot serve as a negative control: its stationary control has not "
                    f"converged ({s.converged_seeds} of {len(s.last_spread)} seeds have their "
                    f"last {s.n_windows} windows within {s.tolerance:.3g} of each other)")
        return ("can serve as a negative control: its stationary control converged (every "
                f"seed's last {s.n_windows} windows within {s.tolerance:.3g})")


@dataclass(frozen=True)
class PooledTest:
    """One hypothesis id declared by several streams: each stream's test and the
    random-effects pooled estimate over them."""

    id: str
    variant: str
    tests: tuple[tuple[str, Outcome], ...]   # (stream, test)
    pooled: Pooled


@dataclass(frozen=True)
class Report:
    title: str
    streams: tuple[StreamSummary, ...]
    pooled: tuple[PooledTest, ...] = ()
    versions: tuple[str, ...] = ()   # the analysis stack the report was computed with


# ----------------------------------------------------------------------------- helpers
def _config(row: Any) -> dict[str, Any]:
    text = getattr(row, "config", None)
    return json.loads(text) if isinstance(text, str) and text else {}


def describe_mitigations(config: Mapping[str, Any]) -> str:
    """``l2(weight_decay=0.001), ns_adam`` from a resolved config's ``[mitigations]``."""
    mit = config.get("mitigations") or {}
    names = mit.get("names") or []
    options = mit.get("options") or {}
    parts = []
    for name in names:
        opts = options.get(name) or {}
        inner = ", ".join(f"{k}={v}" for k, v in opts.items())
        parts.append(f"{name}({inner})" if inner else str(name))
    return ", ".join(parts) or "none"


def _shift_knobs(config: Mapping[str, Any]) -> str:
    shift = config.get("shift") or {}
    knobs = [f"{k}={v}" for k, v in shift.items() if v not in ("keep", None, False)]
    return ", ".join(knobs) or "none"


def _seeds(values: pd.Series) -> tuple[int, ...]:
    return tuple(sorted(int(s) for s in values.dropna().unique()))


def _curve(label: str, rows: pd.DataFrame, x: str, y: str) -> Curve | None:
    rows = rows[np.isfinite(pd.to_numeric(rows[y], errors="coerce").astype(float))]
    if rows.empty:
        return None
    xs = sorted(rows[x].unique())
    return Curve(label, tuple(float(v) for v in xs), tuple(
        mean_interval(rows.loc[rows[x] == v, y], rows.loc[rows[x] == v, "seed"]) for v in xs))


def _perturbations(config: Mapping[str, Any]) -> list[str]:
    """The oracle perturbations (registered with ``perturbation = True``, e.g.
    ``induced_collapse``) among a resolved config's mitigations."""
    from agents.mitigations import MITIGATIONS

    names = (config.get("mitigations") or {}).get("names") or []
    return [n for n in names if getattr(MITIGATIONS.get(n), "perturbation", False)]


def _roles(arm: str, reference: str, decl: Declarations,
           config: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    roles = []
    if config is not None and _perturbations(config):
        roles.append("oracle perturbation")
    if reference == "fresh":
        roles.append("fresh reference")
    elif reference == "stationary":
        roles.append("stationary control")
    if arm == decl.comparison_arm:
        roles.append("comparison arm")
    if arm in decl.oracle_arms:
        roles.append("oracle")
    if arm in decl.key_arms:
        roles.append("key arm")
    return tuple(roles)


# ----------------------------------------------------------------------------- pieces
def _arms(runs: pd.DataFrame, shifts: pd.DataFrame, frame: pd.DataFrame, decl: Declarations,
          target: str) -> tuple[Arm, ...]:
    out = []
    for arm in sorted(runs["arm"].unique()):
        members = runs[runs["arm"] == arm]
        done = members[members["status"] == "done"]
        first = _config(next(members.itertuples()))
        reference = str(members["reference"].iloc[0])
        arm_shifts = shifts[shifts["run_id"].isin(done["run_id"])]
        rows = frame[frame["arm"] == arm]
        adaptation = reached = None
        if len(rows) and target in rows:
            adaptation = mean_interval(rows[target], rows["seed"])
        if len(rows) and "steps_to_threshold" in rows:
            steps = rows["steps_to_threshold"]  # +inf: censored; NaN: no threshold defined
            defined = steps.notna()
            reached = mean_interval(np.isfinite(steps[defined]).astype(float),
                                    rows.loc[defined, "seed"])
        versus = None
        base = frame[frame["arm"] == decl.comparison_arm]
        if decl.comparison_arm not in (None, arm) and len(rows) and len(base) and target in rows:
            versus = difference(rows[target], rows["seed"], base[target], base["seed"])
        steps = done["steps"].dropna() if "steps" in done else pd.Series(dtype=float)
        wall = done["wall_time"].dropna() if "wall_time" in done else pd.Series(dtype=float)
        n_shifts = int(arm_shifts.groupby("run_id").size().max()) if len(arm_shifts) else 0
        out.append(Arm(arm, reference, _roles(arm, reference, decl, first), _seeds(done["seed"]),
                       len(done), len(members), describe_mitigations(first),
                       _shift_knobs(first),
                       bool(len(arm_shifts)) and bool(arm_shifts["oracle"].astype(bool).all()),
                       adaptation, reached, versus,
                       int(steps.max()) if len(steps) else None, n_shifts,
                       float(wall.median()) if len(wall) else None))
    return tuple(out)


def _gaps(frame: pd.DataFrame, refs: Mapping[str, ArmReference], target: str) -> tuple[Gap, ...]:
    out = []
    column = f"gap_{target}"
    for arm in sorted(refs):
        ref = refs[arm]
        rows = frame[frame["arm"] == arm]
        if not ref.matched or column not in rows:
            out.append(Gap(arm, ref, None, None))
            continue
        out.append(Gap(arm, ref, mean_interval(rows[column], rows["seed"]),
                       _curve(arm, rows, "shift_index", column)))
    return tuple(out)


def _return_curves(runs: pd.DataFrame, episodes: pd.DataFrame, arms: Sequence[str]) -> tuple[Curve, ...]:
    done = runs[(runs["status"] == "done") & runs["arm"].isin(arms)]
    eps = episodes.merge(done[["run_id", "arm", "seed"]], on="run_id")
    if eps.empty:
        return ()
    end = float(eps["step"].max()) or 1.0
    edges = np.linspace(0.0, end, RETURN_BINS + 1)
    eps = eps.assign(bin=np.clip(np.searchsorted(edges, eps["step"], side="left") - 1, 0,
                                 RETURN_BINS - 1))
    per_run = eps.groupby(["arm", "run_id", "seed", "bin"], as_index=False)["return"].mean()
    per_run["x"] = 0.5 * (edges[per_run["bin"]] + edges[per_run["bin"] + 1])
    curves = []
    for arm in arms:
        c = _curve(arm, per_run[per_run["arm"] == arm], "x", "return")
        if c is not None:
            curves.append(c)
    return tuple(curves)


def _stationary(runs: pd.DataFrame, episodes: pd.DataFrame, decl: Declarations) -> tuple[Stationary, ...]:
    out = []
    stationary = runs[(runs["reference"] == "stationary") & (runs["status"] == "done")]
    for arm in sorted(stationary["arm"].unique()):
        members = stationary[stationary["arm"] == arm]
        rows = []
        for run in members.itertuples():
            period = int(run.period) if pd.notna(run.period) and run.period else 0
            eps = episodes[episodes["run_id"] == run.run_id]
            if period <= 0 or eps.empty:
                continue
            windows = (eps["step"].to_numpy() - 1) // period
            for k in np.unique(windows):
                rows.append({"run_id": run.run_id, "seed": run.seed, "window": int(k),
                             "return": float(eps["return"].to_numpy()[windows == k].mean())})
        if not rows:
            continue
        table = pd.DataFrame(rows)
        curve = _curve(arm, table, "window", "return")
        best = max(i.estimate for i in curve.y) if curve else math.nan
        tolerance = decl.stationary_tolerance * abs(best)
        spreads = []
        for _, run_rows in table.groupby("run_id", sort=True):
            last = run_rows.sort_values("window")["return"].to_numpy()[-decl.stationary_windows:]
            spreads.append(float(last.max() - last.min())
                           if len(last) == decl.stationary_windows else math.nan)
        if curve is not None:
            out.append(Stationary(arm, curve, tuple(spreads), tolerance,
                                  decl.stationary_windows))
    return tuple(out)


#: Init probes shown as exploratory when a study file names none (``fnmatch`` patterns, in
#: the order drawn): the headline quantity of each probe group. Every other probe is still in
#: the tables; drawing all of them (about 90 panels, one mixed model each) made a 120-run
#: report take minutes.
DEFAULT_EXPLORATORY_PROBES = (
    "hessian/top_1",
    "hessian/eps_rank_paper/rel0.01",
    "features/hidden.*/effective_rank",
    "features/hidden.*/saturated_fraction",  # tanh's counterpart of ReLU dormancy (first:
    "features/hidden.*/dormant_fraction",    # a tanh layer's dormancy is 0 by construction)
    "trainability/*ratio*",
    "grad/norm",
    "weights/norm",
)
#: At most this many probe panels / exploratory probes per stream (declared ones always kept).
MAX_EXPLORATORY_PROBES = 12


def _matches(metric: str, patterns: Sequence[str]) -> int | None:
    """Index of the first pattern ``metric`` matches, or None."""
    return next((i for i, p in enumerate(patterns) if fnmatch.fnmatchcase(metric, p)), None)


def _probe_columns(frame: pd.DataFrame, decl: Declarations) -> list[str]:
    """Probe columns for the exploratory tables and figures: the declared hypotheses'
    probes and the init probes matching ``[report] exploratory_probes`` (``fnmatch``
    patterns; :data:`DEFAULT_EXPLORATORY_PROBES` when the study file names none), at most
    :data:`MAX_EXPLORATORY_PROBES` besides the declared ones (the first init probes by name
    when no default pattern matches, e.g. a user's own metrics). Timing columns (``time/...``)
    are bookkeeping, never probes."""
    present = [c for c in frame.columns if c.count("/") >= 3 and c.split("/", 1)[0]
               in ("pre", "init", "trained_once")
               and not parse_probe_column(c)[3].startswith("time/")
               and not c.endswith("_censored")]
    init = [c for c in present if parse_probe_column(c)[0] == "init"]
    chosen = {probe_column(h.phase, str(h.network), h.data, str(h.probe))
              for h in decl.hypotheses if h.probe} & set(present)
    patterns = decl.exploratory_probes or DEFAULT_EXPLORATORY_PROBES
    ranked = sorted((rank, c) for c in init
                    if (rank := _matches(parse_probe_column(c)[3], patterns)) is not None)
    if not ranked and not decl.exploratory_probes:  # probes of other names (user metrics)
        ranked = [(0, c) for c in sorted(init)]
    extra = [c for _, c in ranked if c not in chosen][:MAX_EXPLORATORY_PROBES]
    return sorted(chosen | set(extra))


def _declared_pairs(hypotheses: Sequence[Hypothesis]) -> set[tuple[str, str, str]]:
    """(arm, probe column, target) of every declared within-arm test (kept out of the
    exploratory table, which lists only what was not declared)."""
    return {(arm, probe_column(h.phase, str(h.network), h.data, str(h.probe)), str(h.target))
            for h in hypotheses if h.kind == "within_arm" for arm in h.arms}


def _exploratory(frame: pd.DataFrame, refs: Mapping[str, ArmReference], columns: list[str],
                 key_arms: Sequence[str], decl: Declarations, target: str) -> Exploratory:
    declared = _declared_pairs(decl.hypotheses)
    effects, diffs, trends = [], [], []
    arms = [a for a in key_arms if a in set(frame["arm"])]
    for arm in arms:
        rows = frame[frame["arm"] == arm]
        if rows["seed"].nunique() < MIN_SEEDS:
            continue
        for column in columns:
            if (arm, column, target) in declared or rows[column].isna().all():
                continue
            effects.append((arm, column, within_effect(rows, target, column)))
    for arm in sorted(refs):
        ref = refs[arm]
        if not ref.matched or arm not in arms:
            continue
        rows = frame[frame["arm"] == arm]
        ref_rows = frame[frame["run_id"].isin(set(ref.pairs.values()))]
        for column in columns:
            if rows[column].isna().all() or ref_rows[column].isna().all():
                continue
            diffs.append((arm, str(ref.reference_arm), column,
                          difference(rows[column], rows["seed"], ref_rows[column],
                                         ref_rows["seed"])))
        gap = f"gap_{target}"
        if gap in rows and rows[gap].notna().any():
            trends.append((arm, within_effect(rows, gap, "task_index", covariates=())))
    return Exploratory(tuple(effects), tuple(diffs), tuple(trends))


def _limitations(s_arms: Sequence[Arm], refs: Mapping[str, ArmReference], decl: Declarations,
                 probes: pd.DataFrame, commits: Sequence[str], dirty: int,
                 not_done: Sequence[tuple[str, str]]) -> tuple[str, ...]:
    out = list(decl.limitations)
    few = [f"{a.name} ({len(a.seeds)})" for a in s_arms if len(a.seeds) < 10]
    if few:
        out.append("Fewer than 10 seeds in " + ", ".join(few) + ": their t intervals (on 4 "
                   "df at 5 seeds) are wide, and a test against such an arm can only detect "
                   "large effects (each test's detectable effect is printed).")
    unmatched = sorted(a for a, r in refs.items() if not r.matched)
    if unmatched:
        out.append("No matched fresh reference (same agent, network and mitigations) for "
                   + ", ".join(unmatched) + ": these arms get no gap.")
    told = [a.name for a in s_arms if a.oracle_switches and a.reference == "continual"]
    if told:
        out.append("The switch was announced to the agent (oracle shift knobs or mitigations) "
                   "in " + ", ".join(told) + ".")
    if "data" in probes and len(probes):
        on_policy = (probes["data"].fillna("on_policy") == "on_policy").mean()
        if on_policy > 0:
            out.append(f"{on_policy:.0%} of the probe rows were taken on a rollout of the "
                       "arm's own policy (policy-dependent data): arms are probed on different "
                       "states.")
    if len(commits) > 1:
        out.append("The runs come from more than one code commit: " + ", ".join(commits) + ".")
    if dirty:
        out.append(f"{dirty} run(s) were made from a working tree with uncommitted changes.")
    if not_done:
        out.append(f"{len(not_done)} run(s) did not finish and are left out of every number.")
    if decl.threshold is not None:
        out.append(f"The study file declares threshold = {decl.threshold:g}: the adaptation "
                   "table is recomputed from the episodes with it (the table stored with the "
                   "runs is not used).")
    if not decl.hypotheses:
        out.append("No hypothesis was declared: every result is exploratory.")
    return tuple(out)


# ----------------------------------------------------------------------------- entry
def summarize(stream: StreamInput) -> StreamSummary:
    """Every number of one stream's part of the report (module docstring)."""
    data, decl = stream.data, stream.declarations
    runs = data.runs.sort_values("run_id", kind="stable")
    refs = match_references(runs, decl.references)
    frame = shift_frame(runs, data.adaptation, data.probes, data.shifts, refs)
    target = decl.primary_target
    arms = _arms(runs, data.shifts, frame, decl, target)
    names = [a.name for a in arms]
    key = [a for a in decl.key_arms if a in names] or names
    tests = tuple(evaluate(frame, decl.hypotheses))
    columns = _probe_columns(frame, decl)
    curves = []
    for column in columns:
        per_arm = [c for arm in key if (c := _curve(arm, frame[frame["arm"] == arm],
                                                    "shift_index", column)) is not None]
        if per_arm:
            curves.append((column, tuple(per_arm)))
    not_done = tuple((r.run_id, r.status) for r in runs.itertuples() if r.status != "done")
    commits = stream.commits
    dirty = int(runs["git_dirty"].fillna(False).astype(bool).sum()) if "git_dirty" in runs else 0
    return StreamSummary(
        name=stream.name, source=stream.source, declarations=decl, arms=arms,
        references=refs, tests=tests, gaps=_gaps(frame, refs, target),
        returns=_return_curves(runs, data.episodes, key),
        shift_steps=tuple(sorted({int(v) for v in data.shifts.loc[
            data.shifts["run_id"].isin(runs.loc[runs["status"] == "done", "run_id"]), "step"]})),
        probe_curves=tuple(curves),
        stationary=_stationary(runs, data.episodes, decl),
        exploratory=_exploratory(frame, refs, columns, key, decl, target),
        not_done=not_done, n_runs=len(runs), commits=commits, versions=stream.versions,
        dirty=dirty, target=target,
        spec=stream.spec,
        limitations=_limitations(arms, refs, decl, data.probes, commits, dirty, not_done),
        scatter=probe_points(frame, columns, key, target))


def pool_across(streams: Sequence[StreamSummary]) -> tuple[PooledTest, ...]:
    """Every hypothesis id (and test variant) declared by more than one stream for the same
    quantity (metric, phase, data; the network may differ), with the random-effects pooled
    estimate of its tests (:func:`~.inference.pool`)."""
    by_id: dict[tuple[str, ...], list[tuple[str, Outcome]]] = {}
    for s in streams:
        for t in s.tests:
            h = t.hypothesis
            key = (h.id, t.variant, str(h.probe or h.target), h.phase, h.data,
                   str(h.versus_phase), str(h.target))
            by_id.setdefault(key, []).append((s.name, t))
    out = []
    for (hid, variant, *_), tests in sorted(by_id.items()):
        if len({name for name, _ in tests}) < 2:
            continue
        defined = [t for _, t in tests if t.defined]
        out.append(PooledTest(hid, variant, tuple(tests),
                              pool([t.estimate for t in defined], [t.se for t in defined])))
    return tuple(out)
