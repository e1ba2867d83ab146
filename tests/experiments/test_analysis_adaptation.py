"""Adaptation metrics and censoring on synthetic runs whose returns are step functions (so
every number is worked out by hand in the comments); the gap and the probe join are tested
with the report engine (tests/experiments/test_reporting_references.py)."""

from __future__ import annotations

import json
import math

import pytest

from experiments.analysis import (
    AdaptationSpec,
    load_run,
    load_runs,
    runs_of,
    segment_of_episodes,
    shift_metrics,
)
from experiments.errors import ConfigError
from experiments.rundir import TornLineError
from tests.experiments.synthetic import step_episodes, write_run

PERIOD = 2000  # 20 episodes of 100 steps per segment
ABS = AdaptationSpec(window=10, threshold=0.8, max_return=1.0)


def _run(tmp_path, name, recover, **kw):
    kw.setdefault("arm", "plain")
    kw.setdefault("seed", 0)
    return load_run(write_run(tmp_path / name, episodes=step_episodes(PERIOD, recover),
                              period=PERIOD, n_segments=len(recover), **kw))


def test_shift_metrics_match_hand_computed_values(tmp_path):
    # Segment k: episodes 0..recover[k]-1 return 0, the rest return 1 (20 per segment).
    run = _run(tmp_path, "r", [0, 5, 12, 25])
    rows = shift_metrics(run, ABS)
    assert [r["segment"] for r in rows] == [1, 2, 3]
    s1, s2, s3 = rows
    # pre = last 10 of the previous segment; post = first 10 of this one.
    assert s1["pre_level"] == 1.0 and s1["post_level"] == 0.5 and s1["drop"] == 0.5
    assert s2["pre_level"] == 1.0 and s2["post_level"] == 0.0 and s2["drop"] == 1.0
    assert s3["pre_level"] == pytest.approx(0.8) and s3["drop"] == pytest.approx(0.8)
    # A trailing mean of 10 reaches 0.8 once 8 of them are 1: after recover + 8 episodes.
    assert s1["steps_to_threshold"] == (5 + 8) * 100 and not s1["censored"]
    assert s2["steps_to_threshold"] == (12 + 8) * 100 == PERIOD  # reached on the last episode
    # 25 >= 20 episodes: never recovers -> censored with the segment length as lower bound.
    assert s3["censored"] and s3["steps_to_threshold"] is None
    assert s3["steps_lower_bound"] == PERIOD
    # Equal-length episodes: auc = fraction of episodes at return 1 (max_return 1).
    assert s1["auc"] == pytest.approx(15 / 20) and s2["auc"] == pytest.approx(8 / 20)
    assert s3["auc"] == 0.0
    assert s2["mean_return"] == pytest.approx(0.4) and s2["final_return"] == pytest.approx(0.8)
    assert [r["shift_step"] for r in rows] == [2000, 4000, 6000]
    assert rows[-1]["segment_end"] == 8000


def test_relative_threshold_uses_the_pre_shift_level_and_floor(tmp_path):
    run = _run(tmp_path, "r", [0, 5, 12, 25])
    rows = shift_metrics(run, AdaptationSpec(window=10, fraction=0.8))
    assert rows[0]["threshold"] == pytest.approx(0.8)  # 0.8 x pre 1.0
    assert rows[2]["threshold"] == pytest.approx(0.64)  # 0.8 x pre 0.8
    assert rows[2]["censored"]
    assert rows[0]["auc"] == pytest.approx(0.75)  # normalised by pre 1.0
    assert rows[2]["auc"] == 0.0
    # With a floor of -1: threshold = -1 + 0.5 x (1 - (-1)) = 0; auc = (0.75 + 1) / 2.
    rows = shift_metrics(run, AdaptationSpec(window=10, fraction=0.5, floor=-1.0))
    assert rows[0]["threshold"] == pytest.approx(0.0)
    assert rows[0]["auc"] == pytest.approx(0.875)
    # First trailing mean of 10 that is >= 0 is the first window: reached at episode 10.
    assert rows[0]["steps_to_threshold"] == 1000


def test_relative_threshold_undefined_when_pre_level_is_not_above_floor(tmp_path):
    run = _run(tmp_path, "r", [20, 0])  # segment 0 never returns 1: pre_level 0
    (row,) = shift_metrics(run, AdaptationSpec(window=10))
    assert row["pre_level"] == 0.0
    assert math.isnan(row["threshold"]) and math.isnan(row["steps_to_threshold"])
    assert not row["censored"]


def test_straddling_episode_counts_for_the_old_task(tmp_path):
    episodes = step_episodes(PERIOD, [0, 20])
    # The first episode after the scheduled switch still ran on task 0 (switch_at="reset").
    episodes[20] = {"step": 2100, "task_id": 0, "return": 7.0, "length": 100}
    run = load_run(write_run(tmp_path / "r", arm="a", seed=0, episodes=episodes,
                             period=PERIOD, n_segments=2))
    seg = segment_of_episodes(run)
    assert seg[19] == 0 and seg[20] == 0 and seg[21] == 1
    (row,) = shift_metrics(run, ABS)
    assert row["pre_level"] == pytest.approx((9 * 1.0 + 7.0) / 10)
    assert row["n_episodes"] == 19


def test_loading_sweeps_markers_and_torn_lines(tmp_path):
    sweep = tmp_path / "sweep"
    write_run(sweep / "runs" / "a", arm="x", seed=0, episodes=step_episodes(PERIOD, [0, 1]),
              period=PERIOD, n_segments=2, command="plasticity run a.toml")
    write_run(sweep / "runs" / "b", arm="x", seed=1, episodes=step_episodes(PERIOD, [0, 1]),
              period=PERIOD, n_segments=2, done=False,
              diverged={"step": 2500, "what": "td_loss", "value": "nan"})
    episodes = sweep / "runs" / "a" / "episodes.jsonl"
    complete = episodes.read_text()
    episodes.write_text(complete + '{"step": 99999, "ret')  # torn, though the run is DONE
    with pytest.raises(TornLineError, match="episodes.jsonl: the last line is torn"):
        load_runs([sweep])  # a finished run's damaged file is refused, not silently cut
    episodes.write_text(complete)
    a, b = runs_of(load_runs([sweep]))
    assert (a.name, a.status, a.seed, a.arm, a.reference) == ("a", "done", 0, "x", "continual")
    assert len(a.episodes["step"]) == 40 and a.steps == 4000 and a.period == PERIOD
    assert a.command == "plasticity run a.toml" and a.wall_time == 1.5
    assert a.env_id == "plasticity/Synthetic-v0" and a.algo == "dqn"
    assert b.status == "diverged" and b.end_step == 4000
    with pytest.raises(ConfigError, match="holds no run directories"):
        load_runs([tmp_path / "sweep" / "runs" / "a" / ".."/ ".." / ".."])
    (a.path / "config.toml").write_text(
        (a.path / "config.toml").read_text().replace('"continual"', '"warm"'))
    with pytest.raises(ConfigError, match="'warm'.*continual, fresh, stationary"):
        load_run(a.path)


def test_episodes_fall_back_to_metrics_intervals(tmp_path):
    run_dir = write_run(tmp_path / "r", arm="a", seed=0, episodes=step_episodes(PERIOD, [0, 0]),
                        period=PERIOD, n_segments=2, log_every=500)
    (run_dir / "episodes.jsonl").unlink()
    run = load_run(run_dir)
    assert run.episodes_from_metrics and len(run.episodes["step"]) == 8
    assert json.loads((run_dir / "DONE").read_text())["steps"] == 4000
    assert run.episodes["return"].tolist() == [1.0] * 8


def test_permuted_digits_adaptation_is_accuracy_against_an_absolute_threshold():
    from experiments.analysis.adaptation import spec_for

    spec = spec_for("plasticity/PermutedDigits-v0")
    assert spec.threshold == 0.8 and spec.max_return == 1.0 and spec.window == 100
