"""The settings-pilot summary on synthetic run directories whose numbers are known."""

from __future__ import annotations

import json

import pytest

from experiments.reporting.settings_summary import main, summarize

PERIOD, TASKS, ROWS = 8, 12, 4  # 4 metric rows a task, the last one the end of the task


def _write(root, arm, seed, level):
    """A run whose task k has accuracy ``level(k) + 0.01 * seed``: its rows within a task
    are level - 0.1, level, level, level + 0.1 (mean: level; end: level + 0.1)."""
    d = root / "runs" / f"{arm}-lr=0.001-seed{seed}"
    d.mkdir(parents=True)
    (d / "config.toml").write_text(
        f'[experiment]\narm = "{arm}"\nseed = {seed}\n[env]\nperiod = {PERIOD}\n')
    metrics, probes = [], []
    for k in range(TASKS):
        acc = level(k) + 0.01 * seed
        for i, off in enumerate((-0.1, 0.0, 0.0, 0.1)):
            metrics.append({"step": k * PERIOD + (i + 1) * PERIOD // ROWS, "episodes": 2,
                            "episodic_return": acc + off})
        if k:  # init probes on fixed data at each shift; others must be ignored
            probes.append({"task_id": k, "phase": "init", "data": "fixed", "network": "policy",
                           "features/hidden.0/saturated_fraction": 0.1 * (arm == "continual"),
                           "features/hidden.1/saturated_fraction": 0.3 * (arm == "continual"),
                           "hessian/eps_count/rel0.03": 10.0 + k,
                           "hessian/eps_count/rel0.03_censored": float(k % 2)})
            probes.append({"task_id": k, "phase": "init", "data": "on_policy",
                           "network": "policy", "hessian/eps_count/rel0.03": 1e6})
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
    (d / "probes.jsonl").write_text("".join(json.dumps(r) + "\n" for r in probes))


def _get(frame, arm, quantity, window):
    row = frame[(frame.arm == arm) & (frame.quantity == quantity) & (frame.window == window)]
    assert len(row) == 1
    return row.iloc[0]


def test_windows_differences_and_probe_rows(tmp_path):
    for seed in range(3):
        _write(tmp_path, "continual", seed, lambda k: 0.8 - 0.02 * k)
        _write(tmp_path, "fresh", seed, lambda k: 0.8)
    frame = summarize(tmp_path, window=4)
    assert set(frame.setting) == {"lr=0.001"}
    # first tasks 0-3: 0.8 - 0.02 * 1.5 + mean seed offset 0.01
    assert _get(frame, "continual", "accuracy", "first")["mean"] == pytest.approx(0.78)
    assert _get(frame, "continual", "end_accuracy", "first")["mean"] == pytest.approx(0.88)
    # last tasks 8-11 vs fresh: -0.02 * 9.5, the same for every seed (zero-width interval)
    d = _get(frame, "continual-fresh", "accuracy", "last")
    assert d["mean"] == pytest.approx(-0.19) and d["low"] == pytest.approx(-0.19)
    assert _get(frame, "continual", "accuracy", "last-first")["mean"] == pytest.approx(-0.16)
    assert _get(frame, "fresh", "accuracy", "last-first")["mean"] == pytest.approx(0.0)
    # probes: fixed-data init rows only (tasks 1-3 first, 8-11 last); layer mean of saturation
    assert _get(frame, "continual", "saturated_fraction", "last")["mean"] == pytest.approx(0.2)
    assert _get(frame, "continual", "eps_count_rel0.03", "first")["mean"] == pytest.approx(12.0)
    assert _get(frame, "continual", "eps_count_rel0.03", "last")["mean"] == pytest.approx(19.5)
    assert _get(frame, "fresh", "eps_count_rel0.03_censored", "last")["mean"] == pytest.approx(0.5)


def test_cli_writes_csv_and_rejects_an_empty_directory(tmp_path, capsys):
    for seed in range(3):
        _write(tmp_path, "fresh", seed, lambda k: 0.5)
    out = tmp_path / "s.csv"
    assert main([str(tmp_path), "--out", str(out), "--window", "2"]) == 0
    assert out.read_text().startswith("setting,arm,quantity,window,mean,low,high")
    (tmp_path / "empty" / "runs").mkdir(parents=True)
    assert main([str(tmp_path / "empty")]) == 2
    assert "no run" in capsys.readouterr().out


def test_the_ppo_settings_pilot_file_has_its_stated_sizes():
    from pathlib import Path

    from experiments.sweep import load_sweep

    path = (Path(__file__).resolve().parents[2] / "experiments" / "studies" / "pilots"
            / "pilot_digits_ppo_settings.toml")
    runs = load_sweep(path).runs
    assert len(runs) == 12  # 2 arms x 2 Adam-beta settings x 3 seeds
    c = runs[0].config
    assert c["experiment"]["steps"] // c["env"]["period"] >= 50
    assert c["env"]["kwargs"]["autoreset_mode"] == "same_step"
    assert {r.config["experiment"]["seed"] for r in runs} == {0, 1, 2}
