"""Analysis of runs: tidy tables (RunData) and the adaptation after each shift.

Public API::

    load_runs(paths, spec=None) -> RunData        run or sweep directories as pandas tables
    write_tables(data, dir) / read_tables(dir)     the same tables as Parquet (exact round trip)
    commits(data) / check_commits(data, allow_mixed_commits=False)   provenance
    runs_of(data) -> list[Run] / load_run(path)   per-run views for code that walks runs
    AdaptationSpec(window, fraction, threshold, floor, max_return); spec_for(env_id)
    shift_metrics(run, spec) -> list[dict]        adaptation metrics of one run's shifts

From Python (a notebook)::

    from experiments.analysis import load_runs
    data = load_runs(["runs/sweeps/my_sweep"])          # or read_tables("docs/tables/...")
    per_shift = data.adaptation.merge(data.runs[["run_id", "arm", "seed"]], on="run_id")
    per_shift.groupby(["arm", "shift_index"])["auc"].mean().unstack()

The tables are described in :mod:`.rundata`; definitions in the docstrings of
:mod:`.adaptation`. Statistics and the report: :mod:`experiments.reporting`.
"""

from __future__ import annotations

from experiments.analysis.adaptation import (
    ADAPTATION_METRICS,
    STREAM_SPECS,
    AdaptationSpec,
    adaptation_frame,
    segment_of_episodes,
    shift_metrics,
    spec_for,
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

__all__ = [
    "ADAPTATION_METRICS",
    "STREAM_SPECS",
    "TABLES",
    "AdaptationSpec",
    "MixedCommitsError",
    "Run",
    "RunData",
    "adaptation_frame",
    "check_commits",
    "commits",
    "find_run_dirs",
    "is_tables_dir",
    "load_data",
    "load_run",
    "load_runs",
    "read_tables",
    "runs_of",
    "segment_of_episodes",
    "shift_metrics",
    "spec_for",
    "write_tables",
]
