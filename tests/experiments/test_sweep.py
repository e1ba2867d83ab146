"""Sweeps: expansion, local pool with skip/resume/failure isolation, and a Ray backend."""

from __future__ import annotations

import importlib.util

import pytest

from experiments.checkpoint import checkpoint_steps
from experiments.config import apply_overrides
from experiments.errors import ConfigError
from experiments.rundir import read_jsonl
from experiments.sweep import build_sweep, load_sweep, run_sweep
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
