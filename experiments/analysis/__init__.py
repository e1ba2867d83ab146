"""Analysis of runs: tidy tables, adaptation after each shift, probe correlations, figures.

Public API::

    load_runs(paths, spec=None) -> RunData        run or sweep directories as pandas tables
    write_tables(data, dir) / read_tables(dir)     the same tables as Parquet (exact round trip)
    commits(data) / check_commits(data, allow_mixed_commits=False)   provenance
    runs_of(data) -> list[Run] / load_run(path)   per-run views for code that walks runs
    AdaptationSpec(window, fraction, threshold, floor, max_return); spec_for(env_id)
    shift_metrics(run, spec) -> list[dict]        adaptation metrics of one run's shifts
    adaptation_table(runs, spec) -> list[dict]    one row per run x shift, gaps and probes joined
    correlation_table(rows, probes, targets)      raw and partial Spearman with bootstrap CIs
    probe_trends(rows, probes)                    probes over successive shifts, per arm
    spearman_ci / partial_spearman_ci / mean_ci / multiple_comparisons

From Python (a notebook)::

    from experiments.analysis import load_runs
    data = load_runs(["runs/sweeps/my_sweep"])          # or read_tables("docs/tables/...")
    per_shift = data.adaptation.merge(data.runs[["run_id", "arm", "seed"]], on="run_id")
    per_shift.groupby(["arm", "shift_index"])["auc"].mean().unstack()

The tables are described in :mod:`.rundata`; definitions in the docstrings of
:mod:`.adaptation` and :mod:`.stats`.
"""

from __future__ import annotations

from experiments.analysis.adaptation import (
    ADAPTATION_METRICS,
    GAP_METRICS,
    STREAM_SPECS,
    AdaptationSpec,
    adaptation_frame,
    adaptation_table,
    match_fresh,
    probe_columns,
    rank_value,
    segment_of_episodes,
    segment_returns,
    shift_metrics,
    spec_for,
    write_csv,
)
from experiments.analysis.correlations import (
    DEFAULT_TARGETS,
    POOLED,
    correlation_table,
    probe_keys,
    probe_trends,
)
from experiments.analysis.load import find_run_dirs, load_data, load_run, load_runs
from experiments.analysis.run import Run, runs_of
from experiments.analysis.rundata import (
    TABLES,
    MixedCommitsError,
    RunData,
    check_commits,
    commits,
    is_tables_dir,
    read_tables,
    write_tables,
)
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
    "STREAM_SPECS",
    "TABLES",
    "AdaptationSpec",
    "Correlation",
    "MixedCommitsError",
    "Run",
    "RunData",
    "adaptation_frame",
    "adaptation_table",
    "check_commits",
    "commits",
    "correlation_table",
    "find_run_dirs",
    "is_tables_dir",
    "load_data",
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
    "read_tables",
    "runs_of",
    "segment_of_episodes",
    "segment_returns",
    "shift_metrics",
    "spearman_ci",
    "spec_for",
    "write_csv",
    "write_tables",
]
