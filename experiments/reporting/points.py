"""Per-shift points for the probe-vs-adaptation scatter figure: for each init probe shown in
the report, each key arm's (probe at the new task's initialisation, adaptation target of that
shift) pairs, one per run x shift. No statistic: the points as measured, so a reader sees
what the exploratory within-arm effects are fitted to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from experiments.reporting.frame import parse_probe_column

__all__ = ["Points", "probe_points", "MAX_SCATTER_PANELS"]

#: At most this many probes get a scatter panel (the first init probes the report shows).
MAX_SCATTER_PANELS = 6


@dataclass(frozen=True)
class Points:
    """One arm's (probe, target) pairs of one probe column."""

    label: str
    x: tuple[float, ...]
    y: tuple[float, ...]


def probe_points(frame: pd.DataFrame, columns: Sequence[str], arms: Sequence[str], target: str
                 ) -> tuple[tuple[str, tuple[Points, ...]], ...]:
    """``(column, per-arm points)`` for the init probes among ``columns`` (at most
    :data:`MAX_SCATTER_PANELS`); rows where the probe or ``target`` is not finite (a censored
    recovery's ``inf``, a probe not taken at that shift) are left out."""
    if target not in frame:
        return ()
    out = []
    for column in [c for c in columns if parse_probe_column(c)[0] == "init"]:
        per_arm = []
        for arm in arms:
            rows = frame[frame["arm"] == arm]
            x = pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=float)
            y = pd.to_numeric(rows[target], errors="coerce").to_numpy(dtype=float)
            keep = np.isfinite(x) & np.isfinite(y)
            if keep.any():
                per_arm.append(Points(arm, tuple(x[keep].tolist()), tuple(y[keep].tolist())))
        if per_arm:
            out.append((column, tuple(per_arm)))
        if len(out) == MAX_SCATTER_PANELS:
            break
    return tuple(out)
