"""TensorBoard follows CleanRL's conventions: ``charts/episodic_return`` and
``charts/episodic_length`` once per finished episode at its global step, read back with
TensorBoard's own event reader."""

from __future__ import annotations

import pytest

import experiments
from experiments import rundir
from tests.experiments.conftest import DQN_RUN, SHORT_DQN, make_config

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def tensorboard_scalars(run_dir) -> dict[str, list[tuple[int, float]]]:
    acc = event_accumulator.EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_every_finished_episode_is_one_tensorboard_point_at_its_global_step(tmp_path):
    config = make_config(DQN_RUN, tmp_path / "run", **SHORT_DQN, **{
        "experiment.steps": 600, "logging.tensorboard": True, "probes.enabled": False})
    run_dir = experiments.run(config).run_dir
    episodes = rundir.read_jsonl(run_dir / rundir.EPISODES)
    scalars = tensorboard_scalars(run_dir)
    assert len(episodes) > 5  # CartPole's random-ish early episodes are short
    # float32 in the event file: CartPole's returns are whole numbers, exact in float32
    assert scalars["charts/episodic_return"] == [(e["step"], e["return"]) for e in episodes]
    assert scalars["charts/episodic_length"] == [(e["step"], e["length"]) for e in episodes]
    # the per-logging-step charts are still there, one point per metrics row
    assert len(scalars["charts/epsilon"]) == len(rundir.read_jsonl(run_dir / rundir.METRICS))
