"""The report's figures, drawn from a :class:`~experiments.reporting.summary.StreamSummary`
(no statistic is computed here). Headless matplotlib (Agg), fixed sizes and fonts so every
figure is legible at the width the report shows it, and byte-for-byte reproducible (no
timestamp in the PNG metadata).

* ``<stream>_gap_per_task.png``: small multiples, one panel per arm with a matched fresh
  reference: the gap of the primary target per task index, mean and 95% band over seeds, a
  zero line; panels share the y axis.
* ``<stream>_returns.png``: episodic return over env steps, one line per key arm, 95% band,
  dotted lines at the shifts.
* ``<stream>_probes.png``: small multiples, one panel per probe: the probe at each shift, one
  line per key arm, 95% band.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: the report runs on servers without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from experiments.reporting.frame import parse_probe_column  # noqa: E402
from experiments.reporting.summary import Curve, StreamSummary  # noqa: E402

__all__ = ["figure_names", "write_figures"]

DPI = 100
PANEL = (3.2, 2.4)  # inches per small-multiple panel
MAX_COLS = 3  # 3 x 3.2 in at 100 dpi = 960 px: fonts stay legible scaled to a page
FONT = {"font.size": 9, "axes.titlesize": 9, "axes.labelsize": 8, "xtick.labelsize": 8,
        "ytick.labelsize": 8, "legend.fontsize": 8}


def figure_names(s: StreamSummary) -> dict[str, str]:
    """The figures a stream gets (kind -> file name), by what its summary holds."""
    names = {}
    if any(g.per_task is not None for g in s.gaps):
        names["gap"] = f"{s.name}_gap_per_task.png"
    if s.returns:
        names["returns"] = f"{s.name}_returns.png"
    if s.probe_curves:
        names["probes"] = f"{s.name}_probes.png"
    return names


def _colors(labels: Sequence[str]) -> dict[str, Any]:
    cmap = plt.get_cmap("tab10")
    return {label: cmap(i % 10) for i, label in enumerate(labels)}


def _band(ax: Any, c: Curve, color: Any, label: str | None = None) -> None:
    x = np.array(c.x)
    mean = np.array([i.estimate for i in c.y])
    low = np.array([i.low if math.isfinite(i.low) else i.estimate for i in c.y])
    high = np.array([i.high if math.isfinite(i.high) else i.estimate for i in c.y])
    ax.plot(x, mean, color=color, marker="." if len(x) < 30 else None, label=label)
    ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0)


def _grid(n: int) -> tuple[Any, np.ndarray]:
    cols = min(n, MAX_COLS)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL[0] * cols, PANEL[1] * rows),
                             squeeze=False, sharey=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)


def _gap_figure(s: StreamSummary, path: Path) -> None:
    gaps = [g for g in s.gaps if g.per_task is not None]
    fig, axes = _grid(len(gaps))
    lows = [i.low for g in gaps for i in g.per_task.y if math.isfinite(i.low)]
    highs = [i.high for g in gaps for i in g.per_task.y if math.isfinite(i.high)]
    span = (max(max(highs), 0.0) - min(min(lows), 0.0)) if lows and highs else 0.0
    pad = 0.05 * span if span > 0 else 0.05  # a gap of exactly 0 everywhere still gets a range
    for ax, g in zip(axes.flat, gaps, strict=False):
        _band(ax, g.per_task, "tab:blue")
        ax.axhline(0.0, color="0.4", linewidth=0.8)
        if lows and highs:
            ax.set_ylim(min(min(lows), 0.0) - pad, max(max(highs), 0.0) + pad)
        ax.set_title(f"{g.arm} vs {g.reference.reference_arm}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("task index")
        ax.set_ylabel(f"gap {s.target}")
    _save(fig, path)


def _returns_figure(s: StreamSummary, path: Path) -> None:
    colors = _colors([c.label for c in s.returns])
    fig, ax = plt.subplots(figsize=(PANEL[0] * 2.5, PANEL[1] * 1.4))
    for c in s.returns:
        _band(ax, c, colors[c.label], label=c.label)
    for step in s.shift_steps:
        ax.axvline(step, color="0.6", linestyle=":", linewidth=0.8)
    ax.set_xlabel("env step")
    ax.set_ylabel("episodic return")
    ax.set_title("Return per arm (mean and 95% band over seeds; dotted: shifts)")
    ax.legend(loc="best", ncols=2)
    _save(fig, path)


def _probes_figure(s: StreamSummary, path: Path) -> None:
    arms = list(dict.fromkeys(c.label for _, curves in s.probe_curves for c in curves))
    colors = _colors(arms)
    fig, axes = _grid(len(s.probe_curves))
    for ax, (column, curves) in zip(axes.flat, s.probe_curves, strict=False):
        phase, network, data, metric = parse_probe_column(column)
        for c in curves:
            _band(ax, c, colors[c.label])
        where = phase if data == "on_policy" else f"{phase}, {data} data"
        ax.set_title(f"{network}: {metric}\n({where})")  # two lines: long names stay inside
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("task index")
    handles = [plt.Line2D([], [], color=colors[a], marker=".") for a in arms]
    fig.legend(handles, arms, loc="upper center", ncols=min(len(arms), 6), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)


def write_figures(s: StreamSummary, directory: Path) -> dict[str, Path]:
    """Draw the stream's figures (:func:`figure_names`) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    drawers = {"gap": _gap_figure, "returns": _returns_figure, "probes": _probes_figure}
    out = {}
    with plt.rc_context(FONT):
        for kind, name in figure_names(s).items():
            drawers[kind](s, directory / name)
            out[kind] = directory / name
    return out
