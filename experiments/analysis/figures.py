"""Headless matplotlib figures for the report (Agg backend, small PNGs: 7x4 in at 100 dpi).

Each function draws one figure from already computed numbers, writes it to ``path`` and
returns the path; none of them computes a statistic beyond binning and the per-bin mean and
t interval of :func:`experiments.analysis.stats.mean_ci`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: the report runs on servers without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from experiments.analysis.run import Run  # noqa: E402
from experiments.analysis.stats import Correlation, mean_ci  # noqa: E402

__all__ = ["return_curves", "segment_bars", "probe_trajectories", "probe_scatter"]

FIGSIZE = (7.0, 4.0)
DPI = 100


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _colors(labels: Sequence[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10")
    return {label: cmap(i % 10) for i, label in enumerate(labels)}


def return_curves(runs: Sequence[Run], path: str | Path, *, bins: int = 60) -> Path:
    """Episodic return per arm: the mean over seeds of each run's per-bin mean return on a
    common step grid, with a 95% t band over seeds and dotted lines at the shift steps."""
    arms = list(dict.fromkeys(r.arm for r in runs))
    colors = _colors(arms)
    end = max((r.end_step for r in runs), default=1) or 1
    edges = np.linspace(0, end, bins + 1)
    centres = 0.5 * (edges[:-1] + edges[1:])
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for arm in arms:
        per_run = []
        for run in (r for r in runs if r.arm == arm):
            idx = np.clip(np.searchsorted(edges, run.episodes["step"], side="left") - 1, 0,
                          bins - 1)
            ret = run.episodes["return"]
            per_run.append([float(ret[idx == b].mean()) if np.any(idx == b) else math.nan
                            for b in range(bins)])
        table = np.array(per_run).reshape(len(per_run), bins)
        summary = np.array([mean_ci(table[:, b])[:3] for b in range(bins)])
        n_seeds = len(per_run)
        ax.plot(centres, summary[:, 0], color=colors[arm], label=f"{arm} (n={n_seeds})")
        ax.fill_between(centres, summary[:, 1], summary[:, 2], color=colors[arm], alpha=0.2)
    for step in sorted({int(s["step"]) for r in runs for s in r.shifts}):
        ax.axvline(step, color="0.6", linestyle=":", linewidth=0.8)
    ax.set_xlabel("env step")
    ax.set_ylabel("episodic return")
    ax.set_title("Return per arm (mean and 95% CI over seeds); dotted: shifts")
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def segment_bars(values: Mapping[str, Mapping[int, Sequence[float]]], path: str | Path, *,
                 ylabel: str = "mean return of the segment") -> Path:
    """Grouped bars: for each segment (task) one bar per arm, mean over seeds with a 95% t
    interval. ``values[arm][segment]`` = the per-seed values."""
    arms = list(values)
    colors = _colors(arms)
    segments = sorted({k for per in values.values() for k in per})
    width = 0.8 / max(len(arms), 1)
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for i, arm in enumerate(arms):
        stats_ = [mean_ci(values[arm].get(k, [])) for k in segments]
        means = np.array([s[0] for s in stats_])
        low = np.array([s[1] for s in stats_])
        high = np.array([s[2] for s in stats_])
        err = np.vstack([np.nan_to_num(means - low), np.nan_to_num(high - means)])
        x = np.arange(len(segments)) + (i - (len(arms) - 1) / 2) * width
        ax.bar(x, means, width=width, color=colors[arm], label=arm, yerr=err, capsize=2)
    ax.set_xticks(np.arange(len(segments)), [str(k) for k in segments])
    ax.set_xlabel("segment (task index)")
    ax.set_ylabel(ylabel)
    ax.set_title("Per task: continual arms vs fresh reference (mean, 95% CI over seeds)")
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def probe_trajectories(trends: Sequence[Mapping[str, Any]], metrics: Sequence[str],
                       path: str | Path, *, network: str) -> Path:
    """Probe values over successive shifts for one network: one panel per metric, one
    colour per arm, solid = "pre" (old task), dashed = "init" (new task), 95% t band."""
    arms = list(dict.fromkeys(t["arm"] for t in trends))
    colors = _colors(arms)
    ncols = min(len(metrics), 2) or 1
    nrows = max(1, math.ceil(len(metrics) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=FIGSIZE, squeeze=False)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        for trend in trends:
            phase, net, name = trend["probe"].split("/", 2)
            if net != network or name != metric:
                continue
            style = "-" if phase == "pre" else "--"
            x = np.array(trend["segments"], dtype=float)
            ax.plot(x, trend["mean"], style, color=colors[trend["arm"]], marker=".",
                    label=f"{trend['arm']} {phase}")
            ax.fill_between(x, trend["low"], trend["high"], color=colors[trend["arm"]],
                            alpha=0.15)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{network}: {metric}", fontsize=8)
        ax.set_xlabel("segment (shift into)", fontsize=7)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(metrics):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=6, loc="best")
    return _save(fig, path)


def probe_scatter(rows: Sequence[Mapping[str, Any]], probe: str, target: str,
                  corr: Correlation, partial: Correlation, path: str | Path) -> Path:
    """Probe at the shift vs an adaptation metric, one colour per arm; censored recoveries are
    drawn as open triangles at their lower bound. Title: rho [CI] and partial rho [CI]."""
    arms = list(dict.fromkeys(str(r["arm"]) for r in rows))
    colors = _colors(arms)
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for arm in arms:
        xs, ys, cx, cy = [], [], [], []
        for r in rows:
            if str(r["arm"]) != arm:
                continue
            x = r.get(probe)
            if x is None or not math.isfinite(float(x)):
                continue
            censored = (target == "steps_to_threshold" and r.get("censored")) or (
                target == "gap_steps_to_threshold" and r.get("gap_steps_censored"))
            if censored:
                bound = r.get("steps_lower_bound" if target == "steps_to_threshold"
                              else "gap_steps_lower_bound")
                cx.append(float(x))
                cy.append(float(bound))
                continue
            y = r.get(target)
            if y is None or not math.isfinite(float(y)):
                continue
            xs.append(float(x))
            ys.append(float(y))
        ax.scatter(xs, ys, color=colors[arm], s=14, label=arm)
        if cx:
            ax.scatter(cx, cy, facecolors="none", edgecolors=colors[arm], marker="^", s=24,
                       label=f"{arm} censored (lower bound)")
    ax.set_xlabel(probe)
    ax.set_ylabel(target)
    ax.set_title(f"rho = {_fmt(corr)};  partial (segment) = {_fmt(partial)}", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def _fmt(c: Correlation) -> str:
    if not c.defined:
        return f"n/a ({c.reason})"
    return f"{c.rho:.2f} [{c.ci_low:.2f}, {c.ci_high:.2f}], n={c.n}"
