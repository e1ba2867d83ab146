"""Probe-vs-adaptation correlation tables and probe trends over successive shifts.

Groups. Each correlation is computed **within each arm** (one ``[experiment] arm`` label:
its shifts x seeds) and **pooled** over every continual-reference run (all arms together;
fresh and stationary reference runs are left out of the pool). A pooled correlation mostly
tells the arms apart, which is why the within-arm cells are the ones to read.

Each cell gets the raw Spearman rho and the partial rho with the segment index partialled
out (:mod:`experiments.analysis.stats`), each with its bootstrap CI, and every test of the
report is one family for the Benjamini-Hochberg adjustment and the Bonferroni threshold.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from experiments.analysis.adaptation import rank_value
from experiments.analysis.stats import (
    mean_ci,
    multiple_comparisons,
    partial_spearman_ci,
    spearman_ci,
)

__all__ = [
    "DEFAULT_TARGETS",
    "POOLED",
    "probe_keys",
    "groups",
    "correlation_table",
    "probe_trends",
]

POOLED = "pooled (continual runs)"
DEFAULT_TARGETS = ("steps_to_threshold", "auc", "drop",
                   "gap_steps_to_threshold", "gap_auc", "gap_final_return")


def probe_keys(rows: Iterable[dict[str, Any]]) -> list[str]:
    """Probe columns (``"pre/..."`` and ``"init/..."``) present in any row, sorted."""
    keys: set[str] = set()
    for row in rows:
        keys.update(k for k in row if k.startswith(("pre/", "init/")))
    return sorted(keys)


def groups(rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """``{POOLED: continual rows, arm: rows of that arm, ...}`` (arms in first-seen order)."""
    out: dict[str, list[dict[str, Any]]] = {
        POOLED: [r for r in rows if r.get("reference") == "continual"]}
    for row in rows:
        out.setdefault(str(row["arm"]), []).append(row)
    return out


def correlation_table(rows: Sequence[dict[str, Any]], probes: Sequence[str] | None = None,
                      targets: Sequence[str] = DEFAULT_TARGETS, *, n_resamples: int = 2000,
                      seed: int = 0, min_n: int = 5, alpha: float = 0.05
                      ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One cell per group x probe x target: raw and partial (segment index) Spearman with CIs.

    Returns ``(cells, note)``: each cell has ``group, probe, target`` and ``rho, p, ci_low,
    ci_high, n, reason`` plus the same with the ``partial_`` prefix, ``p_bh`` and
    ``partial_p_bh``; ``note`` is :func:`~experiments.analysis.stats.multiple_comparisons` of
    all p-values (raw and partial together) without the per-test list.
    """
    probes = list(probes) if probes is not None else probe_keys(rows)
    cells: list[dict[str, Any]] = []
    for group, members in groups(rows).items():
        if not members:
            continue
        segment = np.array([float(r["segment"]) for r in members])
        for target in targets:
            y = np.array([rank_value(r, target) for r in members])
            if np.all(np.isnan(y)):
                continue  # e.g. gap columns in an arm without a fresh reference
            for probe in probes:
                x = np.array([rank_value(r, probe) for r in members])
                if np.all(np.isnan(x)):
                    continue
                raw = spearman_ci(x, y, n_resamples=n_resamples, seed=seed, min_n=min_n)
                part = partial_spearman_ci(x, y, segment, n_resamples=n_resamples, seed=seed,
                                           min_n=min_n)
                cell = {"group": group, "probe": probe, "target": target}
                cell.update(raw.as_dict())
                cell.update(part.as_dict("partial_"))
                cell["n_censored"] = int(np.sum(np.isinf(y) & ~np.isnan(x)))
                cells.append(cell)
    ps = [c["p"] for c in cells] + [c["partial_p"] for c in cells]
    note = multiple_comparisons(ps, alpha=alpha)
    adjusted = note.pop("p_bh")
    for i, cell in enumerate(cells):
        cell["p_bh"] = adjusted[i]
        cell["partial_p_bh"] = adjusted[len(cells) + i]
    return cells, note


def probe_trends(rows: Sequence[dict[str, Any]], probes: Sequence[str] | None = None, *,
                 n_resamples: int = 2000, seed: int = 0, min_n: int = 5
                 ) -> list[dict[str, Any]]:
    """Per arm and probe: mean and 95% t-CI over seeds at each segment index, and Spearman of
    the probe against the segment index (all seeds of the arm pooled) with a bootstrap CI.

    Returns one dict per (arm, probe) with ``segments`` (sorted ints) and ``mean``, ``low``,
    ``high``, ``n`` (lists aligned with ``segments``) and ``trend`` (a ``Correlation``).
    """
    probes = list(probes) if probes is not None else probe_keys(rows)
    out = []
    for arm, members in groups(rows).items():
        if arm == POOLED or not members:
            continue
        segs = sorted({int(r["segment"]) for r in members})
        for probe in probes:
            vals = np.array([rank_value(r, probe) for r in members])
            if np.all(np.isnan(vals)):
                continue
            seg_of = np.array([int(r["segment"]) for r in members])
            stats_per = [mean_ci(vals[seg_of == k]) for k in segs]
            out.append({
                "arm": arm, "probe": probe, "segments": segs,
                "mean": [s[0] for s in stats_per], "low": [s[1] for s in stats_per],
                "high": [s[2] for s in stats_per], "n": [s[3] for s in stats_per],
                "trend": spearman_ci(seg_of.astype(float), vals, n_resamples=n_resamples,
                                     seed=seed, min_n=min_n,
                                     names=("segment index", "probe")),
            })
    return out

