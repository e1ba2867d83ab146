"""Tidy tables (load_runs -> RunData), their Parquet round trip, and provenance checks, on
synthetic run directories whose content is known row by row."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from experiments.analysis import (
    AdaptationSpec,
    MixedCommitsError,
    check_commits,
    commits,
    load_runs,
    read_tables,
    runs_of,
    shift_metrics,
    write_tables,
)
from experiments.analysis.rundata import SCHEMA
from experiments.cli import main
from experiments.errors import ConfigError
from tests.experiments.synthetic import step_episodes, write_run

PERIOD = 2000  # 20 episodes of 100 steps per segment
ABS = AdaptationSpec(window=10, threshold=0.8, max_return=1.0)
PROBES = [
    {"step": 2000, "task_id": 0, "phase": "pre", "network": "q", "erank": 5.0, "dormant": 0.25},
    {"step": 2000, "task_id": 1, "phase": "init", "network": "q", "erank": 6.0},
    {"step": 2000, "task_id": 1, "phase": "init", "network": "q", "data": "fixed",
     "trainability/random_final_loss": 0.5},
]


def _prov(commit, *segments):
    segs = [{"git_commit": c, "git_dirty": False, "resumed_from": None,
             "started": "2026-12-01T00:00:00Z"} for c in (segments or (commit,))]
    return {"git_commit": commit, "git_dirty": False,
            "versions": {"python": "3.11.7", "torch": "2.13.0"}, "segments": segs}


@pytest.fixture
def two_sweeps(tmp_path):
    """Two sweep directories: 'a' (a continual run with probes and provenance, a diverged
    run, a partial run) and 'b' (a fresh run without provenance.json)."""
    root = tmp_path / "studies"
    for name in ("a", "b"):
        (root / name / "runs").mkdir(parents=True)
        (root / name / "sweep.toml").write_text(f'name = "sweep_{name}"\nseeds = [0]\n')
    write_run(root / "a" / "runs" / "cont-seed0", arm="cont", seed=0, period=PERIOD,
              n_segments=3, episodes=step_episodes(PERIOD, [0, 5, 25]), probes=PROBES,
              provenance=_prov("c0ffee"))
    write_run(root / "a" / "runs" / "cont-seed1", arm="cont", seed=1, period=PERIOD,
              n_segments=3, episodes=step_episodes(PERIOD, [0, 2, 2]), done=False,
              diverged={"step": 3000, "what": "td_loss", "value": "nan"},
              provenance=_prov("c0ffee"))
    write_run(root / "a" / "runs" / "cont-seed2", arm="cont", seed=2, period=PERIOD,
              n_segments=3, episodes=step_episodes(PERIOD, [0, 1, 1]), done=False,
              provenance=_prov("c0ffee"))
    write_run(root / "b" / "runs" / "fresh-seed0", arm="fresh", seed=0, period=PERIOD,
              n_segments=3, episodes=step_episodes(PERIOD, [0, 2, 2]), reference="fresh")
    return root


def test_tables_hold_the_run_directories_rows(two_sweeps):
    data = load_runs([two_sweeps / "a", two_sweeps / "b"], ABS)
    runs = data.runs.set_index("run_id")
    # run ids relative to the common root of the inputs; sweeps found from their sweep.toml
    assert list(runs.index) == ["a/runs/cont-seed0", "a/runs/cont-seed1", "a/runs/cont-seed2",
                                "b/runs/fresh-seed0"]
    assert data.root == two_sweeps.as_posix()
    assert data.sweeps["name"].tolist() == ["sweep_a", "sweep_b"]
    assert runs["sweep_id"].tolist() == ["a", "a", "a", "b"]
    assert runs["status"].tolist() == ["done", "diverged", "partial", "done"]
    assert runs["seed"].tolist() == [0, 1, 2, 0] and runs["period"].tolist() == [PERIOD] * 4
    assert json.loads(runs.loc["a/runs/cont-seed1", "diverged"])["what"] == "td_loss"
    assert runs["git_commit"].tolist()[:3] == ["c0ffee"] * 3
    assert pd.isna(runs.loc["b/runs/fresh-seed0", "git_commit"])  # no provenance.json
    assert runs["git_dirty"].tolist()[:3] == [False] * 3
    config = json.loads(runs.loc["b/runs/fresh-seed0", "config"])
    assert config["experiment"]["reference"] == "fresh"
    # 60 episodes per run, 2 shifts per run, numbered from 1
    assert data.episodes.groupby("run_id").size().tolist() == [60] * 4
    assert data.shifts["shift_index"].tolist() == [1, 2] * 4
    assert data.shifts["step"].tolist() == [2000, 4000] * 4
    # probes: a missing "data" key means on_policy; absent metrics are NaN
    probes = data.probes
    assert probes["data"].tolist() == ["on_policy", "on_policy", "fixed"]
    assert probes["erank"].tolist()[:2] == [5.0, 6.0] and math.isnan(probes["erank"].iloc[2])
    assert probes["trainability/random_final_loss"].iloc[2] == 0.5
    assert data.metrics.columns[:3].tolist() == ["run_id", "step", "task_id"]


def test_adaptation_table_is_shift_metrics_of_each_run(two_sweeps):
    data = load_runs([two_sweeps / "a"], ABS)
    view = {r.run_id: r for r in runs_of(data)}
    table = data.adaptation
    assert set(table["run_id"]) == set(view)
    for run_id, rows in table.groupby("run_id"):
        expected = shift_metrics(view[run_id], ABS)
        assert rows["shift_index"].tolist() == [r["segment"] for r in expected]
        for column in ("pre_level", "drop", "auc", "mean_return", "final_return"):
            assert rows[column].tolist() == pytest.approx([r[column] for r in expected],
                                                          nan_ok=True)
    cont = table[table["run_id"] == "runs/cont-seed0"]
    # segment 1: recovered after 5 + 8 episodes of 100 steps; segment 2: never (censored)
    assert cont["steps_to_threshold"].iloc[0] == 1300 and not cont["censored"].iloc[0]
    assert cont["censored"].iloc[1] and math.isnan(cont["steps_to_threshold"].iloc[1])
    assert cont["task_id"].tolist() == [1, 2] and cont["step"].tolist() == [2000, 4000]


def test_default_spec_follows_the_stream(tmp_path):
    write_run(tmp_path / "r", arm="a", seed=0, period=PERIOD, n_segments=2,
              env_id="plasticity/MiniGridHiddenGoal-v0",
              episodes=step_episodes(PERIOD, [0, 5]))
    (row,) = load_runs([tmp_path / "r"]).adaptation.to_dict("records")
    assert row["threshold"] == 0.8  # the MiniGrid absolute threshold, not relative mode


def test_parquet_round_trip_is_exact(two_sweeps, tmp_path):
    data = load_runs([two_sweeps / "a", two_sweeps / "b"], ABS)
    back = read_tables(write_tables(data, tmp_path / "tables"))
    assert back.equals(data)
    for name, frame in data.tables().items():
        other = back.tables()[name]
        pd.testing.assert_frame_equal(other, frame, check_exact=True)
        assert list(frame.columns[:len(SCHEMA[name])]) == list(SCHEMA[name])
        assert [str(frame[c].dtype) for c in SCHEMA[name]] == [
            str(other[c].dtype) for c in SCHEMA[name]]
    # the views built from tables equal the ones built from run directories
    for a, b in zip(runs_of(data), runs_of(back), strict=True):
        assert (a.path, a.config, a.shifts, a.probes, a.metrics, a.done, a.diverged) == (
            b.path, b.config, b.shifts, b.probes, b.metrics, b.done, b.diverged)
        assert all(np.array_equal(a.episodes[k], b.episodes[k]) for k in a.episodes)
    # an empty selection round-trips too (every fixed column, no rows)
    empty = data.select([])
    assert read_tables(write_tables(empty, tmp_path / "empty")).equals(empty)


def test_reading_something_else_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="not a tables directory.*manifest.json"):
        read_tables(tmp_path)


def test_loading_no_directory_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"^no directory given; give run directories"):
        load_runs([])


def test_commits_are_listed_and_mixing_them_is_refused(tmp_path):
    sweep = tmp_path / "sweep"
    for seed, prov in enumerate([_prov("aaa111"), _prov("aaa111", "aaa111", "bbb222")]):
        write_run(sweep / "runs" / f"r{seed}", arm="x", seed=seed, period=PERIOD, n_segments=2,
                  episodes=step_episodes(PERIOD, [0, 1]), provenance=prov)
    data = load_runs([sweep])
    # the resumed run's second segment ran another commit: both count
    assert commits(data) == {"aaa111": ["runs/r0", "runs/r1"], "bbb222": ["runs/r1"]}
    with pytest.raises(MixedCommitsError, match=r"2 code commits: aaa111 \(2 runs.*bbb222 "
                                                r"\(1 runs: runs/r1\).*--allow-mixed-commits"):
        check_commits(data)
    assert check_commits(data, allow_mixed_commits=True) == ["aaa111", "bbb222"]
    assert check_commits(data.select(["runs/r0"])) == ["aaa111"]


def test_report_refuses_mixed_commits_unless_told(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for seed, commit in enumerate(["aaa111", "bbb222"]):
        write_run(sweep / "runs" / f"r{seed}", arm="x", seed=seed, period=PERIOD, n_segments=2,
                  episodes=step_episodes(PERIOD, [0, 1]), provenance=_prov(commit))
    assert main(["report", str(sweep)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "aaa111" in err and "bbb222" in err
    assert not (sweep / "report.md").exists() and not (sweep / "tables").exists()
    assert main(["report", str(sweep), "--allow-mixed-commits"]) == 0
    text = (sweep / "report.md").read_text()
    assert "code commit(s) of the runs: `aaa111`, `bbb222`." in text
    assert "The runs come from more than one code commit: aaa111, bbb222." in text
    # the report wrote its tables; rebuilt from them alone it is the same report
    assert read_tables(sweep / "tables").equals(load_runs([sweep]))
    (sweep / "report.md").rename(tmp_path / "from_runs.md")
    assert main(["report", str(sweep / "tables"), "--allow-mixed-commits"]) == 0
    rebuilt = (sweep / "report.md").read_text()
    assert rebuilt.replace(f"`{sweep / 'tables'}`", f"`{sweep}`") == text
