"""Smoke studies of the positive controls (issue 26): the PermutedDigits stream and the
induced-collapse oracle perturbation run end to end from their pilot study files, and the
pilots report is rebuilt from its tables alone, byte for byte."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from experiments.reporting import pilots
from experiments.sweep import Sweep, SweepRun, load_sweep, run_sweep

PILOTS = Path(__file__).resolve().parents[2] / "experiments" / "studies" / "pilots"
#: (pilot file, the arms its smoke runs): the stream with its fresh reference and a kill dose;
#: the hidden-goal dose response at its ends
SMOKE = {"pilot_digits_dqn": ("continual", "fresh", "kill0.5"),
         "pilot_digits_dqn_settings": ("continual_lr1e-2", "fresh_lr1e-2"),
         "pilot_collapse_dqn_hidden_goal": ("dose0", "dose0.9")}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("pilots")
    runs = []
    for stem, arms in SMOKE.items():
        sweep = load_sweep(PILOTS / f"{stem}.toml", out=root / stem, smoke=True)
        runs += [SweepRun(f"{stem}/{r.name}", r.config) for r in sweep.runs
                 if r.config["experiment"]["arm"] in arms]
    result = run_sweep(Sweep("smoke", root, runs), workers=1, progress="off")
    return root, runs, result


def test_every_pilot_file_loads_with_the_issues_sizes():
    dqn = load_sweep(PILOTS / "pilot_digits_dqn.toml")
    arms = {r.config["experiment"]["arm"] for r in dqn.runs}
    assert {"continual", "fresh", "l2_er", "kill0.5", "kill0.9"} <= arms
    for stem in ("pilot_digits_dqn", "pilot_digits_ppo"):
        sweep = load_sweep(PILOTS / f"{stem}.toml")
        c = sweep.runs[0].config
        assert c["experiment"]["steps"] // c["env"]["period"] >= 50  # >= 50 tasks
        assert {r.config["experiment"]["seed"] for r in sweep.runs} == {0, 1, 2, 3, 4}
    settings = load_sweep(PILOTS / "pilot_digits_dqn_settings.toml")
    c = settings.runs[0].config
    assert c["experiment"]["steps"] // c["env"]["period"] >= 50
    by_arm = {}
    for r in settings.runs:
        by_arm.setdefault(r.config["experiment"]["arm"], set()).add(r.config["experiment"]["seed"])
    assert all(seeds == {0, 1, 2} for seeds in by_arm.values())
    # every setting has its continual arm and its fresh reference
    assert {a.replace("continual", "fresh", 1) for a in by_arm if a.startswith("continual")} == {
        a for a in by_arm if a.startswith("fresh")}
    for stem in ("pilot_collapse_dqn_hidden_goal", "pilot_collapse_ppo_hidden_goal"):
        sweep = load_sweep(PILOTS / f"{stem}.toml")
        doses = {r.config["mitigations"]["options"]["induced_collapse"]["dose"] for r in sweep.runs}
        assert doses == {0.0, 0.25, 0.5, 0.75, 0.9}
        c = sweep.runs[0].config
        assert c["experiment"]["steps"] // c["env"]["period"] >= 6
        assert {r.config["experiment"]["seed"] for r in sweep.runs} == {0, 1, 2}


def test_smoke_runs_finish_and_label_the_oracle_perturbation(smoke):
    root, runs, result = smoke
    assert all(o["status"] == "done" for o in result.outcomes.values()), result.outcomes
    for run in runs:
        d = run.run_dir
        shifts = _rows(d / "shifts.jsonl")
        assert len(shifts) == run.config["experiment"]["steps"] // run.config["env"]["period"] - 1
        collapse = "induced_collapse" in run.config["mitigations"]["names"]
        assert all(("oracle_perturbations" in s["at_shift"]) == collapse for s in shifts)
        init = [p for p in _rows(d / "probes.jsonl") if p["phase"] == "init" and p["data"] == "fixed"]
        assert len(init) == len(shifts)
        if collapse:  # the init probe sees the dose on the fixed data
            dose = run.config["mitigations"]["options"]["induced_collapse"]["dose"]
            for p in init:
                assert abs(p["features/hidden.0/dead_fraction"] - dose) <= 1 / 16 + 1e-9
    digits = [r for r in runs if r.name.startswith("pilot_digits_dqn/")]
    episodes = _rows(digits[0].run_dir / "episodes.jsonl")
    assert all(e["length"] == 1 and e["return"] in (0.0, 1.0) for e in episodes)  # one-step bandit


def test_pilots_report_is_rebuilt_from_its_tables_byte_for_byte(smoke, tmp_path):
    root, _, _ = smoke
    tables = tmp_path / "tables"
    pilots.write_tables(root, tables)
    first = pilots.build(tables, tmp_path / "a")
    second = pilots.build(tables, tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()
    text = first.read_text()
    for title in ("## Does continual lose plasticity on PermutedDigits?",
                  "### `pilot_digits_dqn_settings`",
                  "## The paper's form", "## Induced collapse on the hidden-goal room",
                  "## What the pilots say for the next study's design"):
        assert title in text
    figures = sorted((tmp_path / "a" / "figures").glob("*.png"))
    assert figures and [p.read_bytes() for p in figures] == [
        (tmp_path / "b" / "figures" / p.name).read_bytes() for p in figures]
    for link in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text):
        assert (tmp_path / "a" / link).is_file(), link
