"""Sweeps: expansion, local pool with skip/resume/failure isolation, and a Ray backend."""

from __future__ import annotations

import importlib.util

import pytest

from experiments.checkpoint import checkpoint_steps
from experiments.config import apply_overrides
from experiments.errors import ConfigError
from experiments.rundir import read_jsonl
from experiments.sweep import (
    SweepRun,
    build_sweep,
    job_cost,
    load_sweep,
    member_cost,
    pack_jobs,
    population_groups,
    resume_point,
    run_group,
    run_sweep,
    simulate_makespan,
)
from experiments.tomlio import dumps_toml
from tests.experiments.conftest import DQN_RUN


def sweep_data(**grid) -> dict:
    base = apply_overrides(DQN_RUN, {"logging.progress": "off", "agent.loss": "mse"})
    return {"name": "t", "seeds": [0], "base": base, "grid": grid}


def test_expansion_is_arms_times_grid_times_seeds(tmp_path):
    data = sweep_data(**{"agent.learning_rate": [1e-3, 3e-4]})
    data["seeds"] = [0, 1]
    data["arms"] = [{"name": "continual"},
                    {"name": "fresh", "experiment": {"reference": "fresh"}},
                    {"name": "l2", "mitigations.names": ["l2"]}]
    data["smoke"] = {"experiment.steps": 1200}
    sweep = build_sweep(data, name="t", out=tmp_path, smoke=True)
    assert len(sweep.runs) == 3 * 2 * 2
    names = {r.name for r in sweep.runs}
    assert "fresh-learning_rate=0.001-seed1" in names and "l2-learning_rate=0.0003-seed0" in names
    fresh = next(r for r in sweep.runs if r.name.startswith("fresh"))
    assert fresh.config["experiment"]["reference"] == "fresh"
    assert fresh.config["experiment"]["arm"] == "fresh"
    assert all(r.config["experiment"]["steps"] == 1200 for r in sweep.runs)  # smoke applied
    assert all(r.run_dir.parent == tmp_path / "runs" for r in sweep.runs)


def test_an_arm_may_name_its_own_seeds(tmp_path):
    """An arm's ``seeds`` replaces the sweep's for that arm (10 seeds for key arms, 5 for
    the rest); --smoke gives every arm the smoke seeds; bad arm seeds are refused."""
    data = sweep_data()
    data["seeds"] = [0, 1]
    data["arms"] = [{"name": "continual", "seeds": [0, 1, 2, 3]}, {"name": "l2"}]
    data["smoke"] = {"seeds": [7]}
    names = sorted(r.name for r in build_sweep(data, name="t", out=tmp_path).runs)
    assert names == ["continual-seed0", "continual-seed1", "continual-seed2", "continual-seed3",
                     "l2-seed0", "l2-seed1"]
    smoke = build_sweep(data, name="t", out=tmp_path, smoke=True).runs
    assert sorted(r.name for r in smoke) == ["continual-seed7", "l2-seed7"]
    data["arms"][0]["seeds"] = [1, 1]
    with pytest.raises(ConfigError, match="arm 'continual': seeds = \\[1, 1\\] lists seed 1 more than once"):
        build_sweep(data, name="t", out=tmp_path)


def test_a_bad_member_is_refused_before_anything_runs(tmp_path):
    data = sweep_data(**{"agent.learning_rate": [1e-3, "fast"]})
    with pytest.raises(ConfigError, match="learning_rate=fast-seed0.*expected a number"):
        build_sweep(data, name="t", out=tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_local_sweep_skips_finished_resumes_interrupted_and_isolates_failures(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(dumps_toml(sweep_data(**{"agent.learning_rate": [1e-3, 2e-3, 1e8]})))
    sweep = load_sweep(path, out=tmp_path / "out")
    first = run_sweep(sweep, workers=2, progress="off")
    statuses = {n: o["status"] for n, o in first.outcomes.items()}
    assert statuses == {"run-learning_rate=0.001-seed0": "done", "run-learning_rate=0.002-seed0": "done",
                        "run-learning_rate=1e+08-seed0": "diverged"}
    assert first.failed == ["run-learning_rate=1e+08-seed0"]
    assert (sweep.directory / "sweep.toml").read_text() == path.read_text()

    # make one run look interrupted after its last checkpoint: no DONE marker
    interrupted = sweep.directory / "runs" / "run-learning_rate=0.002-seed0"
    (interrupted / "DONE").unlink()
    ckpt = checkpoint_steps(interrupted / "checkpoints")[-1]
    kept = [r for r in read_jsonl(interrupted / "metrics.jsonl") if r["step"] <= ckpt]

    second = run_sweep(load_sweep(path, out=tmp_path / "out"), workers=2, progress="off")
    statuses = {n: o["status"] for n, o in second.outcomes.items()}
    assert statuses == {"run-learning_rate=0.001-seed0": "skipped", "run-learning_rate=0.002-seed0": "done",
                        "run-learning_rate=1e+08-seed0": "diverged"}
    rows = list(read_jsonl(interrupted / "metrics.jsonl"))
    assert [r["step"] for r in rows] == list(range(200, 1801, 200))
    assert rows[: len(kept)] == kept  # rows up to the checkpoint were kept, not re-written
    assert (interrupted / "DONE").exists()


@pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                    reason="ray is not installed (pip install 'plasticity-testbed[ray]')")
def test_ray_backend_runs_a_tiny_sweep_on_a_local_instance(tmp_path):
    data = sweep_data(**{"agent.learning_rate": [1e-3, 2e-3]})
    data["base"] = apply_overrides(data["base"], {"experiment.steps": 400,
                                                  "experiment.reference": "stationary",
                                                  "agent.exploration_steps": 200,
                                                  "experiment.checkpoint_every": 0})
    sweep = build_sweep(data, name="t", out=tmp_path / "ray")
    result = run_sweep(sweep, workers=2, backend="ray", progress="off")
    assert {o["status"] for o in result.outcomes.values()} == {"done"}, result.outcomes
    for run in sweep.runs:
        assert (run.run_dir / "DONE").exists()
        assert [r["step"] for r in read_jsonl(run.run_dir / "metrics.jsonl")] == [200, 400]


_WORKER = """
import os, sys, time
sys.path.insert(0, {root!r})
from experiments.sweep import _exit_when_orphaned
_exit_when_orphaned(os.getppid(), 0.05)
open({ready!r}, "w").close()
time.sleep(1.5)
open({survived!r}, "w").close()
"""
_SWEEP = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", {worker!r}])
time.sleep(30)
"""


@pytest.mark.parametrize("kill_sweep", [True, False])
def test_a_worker_stops_when_its_sweep_process_is_killed(tmp_path, kill_sweep):
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
    ready, survived = tmp_path / "ready", tmp_path / "survived"
    worker = _WORKER.format(root=root, ready=str(ready), survived=str(survived))
    sweep = subprocess.Popen([sys.executable, "-c", _SWEEP.format(worker=worker)])
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert time.monotonic() < deadline, "the worker never started"
            time.sleep(0.05)
        if kill_sweep:
            sweep.send_signal(signal.SIGKILL)  # no cleanup, as a killed `plasticity sweep`
        time.sleep(3.0)
        # orphaned: gone before its run could go on; with its sweep alive: unaffected
        assert survived.exists() is (not kill_sweep)
    finally:
        sweep.kill()
        sweep.wait()


def _jobs(*sizes: int, steps: int = 1000) -> list[list[SweepRun]]:
    return [[SweepRun(f"j{i}-seed{s}", {"experiment": {"steps": steps}}) for s in range(size)]
            for i, size in enumerate(sizes)]


def test_packing_runs_the_largest_populations_first_and_splits_the_tail():
    cost = member_cost
    assert cost(1) == 1.0 and cost(5) == pytest.approx(1 / 3 + 2 / 15)
    # In the sweep file's order, [1, 1, 5] leaves the 5-member population alone on one core
    # at the end; largest first, the singles run beside it.
    jobs = _jobs(1, 1, 5)
    assert simulate_makespan([job_cost(j) for j in jobs], 2) == pytest.approx(1000 + 5000 * cost(5))
    packed = pack_jobs(jobs, 2)
    assert [len(j) for j in packed] == [5, 1, 1]
    assert simulate_makespan([job_cost(j) for j in packed], 2) == pytest.approx(5000 * cost(5))
    # A study's shape (10, 10, 5, 5, 5 seeds): largest first leaves a 5 alone at the tail
    # (10 | 10, then 5, 5 | 5: 4,000 + 2 x 2,333); splitting it into 3 + 2 fills the idle
    # core (makespan 4,000 + 2,333 + 1,667), and splitting further would not help.
    packed = pack_jobs(_jobs(10, 10, 5, 5, 5), 2)
    assert [len(j) for j in packed] == [10, 10, 5, 5, 3, 2]
    assert [r.name for r in packed[4] + packed[5]] == [f"j4-seed{s}" for s in range(5)]
    span = simulate_makespan([job_cost(j) for j in packed], 2)
    assert span == pytest.approx(10000 * cost(10) + 5000 * cost(5) + 3000 * cost(3))
    assert span < 10000 * cost(10) + 2 * 5000 * cost(5)
    # One population alone on 2 workers is split in two.
    assert [len(j) for j in pack_jobs(_jobs(5), 2)] == [3, 2]
    # Balanced jobs are only reordered (a split costs population speed); one worker: no split.
    assert [len(j) for j in pack_jobs(_jobs(5, 10, 5, 10), 2)] == [10, 10, 5, 5]
    assert [len(j) for j in pack_jobs(_jobs(1, 5), 1)] == [5, 1]
    # Every run is in exactly one job.
    runs = [r.name for j in pack_jobs(_jobs(2, 7, 3), 3) for r in j]
    assert sorted(runs) == sorted(r.name for j in _jobs(2, 7, 3) for r in j)


def test_a_split_population_gives_each_member_the_results_of_the_whole(tmp_path):
    """A 3-member population packed for 2 workers is split (2 + 1); every member's run
    directory is the one the whole population of 3 writes."""
    from tests.experiments.test_population_runs import _assert_same_run

    base = apply_overrides(DQN_RUN, {"logging.progress": "off", "experiment.steps": 600,
                                     "env.period": 300})
    data = {"name": "t", "seeds": [0, 1, 2], "base": base}
    sweep = build_sweep(data, name="t", out=tmp_path / "split")
    parts = pack_jobs(population_groups(sweep.runs, True), 2)
    assert [len(j) for j in parts] == [2, 1]
    for part in parts:  # what the sweep's workers run (in this process: no spawn cost)
        assert {o["status"] for o in run_group([r.config for r in part])} == {"done"}
    whole = build_sweep(data, name="t", out=tmp_path / "whole")
    (job,) = population_groups(whole.runs, True)
    run_group([r.config for r in job])
    for a, b in zip(sweep.runs, whole.runs, strict=True):
        _assert_same_run(a.run_dir, b.run_dir)


def test_runs_that_would_resume_from_different_steps_are_not_one_population(tmp_path):
    """Members that ran in different packed populations and reached different checkpoints
    (a sweep killed, then rerun with other --workers) form separate populations, so none
    is sent back to a step an other member lacks."""
    data = {"name": "t", "seeds": [0, 1, 2], "base": apply_overrides(DQN_RUN, {})}
    sweep = build_sweep(data, name="t", out=tmp_path)
    for run, step in zip(sweep.runs, (400, 400, None), strict=True):
        if step is not None:
            (run.run_dir / "checkpoints").mkdir(parents=True)
            (run.run_dir / "checkpoints" / f"ckpt-{step}.pt").write_bytes(b"")
    assert [resume_point(r) for r in sweep.runs] == [400, 400, None]
    groups = population_groups(sweep.runs, True, resume_point)
    assert [[r.name for r in g] for g in groups] == [["run-seed0", "run-seed1"], ["run-seed2"]]
    assert len(population_groups(sweep.runs, True)) == 1
