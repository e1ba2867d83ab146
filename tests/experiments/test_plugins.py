"""A user's own stream and mitigation, named in a run config, with no edit inside the package."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from experiments.checkpoint import latest_checkpoint, load_checkpoint
from experiments.tomlio import dumps_toml

PLUGIN = textwrap.dedent(
    '''
    import dataclasses

    import envs
    from agents.base import Mitigation
    from agents.mitigations import register_mitigation


    class Wind:
        """A user shift: one method."""

        def apply(self, env, params):
            env.unwrapped.force_mag = 10.0 + params["wind"]


    def windy_cartpole(period=300, stationary=False, switch_at="reset", seed=0, vector_size=1,
                       autoreset_mode=None):
        schedule = envs.CyclicSchedule(period, [{"wind": 0.0}, {"wind": 5.0}, {"wind": -5.0}])
        return envs.make_nonstationary("CartPole-v1", shift=Wind(), schedule=schedule,
                                       switch_at=switch_at, stationary=stationary,
                                       vector_size=vector_size, autoreset_mode=autoreset_mode)


    envs.register_stream("user/WindyCartPole-v0", windy_cartpole,
                         description="CartPole with a wind force that cycles every 300 steps")


    @register_mitigation
    @dataclasses.dataclass
    class CountSteps(Mitigation):
        """Counts optimiser steps (a user mitigation)."""

        name = "count_steps"
        every: int = 1

        def attach(self, agent):
            self.count = 0

        def after_step(self, agent):
            self.count += 1
            agent.q.head.bias.data.zero_()  # a visible effect on the network

        def state_dict(self):
            return {"count": self.count}

        def load_state_dict(self, state):
            self.count = state["count"]
    '''
)


def test_user_stream_and_mitigation_run_from_the_cli(tmp_path: Path) -> None:
    (tmp_path / "my_plugin.py").write_text(PLUGIN)
    config = {
        "experiment": {"steps": 900, "log_every": 150, "checkpoint_every": 0,
                       "imports": ["my_plugin"], "out": str(tmp_path / "run")},
        "env": {"id": "user/WindyCartPole-v0"},
        "agent": {"algo": "dqn", "learning_starts": 100, "batch_size": 32, "buffer_size": 1000,
                  "widths": [16], "train_frequency": 1},
        "mitigations": {"names": ["count_steps"]},
        "probes": {"metrics": ["features", "weights"], "batch_size": 32, "init_rollout_steps": 32},
        "logging": {"tensorboard": False, "progress": "off"},
    }
    (tmp_path / "run.toml").write_text(dumps_toml(config))
    root = Path(__file__).resolve().parents[2]
    env = {"PYTHONPATH": f"{tmp_path}:{root}", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-m", "experiments.cli", "run", str(tmp_path / "run.toml")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    shifts = [json.loads(line) for line in (tmp_path / "run" / "shifts.jsonl").read_text().splitlines()]
    assert [s["step"] for s in shifts] == [300, 600]
    assert [s["params"] for s in shifts] == [{"wind": 5.0}, {"wind": -5.0}]
    assert (tmp_path / "run" / "DONE").exists()
    # The user mitigation was attached and ran after every optimiser step (updates from
    # step 101 to 900, one per step), and its state went into the checkpoint.
    state = load_checkpoint(latest_checkpoint(tmp_path / "run" / "checkpoints"))
    assert state["agent"]["mitigations"] == [{"count": 800}]
    assert float(state["agent"]["q"]["head.bias"].abs().sum()) == 0.0


def test_an_unimportable_plugin_is_a_one_line_error(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "run", "--env", "plasticity/CartPoleDynamics-v0",
         "--set", "experiment.imports=['no_such_plugin']", "--out", str(tmp_path / "r")],
        capture_output=True, text=True, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "no_such_plugin" in proc.stderr and "experiment.imports" in proc.stderr
    assert not (tmp_path / "r").exists()
