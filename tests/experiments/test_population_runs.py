"""Populations in the runner: each member writes exactly the run directory a single run of
its seed writes, and a population interrupted mid-way resumes to the same files."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.checkpoint import checkpoint_path, checkpoint_steps
from experiments.errors import ConfigError
from experiments.rundir import read_jsonl
from experiments.runner import run, run_population
from tests.experiments.conftest import DQN_RUN, PPO_RUN, make_config

TIMING = ("time", "charts/sps", "perf/probe_seconds")
FILES = ("metrics.jsonl", "episodes.jsonl", "probes.jsonl", "shifts.jsonl")


def _rows(run_dir: Path, name: str) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING and not k.startswith("time/")}
            for row in read_jsonl(run_dir / name)]


def _assert_same_run(a: Path, b: Path) -> None:
    assert (a / "config.toml").read_text().replace(str(a), "") == \
        (b / "config.toml").read_text().replace(str(b), "")
    for name in FILES:
        rows_a, rows_b = _rows(a, name), _rows(b, name)
        assert len(rows_a) == len(rows_b), name
        for ra, rb in zip(rows_a, rows_b, strict=True):
            assert ra.keys() == rb.keys(), name
            for key, value in ra.items():
                if isinstance(value, float):
                    assert rb[key] == pytest.approx(value, rel=1e-3, abs=1e-5), (name, key)
                else:
                    assert rb[key] == value, (name, key)
    assert (a / "DONE").exists() and (b / "DONE").exists()
    assert checkpoint_steps(a / "checkpoints") == checkpoint_steps(b / "checkpoints")


@pytest.mark.parametrize("base", [DQN_RUN, PPO_RUN], ids=["dqn", "ppo"])
def test_each_member_writes_the_run_directory_of_a_single_run(tmp_path, base):
    seeds = (0, 1)
    singles = [make_config(base, tmp_path / f"single{s}", **{"experiment.seed": s}) for s in seeds]
    members = [make_config(base, tmp_path / f"member{s}", **{"experiment.seed": s}) for s in seeds]
    for config in singles:
        run(config)
    results = run_population(members)
    assert [r.status for r in results] == ["done", "done"]
    for s in seeds:
        _assert_same_run(tmp_path / f"single{s}", tmp_path / f"member{s}")


def test_an_interrupted_population_resumes_from_the_step_every_member_checkpointed(tmp_path):
    # Killed after the step-800 checkpoints, while writing them one after the other: member 1
    # lacks ckpt-800, so the population resumes both members from 400 -- and ends with what
    # single runs of the two seeds resumed from 400 end with.
    overrides = {"experiment.checkpoint_every": 400}

    def stop(step: int, status: str) -> None:
        if step >= 1000:
            raise KeyboardInterrupt  # as if killed: rows past the last checkpoint exist

    def interrupted(configs, name):
        with pytest.raises(KeyboardInterrupt):
            run_population(configs, on_progress=stop)
        assert checkpoint_steps(tmp_path / name / "checkpoints")[-1] == 800

    singles = [make_config(DQN_RUN, tmp_path / f"single{s}", **{"experiment.seed": s}, **overrides)
               for s in (0, 1)]
    for s, config in enumerate(singles):
        interrupted([config], f"single{s}")
        checkpoint_path(tmp_path / f"single{s}" / "checkpoints", 800).unlink()
        assert run(config).resumed_from == 400
    cut = [make_config(DQN_RUN, tmp_path / f"cut{s}", **{"experiment.seed": s}, **overrides)
           for s in (0, 1)]
    interrupted(cut, "cut1")
    checkpoint_path(tmp_path / "cut1" / "checkpoints", 800).unlink()
    results = run_population(cut)
    assert [r.resumed_from for r in results] == [400, 400]
    for s in (0, 1):
        _assert_same_run(tmp_path / f"single{s}", tmp_path / f"cut{s}")
        steps = [row["step"] for row in read_jsonl(tmp_path / f"cut{s}" / "metrics.jsonl")]
        assert steps == list(range(200, 1801, 200))  # contiguous, unique, complete


def test_members_must_differ_only_in_seed_and_directory(tmp_path):
    a = make_config(DQN_RUN, tmp_path / "a", **{"experiment.seed": 0})
    b = make_config(DQN_RUN, tmp_path / "b", **{"experiment.seed": 1, "agent.learning_rate": 1e-2})
    with pytest.raises(ConfigError, match="learning_rate"):
        run_population([a, b])
    with pytest.raises(ConfigError, match="distinct"):
        run_population([a, make_config(DQN_RUN, tmp_path / "c", **{"experiment.seed": 0})])
    assert not (tmp_path / "a").exists()


def test_sweeps_group_each_arms_seeds_into_one_population(tmp_path):
    from experiments.config import apply_overrides
    from experiments.sweep import build_sweep, population_groups, run_sweep

    base = apply_overrides(DQN_RUN, {"logging.progress": "off", "agent.loss": "mse",
                                     "experiment.steps": 600, "env.period": 300})
    data = {"name": "t", "seeds": [0, 1], "base": base, "grid": {"agent.learning_rate": [1e-3, 1e8]}}
    sweep = build_sweep(data, name="t", out=tmp_path / "s")
    groups = population_groups(sweep.runs, True)
    assert [[r.name for r in g] for g in groups] == [
        ["run-learning_rate=0.001-seed0", "run-learning_rate=0.001-seed1"],
        ["run-learning_rate=1e+08-seed0", "run-learning_rate=1e+08-seed1"]]
    assert len(population_groups(sweep.runs, False)) == 4
    assert not build_sweep({**data, "population": False}, name="t", out=tmp_path / "s").population
    result = run_sweep(sweep, workers=2, progress="off")
    assert {n: o["status"] for n, o in result.outcomes.items()} == {
        "run-learning_rate=0.001-seed0": "done", "run-learning_rate=0.001-seed1": "done",
        "run-learning_rate=1e+08-seed0": "diverged", "run-learning_rate=1e+08-seed1": "diverged"}
    runs = tmp_path / "s" / "runs"
    assert (runs / "run-learning_rate=0.001-seed1" / "DONE").exists()
    assert (runs / "run-learning_rate=1e+08-seed0" / "DIVERGED").exists()
    with pytest.raises(ConfigError, match="population"):
        build_sweep({**data, "population": "yes"}, name="t", out=tmp_path / "s")


def _assert_same_rows(a: Path, b: Path) -> None:
    for name in FILES:
        rows_a, rows_b = _rows(a, name), _rows(b, name)
        assert [r.keys() for r in rows_a] == [r.keys() for r in rows_b], name
        for ra, rb in zip(rows_a, rows_b, strict=True):
            for key, value in ra.items():
                if isinstance(value, float):
                    assert rb[key] == pytest.approx(value, rel=1e-3, abs=1e-5), (name, key)
                else:
                    assert rb[key] == value, (name, key)
    assert (b / "DONE").exists()


def test_a_population_resumes_by_its_directory_or_its_command_after_one_member_finished_alone(
        tmp_path, monkeypatch, capsys):
    """Two killed populations: one resumed by ``--resume P``, the other after ``--resume
    P/seed0`` finished one member alone, by rerunning its ``--seeds`` command (which used to
    refuse: "holds a finished run"); every member ends with the uninterrupted run's rows."""
    from experiments.cli import main
    from experiments.config import apply_overrides
    from experiments.tomlio import dumps_toml

    monkeypatch.chdir(tmp_path)
    overrides = {"experiment.checkpoint_every": 400}
    file = tmp_path / "run.toml"
    file.write_text(dumps_toml(apply_overrides(DQN_RUN, overrides)))
    singles = [run(make_config(DQN_RUN, tmp_path / f"single{s}", **{"experiment.seed": s},
                               **overrides)).run_dir for s in (0, 1)]

    def stop(step: int, status: str) -> None:
        if step >= 1000:
            raise KeyboardInterrupt  # as if killed: rows past the last checkpoint exist

    for population in ("by_dir", "by_command"):
        members = [make_config(DQN_RUN, tmp_path / population / "seed{seed}",
                               **{"experiment.seed": s}, **overrides) for s in (0, 1)]
        with pytest.raises(KeyboardInterrupt):
            run_population(members, on_progress=stop)
    assert main(["run", "--resume", "by_dir"]) == 0
    out, err = capsys.readouterr()
    assert "resuming the population in by_dir: seed0, seed1 (0 already finished)" in out
    assert "resuming by_dir/seed0 from step 800" in err and "by_dir/seed1 from step 800" in err
    assert main(["run", "--resume", "by_command/seed0"]) == 0
    capsys.readouterr()
    assert main(["run", str(file), "--seeds", "0-1", "--out", "by_command"]) == 0
    err = capsys.readouterr().err
    assert "resuming by_command/seed1 from step 800" in err and "seed0 from" not in err
    for population in ("by_dir", "by_command"):
        for s, single in enumerate(singles):
            _assert_same_rows(single, tmp_path / population / f"seed{s}")
    capsys.readouterr()
    assert main(["run", "--resume", "by_dir"]) == 0
    assert "already finished (2 members, all DONE)" in capsys.readouterr().out
