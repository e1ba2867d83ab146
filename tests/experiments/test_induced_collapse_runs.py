"""induced_collapse through the runner: the new task's fixed data reach it, the shift rows
label it an oracle perturbation, dose 0 trains bit-identically to no intervention, and the
init probe sees the dose; the report lists its arm role."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

import experiments
from experiments import probe_data, streams
from experiments.reporting.summary import _roles
from experiments.rundir import read_jsonl
from tests.experiments.conftest import make_config

#: DQN on PermutedDigits: 3 tasks of 300 steps, tiny network, features probed on fixed data.
DIGITS_RUN: dict[str, Any] = {
    "experiment": {"steps": 900, "log_every": 150, "checkpoint_every": 0},
    "env": {"id": "plasticity/PermutedDigits-v0", "period": 300},
    "agent": {"algo": "dqn", "widths": [32, 16], "learning_starts": 50, "batch_size": 16,
              "buffer_size": 300, "train_frequency": 2, "exploration_steps": 100,
              "gamma": 0.0, "target_network_frequency": 50, "update_phase": 150},
    "probes": {"metrics": ["features"], "batch_size": 256, "init_rollout_steps": 32,
               "fixed_phases": ["init"], "pre": False},
    "logging": {"tensorboard": False, "progress": "off"},
}
TIMING = ("time", "charts/sps", "perf/probe_seconds")


def _rows(run_dir: Path, name: str) -> list[dict]:
    return list(read_jsonl(run_dir / name))


def _untimed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _collapse(dose: float) -> dict[str, Any]:
    return {"mitigations.names": ["induced_collapse"],
            "mitigations.options": {"induced_collapse": {"dose": dose}}}


def test_dose_zero_trains_bit_identically_to_no_intervention(tmp_path):
    plain = experiments.run(make_config(DIGITS_RUN, tmp_path / "plain"))
    zero = experiments.run(make_config(DIGITS_RUN, tmp_path / "zero", **_collapse(0.0)))
    for name in ("metrics.jsonl", "episodes.jsonl"):
        assert _untimed(_rows(zero.run_dir, name)) == _untimed(_rows(plain.run_dir, name)), name
    untimed = [{k: v for k, v in r.items() if not k.startswith("time/")}
               for r in _rows(zero.run_dir, "probes.jsonl")]
    assert untimed == [{k: v for k, v in r.items() if not k.startswith("time/")}
                       for r in _rows(plain.run_dir, "probes.jsonl")]
    shifts = _rows(zero.run_dir, "shifts.jsonl")
    assert all(s["at_shift"]["oracle"] is True for s in shifts)  # told of the switch: labelled
    assert all(s["at_shift"]["oracle_perturbations"] == {"induced_collapse": {"dose": 0.0, "units": {}}}
               for s in shifts)
    assert all(s["at_shift"]["oracle_mitigations"] == [] for s in shifts)  # not a mitigation


def test_dose_reaches_the_init_probe_on_the_new_tasks_fixed_data(tmp_path, monkeypatch):
    seen: list[tuple[int, torch.Tensor]] = []
    from agents.mitigations.induced_collapse import InducedCollapse

    original = InducedCollapse.set_task_data

    def record(self, task_id, obs):
        seen.append((task_id, obs))
        original(self, task_id, obs)

    monkeypatch.setattr(InducedCollapse, "set_task_data", record)
    config = make_config(DIGITS_RUN, tmp_path / "half", **_collapse(0.5))
    result = experiments.run(config)
    shifts = _rows(result.run_dir, "shifts.jsonl")
    assert [s["to_task"] for s in shifts] == [t for t, _ in seen] == [1, 2]
    env = streams.make_stream(config, stationary=True, seed=config.experiment.seed, single=True)
    for task, obs in seen:  # the held-out digits under the new task's permutation
        streams.set_task(env, task)
        expected = torch.unique(probe_data.fixed_transitions(env, 1)["obs"], dim=0)
        assert torch.equal(obs, expected) and len(obs) == 359
    for s in shifts:  # units silenced: up to half (some may already be dead: they count)
        assert 0 < s["at_shift"]["oracle_perturbations"]["induced_collapse"]["units"]["q.hidden.0"] <= 16
    init = [p for p in _rows(result.run_dir, "probes.jsonl")
            if p["phase"] == "init" and p["data"] == "fixed"]
    assert len(init) == 2
    for p in init:  # the probe's data = the intervention's data: dead fraction = dose
        assert abs(p["features/hidden.0/dead_fraction"] - 0.5) <= 1 / 32
        assert abs(p["features/hidden.1/dead_fraction"] - 0.5) <= 1 / 16


def test_report_roles_name_the_oracle_perturbation():
    from experiments.reporting.declarations import Declarations

    config = {"mitigations": {"names": ["induced_collapse"], "options": {}}}
    assert "oracle perturbation" in _roles("kill0.5", "continual", Declarations(), config)
    assert "oracle perturbation" not in _roles("continual", "continual", Declarations(),
                                               {"mitigations": {"names": ["l2"]}})
