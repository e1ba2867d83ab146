"""Kill-and-resume: a run SIGKILLed mid-way continues from its last checkpoint with no row
lost or duplicated, and the final files are well-formed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from experiments.checkpoint import checkpoint_steps
from experiments.config import apply_overrides
from experiments.rundir import read_jsonl
from experiments.tomlio import dumps_toml
from tests.experiments.conftest import DQN_RUN

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "experiments.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def last_step(path: Path) -> int:
    steps = [row["step"] for row in read_jsonl(path)]
    return steps[-1] if steps else 0


def test_sigkill_then_resume_gives_contiguous_unique_rows(tmp_path):
    run_dir = tmp_path / "run"
    data = apply_overrides(DQN_RUN, {"experiment.steps": 6_000, "env.period": 1_500,
                                     "experiment.checkpoint_every": 1_000,
                                     "experiment.log_every": 250, "experiment.out": str(run_dir),
                                     "logging.tensorboard": True})
    config = tmp_path / "run.toml"
    config.write_text(dumps_toml(data))

    proc = cli("run", str(config))
    deadline = time.time() + 120
    # kill once a checkpoint exists *and* rows past it were written (they must be truncated)
    while time.time() < deadline and proc.poll() is None:
        ckpts = checkpoint_steps(run_dir / "checkpoints")
        if ckpts and ckpts[-1] >= 2_000 and last_step(run_dir / "metrics.jsonl") > ckpts[-1]:
            break
        time.sleep(0.02)
    assert proc.poll() is None, f"run ended before it could be killed: {proc.communicate()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = last_step(run_dir / "metrics.jsonl")
    assert not (run_dir / "DONE").exists() and killed_at < 6_000

    resumed = cli("run", "--resume", str(run_dir))
    out, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, err
    assert (run_dir / "DONE").exists()

    metrics = [r["step"] for r in read_jsonl(run_dir / "metrics.jsonl")]
    assert metrics == list(range(250, 6_001, 250))  # contiguous, unique, complete
    shifts = [r["step"] for r in read_jsonl(run_dir / "shifts.jsonl")]
    assert shifts == list(range(1_500, 6_000, 1_500))
    probes = Counter((r["step"], r["phase"], r["network"]) for r in read_jsonl(run_dir / "probes.jsonl"))
    assert set(probes.values()) == {1} and len(probes) == 2 * len(shifts)
    episodes = [r["step"] for r in read_jsonl(run_dir / "episodes.jsonl")]
    assert episodes == sorted(episodes) and len(set(episodes)) == len(episodes)
    for name in ("metrics.jsonl", "probes.jsonl", "shifts.jsonl", "episodes.jsonl"):
        for line in (run_dir / name).read_text().splitlines():
            json.loads(line)  # every line well-formed
    assert list(run_dir.glob("events.out.tfevents.*"))
