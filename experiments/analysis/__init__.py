"""Analysis of run directories: adaptation after each shift, probe correlations, figures.

Public API::

    load_run(path) / load_runs(paths) -> Run     parse run or sweep directories
    AdaptationSpec(window, fraction, threshold, floor, max_return)
    shift_metrics(run, spec) -> list[dict]        adaptation metrics of one run's shifts
    adaptation_table(runs, spec) -> list[dict]    one row per run x shift, gaps and probes joined
    correlation_table(rows, probes, targets)      raw and partial Spearman with bootstrap CIs
    probe_trends(rows, probes)                    probes over successive shifts, per arm
    spearman_ci / partial_spearman_ci / mean_ci / multiple_comparisons

Definitions are in the docstrings of :mod:`.adaptation` and :mod:`.stats`; the report
(:func:`experiments.report.write_report`) repeats them in its methods section.
"""

from __future__ import annotations

from experiments.analysis.adaptation import (
    ADAPTATION_METRICS,
    GAP_METRICS,
    AdaptationSpec,
    adaptation_table,
    match_fresh,
    probe_columns,
    rank_value,
    segment_of_episodes,
    segment_returns,
    shift_metrics,
    write_csv,
)
from experiments.analysis.correlations import (
    DEFAULT_TARGETS,
    POOLED,
    correlation_table,
    probe_keys,
    probe_trends,
)
from experiments.analysis.load import Run, find_run_dirs, load_run, load_runs, read_jsonl
from experiments.analysis.stats import (
    Correlation,
    mean_ci,
    multiple_comparisons,
    partial_spearman_ci,
    spearman_ci,
)

__all__ = [
    "ADAPTATION_METRICS",
    "GAP_METRICS",
    "DEFAULT_TARGETS",
    "POOLED",
    "AdaptationSpec",
    "Correlation",
    "Run",
    "adaptation_table",
    "correlation_table",
    "find_run_dirs",
    "load_run",
    "load_runs",
    "match_fresh",
    "mean_ci",
    "multiple_comparisons",
    "partial_spearman_ci",
    "probe_columns",
    "probe_keys",
    "probe_trends",
    "rank_value",
    "read_jsonl",
    "segment_of_episodes",
    "segment_returns",
    "shift_metrics",
    "spearman_ci",
    "write_csv",
]
