"""The run-directory module: torn JSONL lines, the lock (with real processes), provenance,
output-directory checks, and checkpoints verified on write and load with a fallback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import experiments
from experiments import rundir
from experiments.checkpoint import (
    CorruptCheckpoint,
    checkpoint_steps,
    load_checkpoint,
    load_latest,
    save_checkpoint,
)
from experiments.cli import main
from experiments.config import apply_overrides
from experiments.errors import ConfigError
from experiments.tomlio import dumps_toml
from tests.experiments.conftest import DQN_RUN, SHORT_DQN

ROOT = Path(__file__).resolve().parents[2]


def run_toml(tmp_path: Path) -> str:
    """A 200-step DQN run config (its ``--out`` comes from the command line)."""
    path = tmp_path / "run.toml"
    path.write_text(dumps_toml(apply_overrides(DQN_RUN, {"experiment.steps": 200, **SHORT_DQN})))
    return str(path)


def write_lines(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- JSONL
def test_a_torn_last_line_is_found_refused_or_warned_never_silently_dropped(tmp_path, capsys):
    path = write_lines(tmp_path / "m.jsonl", '{"step": 1}\n{"step": 2}\n{"step": 3, "lo')
    scan = rundir.scan_jsonl(path)
    assert [r["step"] for r in scan.rows] == [1, 2] and scan.torn == '{"step": 3, "lo'
    with pytest.raises(rundir.TornLineError, match=r"m.jsonl: the last line is torn \(15 char"):
        rundir.read_jsonl(path)
    assert [r["step"] for r in rundir.read_jsonl(path, torn="warn")] == [1, 2]
    assert "last line is torn" in capsys.readouterr().err
    # a complete last row whose newline is missing is a row, not a tear
    write_lines(path, '{"step": 1}\n{"step": 2}')
    assert [r["step"] for r in rundir.read_jsonl(path)] == [1, 2]
    # a bad line before the last is corruption, named by line
    write_lines(path, '{"step": 1}\n{"ste\n{"step": 3}\n')
    with pytest.raises(ConfigError, match=r"m.jsonl:2: not a JSON object"):
        rundir.read_jsonl(path, torn="warn")


def test_rewind_keeps_rows_up_to_the_checkpoint_and_removes_the_torn_line(tmp_path):
    path = write_lines(tmp_path / "m.jsonl", "".join(f'{{"step": {s}}}\n' for s in (1, 2, 3, 4))
                       + '{"step": 5, "x"')
    rewound = rundir.rewind_jsonl(path, 2)
    assert (rewound.kept, rewound.dropped, rewound.torn) == (2, 2, '{"step": 5, "x"')
    assert path.read_text() == '{"step": 1}\n{"step": 2}\n'


def test_the_loader_refuses_a_torn_line_in_a_finished_run_and_warns_on_an_unfinished_one(
        tmp_path, capsys):
    from experiments.analysis import load_run

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / rundir.CONFIG).write_text('[experiment]\nreference = "continual"\n')
    write_lines(run_dir / rundir.EPISODES, '{"step": 10, "task_id": 0, "return": 1.0, '
                '"length": 10}\n{"step": 20, "ret')
    (run_dir / rundir.DONE).write_text("{}")
    with pytest.raises(rundir.TornLineError, match="episodes.jsonl: the last line is torn"):
        load_run(run_dir)
    (run_dir / rundir.DONE).unlink()
    load_run(run_dir)
    assert "episodes.jsonl: the last line is torn" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the lock
def hold_lock(directory: Path) -> subprocess.Popen:
    """Another process that owns ``directory`` until killed."""
    code = ("import sys, time\nfrom experiments import rundir\n"
            "with rundir.locked(sys.argv[1]):\n    print('locked', flush=True)\n"
            "    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(directory)], cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_process_is_refused_naming_the_owner_and_a_dead_owner_is_taken_over(
        tmp_path, capsys):
    directory = tmp_path / "run"
    owner = hold_lock(directory)
    try:
        with pytest.raises(rundir.RunDirLocked) as err, rundir.locked(directory):
            pass
        message = str(err.value)
        assert f"in use by pid {owner.pid} on host {socket.gethostname()} (started 20" in message
        assert "\n" not in message
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    assert (directory / rundir.LOCK).exists()  # the killed owner could not clean up
    with rundir.locked(directory):
        mine = json.loads((directory / rundir.LOCK).read_text())
        assert mine["pid"] == os.getpid()
    assert f"stale lock of run directory {str(directory)!r} left by pid {owner.pid}" in \
        capsys.readouterr().err
    assert not (directory / rundir.LOCK).exists()  # released on exit


def test_plasticity_run_on_a_locked_directory_refuses_in_one_line_and_writes_nothing(
        tmp_path, capsys):
    directory = tmp_path / "run"
    owner = hold_lock(directory)
    try:
        code = main(["run", run_toml(tmp_path), "--out", str(directory)])
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"is in use by pid {owner.pid} on host" in err
    assert sorted(p.name for p in directory.iterdir()) == [rundir.LOCK]


def test_a_sweep_directory_is_locked_too(tmp_path):
    from experiments.sweep import build_sweep, run_sweep

    sweep = build_sweep({"base": {"experiment": {"steps": 200, "reference": "stationary"}}},
                        name="s", out=tmp_path / "s")
    owner = hold_lock(sweep.directory)
    try:
        with pytest.raises(rundir.RunDirLocked, match=f"sweep directory .* pid {owner.pid}"):
            run_sweep(sweep, progress="off")
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    assert not (sweep.directory / rundir.SWEEP_RUNS).exists()


# ----------------------------------------------------------------------------- --out
def test_out_naming_a_file_is_refused_in_one_line_with_nothing_written(tmp_path, capsys):
    config = run_toml(tmp_path)
    existing = tmp_path / "notes.txt"
    existing.write_text("mine\n")
    for out in (existing, existing / "sub"):
        code = main(["run", config, "--out", str(out)])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and "is a" in err and "file" in err
    assert existing.read_text() == "mine\n"
    assert sorted(os.listdir(tmp_path)) == ["notes.txt", "run.toml"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any directory")
def test_out_in_a_read_only_directory_is_refused(tmp_path, capsys):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        code = main(["run", run_toml(tmp_path), "--out", str(parent / "run")])
    finally:
        parent.chmod(0o700)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "is not writable" in err and not list(parent.iterdir())


def test_a_directory_that_cannot_be_created_is_a_config_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot be written"), \
            rundir.locked(blocker / "run"):  # check_out skipped: mkdir itself fails
        pass


# ----------------------------------------------------------------------------- provenance
def test_provenance_records_the_commit_versions_and_one_segment_per_start(dqn_config):
    config = dqn_config(**{"experiment.steps": 400, "experiment.checkpoint_every": 200, **SHORT_DQN})
    experiments.run(config)
    first = rundir.read_provenance(config.run_dir)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True)
    expected_commit = head.stdout.strip() if head.returncode == 0 else None
    assert first["git_commit"] == expected_commit
    assert isinstance(first["git_dirty"], bool) or expected_commit is None
    assert first["versions"]["torch"] == torch.__version__.split("+")[0] or \
        first["versions"]["torch"] == torch.__version__
    assert set(first["versions"]) == {"python", "torch", "gymnasium", "minigrid", "numpy"}
    [segment] = first["segments"]
    assert segment["resumed_from"] is None and segment["started"].endswith("Z")
    assert segment["git_commit"] == first["git_commit"]

    (config.run_dir / rundir.DONE).unlink()  # as if killed after its last checkpoint
    experiments.run(config)
    second = rundir.read_provenance(config.run_dir)
    assert [s["resumed_from"] for s in second["segments"]] == [None, 400]
    assert second["git_commit"] == first["git_commit"]


def test_git_info_is_null_outside_a_checkout(tmp_path):
    assert rundir.git_info(tmp_path) == {"git_commit": None, "git_dirty": None}


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoints_are_verified_when_loaded(tmp_path):
    path = save_checkpoint(tmp_path, 10, {"x": torch.arange(1000)})
    assert torch.equal(load_checkpoint(path)["x"], torch.arange(1000))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpoint, match="does not match its digest"):
        load_checkpoint(path)
    # without its digest a truncated file is still caught: it does not load
    path.with_name(path.name + ".sha256").unlink()
    with pytest.raises(CorruptCheckpoint, match="does not load"):
        load_checkpoint(path)


def test_load_latest_falls_back_to_the_newest_intact_checkpoint(tmp_path):
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, {"step": step}, keep=3)
    newest = tmp_path / "ckpt-3.pt"
    newest.write_bytes(newest.read_bytes()[:100])
    loaded = load_latest(tmp_path)
    assert loaded.state == {"step": 2} and loaded.path.name == "ckpt-2.pt"
    assert len(loaded.skipped) == 1 and "ckpt-3.pt does not match its digest" in loaded.skipped[0]
    assert checkpoint_steps(tmp_path) == [1, 2] and (tmp_path / "ckpt-3.pt.corrupt").exists()


def test_a_run_resumes_from_the_newest_intact_checkpoint_and_says_so(dqn_config, capsys):
    config = dqn_config(**{"experiment.steps": 600, "experiment.checkpoint_every": 200,
                           "experiment.log_every": 100, **SHORT_DQN})
    experiments.run(config)
    run_dir = config.run_dir
    complete = (run_dir / rundir.METRICS).read_text()
    (run_dir / rundir.DONE).unlink()
    newest = run_dir / rundir.CHECKPOINTS / "ckpt-600.pt"
    newest.write_bytes(newest.read_bytes()[:-50])  # truncated
    with open(run_dir / rundir.METRICS, "a") as f:
        f.write('{"step": 650, "ta')  # and a torn line
    capsys.readouterr()
    result = experiments.run(config)
    err = capsys.readouterr().err
    assert result.resumed_from == 400
    assert "ckpt-600.pt does not match its digest" in err
    assert "metrics.jsonl: removed a torn last line" in err
    assert "resuming" in err and "from step 400" in err
    notes = rundir.read_provenance(run_dir)["segments"][-1]["notes"]
    assert any("ckpt-600.pt" in n for n in notes) and any("torn" in n for n in notes)
    steps = [json.loads(line)["step"] for line in (run_dir / rundir.METRICS).read_text().splitlines()]
    assert steps == [json.loads(line)["step"] for line in complete.splitlines()]


def test_overwrite_removes_the_old_report(dqn_config):
    config = dqn_config(**{"experiment.steps": 200, "experiment.checkpoint_every": 0, **SHORT_DQN})
    experiments.run(config)
    run_dir = config.run_dir
    (run_dir / "report.md").write_text("old report\n")
    (run_dir / "figures").mkdir()
    (run_dir / "figures" / "returns.png").write_bytes(b"png")
    (run_dir / "adaptation.csv").write_text("a\n")
    experiments.run(config, overwrite=True)
    assert not (run_dir / "report.md").exists() and not (run_dir / "figures").exists()
    assert not (run_dir / "adaptation.csv").exists() and (run_dir / rundir.DONE).exists()


def test_sweep_overwrite_removes_the_old_sweep_report_and_sweep_out_naming_a_file_is_refused(
        tmp_path, capsys):
    from experiments.sweep import build_sweep, run_sweep

    base = apply_overrides(DQN_RUN, {"experiment.steps": 200, "experiment.checkpoint_every": 0,
                                     **SHORT_DQN})
    sweep = build_sweep({"base": base}, name="s", out=tmp_path / "s")
    sweep.directory.mkdir()
    (sweep.directory / "report.md").write_text("describes runs that will be gone\n")
    (sweep.directory / "figures").mkdir()
    result = run_sweep(sweep, progress="off", overwrite=True)
    assert not result.failed
    assert not (sweep.directory / "report.md").exists()
    assert not (sweep.directory / "figures").exists()

    existing = tmp_path / "file.txt"
    existing.write_text("mine\n")
    sweep_file = tmp_path / "sweep.toml"
    sweep_file.write_text(dumps_toml({"base": base}))
    capsys.readouterr()
    assert main(["sweep", str(sweep_file), "--out", str(existing)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is an existing file" in err
    assert existing.read_text() == "mine\n"


def test_plasticity_report_refuses_a_finished_run_with_a_torn_line_in_one_line(dqn_config,
                                                                              capsys):
    config = dqn_config(**{"experiment.steps": 200, "experiment.checkpoint_every": 0,
                           **SHORT_DQN})
    experiments.run(config)
    with open(config.run_dir / rundir.EPISODES, "a") as f:
        f.write('{"step": 250, "ret')
    before = sorted(p.name for p in config.run_dir.iterdir())
    capsys.readouterr()
    assert main(["report", str(config.run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "episodes.jsonl: the last line is torn" in err
    assert sorted(p.name for p in config.run_dir.iterdir()) == before
