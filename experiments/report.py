"""``plasticity report RUN_OR_SWEEP_DIR...``: write ``report.md``, PNG figures and CSV tables.

Layout of the output directory (``out``; default: the single path given, else ``./report``)::

    report.md          what was run, results, methods, caveats (every number computed here)
    tables/            the runs as Parquet tables (experiments.analysis.write_tables); the
                       report can be rebuilt from them alone: plasticity report OUT/tables
    adaptation.csv     one row per run x shift (``experiments.analysis.adaptation_table``)
    correlations.csv   every probe x metric x group cell (raw and partial rho, CIs, BH p)
    probe_trends.csv   per arm x probe: Spearman of the probe against the segment index
    figures/*.png      return curves, per-task bars, probe trajectories, scatter plots

Input: run or sweep directories, or one tables directory. Runs of more than one code commit
(``provenance.json``) are refused unless ``allow_mixed_commits``. Runs without a ``DONE`` marker are skipped (listed with a warning); runs with a ``DIVERGED``
marker are listed as diverged and left out of the statistics (their later segments do not
exist, so keeping their early shifts would bias the pooled numbers towards early segments).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from experiments.analysis import figures
from experiments.analysis.adaptation import (
    GAP_METRICS,
    AdaptationSpec,
    adaptation_table,
    segment_returns,
    write_csv,
)
from experiments.analysis.correlations import (
    DEFAULT_TARGETS,
    POOLED,
    correlation_table,
    probe_keys,
    probe_trends,
)
from experiments.analysis.load import load_data
from experiments.analysis.run import Run, runs_of
from experiments.analysis.rundata import check_commits, is_tables_dir, write_tables
from experiments.analysis.stats import Correlation, mean_ci
from experiments.analysis.stats import fmt_number as _f

__all__ = ["write_report"]

_PRIORITY = ("erank", "effective_rank", "dormant", "top_eig", "lambda_max", "hessian", "srank",
             "weight_norm", "grad_norm", "trace")
MAX_TABLE_ROWS = 30
MAX_POOLED_ROWS = 15
N_SCATTERS = 4


def write_report(paths: Sequence[str | Path], out: str | Path | None = None, *,
                 spec: AdaptationSpec | None = None, targets: Sequence[str] = DEFAULT_TARGETS,
                 n_resamples: int = 2000, seed: int = 0,
                 allow_mixed_commits: bool = False) -> Path:
    """Analyse run or sweep directories and write the report; returns the ``report.md`` path.

    Args:
        paths: run directories, sweep directories (``runs/*/``) or directories of runs, or
            one tables directory (a previous report's ``tables/``).
        out: output directory; default the single path given (for a tables directory: the
            directory above it, where its report was), or ``./report`` for several.
        spec: adaptation definitions (window, relative/absolute threshold, floor, max_return).
        targets: adaptation metrics (and gaps) correlated with every probe.
        n_resamples: bootstrap resamples per confidence interval.
        seed: seed of the bootstrap generator (the report is reproducible).
        allow_mixed_commits: build from runs of several code commits (listed in the report).
    """
    paths = [Path(p) for p in paths]
    spec = spec or AdaptationSpec()
    data = load_data(paths)
    commits = check_commits(data, allow_mixed_commits=allow_mixed_commits)
    runs = runs_of(data)
    if out is None:  # next to the runs, or where the tables' report was
        out = paths[0] if len(paths) == 1 else Path("report")
        out = out.parent if is_tables_dir(out) else out
    out = Path(out)
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    write_tables(data, out / "tables")

    usable = [r for r in runs if r.status == "done"]
    rows = adaptation_table(usable, spec)
    write_csv(rows, out / "adaptation.csv")
    probes = probe_keys(rows)
    cells, note = correlation_table(rows, probes, targets, n_resamples=n_resamples, seed=seed)
    write_csv(cells, out / "correlations.csv")
    trends = probe_trends(rows, probes, n_resamples=n_resamples, seed=seed)
    write_csv([_trend_row(t) for t in trends], out / "probe_trends.csv")

    md: list[str] = ["# Plasticity report", ""]
    md += _what_was_run(paths, runs, usable, rows, commits)
    md += ["## Results", ""]
    md += _returns_section(usable, rows, fig_dir, out)
    md += _adaptation_section(rows, spec)
    md += _gap_section(rows)
    md += _trend_section(trends, probes, fig_dir, out)
    md += _correlation_section(rows, cells, note, fig_dir, out)
    md += _methods(spec, n_resamples, seed, targets)
    md += _caveats(usable, rows, cells, note)
    report = out / "report.md"
    report.write_text("\n".join(md) + "\n", encoding="utf-8")
    return report


# ---------------------------------------------------------------------------- formatting


def _ci(c: Correlation) -> str:
    """``+0.42 [+0.10, +0.70]``; ``(!)`` marks a CI from a bootstrap with many undefined
    resamples (heavy ties), ``n/a (reason)`` an undefined cell."""
    if not c.defined:
        return f"n/a ({c.reason})"
    flag = " (!)" if c.reason else ""
    return f"{c.rho:+.2f} [{c.ci_low:+.2f}, {c.ci_high:+.2f}]{flag}"


def _mean_ci_text(values: Sequence[float]) -> str:
    mean, low, high, n = mean_ci(values)
    if n == 0:
        return "-"
    if n < 2:
        return f"{_f(mean)} (n=1)"
    return f"{_f(mean)} [{_f(low)}, {_f(high)}]"


def _table(header: Sequence[str], body: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in body:
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in row) + " |")
    return lines + [""]


def _rel(path: Path, out: Path) -> str:
    return path.relative_to(out).as_posix()


# ---------------------------------------------------------------------------- sections


def _what_was_run(paths: Sequence[Path], runs: Sequence[Run], usable: Sequence[Run],
                  rows: Sequence[dict[str, Any]], commits: Sequence[str]) -> list[str]:
    md = ["## What was run", "",
          f"Input: {', '.join(f'`{p}`' for p in paths)} -- {len(runs)} runs, "
          f"{len(usable)} finished and analysed. Code commit(s) of the runs: "
          + ", ".join(f"`{c}`" for c in commits) + ".", ""]
    body = []
    for arm in dict.fromkeys(r.arm for r in runs):
        members = [r for r in runs if r.arm == arm]
        walls = [r.wall_time for r in members if r.wall_time is not None]

        def _uniq(values: Sequence[Any]) -> str:
            return ", ".join(str(v) for v in dict.fromkeys(values))

        body.append([
            arm, _uniq(r.reference for r in members),
            ", ".join(f"`{r.name}`" for r in members),
            _uniq(sorted((r.seed for r in members), key=lambda s: (s is None, s))),
            _uniq(r.env_id for r in members), _uniq(r.algo for r in members),
            _uniq(r.steps for r in members), _uniq(r.period for r in members),
            _uniq(r.mitigations for r in members),
            f"{sum(walls):.1f} s total ({len(walls)} runs)" if walls else "-",
        ])
    md += _table(["arm", "reference", "runs", "seeds", "env", "agent", "steps", "period",
                  "mitigations", "wall time"], body)
    commands: dict[str, list[str]] = {}
    for r in runs:
        if r.command:
            commands.setdefault(r.command, []).append(r.name)
    if commands:
        md += ["Commands recorded in `config.toml`:", ""]
        md += [f"- {', '.join(names)}: `{cmd}`" for cmd, names in commands.items()]
        md += [""]
    unfinished = [r for r in runs if r.status == "partial"]
    diverged = [r for r in runs if r.status == "diverged"]
    for r in unfinished:
        md.append(f"- **Warning**: `{r.name}` has no DONE marker (partial); skipped.")
    for r in diverged:
        d = r.diverged or {}
        md.append(f"- **Diverged**: `{r.name}` stopped at step {d.get('step', '?')} "
                  f"({d.get('what', '?')} = {d.get('value', '?')}); left out of the statistics.")
    from_metrics = [r.name for r in usable if r.episodes_from_metrics]
    if from_metrics:
        md.append(f"- No `episodes.jsonl` in {', '.join(from_metrics)}: episodes rebuilt from "
                  "`metrics.jsonl` interval means (lengths unknown, treated as 1).")
    continual = {r["run"] for r in rows if r["reference"] == "continual"}
    with_ref = {r["run"] for r in rows if r["reference"] == "continual" and r["fresh_run"]}
    md.append(f"- Fresh reference found for {len(with_ref)} of {len(continual)} continual runs "
              "with shifts.")
    return md + [""]


def _returns_section(usable: Sequence[Run], rows: Sequence[dict[str, Any]], fig_dir: Path,
                     out: Path) -> list[str]:
    md = ["### Return curves", ""]
    if not usable:
        return md + ["No finished runs to plot.", ""]
    path = figures.return_curves(usable, fig_dir / "returns.png")
    md += [f"![return curves]({_rel(path, out)})", ""]
    values: dict[str, dict[int, list[float]]] = {}
    for run in usable:
        for k, v in segment_returns(run).items():
            values.setdefault(run.arm, {}).setdefault(k, []).append(v)
    if any(r.shifts for r in usable):
        path = figures.segment_bars(values, fig_dir / "segment_returns.png")
        md += [f"![per-task mean return]({_rel(path, out)})", ""]
    return md


def _per_run_means(rows: Sequence[dict[str, Any]], key: str) -> list[float]:
    """Per run: the mean of ``key`` over its shifts (finite values) -- one number per seed."""
    by_run: dict[str, list[float]] = {}
    for r in rows:
        v = r.get(key)
        if v is not None and not isinstance(v, bool) and math.isfinite(float(v)):
            by_run.setdefault(r["run"], []).append(float(v))
    return [float(np.mean(v)) for v in by_run.values()]


def _steps_text(rows: Sequence[dict[str, Any]], key: str = "steps_to_threshold",
                censored_key: str = "censored") -> str:
    observed = [float(r[key]) for r in rows
                if not r.get(censored_key) and r.get(key) is not None
                and math.isfinite(float(r[key]))]
    censored = sum(1 for r in rows if r.get(censored_key))
    total = len(observed) + censored
    if total == 0:
        return "-"
    median = _f(float(np.median(observed))) if observed else "-"
    return f"{len(observed)}/{total} reached, median {median}; {censored} censored"


def _adaptation_section(rows: Sequence[dict[str, Any]], spec: AdaptationSpec) -> list[str]:
    md = ["### Adaptation after each shift", ""]
    if not rows:
        return md + ["No shifts in the analysed runs.", ""]
    md += [f"Per arm: mean over seeds (95% t CI) of each run's average over its shifts; "
           f"recovery: {spec.describe()}.", ""]
    body = []
    for arm in dict.fromkeys(r["arm"] for r in rows):
        members = [r for r in rows if r["arm"] == arm]
        body.append([arm, len({r["run"] for r in members}), len(members)]
                    + [_mean_ci_text(_per_run_means(members, m))
                       for m in ("pre_level", "drop", "auc", "final_return")]
                    + [_steps_text(members)])
    md += _table(["arm", "runs", "shifts", "pre_level", "drop", "auc", "final_return",
                  "steps_to_threshold"], body)
    return md


def _gap_section(rows: Sequence[dict[str, Any]]) -> list[str]:
    gap_rows = [r for r in rows if r.get("fresh_run")]
    md = ["### Warm - fresh gap per segment", ""]
    if not gap_rows:
        return md + ["No continual run has a matching fresh reference run "
                     "(same env, agent, seed, steps and period), so no gap is computed.", ""]
    md += ["`gap = metric(continual) - metric(fresh)` on the same segment and seed; mean over "
           "seeds with a 95% t CI. A growing negative return gap is the operational sign of "
           "plasticity loss.", ""]
    body = []
    for arm in dict.fromkeys(r["arm"] for r in gap_rows):
        for k in sorted({r["segment"] for r in gap_rows if r["arm"] == arm}):
            cell = [r for r in gap_rows if r["arm"] == arm and r["segment"] == k]
            body.append([arm, k, len(cell)]
                        + [_mean_ci_text([r[f"gap_{m}"] for r in cell])
                           for m in ("mean_return", "final_return", "auc", "drop")]
                        + [_steps_text(cell, "gap_steps_to_threshold", "gap_steps_censored")])
    md += _table(["arm", "segment", "seeds", "gap mean_return", "gap final_return", "gap auc",
                  "gap drop", "gap steps_to_threshold"], body)
    return md


def _select_metrics(probes: Sequence[str]) -> dict[str, list[str]]:
    """Per network, up to four probe metrics for the trajectory figure (priority list)."""
    by_net: dict[str, list[str]] = {}
    for key in probes:
        _, net, name = key.split("/", 2)
        names = by_net.setdefault(net, [])
        if name not in names:
            names.append(name)
    chosen = {}
    for net, names in by_net.items():
        picked = []
        for pattern in _PRIORITY:
            picked += [n for n in names if pattern in n and n not in picked][:1]
        picked += [n for n in sorted(names) if n not in picked]
        chosen[net] = picked[:4]
    return chosen


def _trend_section(trends: Sequence[dict[str, Any]], probes: Sequence[str], fig_dir: Path,
                   out: Path) -> list[str]:
    md = ["### Probes over successive shifts", ""]
    if not trends:
        return md + ["No probes were joined to shifts.", ""]
    selected = _select_metrics(probes)
    for net, metrics in selected.items():
        path = figures.probe_trajectories(trends, metrics, fig_dir / f"probes_{net}.png",
                                          network=net)
        md += [f"![probe trajectories {net}]({_rel(path, out)})", ""]
    md += ["Spearman rho of each probe against the segment index, per arm (all seeds); all "
           "probes in `probe_trends.csv`.", ""]
    body = []
    for t in trends:
        _, net, name = t["probe"].split("/", 2)
        if name in selected.get(net, []):
            body.append([t["arm"], t["probe"], t["trend"].n, _ci(t["trend"]),
                         _f(t["mean"][0]), _f(t["mean"][-1])])
    md += _table(["arm", "probe", "n", "rho vs segment [95% CI]", "first segment mean",
                  "last segment mean"], body)
    return md


def _correlations(c: dict[str, Any]) -> tuple[Correlation, Correlation]:
    raw = Correlation(c["rho"], c["p"], c["ci_low"], c["ci_high"], c["n"], c["reason"])
    part = Correlation(c["partial_rho"], c["partial_p"], c["partial_ci_low"],
                       c["partial_ci_high"], c["partial_n"], c["partial_reason"])
    return raw, part


def _cell_row(c: dict[str, Any]) -> list[Any]:
    raw, part = _correlations(c)
    return [c["group"], c["probe"], c["target"], c["n"], c["n_censored"], _ci(raw),
            _f(c["p_bh"], 2), _ci(part), _f(c["partial_p_bh"], 2)]


def _order(cell: dict[str, Any]) -> tuple[int, float]:
    p = cell["partial_p"]
    return (0 if cell["group"] != POOLED else 1, p if math.isfinite(p) else math.inf)


def _correlation_section(rows: Sequence[dict[str, Any]], cells: Sequence[dict[str, Any]],
                         note: dict[str, Any], fig_dir: Path, out: Path) -> list[str]:
    md = ["### Probes at the shift vs adaptation", ""]
    if not cells:
        return md + ["No probe x metric cell to correlate.", ""]
    m = note["m"]
    md += [f"{len(cells)} cells (group x probe x metric), {m} tests with a p-value (raw and "
           f"partial). Bonferroni threshold {_f(note['bonferroni_threshold'])} "
           f"(alpha {note['alpha']}): {note['n_bonferroni']} pass; Benjamini-Hochberg "
           f"adjusted p < {note['alpha']}: {note['n_bh']}. Sorted by the partial p-value; "
           "every cell in `correlations.csv`.", ""]
    ordered = sorted(cells, key=_order)
    header = ["group", "probe", "metric", "n", "censored", "rho [95% CI]", "BH p",
              "partial rho (segment) [95% CI]", "BH p (partial)"]
    for title, group_cells, limit in (
            ("Within each arm", [c for c in ordered if c["group"] != POOLED], MAX_TABLE_ROWS),
            ("Pooled over continual runs (mostly separates the arms)",
             [c for c in ordered if c["group"] == POOLED], MAX_POOLED_ROWS)):
        if not group_cells:
            continue
        shown_n = ("all" if len(group_cells) <= limit
                   else f"first {limit} of {len(group_cells)}")
        md += [f"**{title}** ({shown_n}):", ""]
        md += _table(header, [_cell_row(c) for c in group_cells[:limit]])
    shown: set[tuple[str, str]] = set()
    for c in ordered:
        if len(shown) >= N_SCATTERS or not math.isfinite(c["partial_rho"]):
            continue
        key = (c["probe"], c["target"])
        if key in shown:
            continue
        shown.add(key)
        members = [r for r in rows
                   if (r["reference"] == "continual" if c["group"] == POOLED
                       else r["arm"] == c["group"])]
        raw, part = _correlations(c)
        name = f"scatter_{len(shown)}.png"
        path = figures.probe_scatter(members, c["probe"], c["target"], raw, part,
                                     fig_dir / name)
        md += [f"{c['group']}: `{c['probe']}` vs `{c['target']}`", "",
               f"![scatter]({_rel(path, out)})", ""]
    return md


def _methods(spec: AdaptationSpec, n_resamples: int, seed: int,
             targets: Sequence[str]) -> list[str]:
    gaps = ", ".join(GAP_METRICS)
    return [
        "## Methods", "",
        "- **Segments**: shift steps from `shifts.jsonl`; segment 0 is task 0, segment k >= 1 "
        "runs from the k-th shift to the next (the last one to the run's final step). An "
        "episode belongs to the segment in which it ended, or to the old segment if it was "
        "still played on the old task (`task_id` = `from_task`).",
        f"- **pre_level**: mean return of the last N = {spec.window} episodes of segment k-1. "
        f"**drop** = pre_level - mean return of the first N episodes of segment k.",
        f"- **steps_to_threshold**: env steps from the shift to the end of the first episode at "
        f"which the trailing mean of N returns reaches the threshold ({spec.describe()}). "
        "Never reached = **censored**: shown as censored with the segment length as lower "
        "bound, never as a number; in rank statistics censored shifts take the worst rank, "
        "tied with each other.",
        "- **auc**: length-weighted mean return of the segment's episodes (area under the "
        "per-step return curve / steps covered), normalised as stated above; **mean_return**: "
        "plain mean over the segment's episodes; **final_return**: last N episodes.",
        "- **Fresh reference**: a `reference = \"fresh\"` run with the same env id, agent "
        "algorithm, seed, total steps and period as a continual run; "
        f"gap = metric(continual, k) - metric(fresh, k) for {gaps}. Step gaps: both observed "
        "-> difference; continual censored and fresh observed -> censored (worst rank); fresh "
        "censored -> undefined.",
        "- **Probes**: the `pre` probe at the shift step (old task) and the `init` probe at the "
        "same step (new task, before any update on it), per network; column "
        "`<phase>/<network>/<metric>`.",
        f"- **Correlations** (metrics: {', '.join(targets)}): Spearman rho "
        "(`scipy.stats.spearmanr`) with a 95% percentile bootstrap CI (`scipy.stats.bootstrap`, "
        f"paired resampling, {n_resamples} resamples, seed {seed}; resamples where rho is "
        "undefined are dropped). Partial rho: Pearson correlation of the residuals of rank(x) "
        "and rank(y) after a linear regression on rank(segment index), p from t with n-3 "
        "degrees of freedom, its own bootstrap CI. Computed within each arm and pooled over "
        "continual runs. Cells with n < 5, a constant input, or an input determined by the "
        "segment index are reported as n/a with the reason.",
        "- **Multiple comparisons**: every raw and partial test of the report is one family: "
        "Bonferroni threshold alpha/m and Benjamini-Hochberg adjusted p-values "
        "(`scipy.stats.false_discovery_control`).",
        "- **Trends**: per arm and segment index, mean and 95% t interval over seeds; Spearman "
        "of the probe against the segment index over all shifts of the arm.",
        "- **Return curves**: per run the mean return of the episodes ending in each of 60 equal "
        "step bins; per arm the mean and 95% t interval over seeds per bin.", "",
    ]


def _caveats(usable: Sequence[Run], rows: Sequence[dict[str, Any]],
             cells: Sequence[dict[str, Any]], note: dict[str, Any]) -> list[str]:
    md = ["## Caveats", ""]
    ns = [c["n"] for c in cells if c["n"]]
    if ns:
        undefined = sum(1 for c in cells if not math.isfinite(c["rho"]))
        md.append(f"- Sample size per correlation cell: min {min(ns)}, median "
                  f"{_f(float(np.median(ns)))}, max {max(ns)}; {undefined} of {len(cells)} raw "
                  "cells undefined (see the reason column).")
    flagged = sum(1 for c in cells for k in ("reason", "partial_reason")
                  if c[k] and math.isfinite(c["rho" if k == "reason" else "partial_rho"]))
    if flagged:
        md.append(f"- {flagged} correlations marked (!): more than 5% of their bootstrap "
                  "resamples had an undefined rho (heavy ties, e.g. a metric that is constant "
                  "but for one shift); their CI comes from the remaining resamples and can "
                  "even exclude the point estimate. Treat them as unreliable.")
    if note.get("m"):
        md.append(f"- {note['m']} tests: about {_f(note['m'] * note['alpha'], 2)} would pass "
                  f"alpha = {note['alpha']} by chance alone; read BH-adjusted p-values.")
    seeds: dict[str, set[Any]] = {}
    for r in usable:
        seeds.setdefault(r.arm, set()).add(r.seed)
    few = [f"{arm} ({len(s)})" for arm, s in seeds.items() if len(s) < 10]
    if few:
        md.append(f"- Fewer than 10 seeds in: {', '.join(few)}; treat the CIs as indicative.")
    for arm in dict.fromkeys(r["arm"] for r in rows):
        members = [r for r in rows if r["arm"] == arm]
        cens = sum(1 for r in members if r["censored"])
        if cens:
            md.append(f"- {arm}: {cens} of {len(members)} recoveries censored (never reached "
                      "the threshold); their step counts are lower bounds.")
    md.append("- Pooled correlations mix arms and mostly separate them; the within-arm, "
              "segment-partialled cells are the evidence that a probe predicts adaptation.")
    md.append("- Low return alone is not plasticity loss: compare with the fresh reference "
              "(gap section) and a stationary control.")
    return md + [""]


def _trend_row(t: dict[str, Any]) -> dict[str, Any]:
    row = {"arm": t["arm"], "probe": t["probe"]}
    row.update(t["trend"].as_dict("trend_"))
    row["segments"] = " ".join(map(str, t["segments"]))
    row["means"] = " ".join(_f(v, 6) for v in t["mean"])
    return row
