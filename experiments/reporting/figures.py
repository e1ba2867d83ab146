"""The report's figures, drawn from a :class:`~experiments.reporting.summary.StreamSummary`
(no statistic is computed here). Headless matplotlib (Agg), fixed sizes and fonts (no text
under 9 pt at the width the report shows a figure), one question per figure, and
byte-for-byte reproducible (no timestamp in the PNG metadata).

* ``<stream>_gap_per_task.png`` -- does the arm trail its fresh reference, task by task?
  Small multiples, one panel per arm with a matched fresh reference: the gap of the primary
  target per task index, mean and 95% band over seeds, a zero line; panels share the y axis.
* ``<stream>_returns.png`` -- how does return evolve across the shifts? One line per key arm,
  each with its own colour, line style and 95% band (the legend shows line and band together,
  so overlapping bands stay apart), dotted lines at the shifts.
* ``<stream>_probes_<network>.png`` -- what happens to this network's probes at each shift?
  One figure per probed network, one panel per probe: markers at the shifts actually probed
  (a line joins only consecutive probed shifts, never a gap), the 95% interval over seeds as
  an error bar; arms are offset sideways and differ in colour and marker, so an arm hidden
  under another still shows. In a network with ``features/<layer>/saturated_fraction``
  panels (tanh units) a ReLU dormant fraction that is zero everywhere -- zero by
  construction for tanh -- is dropped: the saturation fraction takes its place.
* ``<stream>_probe_vs_adaptation.png`` -- does the probe at a new task's initialisation go
  with the adaptation that follows? One panel per init probe, one point per run and shift.
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
from matplotlib.legend_handler import HandlerTuple  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from experiments.reporting.frame import parse_probe_column  # noqa: E402
from experiments.reporting.summary import Curve, StreamSummary  # noqa: E402

__all__ = ["figure_names", "write_figures", "probe_panels", "segments", "FONT"]

DPI = 100
PANEL = (3.2, 2.6)  # inches per small-multiple panel
MAX_COLS = 3  # 3 x 3.2 in at 100 dpi = 960 px: fonts stay legible scaled to a page
#: Every text of a figure at 9 pt or more.
FONT = {"font.size": 10, "axes.titlesize": 10, "axes.labelsize": 9, "xtick.labelsize": 9,
        "ytick.labelsize": 9, "legend.fontsize": 9}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
LINESTYLES = ("-", "--", "-.", ":")
DODGE = 0.08  # task-index units between neighbouring arms' markers


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)


def probe_panels(s: StreamSummary) -> dict[str, list[tuple[str, tuple[Curve, ...]]]]:
    """Per probed network (in the order first met) its probe panels, after the tanh rule of
    the module docstring."""
    by_network: dict[str, list[tuple[str, tuple[Curve, ...]]]] = {}
    saturating = {parse_probe_column(column)[1] for column, _ in s.probe_curves
                  if column.endswith("/saturated_fraction")}
    for column, curves in s.probe_curves:
        network = parse_probe_column(column)[1]
        zero = all(i.estimate == 0.0 for c in curves for i in c.y)
        if network in saturating and column.endswith("/dormant_fraction") and zero:
            continue  # tanh: ReLU dormancy is 0 by construction; saturation is drawn instead
        by_network.setdefault(network, []).append((column, curves))
    return by_network


def figure_names(s: StreamSummary) -> dict[str, str]:
    """The figures a stream gets (kind -> file name), by what its summary holds."""
    names = {}
    if any(g.per_task is not None for g in s.gaps):
        names["gap"] = f"{s.name}_gap_per_task.png"
    if s.returns:
        names["returns"] = f"{s.name}_returns.png"
    for network in probe_panels(s):
        names[f"probes_{network}"] = f"{s.name}_probes_{_slug(network)}.png"
    if s.scatter:
        names["scatter"] = f"{s.name}_probe_vs_adaptation.png"
    return names


def _styles(labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Colour, marker and line style per arm: arms stay apart even in grey or overlapping."""
    cmap = plt.get_cmap("tab10")
    return {label: {"color": cmap(i % 10), "marker": MARKERS[i % len(MARKERS)],
                    "linestyle": LINESTYLES[i % len(LINESTYLES)]}
            for i, label in enumerate(labels)}


def _bounds(c: Curve) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean = np.array([i.estimate for i in c.y], dtype=float)
    low = np.array([i.low if math.isfinite(i.low) else i.estimate for i in c.y], dtype=float)
    high = np.array([i.high if math.isfinite(i.high) else i.estimate for i in c.y], dtype=float)
    return mean, low, high


def segments(x: Sequence[float]) -> list[slice]:
    """Index ranges of runs of consecutive integers in sorted ``x``: ``[1, 2, 3, 5, 7, 8]``
    -> ``[0:3], [3:4], [4:6]``; a line is drawn only within a run."""
    out, start = [], 0
    for k in range(1, len(x) + 1):
        if k == len(x) or x[k] - x[k - 1] != 1:
            out.append(slice(start, k))
            start = k
    return out


def _band(ax: Any, c: Curve, color: Any, linestyle: str = "-") -> None:
    x = np.array(c.x)
    mean, low, high = _bounds(c)
    ax.plot(x, mean, color=color, linestyle=linestyle, marker="." if len(x) < 30 else None)
    ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0)


def _markers(ax: Any, c: Curve, style: dict[str, Any], offset: float) -> None:
    """Markers with error bars at the probed x only, lines within runs of consecutive x."""
    x = np.array(c.x, dtype=float)
    mean, low, high = _bounds(c)
    for part in segments(list(x)):
        ax.plot(x[part] + offset, mean[part], color=style["color"], marker=style["marker"],
                markersize=4.5, linestyle=style["linestyle"], linewidth=1.2)
    ax.errorbar(x + offset, mean, yerr=[mean - low, high - mean], fmt="none",
                ecolor=style["color"], elinewidth=0.9, capsize=2, alpha=0.8)


def _grid(n: int, cols: int = MAX_COLS) -> tuple[Any, np.ndarray]:
    cols = min(n, cols)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL[0] * cols, PANEL[1] * rows),
                             squeeze=False, sharey=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


def _save(fig: Any, path: Path, legend_rows: int = 0) -> None:
    top = 1 - (0.1 + 0.27 * legend_rows) / fig.get_figheight() if legend_rows else 1
    fig.tight_layout(rect=(0, 0, 1, top))
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)


def _title_and_legend(fig: Any, title: str, styles: dict[str, dict[str, Any]],
                      arms: Sequence[str], lines: bool = True) -> int:
    """A figure title and, under it, the arms' legend; returns the rows they take."""
    height = fig.get_figheight()
    fig.suptitle(title, y=1 - 0.05 / height, va="top", fontsize=10)
    handles = [plt.Line2D([], [], color=styles[a]["color"], marker=styles[a]["marker"],
                          linestyle=styles[a]["linestyle"] if lines else "none")
               for a in arms]
    cols = min(len(arms), 4)
    fig.legend(handles, arms, loc="upper center", ncols=cols, frameon=False,
               bbox_to_anchor=(0.5, 1 - 0.3 / height))
    return 1 + math.ceil(len(arms) / cols)


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
    styles = _styles([c.label for c in s.returns])
    fig, ax = plt.subplots(figsize=(PANEL[0] * 2.5, PANEL[1] * 1.5))
    for c in s.returns:
        _band(ax, c, styles[c.label]["color"], styles[c.label]["linestyle"])
    for step in s.shift_steps:
        ax.axvline(step, color="0.6", linestyle=":", linewidth=0.8)
    ax.set_xlabel("env step")
    ax.set_ylabel("episodic return")
    ax.set_title("Return per arm: mean over seeds, shaded 95% band in the arm's colour; "
                 "dotted: shifts")
    handles = [(plt.Line2D([], [], color=styles[c.label]["color"],
                           linestyle=styles[c.label]["linestyle"]),
                Patch(color=styles[c.label]["color"], alpha=0.2)) for c in s.returns]
    ax.legend(handles, [c.label for c in s.returns], handler_map={tuple: HandlerTuple(ndivide=1)},
              loc="best", ncols=2)
    _save(fig, path)


def _probes_figure(s: StreamSummary, network: str, path: Path) -> None:
    panels = probe_panels(s)[network]
    arms = list(dict.fromkeys(c.label for _, curves in s.probe_curves for c in curves))
    styles = _styles(arms)
    fig, axes = _grid(len(panels))
    for ax, (column, curves) in zip(axes.flat, panels, strict=False):
        phase, _, data, metric = parse_probe_column(column)
        for c in curves:
            k = arms.index(c.label)
            _markers(ax, c, styles[c.label], DODGE * (k - (len(arms) - 1) / 2))
        where = phase if data == "on_policy" else f"{phase}, {data} data"
        ax.set_title(f"{metric}\n({where})")  # two lines: long names stay inside
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("task index")
    rows = _title_and_legend(fig, f"{network} network: probes at each shift (mean, 95% "
                             "interval over seeds)", styles, arms)
    _save(fig, path, legend_rows=rows)


def _scatter_figure(s: StreamSummary, path: Path) -> None:
    arms = list(dict.fromkeys(p.label for _, points in s.scatter for p in points))
    styles = _styles(arms)
    fig, axes = _grid(len(s.scatter))
    for ax, (column, points) in zip(axes.flat, s.scatter, strict=False):
        phase, network, data, metric = parse_probe_column(column)
        for p in points:
            st = styles[p.label]
            ax.scatter(p.x, p.y, s=14, color=st["color"], marker=st["marker"], alpha=0.7,
                       linewidths=0)
        ax.set_title(f"{network}: {metric}\n({phase}{'' if data == 'on_policy' else ', ' + data})")
        ax.set_xlabel("probe at the new task's init")
        ax.set_ylabel(s.target)
    rows = _title_and_legend(fig, f"Probe at initialisation vs {s.target} of that shift (one "
                             "point per run and shift)", styles, arms, lines=False)
    _save(fig, path, legend_rows=rows)


def write_figures(s: StreamSummary, directory: Path) -> dict[str, Path]:
    """Draw the stream's figures (:func:`figure_names`) into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    with plt.rc_context(FONT):
        for kind, name in figure_names(s).items():
            path = directory / name
            if kind.startswith("probes_"):
                _probes_figure(s, kind.removeprefix("probes_"), path)
            else:
                {"gap": _gap_figure, "returns": _returns_figure,
                 "scatter": _scatter_figure}[kind](s, path)
            out[kind] = path
    return out
