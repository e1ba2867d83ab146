"""The study-level results document (``docs/results.md``) from the sweeps of ``experiments/studies/``.

:func:`write_study_report` reads one sweep directory per stream (S1, S2, S3, ...), or the
tables a previous report wrote next to itself (``OUT/tables/<study>/``), computes every
number from their :class:`~experiments.analysis.RunData` (adaptation table,
warm - fresh gaps, probe trends, within-arm correlations) and writes a markdown document with
the "what was run" opening and five sections, each answering one question of the study:

1. Is there loss of plasticity?  2. Does the spectrum collapse?  3. Does collapse predict
slower adaptation?  4. Do mitigations preserve plasticity and the spectrum?  5. What this
says about the claim (sentences chosen from the computed intervals, never pre-written).

Statistics. The unit of replication is the seed (one run). A "mean [CI]" is the mean over
seeds of a per-run value with a 95% percentile bootstrap interval over seeds
(:func:`scipy.stats.bootstrap`, ``n_resamples`` resamples, fixed seed); a difference between
two arms resamples each arm's seeds independently. Rank correlations and their CIs come from
:func:`experiments.analysis.correlation_table` (Spearman and partial Spearman with the task
index partialled out, Benjamini-Hochberg over every test of a stream).

Adaptation thresholds: :data:`experiments.analysis.adaptation.STREAM_SPECS` (MiniGrid
streams reach a task at a trailing mean return of 0.8, CartPole streams at 195).

The document depends on the tables only (no run directory, no state of the machine writing
it): a report rebuilt from ``OUT/tables/`` is byte for byte the one built from the sweeps.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from experiments.analysis import figures
from experiments.analysis.adaptation import AdaptationSpec, adaptation_table, spec_for, write_csv
from experiments.analysis.correlations import correlation_table, probe_trends
from experiments.analysis.load import load_data
from experiments.analysis.run import Run, runs_of
from experiments.analysis.rundata import RunData, check_commits, commits, write_tables
from experiments.analysis.stats import Correlation, boot_diff, boot_mean, spearman_ci
from experiments.analysis.stats import fmt_number as _f
from experiments.errors import ConfigError
from experiments.tomlio import dumps_toml

__all__ = ["write_study_report", "study_report_command", "SECTIONS"]

#: Section titles, in order (the tests check them).
SECTIONS = (
    "## What was run",
    "## 1. Is there loss of plasticity?",
    "## 2. Does the spectrum collapse?",
    "## 3. Does collapse predict slower adaptation?",
    "## 4. Do mitigations preserve plasticity and the spectrum?",
    "## 5. What this says about the claim",
)
#: Probe metrics reported in sections 2-4: (name pattern, label). ``{last}`` = the last
#: hidden layer of the network (the features the head reads).
SPECTRUM = (
    ("hessian/top_1", "top eigenvalue"),
    ("hessian/eps_rank", "eps-rank"),
    ("hessian/trace", "trace"),
    ("features/{last}/effective_rank", "feature erank"),
    ("features/{last}/dormant_fraction", "dormant"),
    ("features/{last}/dead_fraction", "dead"),
    ("weights/norm", "weight norm"),
)
#: Extra predictors in section 3 (besides SPECTRUM).
PREDICTORS = (("opt/one_step_gain", "one-step gain"), ("train_entropy", "policy entropy"),
              ("train_td_loss", "TD loss"))
#: Training-log columns joined to each shift as "pre" predictors: metrics key -> (network, name).
TRAIN_COLUMNS = {"losses/entropy": ("policy", "train_entropy"),
                 "losses/td_loss": ("q", "train_td_loss")}
#: Adaptation targets of section 3 (steps to threshold, post-shift AUC, the gap).
TARGETS = ("steps_to_threshold", "auc", "gap_mean_return")
FIGURE_METRICS = ("hessian/top_1", "hessian/eps_rank", "features/{last}/effective_rank",
                  "features/{last}/dormant_fraction")
#: Arms drawn in the probe-trajectory figures (the tables have every arm).
FIGURE_ARMS = ("continual", "fresh", "l2", "l2_er", "head_reset")
ALPHA = 0.05
STUDIES_DIR = Path(__file__).resolve().parent / "studies"


# ============================================================================ data
@dataclass
class Stream:
    """One study (one sweep directory): its runs, adaptation rows and the derived tables."""

    name: str
    directory: Path            # the sweep directory the runs were read from (or made in)
    source: str                # the sweep file's text (SWEEP_DIR/sweep.toml)
    data: RunData
    runs: list[Run]
    usable: list[Run]
    spec: AdaptationSpec
    rows: list[dict[str, Any]]
    probes: list[str]          # phase/network/metric columns reported
    cells: list[dict[str, Any]]
    note: dict[str, Any]
    trends: list[dict[str, Any]]
    tables: Path = Path("tables")  # where its Parquet tables and CSVs are written


    @property
    def arms(self) -> list[str]:
        return list(dict.fromkeys(r.arm for r in self.usable))

    def arm_reference(self, arm: str) -> str:
        return next((r.reference for r in self.usable if r.arm == arm), "continual")

    @property
    def networks(self) -> list[str]:
        return list(dict.fromkeys(p.split("/", 2)[1] for p in self.probes))

    def label(self) -> str:
        return f"{self.name}"


def _train_columns(run: Run, shift_step: int) -> dict[str, float]:
    """Training-log values of the last ``metrics.jsonl`` row at or before the shift, as
    ``pre/<network>/<name>`` columns (policy entropy for PPO, TD loss for DQN)."""
    before = [m for m in run.metrics if int(m.get("step", -1)) <= shift_step]
    if not before:
        return {}
    last = before[-1]
    out = {}
    for key, (net, name) in TRAIN_COLUMNS.items():
        value = last.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[f"pre/{net}/{name}"] = float(value)
    return out


def _resolve_metric(pattern: str, net: str, keys: set[str]) -> str | None:
    """``features/{last}/x`` -> ``features/hidden.<max>/x`` present for ``net``."""
    if "{last}" not in pattern:
        return pattern if any(k.endswith(f"/{net}/{pattern}") for k in keys) else None
    head, tail = pattern.split("{last}")
    layers = sorted({k.split("/")[3] for k in keys
                     if k.split("/")[1] == net and k.split("/", 2)[2].startswith(head)
                     and k.endswith(tail) and k.count("/") == 4},
                    key=lambda s: int(s.split(".")[-1]) if s.split(".")[-1].isdigit() else -1)
    return f"{head}{layers[-1]}{tail}" if layers else None


def _reported_probes(rows: Sequence[dict[str, Any]]) -> list[str]:
    keys = {k for r in rows for k in r if k.startswith(("pre/", "init/"))}
    nets = list(dict.fromkeys(k.split("/")[1] for k in sorted(keys)))
    out = []
    for net in nets:
        for pattern, _ in SPECTRUM + PREDICTORS:
            metric = _resolve_metric(pattern, net, keys)
            if metric is None:
                continue
            for phase in ("pre", "init"):
                key = f"{phase}/{net}/{metric}"
                if key in keys:
                    out.append(key)
    return out


def load_stream(directory: Path, *, n_resamples: int, seed: int,
                allow_mixed_commits: bool = False) -> Stream:
    """Load one sweep directory (or the tables written from one) and compute its tables."""
    data = load_data([directory])
    check_commits(data, allow_mixed_commits=allow_mixed_commits)
    runs = runs_of(data)
    usable = [r for r in runs if r.status == "done"]
    sweep_dir, name, source = Path(data.root), Path(data.root).name, ""
    if len(data.sweeps) == 1:
        sweep = data.sweeps.iloc[0]
        sweep_dir, name, source = sweep_dir / sweep["sweep_id"], sweep["name"], sweep["source"]
    env_ids = list(dict.fromkeys(r.env_id for r in usable))
    spec = spec_for(env_ids[0] if env_ids else None)
    rows = adaptation_table(usable, spec)
    by_name = {r.name: r for r in usable}
    for row in rows:
        row.update(_train_columns(by_name[row["run"]], int(row["shift_step"])))
    probes = _reported_probes(rows)
    cells, note = correlation_table(rows, probes, TARGETS, n_resamples=n_resamples, seed=seed)
    trends = probe_trends(rows, probes, n_resamples=n_resamples, seed=seed)
    return Stream(name, sweep_dir, source, data, runs, usable, spec, rows, probes, cells, note,
                  trends)


# ============================================================================ statistics
def per_run_means(rows: Sequence[dict[str, Any]], key: str) -> list[float]:
    """One value per run: the mean of ``key`` over the run's shifts (finite values only)."""
    by_run: dict[str, list[float]] = {}
    for r in rows:
        v = r.get(key)
        if v is None or isinstance(v, (bool, str)) or not math.isfinite(float(v)):
            continue
        by_run.setdefault(r["run"], []).append(float(v))
    return [float(np.mean(v)) for v in by_run.values()]


def solved_fractions(rows: Sequence[dict[str, Any]]) -> list[float]:
    """Per run: the fraction of its shifts whose recovery reached the threshold."""
    by_run: dict[str, list[bool]] = {}
    for r in rows:
        reached = r.get("steps_to_threshold") is not None and not r.get("censored") and \
            math.isfinite(float(r["steps_to_threshold"]))
        by_run.setdefault(r["run"], []).append(bool(reached))
    return [float(np.mean(v)) for v in by_run.values()]


def _excludes_zero(low: float, high: float) -> int:
    """+1 / -1 when the interval lies above / below 0, 0 when it covers 0 or is undefined."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return 0
    return 1 if low > 0 else -1 if high < 0 else 0


# ============================================================================ formatting
def _mci(m: tuple[float, ...]) -> str:
    mean, low, high = m[0], m[1], m[2]
    if not math.isfinite(mean):
        return "-"
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{_f(mean)} (n=1)"
    return f"{_f(mean)} [{_f(low)}, {_f(high)}]"


def _rho(c: Correlation) -> str:
    if not c.defined:
        return f"n/a ({c.reason})"
    return f"{c.rho:+.2f} [{c.ci_low:+.2f}, {c.ci_high:+.2f}]"


def _table(header: Sequence[str], body: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in body]
    return lines + [""]


def _path(p: Path) -> str:
    """A path relative to the working directory when it is inside it (portable citations)."""
    try:
        return p.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return p.resolve().as_posix()


def _rel(path: Path, out_md: Path) -> str:
    try:
        return path.resolve().relative_to(out_md.parent.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


def _label(key: str) -> str:
    """``init/policy/features/hidden.1/effective_rank`` -> ``policy feature erank (init)``."""
    phase, net, metric = key.split("/", 2)
    for pattern, label in SPECTRUM + PREDICTORS:
        head, _, tail = pattern.partition("{last}")
        if metric == pattern or (tail and metric.startswith(head) and metric.endswith(tail)):
            return f"{net} {label} ({phase})"
    return key


# ============================================================================ sections
def _provenance(streams: Sequence[Stream]) -> str:
    """The code commits and package versions the runs recorded (``provenance.json``)."""
    found: dict[str, int] = {}
    versions: dict[str, int] = {}
    for s in streams:
        for commit, run_ids in commits(s.data).items():
            found[commit] = found.get(commit, 0) + len(run_ids)
        for text in s.data.runs["provenance"].dropna():
            recorded = json.loads(text).get("versions") or {}
            line = ", ".join(f"{k} {v}" for k, v in recorded.items()) or "not recorded"
            versions[line] = versions.get(line, 0) + 1
    commit_text = "; ".join(f"`{c}` ({n} runs)" for c, n in found.items())
    version_text = "; ".join(f"{v} ({n} runs)" for v, n in versions.items()) or "not recorded"
    return f"Runs made by code commit {commit_text}; software versions: {version_text}."


def _study_file(s: Stream, out_md: Path) -> str:
    """The study file that made the sweep: ``experiments/studies/<name>.toml``, or a
    ``sweep.toml`` next to the report, when it is the same text as the sweep's copy; else
    the copy (``SWEEP_DIR/sweep.toml``)."""
    source = STUDIES_DIR / f"{s.name}.toml"
    if source.is_file() and source.read_text(encoding="utf-8") == s.source:
        return f"experiments/studies/{source.name}"  # as typed from the repository root
    beside = out_md.parent / "sweep.toml"
    if beside.is_file() and beside.read_text(encoding="utf-8") == s.source:
        return _path(beside)
    return _path(s.directory / "sweep.toml")


def _oracle_knobs(run: Run) -> str:
    shift = run.config.get("shift", {})
    knobs = [f"{k}={v}" for k, v in shift.items() if v not in ("keep", None)]
    return ", ".join(knobs) or "none"


def _what_was_run(streams: Sequence[Stream], out_md: Path, command: str) -> list[str]:
    md = [SECTIONS[0], "",
          "Regenerate this document and its figures with:", "", "```"]
    for s in streams:
        md.append(f"plasticity sweep {_study_file(s, out_md)} --out {_path(s.directory)} --workers 2 --no-report")
    md += [command, "```", "",
           "(the sweep files are `experiments/studies/<name>.toml`; each sweep directory keeps "
           "a copy as `sweep.toml`). " + _provenance(streams), ""]
    body = []
    for s in streams:
        walls = [r.wall_time for r in s.usable if r.wall_time is not None]
        steps = sorted({r.steps for r in s.usable if r.steps})
        periods = sorted({r.period for r in s.usable if r.period})
        tasks = sorted({len(r.shifts) + 1 for r in s.usable if r.reference != "stationary"})
        seeds = sorted({r.seed for r in s.usable if r.seed is not None})
        algos = ", ".join(sorted({str(r.algo) for r in s.usable}))
        envs_ = ", ".join(sorted({str(r.env_id) for r in s.usable}))
        body.append([s.name, envs_, algos, len(s.arms), ", ".join(map(str, seeds)),
                     f"{len(s.usable)}/{len(s.runs)}", ", ".join(map(str, steps)),
                     ", ".join(map(str, periods)), ", ".join(map(str, tasks)),
                     f"{sum(walls) / 3600:.2f} h" if walls else "-",
                     f"{sum(walls) / 7200:.2f} h" if walls else "-"])
    md += _table(["study", "stream", "agent", "arms", "seeds", "runs done", "steps per run",
                  "steps per task", "tasks", "sum of run wall times (DONE)",
                  "wall on 2 workers (sum / 2)"], body)
    for s in streams:
        md += [f"**{s.name}** -- arms (mitigations; shift knobs applied at every switch):", ""]
        rows = []
        for arm in s.arms:
            members = [r for r in s.usable if r.arm == arm]
            walls = [r.wall_time for r in members if r.wall_time is not None]
            rows.append([arm, members[0].reference, members[0].mitigations,
                         _oracle_knobs(members[0]), len(members),
                         f"{np.mean(walls):.0f} s" if walls else "-"])
        md += _table(["arm", "reference", "mitigations", "shift knobs", "runs",
                      "mean wall per run"], rows)
        bad = [r for r in s.runs if r.status != "done"]
        for r in bad:
            md.append(f"- **{r.status}**: `{_path(r.path)}` is left out of every statistic.")
        if bad:
            md.append("")
    md += ["Every number below is computed from these run directories; each one's resolved "
           "config (which reproduces it) is `<run dir>/config.toml`, listed in the appendix.",
           ""]
    return md


def _gap_by_task(s: Stream, arm: str) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for r in s.rows:
        if r["arm"] == arm and r.get("fresh_run"):
            v = r.get("gap_mean_return")
            if v is not None and math.isfinite(float(v)):
                out.setdefault(int(r["segment"]), []).append(float(v))
    return out


def _stationary_windows(run: Run) -> dict[int, float]:
    """Mean return of a stationary run in each window of one period (pseudo-tasks)."""
    period = run.period or 0
    if period <= 0 or not len(run.episodes["step"]):
        return {}
    window = (run.episodes["step"] - 1) // period
    ret = run.episodes["return"]
    return {int(k): float(np.nanmean(ret[window == k])) for k in np.unique(window)}


def _section_loss(s: Stream, fig_dir: Path, out_md: Path, nr: int, seed: int,
                  summary: dict[str, Any]) -> list[str]:
    md = [f"### {s.name}", ""]
    gap_arms = [a for a in s.arms if _gap_by_task(s, a)]
    if not gap_arms:
        md += ["No continual arm has a fresh reference here, so no gap is computed.", ""]
    else:
        values = {a: _gap_by_task(s, a) for a in gap_arms}
        path = figures.segment_bars(values, fig_dir / f"{s.name}_gap_per_task.png",
                                    ylabel="gap: mean return, continual - fresh")
        curves = figures.return_curves(s.usable, fig_dir / f"{s.name}_returns.png")
        md += [f"![gap per task]({_rel(path, out_md)})", "",
               f"![return curves]({_rel(curves, out_md)})", "",
               "Warm - fresh gap of the mean return per task index (same seed, same task), "
               "mean over seeds [95% bootstrap CI]; `rho vs task` is Spearman of the gap "
               "against the task index (all seeds) with its bootstrap CI: a negative rho means "
               "the gap grows (more negative) with the task index.", ""]
        tasks = sorted({k for v in values.values() for k in v})
        body = []
        for arm in gap_arms:
            pairs = [(k, g) for k, gs in values[arm].items() for g in gs]
            trend = spearman_ci([p[0] for p in pairs], [p[1] for p in pairs],
                                n_resamples=nr, seed=seed, names=("task index", "gap"))
            overall = boot_mean(per_run_means([r for r in s.rows if r["arm"] == arm],
                                              "gap_mean_return"), n_resamples=nr, seed=seed)
            summary.setdefault("gap", {})[arm] = overall
            summary.setdefault("gap_trend", {})[arm] = trend
            body.append([arm, _mci(overall), _rho(trend)]
                        + [_mci(boot_mean(values[arm].get(k, []), n_resamples=nr, seed=seed))
                           for k in tasks])
        md += _table(["arm", "mean gap [CI]", "rho vs task [CI]"] + [f"task {k}" for k in tasks],
                     body)
    stationary = [r for r in s.usable if r.reference == "stationary"]
    md += ["**Stationary control** (one task for the whole run; windows of one period): "
           "mean return per window, mean over seeds [95% bootstrap CI]. A late window below "
           "the best one means the agent is unstable without any shift.", ""]
    if not stationary:
        md += ["No stationary run in this study.", ""]
        return md
    per_window: dict[int, list[float]] = {}
    drops, bests = [], []
    for run in stationary:
        w = _stationary_windows(run)
        for k, v in w.items():
            per_window.setdefault(k, []).append(v)
        if w:
            finite = [v for v in w.values() if math.isfinite(v)]
            last = w[max(w)]
            drops.append(last - max(finite) if finite and math.isfinite(last) else math.nan)
            bests.append(max(finite) if finite else math.nan)
    windows = sorted(per_window)
    drop = boot_mean(drops, n_resamples=nr, seed=seed)
    summary["stationary_drop"] = drop
    summary["stationary_best"] = float(np.nanmean(bests)) if bests else math.nan
    md += _table(["arm"] + [f"window {k}" for k in windows] + ["last - best window [CI]"],
                 [["stationary"] + [_mci(boot_mean(per_window[k], n_resamples=nr, seed=seed))
                                    for k in windows] + [_mci(drop)]])
    return md


def _probe_values(s: Stream, arm: str, key: str) -> list[float]:
    return per_run_means([r for r in s.rows if r["arm"] == arm], key)


def _spectrum_keys(s: Stream, net: str) -> list[tuple[str, str]]:
    """(metric, label) of SPECTRUM present for ``net``."""
    keys = set(s.probes)
    out = []
    for pattern, label in SPECTRUM:
        metric = _resolve_metric(pattern, net, {k for k in keys})
        if metric is not None:
            out.append((metric, label))
    return out


def _section_spectrum(s: Stream, fig_dir: Path, out_md: Path, nr: int, seed: int,
                      summary: dict[str, Any]) -> list[str]:
    md = [f"### {s.name}", ""]
    if not s.probes:
        return md + ["No probes were joined to shifts.", ""]
    fresh_arm = next((a for a in s.arms if s.arm_reference(a) == "fresh"), None)
    for net in s.networks:
        metrics = _spectrum_keys(s, net)
        if not metrics:
            continue
        md += [f"**{net} network**", ""]
        wanted = [m for m, _ in metrics
                  if any(m == _resolve_metric(p, net, set(s.probes)) for p in FIGURE_METRICS)]
        for phase in ("init", "pre"):
            # one figure per phase, key arms only, so the legend stays readable
            chosen = [t for t in s.trends if t["probe"].split("/")[:2] == [phase, net]
                      and t["arm"] in FIGURE_ARMS]
            if wanted and chosen:
                path = figures.probe_trajectories(
                    chosen, wanted, fig_dir / f"{s.name}_probes_{net}_{phase}.png", network=net)
                md += [f"![{net} probes, {phase}]({_rel(path, out_md)})", ""]
        if wanted:
            md += [f"Figures: key arms ({', '.join(a for a in FIGURE_ARMS if a in s.arms)}); "
                   "every arm is in the tables.", ""]
        md += ["Level: mean over seeds of each run's mean over shifts [95% bootstrap CI]. "
               "init = new task before any update; pre = old task just before the switch.", ""]
        body = []
        for arm in s.arms:
            for phase in ("init", "pre"):
                cells = [_mci(boot_mean(_probe_values(s, arm, f"{phase}/{net}/{m}"),
                                        n_resamples=nr, seed=seed)) for m, _ in metrics]
                if all(c == "-" for c in cells):
                    continue
                body.append([arm, phase] + cells)
        md += _table(["arm", "phase"] + [label for _, label in metrics], body)
        if any(m == "hessian/eps_rank" for m, _ in metrics):
            spread = [[arm, _mci(boot_mean(_probe_values(s, arm, f"init/{net}/hessian/eps_rank_std"),
                                           n_resamples=nr, seed=seed))] for arm in s.arms]
            if any(row[1] != "-" for row in spread):
                md += ["eps-rank estimator spread (std over SLQ probe vectors, init phase; mean "
                       "[CI]): " + "; ".join(f"{a} {v}" for a, v in spread if v != "-"), ""]
        md += ["Trend over tasks: Spearman rho of the probe against the task index "
               "(all seeds) [95% bootstrap CI].", ""]
        body = []
        for arm in s.arms:
            for phase in ("init", "pre"):
                row = [arm, phase]
                for m, _ in metrics:
                    t = next((t for t in s.trends if t["arm"] == arm
                              and t["probe"] == f"{phase}/{net}/{m}"), None)
                    row.append(_rho(t["trend"]) if t else "-")
                if any(c != "-" for c in row[2:]):
                    body.append(row)
        md += _table(["arm", "phase"] + [label for _, label in metrics], body)
        if fresh_arm is None:
            continue
        md += ["Continual arms minus the fresh reference at new-task init "
               "(difference of means over seeds [95% bootstrap CI]):", ""]
        body = []
        for arm in s.arms:
            if s.arm_reference(arm) != "continual":
                continue
            row = [arm]
            for m, label in metrics:
                key = f"init/{net}/{m}"
                d = boot_diff(_probe_values(s, arm, key), _probe_values(s, fresh_arm, key),
                              n_resamples=nr, seed=seed)
                summary.setdefault("init_diff", {})[(arm, net, label)] = d
                row.append(_mci(d))
            body.append(row)
        md += _table(["arm"] + [label for _, label in metrics], body)
    return md


def _within(s: Stream) -> list[dict[str, Any]]:
    return [c for c in s.cells if c["group"] in s.arms]


def _section_predict(s: Stream, fig_dir: Path, out_md: Path, summary: dict[str, Any]
                     ) -> list[str]:
    md = [f"### {s.name}", ""]
    cells = _within(s)
    if not cells:
        return md + ["No within-arm probe x adaptation cell could be computed.", ""]
    note = s.note
    md += [f"Within each arm: Spearman rho of each probe (pre-shift and new-task init) with "
           f"the adaptation to the next task, and the partial rho with the task index "
           f"partialled out, each with a 95% bootstrap CI. Targets: {', '.join(TARGETS)} "
           f"(censored recoveries take the worst rank). Multiple comparisons: {note['m']} "
           f"tests in this stream (raw + partial, all groups including the pooled one); "
           f"Bonferroni threshold {_f(note['bonferroni_threshold'])}: {note['n_bonferroni']} "
           f"pass; Benjamini-Hochberg adjusted p < {note['alpha']}: {note['n_bh']}; about "
           f"{_f(note['m'] * note['alpha'], 2)} would pass alpha = {note['alpha']} by chance.",
           ""]
    # which probe predicts best: per probe x target, over the arms
    body = []
    ranking = []
    for probe in s.probes:
        for target in TARGETS:
            group = [c for c in cells if c["probe"] == probe and c["target"] == target
                     and math.isfinite(c["partial_rho"])]
            if not group:
                continue
            excl = sum(1 for c in group
                       if _excludes_zero(c["partial_ci_low"], c["partial_ci_high"]) != 0)
            bh = sum(1 for c in group if math.isfinite(c["partial_p_bh"])
                     and c["partial_p_bh"] < ALPHA)
            med = float(np.median([abs(c["partial_rho"]) for c in group]))
            ranking.append((med, probe, target, excl, bh, len(group)))
    ranking.sort(key=lambda t: (-t[0], t[1], t[2]))
    summary["ranking"] = ranking
    for med, probe, target, excl, bh, n in ranking[:15]:
        body.append([_label(probe), f"`{probe}`", target, n, _f(med, 2),
                     f"{excl}/{n}", f"{bh}/{n}"])
    if not ranking:
        md += ["No within-arm partial correlation is defined (each needs >= 5 shifts with a "
               "varying probe and target); see the reasons in "
               f"`{_path(s.tables / 'study_correlations.csv')}`.", ""]
        summary["n_within"] = 0
        return md
    md += ["**Which probe predicts best** (top 15 by the median over arms of |partial rho|; "
           "every cell in "
           f"`{_path(s.tables / 'study_correlations.csv')}`):", ""]
    md += _table(["probe", "column", "target", "arms", "median abs partial rho",
                  "arms with partial CI excluding 0", "arms with BH p < 0.05"], body)
    # value vs policy
    nets = s.networks
    if len(nets) > 1:
        rows = []
        for net in nets:
            vals = [abs(c["partial_rho"]) for c in cells
                    if c["probe"].split("/")[1] == net and math.isfinite(c["partial_rho"])]
            excl = sum(1 for c in cells if c["probe"].split("/")[1] == net
                       and _excludes_zero(c["partial_ci_low"], c["partial_ci_high"]) != 0)
            rows.append([net, len(vals), _f(float(np.median(vals)), 2) if vals else "-", excl])
            if vals:
                summary.setdefault("by_net", {})[net] = (float(np.median(vals)), excl, len(vals))
        md += ["**Value vs policy network** (within-arm cells):", ""]
        md += _table(["network", "cells", "median abs partial rho",
                      "cells with partial CI excluding 0"], rows)
    # the strongest within-arm cells
    ordered = sorted((c for c in cells if math.isfinite(c["partial_p"])),
                     key=lambda c: (c["partial_p"], c["group"], c["probe"], c["target"]))
    body = []
    for c in ordered[:20]:
        raw = Correlation(c["rho"], c["p"], c["ci_low"], c["ci_high"], c["n"], c["reason"])
        part = Correlation(c["partial_rho"], c["partial_p"], c["partial_ci_low"],
                           c["partial_ci_high"], c["partial_n"], c["partial_reason"])
        body.append([c["group"], _label(c["probe"]), c["target"], c["n"], _rho(raw),
                     _rho(part), _f(c["partial_p_bh"], 2)])
    md += ["**Strongest within-arm cells** (sorted by the partial p-value):", ""]
    md += _table(["arm", "probe", "target", "n", "rho [CI]", "partial rho [CI]",
                  "BH p (partial)"], body)
    if ordered:
        best = ordered[0]
        members = [r for r in s.rows if r["arm"] == best["group"]]
        raw = Correlation(best["rho"], best["p"], best["ci_low"], best["ci_high"], best["n"])
        part = Correlation(best["partial_rho"], best["partial_p"], best["partial_ci_low"],
                           best["partial_ci_high"], best["partial_n"])
        path = figures.probe_scatter(members, best["probe"], best["target"], raw, part,
                                     fig_dir / f"{s.name}_best_predictor.png")
        md += [f"![best within-arm predictor]({_rel(path, out_md)})", ""]
    summary["n_partial_excl"] = sum(
        1 for c in cells if _excludes_zero(c["partial_ci_low"], c["partial_ci_high"]) != 0)
    summary["n_partial_bh"] = sum(1 for c in cells if math.isfinite(c["partial_p_bh"])
                                  and c["partial_p_bh"] < ALPHA)
    summary["n_within"] = sum(1 for c in cells if math.isfinite(c["partial_rho"]))
    return md


def _section_mitigations(s: Stream, nr: int, seed: int, summary: dict[str, Any]) -> list[str]:
    md = [f"### {s.name}", ""]
    if not s.rows:
        return md + ["No shifts in the analysed runs.", ""]
    probe_cols = []
    for net in s.networks:
        for m, label in _spectrum_keys(s, net):
            if label in ("eps-rank", "feature erank", "dormant"):
                probe_cols.append((f"init/{net}/{m}", f"{net} {label} (init)"))
    l2er = "l2_er" if "l2_er" in s.arms else None
    l2er_gaps = per_run_means([r for r in s.rows if r["arm"] == l2er], "gap_mean_return") \
        if l2er else []
    md += [f"Per arm, mean over seeds [95% bootstrap CI]: gap = mean return continual - fresh "
           f"(averaged over the run's shifts); tasks solved = fraction of shifts whose trailing "
           f"mean return reached the threshold ({s.spec.describe()}); probes at new-task init "
           f"averaged over shifts."
           + (" Last column: gap(l2_er) - gap(arm) [CI]; positive = L2-ER keeps more "
              "plasticity than that arm." if l2er else ""), ""]
    body = []
    for arm in s.arms:
        members = [r for r in s.rows if r["arm"] == arm]
        gaps = per_run_means(members, "gap_mean_return")
        solved = boot_mean(solved_fractions(members), n_resamples=nr, seed=seed)
        summary.setdefault("solved", {})[arm] = solved
        row = [arm, s.arm_reference(arm), sum(1 for r in s.usable if r.arm == arm),
               _mci(boot_mean(gaps, n_resamples=nr, seed=seed)), _mci(solved),
               _mci(boot_mean(per_run_means(members, "auc"), n_resamples=nr, seed=seed))]
        row += [_mci(boot_mean(per_run_means(members, key), n_resamples=nr, seed=seed))
                for key, _ in probe_cols]
        if l2er:
            d = boot_diff(l2er_gaps, gaps, n_resamples=nr, seed=seed) if arm != l2er and gaps \
                else (math.nan, math.nan, math.nan)
            summary.setdefault("l2er_vs", {})[arm] = d
            row.append(_mci(d))
        body.append(row)
    md += _table(["arm", "reference", "runs", "mean gap [CI]", "tasks solved [CI]",
                  "post-shift AUC [CI]"] + [label for _, label in probe_cols]
                 + (["gap(l2_er) - gap(arm) [CI]"] if l2er else []), body)
    return md + _cross_arm(s, nr, seed, summary)


#: Fewest arms for an across-arm rank correlation (below it the CI is meaningless).
MIN_CROSS_ARMS = 5


def _cross_arm(s: Stream, nr: int, seed: int, summary: dict[str, Any]) -> list[str]:
    """Does an arm's spectrum at new-task init rank the arms' adaptation? Spearman rho over
    arms (every arm with shifts, fresh included) of the arm's mean init probe with its mean
    post-shift AUC, bootstrap CI over arms. Within-arm correlations (section 3) ask whether
    a probe tracks adaptation from shift to shift; this asks whether the mitigations that
    keep the spectrum are the ones that keep plasticity."""
    arms = [a for a in s.arms if any(r["arm"] == a for r in s.rows)]
    if len(arms) < MIN_CROSS_ARMS:
        return []
    auc = [float(np.mean(per_run_means([r for r in s.rows if r["arm"] == a], "auc") or
                         [math.nan])) for a in arms]
    body = []
    for net in s.networks:
        for metric, label in _spectrum_keys(s, net):
            key = f"init/{net}/{metric}"
            x = [float(np.mean(_probe_values(s, a, key) or [math.nan])) for a in arms]
            c = spearman_ci(x, auc, n_resamples=nr, seed=seed, min_n=MIN_CROSS_ARMS,
                            names=(label, "AUC"))
            summary.setdefault("cross_arm", {})[(net, label)] = c
            body.append([f"{net} {label} (init)", c.n, _rho(c)])
    return ["", "**Across arms**: Spearman rho, over the arms (fresh included), of the arm's "
            "mean probe at new-task init with its mean post-shift AUC [95% bootstrap CI over "
            "arms]. A collapse that drives loss of plasticity predicts rho > 0 for eps-rank "
            "and feature erank (more rank, faster adaptation) and rho < 0 for dormant.", ""] \
        + _table(["probe", "arms", "rho with AUC [CI]"], body) + [""]


def _sign_text(ci: tuple[float, ...], what: str, neg: str, pos: str) -> str:
    mean, low, high = ci[0], ci[1], ci[2]
    if not math.isfinite(mean):
        return f"{what}: not computed."
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{what} = {_mci(ci)}: no CI (fewer than 2 seeds), no conclusion."
    sign = _excludes_zero(low, high)
    verdict = {1: pos, -1: neg, 0: "the 95% CI covers 0: no difference detected"}[sign]
    return f"{what} = {_mci(ci)}: {verdict}."


STATIONARY_TOLERANCE = 0.05
"""A stationary run's last window counts as degraded only when it is worse than its best
window by more than this fraction of the best window's return: a CI that excludes 0 by
1e-5 on a solved task is noise of the return, not instability."""


def _stationary_text(drop: tuple[float, ...], best: float) -> str:
    """Verdict on the stationary control's last - best window return, by practical size."""
    what = "last - best window return"
    mean, low, high = drop[0], drop[1], drop[2]
    if not (math.isfinite(mean) and math.isfinite(low) and math.isfinite(high)
            and math.isfinite(best)):
        return _sign_text(drop, what, "the agent degrades without any shift",
                          "the agent still improves late on one task")
    tol = STATIONARY_TOLERANCE * abs(best)
    scale = (f"{_mci(drop)} (best window {_f(best, 3)}; tolerance "
             f"{STATIONARY_TOLERANCE:.0%} of it = {_f(tol, 3)})")
    if high < -tol:
        verdict = ("the agent degrades without any shift (instability), so part of any gap "
                   "may not be about shifts")
    elif low >= -tol:
        verdict = ("the last window is within the tolerance of the best one: the agent is "
                   "stable on one task, so the gap is about the shifts")
    else:
        verdict = "the CI reaches beyond the tolerance: stability is not established"
    return f"{what} = {scale}: {verdict}."


def _cross_arm_text(cross: dict[tuple[str, str], Correlation]) -> list[str]:
    """One line on whether the rank probes at init order the arms' adaptation as the claim
    predicts (section 4's across-arm table)."""
    lines = []
    for (net, label), c in cross.items():
        if label not in ("eps-rank", "feature erank") or not c.defined:
            continue
        sign = _excludes_zero(c.ci_low, c.ci_high)
        verdict = {1: "arms that keep more rank adapt faster, as the claim predicts",
                   -1: "arms with LESS rank adapt faster, against the claim",
                   0: "the CI covers 0: rank does not order the arms' adaptation"}[sign]
        lines.append(f"{net} {label} {_rho(c)} ({verdict})")
    if not lines:
        return []
    return ["- Across arms (init probe vs post-shift AUC, section 4): " + "; ".join(lines) + "."]


def _section_claim(streams: Sequence[Stream], summaries: dict[str, dict[str, Any]]) -> list[str]:
    md = []
    for s in streams:
        sm = summaries[s.name]
        md += [f"### {s.name}", ""]
        gap = sm.get("gap", {}).get("continual")
        lop = 0
        if gap is not None:
            lop = _excludes_zero(gap[1], gap[2])
            md.append("- Loss of plasticity: " + _sign_text(
                gap, "continual - fresh gap", "the continual agent adapts worse than a fresh "
                "one (CI excludes 0, negative)", "the continual agent adapts better than a "
                "fresh one (CI excludes 0, positive)"))
            trend = sm.get("gap_trend", {}).get("continual")
            if trend is not None and trend.defined:
                t = _excludes_zero(trend.ci_low, trend.ci_high)
                md.append(f"- Growth with the task index: rho = {_rho(trend)}: "
                          + {-1: "the gap grows with the task index.",
                             1: "the gap shrinks with the task index.",
                             0: "no trend detected (CI covers 0)."}[t])
        else:
            md.append("- Loss of plasticity: no continual arm with a fresh reference.")
        drop = sm.get("stationary_drop")
        if drop is not None:
            md.append("- Stationary control: " + _stationary_text(
                drop, sm.get("stationary_best", math.nan)))
        diffs = {k: v for k, v in sm.get("init_diff", {}).items() if k[0] == "continual"}
        moved = [(net, label, d) for (arm, net, label), d in diffs.items()
                 if _excludes_zero(d[1], d[2]) != 0]
        if diffs:
            if moved:
                md.append("- Spectrum at new-task init, continual vs fresh (CI excludes 0): "
                          + "; ".join(f"{net} {label} {'higher' if d[0] > 0 else 'lower'} "
                                      f"({_mci(d)})" for net, label, d in moved) + ".")
            else:
                md.append("- Spectrum at new-task init: no probe differs from the fresh "
                          "reference (every CI covers 0).")
        collapsed = any(label in ("eps-rank", "feature erank") and d[0] < 0
                        for net, label, d in moved)
        if lop >= 0 and moved:
            md.append("- Probes moved while adaptation did not fail: in this stream a change "
                      "of the spectrum is not sufficient for loss of plasticity (the claim "
                      "does not hold here as a sufficient condition).")
        elif lop == -1 and not collapsed:
            md.append("- Adaptation failed without a lower eps-rank or feature rank at init "
                      "than fresh: collapse is not necessary for loss of plasticity here.")
        elif lop == -1 and collapsed:
            md.append("- Adaptation failed and the eps-rank or feature rank at init is lower "
                      "than fresh: consistent with the claim (co-occurrence, not cause).")
        md += _cross_arm_text(sm.get("cross_arm", {}))
        n, excl, bh = sm.get("n_within", 0), sm.get("n_partial_excl", 0), sm.get("n_partial_bh", 0)
        if n:
            ranking = sm.get("ranking") or []
            best = (f" The best probe by median |partial rho| over arms: {_label(ranking[0][1])} "
                    f"vs {ranking[0][2]} (median {_f(ranking[0][0], 2)}).") if ranking else ""
            hessian = [r for r in ranking if "/hessian/" in r[1]]
            if hessian and hessian[0] is not ranking[0]:
                # one-step gain and entropy measure trainability directly; the claim is
                # about the Hessian spectrum, so name its best probe too
                h = hessian[0]
                best += (f" The best Hessian probe: {_label(h[1])} vs {h[2]} (median "
                         f"{_f(h[0], 2)}; partial CI excludes 0 in {h[3]} of {h[5]} arms).")
            md.append(f"- Prediction within arms (task index partialled out): {excl} of {n} "
                      f"partial-rho CIs exclude 0, {bh} survive Benjamini-Hochberg at "
                      f"{ALPHA}." + best)
        by_net = sm.get("by_net", {})
        if len(by_net) > 1:
            md.append("- Value vs policy network (within-arm cells): " + "; ".join(
                f"{net}: median |partial rho| {_f(v[0], 2)}, {v[1]} of {v[2]} CIs exclude 0"
                for net, v in by_net.items()) + ".")
        for arm, what in (("head_reset", "head reset on switch (oracle)"),
                          ("opt_reset", "optimiser reset on switch (oracle)")):
            g = sm.get("gap", {}).get(arm)
            if g is not None:
                md.append(f"- {what}: " + _sign_text(
                    g, "gap", "still behind fresh, so more than the output layer / optimiser "
                    "state is lost", "ahead of fresh"))
        l2gap = sm.get("gap", {}).get("l2_er")
        if l2gap is not None:
            md.append("- L2-ER: " + _sign_text(
                l2gap, "gap", "L2-ER still adapts worse than fresh (CI excludes 0, negative)",
                "L2-ER adapts better than fresh (CI excludes 0, positive)"))
            vs = sm.get("l2er_vs", {}).get("continual")
            if vs is not None:
                md.append("- L2-ER vs continual backprop: " + _sign_text(
                    vs, "gap(l2_er) - gap(continual)", "L2-ER is worse than plain backprop",
                    "L2-ER preserves more plasticity than plain backprop"))
            for arm, what in (("l2", "ER's contribution on top of L2 with the same Adam"),
                              ("l2_default_adam", "against L2 with Adam's default betas")):
                vs = sm.get("l2er_vs", {}).get(arm)
                if vs is not None:
                    md.append(f"- L2-ER vs {arm} ({what}): " + _sign_text(
                        vs, f"gap(l2_er) - gap({arm})", f"L2-ER is worse than {arm}",
                        f"L2-ER preserves more plasticity than {arm}"))
            better = [a for a, d in sm.get("l2er_vs", {}).items()
                      if a not in ("continual", "l2_er") and _excludes_zero(d[1], d[2]) == -1]
            if better:
                md.append(f"- Arms with a larger gap improvement than L2-ER (CI excludes 0): "
                          f"{', '.join(better)}.")
        md.append("")
    seeds = {s.name: len({r.seed for r in s.usable}) for s in streams}
    md += ["### Limitations", "",
           "- Scale: small MLPs (tens to a few hundred units per layer), small 8x8 grid worlds "
           "and CartPole, 10-12 tasks, CPU only; the paper's setting (Brax Ant, 2M steps per "
           "phase) is orders of magnitude larger.",
           f"- Seeds: {', '.join(f'{k} {v}' for k, v in seeds.items())} per arm; bootstrap "
           "CIs over 5 or fewer seeds are narrow-biased (percentile intervals under-cover at "
           "small n), so an interval that only just excludes 0 is weak evidence.",
           "- Budget: the whole study was cut to fit 2 hours on 2 CPU cores (arms and seeds "
           "cut are listed in each study file's header); SLQ (eps-rank) ran at every second "
           "shift only, with 2 probe vectors.",
           "- DQN arms re-warm epsilon and flush the replay buffer at every switch (oracle "
           "knobs, the same in every arm): the DQN gap is measured under equal exploration, "
           "not in the agent-unaware setting.",
           "- Correlations are across shifts and seeds within an arm; shifts of one run are not "
           "independent, so the CIs are optimistic.", ""]
    return md


def _appendix(streams: Sequence[Stream], out_md: Path) -> list[str]:
    """The cited runs; each run's resolved config is copied next to the report
    (``configs/<study>/<run>.toml``), so a citation resolves without the run directories."""
    md = ["## Appendix: run directories cited", "",
          "Each row: the run directory and the resolved config that reproduces it (`plasticity "
          "run <config>`), copied into this repository next to this document.", ""]
    for s in streams:
        copies = out_md.parent / "configs" / s.name
        shutil.rmtree(copies, ignore_errors=True)  # no stale config of a removed run
        copies.mkdir(parents=True)
        md += [f"**{s.name}** (`{_path(s.directory)}`):", ""]
        body = []
        for r in s.runs:
            copy = copies / f"{r.path.name}.toml"
            copy.write_text(dumps_toml(r.config), encoding="utf-8")  # out: portable (load_runs)
            cited = f"[`{_path(r.path / 'config.toml')}`]({_rel(copy, out_md)})"
            body.append([r.arm, r.seed, r.status, cited,
                         _f(r.wall_time) if r.wall_time is not None else "-"])
        md += _table(["arm", "seed", "status", "config", "wall s"], body)
    return md


# ============================================================================ entry points
def write_study_report(sweep_dirs: Sequence[str | Path], out_md: str | Path,
                       figures_dir: str | Path, *, n_resamples: int = 2000, seed: int = 0,
                       command: str | None = None, allow_mixed_commits: bool = False) -> Path:
    """Write the study's results document (see the module docstring); returns ``out_md``.

    Next to it, ``tables/<study>/`` gets each study's tables (Parquet,
    :func:`~experiments.analysis.write_tables`) and CSVs of its adaptation rows and
    correlation cells; ``configs/<study>/`` the runs' resolved configs.

    Args:
        sweep_dirs: one sweep directory per study (stream), e.g. ``runs/studies/s1_...``, or
            the tables directory a previous report wrote for it (``docs/tables/s1_...``).
        out_md: the markdown file to write (e.g. ``docs/results.md``).
        figures_dir: where the PNG figures go (e.g. ``docs/figures``); linked relatively.
        n_resamples: bootstrap resamples per interval; seed: the bootstrap generator's seed.
        command: the report command shown under "What was run" (default: the CLI lines that
            rebuild it from the sweeps and from the tables).
        allow_mixed_commits: build from runs of several code commits (listed in the report).
    """
    dirs = [Path(d) for d in sweep_dirs]
    if not dirs:
        raise ConfigError("write_study_report: no sweep directory given; pass one per study")
    out_md, fig_dir = Path(out_md), Path(figures_dir)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    fig_dir.mkdir(parents=True, exist_ok=True)
    streams = [load_stream(d, n_resamples=n_resamples, seed=seed,
                           allow_mixed_commits=allow_mixed_commits) for d in dirs]
    for s in streams:
        s.tables = out_md.parent / "tables" / s.name
    if command is None:
        out = f" --out {_path(out_md.parent)}"
        command = ("plasticity report --study " + " ".join(_path(s.directory) for s in streams)
                   + out + "\n# or from the tables next to this document alone:\n"
                   + "plasticity report --study " + " ".join(_path(s.tables) for s in streams)
                   + out)
    summaries: dict[str, dict[str, Any]] = {s.name: {} for s in streams}
    md = ["# Results: spectral collapse and loss of plasticity in RL", "",
          "Generated by `experiments/study_report.py` from the run directories below; do not "
          "edit by hand. The claim under test: Hessian spectral collapse at new-task "
          "initialisation drives loss of plasticity, and L2-ER preserves plasticity -- here "
          "with PPO and DQN, value and policy networks.", ""]
    md += _what_was_run(streams, out_md, command)
    sections = (
        (SECTIONS[1], lambda s: _section_loss(s, fig_dir, out_md, n_resamples, seed,
                                               summaries[s.name])),
        (SECTIONS[2], lambda s: _section_spectrum(s, fig_dir, out_md, n_resamples, seed,
                                                   summaries[s.name])),
        (SECTIONS[3], lambda s: _section_predict(s, fig_dir, out_md, summaries[s.name])),
        (SECTIONS[4], lambda s: _section_mitigations(s, n_resamples, seed, summaries[s.name])),
    )
    for title, build in sections:
        md += [title, ""]
        for s in streams:
            md += build(s)
    md += [SECTIONS[5], ""]
    md += _section_claim(streams, summaries)
    md += _appendix(streams, out_md)
    for s in streams:
        write_tables(s.data, s.tables)
        write_csv(s.rows, s.tables / "study_adaptation.csv")
        write_csv(s.cells, s.tables / "study_correlations.csv")
    out_md.write_text("\n".join(md) + "\n", encoding="utf-8")
    return out_md


def study_report_command(paths: Sequence[str | Path], out: str | Path | None = None, *,
                         allow_mixed_commits: bool = False) -> Path:
    """``plasticity report --study DIR... [--out OUT]``: ``OUT/results.md``, ``OUT/figures/``
    and ``OUT/tables/<study>/`` (default ``OUT`` = ``docs``). Each DIR is a study's sweep
    directory or its tables directory (``docs/tables/<study>``)."""
    out_dir = Path(out) if out is not None else Path("docs")
    for p in paths:
        if not Path(p).is_dir():
            raise ConfigError(f"report --study: {str(p)!r} is not a directory; give one sweep "
                              "directory per study (e.g. runs/studies/s1_ppo_minigrid_hidden_goal) "
                              "or its tables directory (e.g. docs/tables/s1_ppo_minigrid_hidden_goal)")
    return write_study_report(list(paths), out_dir / "results.md", out_dir / "figures",
                              allow_mixed_commits=allow_mixed_commits)
