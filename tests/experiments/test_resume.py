"""Kill-and-resume: a run SIGKILLed at a random step and resumed gives every row of an
uninterrupted run (wall-clock fields aside), for DQN and for PPO on a vector env."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import experiments
from experiments import rundir
from experiments.checkpoint import checkpoint_steps
from experiments.config import apply_overrides, from_dict
from experiments.errors import ConfigError
from experiments.tomlio import dumps_toml
from tests.experiments.conftest import DQN_RUN, PPO_RUN

ROOT = Path(__file__).resolve().parents[2]
WALL_CLOCK = ("time", "charts/sps", "perf/probe_seconds")


def cli(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "experiments.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def last_step(path: Path) -> int:
    scan = rundir.scan_jsonl(path)  # the live file may end in a half-written row
    return scan.rows[-1]["step"] if scan.rows else 0


def rows_without_wall_clock(run_dir: Path, name: str) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in WALL_CLOCK and not k.startswith("time/")}
            for row in rundir.read_jsonl(run_dir / name)]


CASES = {
    # DQN on one CartPole env: checkpoints every 300 steps fall mid-episode.
    "dqn": (DQN_RUN, {"experiment.steps": 1_800, "experiment.checkpoint_every": 300,
                      "experiment.log_every": 100, "logging.tensorboard": True}),
    # PPO on a vector env of 4 MiniGrid sub-envs, checkpoints after every rollout.
    "ppo": (PPO_RUN, {"experiment.steps": 2_048, "experiment.checkpoint_every": 256,
                      "experiment.log_every": 256}),
}


@pytest.mark.parametrize("algo", sorted(CASES))
def test_sigkill_at_a_random_step_then_resume_gives_the_uninterrupted_rows(algo, tmp_path):
    base, overrides = CASES[algo]
    steps = overrides["experiment.steps"]
    every = overrides["experiment.checkpoint_every"]
    uninterrupted = experiments.run(from_dict(apply_overrides(
        base, {**overrides, "experiment.out": str(tmp_path / "whole")}))).run_dir

    run_dir = tmp_path / "killed"
    config = tmp_path / "run.toml"
    config.write_text(dumps_toml(apply_overrides(base, {**overrides,
                                                        "experiment.out": str(run_dir)})))
    for _attempt in range(3):
        seed = random.randrange(2**32)
        rng = random.Random(seed)
        kill_after = rng.randrange(every + 1, steps - every)  # a random step past a checkpoint
        proc = cli("run", str(config))
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            if last_step(run_dir / rundir.METRICS) >= kill_after and checkpoint_steps(
                    run_dir / rundir.CHECKPOINTS):
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))  # and a random moment of the training that follows
        proc.send_signal(signal.SIGKILL)
        out, err = proc.communicate()
        if not (run_dir / rundir.DONE).exists():
            break
        # On a loaded machine this poller can be descheduled until the run has finished: that
        # draw killed nothing, so it is no trial of resume. Draw again in a clean directory.
        shutil.rmtree(run_dir)
    assert not (run_dir / rundir.DONE).exists(), f"the run always finished before the kill: {err}"

    resumed = cli("run", "--resume", str(run_dir))
    _, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, err
    checkpoint = int(err.split("from step ")[1].split()[0])
    assert 0 < checkpoint < steps and checkpoint % every == 0, err
    context = f"(random seed {seed}: killed after step {kill_after}, resumed from {checkpoint})"
    for name in rundir.JSONL_FILES:
        whole = rows_without_wall_clock(uninterrupted, name)
        again = rows_without_wall_clock(run_dir, name)
        assert len(whole) > 0 and again == whole, f"{name} differs {context}"
    assert rundir.read_provenance(run_dir)["segments"][-1]["resumed_from"] == checkpoint
    if algo == "dqn":
        # TensorBoard's reader hides what the killed process wrote past the checkpoint: one
        # point per episode, as in the uninterrupted run
        from tests.experiments.test_tensorboard import tensorboard_scalars

        episodes = [(e["step"], e["return"]) for e in rundir.read_jsonl(run_dir / rundir.EPISODES)]
        for tag in ("charts/episodic_return", "charts/episodic_length"):
            assert tensorboard_scalars(run_dir)[tag] == tensorboard_scalars(uninterrupted)[tag]
        assert tensorboard_scalars(run_dir)["charts/episodic_return"] == episodes, context


def test_an_env_that_cannot_be_snapshotted_is_refused_before_anything_is_written(
        dqn_config, monkeypatch):
    from experiments import streams

    make = streams.make_stream

    def unpicklable(config, **kwargs):
        env = make(config, **kwargs)
        env.unwrapped.hook = lambda: None  # a lambda does not pickle
        return env

    monkeypatch.setattr(streams, "make_stream", unpicklable)
    config = dqn_config()
    with pytest.raises(ConfigError, match="cannot be checkpointed: saving its state failed"):
        experiments.run(config)
    assert not config.run_dir.exists()


def test_an_async_vector_env_is_refused_clearly():
    import envs
    from experiments import streams

    vec = envs.make_vector("plasticity/CartPoleDynamics-v0", 2, mode="async")
    try:
        with pytest.raises(TypeError, match="AsyncVectorEnv cannot be checkpointed exactly"):
            streams.snapshot(vec)
    finally:
        vec.close()
