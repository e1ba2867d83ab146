"""The study files (experiments/studies/*.toml) and the study results document.

* Every study file expands into a valid sweep with the seeds and arms the issue requires.
* Its ``[smoke]`` setting runs end to end (1 seed, the core arms: the sweep machinery has no
  smoke override of seeds and arms, so the test selects them) and the study report is
  written from the smoke sweeps with every section and figure.
* On synthetic run directories with planted returns, the report's numbers equal a direct
  computation and the conclusions follow the intervals.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from experiments.analysis import read_tables
from experiments.analysis.stats import boot_diff, boot_mean
from experiments.analysis.synthetic import step_episodes, write_run
from experiments.errors import ConfigError
from experiments.study_report import (
    SECTIONS,
    _stationary_text,
    study_report_command,
    write_study_report,
)
from experiments.sweep import Sweep, SweepRun, load_sweep, run_sweep
from experiments.tomlio import load_toml

STUDIES = sorted((Path(__file__).resolve().parents[2] / "experiments" / "studies").glob("*.toml"))
SMOKE_ARMS = ("continual", "fresh", "stationary", "l2_er")
MIN_SEEDS = {"s1": 5, "s2": 5, "s3": 3}
NETWORKS = {"ppo": {"policy", "value"}, "dqn": {"q"}}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _section(text: str, title: str) -> str:
    start = text.index(title)
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else len(text)]


# ----------------------------------------------------------------------------- study files
def test_three_studies_exist():
    assert [p.stem[:2] for p in STUDIES] == ["s1", "s2", "s3"]


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_study_file_expands_with_required_seeds_and_arms(path):
    sweep = load_sweep(path, out="/nonexistent/never-written")
    arms = {r.config["experiment"]["arm"] for r in sweep.runs}
    seeds = {r.config["experiment"]["seed"] for r in sweep.runs}
    assert len(seeds) >= MIN_SEEDS[path.stem[:2]]
    assert {"continual", "fresh", "stationary", "l2_er"} <= arms
    refs = {r.config["experiment"]["arm"]: r.config["experiment"]["reference"] for r in sweep.runs}
    assert refs["fresh"] == "fresh" and refs["stationary"] == "stationary"
    l2er = next(r for r in sweep.runs if r.config["experiment"]["arm"] == "l2_er")
    assert l2er.config["mitigations"]["options"]["l2_er"] == {
        "weight_decay": 1e-3, "lr": 1e-6, "steps_per_update": 10, "adam_betas": [0.99, 0.99]}
    header = path.read_text().split("\nname =")[0]
    for word in ("tests", "Arms", "Seeds", "Wall time", "CUT"):
        assert word in header, f"{path.name}: header comment lacks {word!r}"


def test_flagship_has_the_most_arms_and_every_listed_arm():
    arms = {p.stem[:2]: {r.config["experiment"]["arm"] for r in load_sweep(p, out="/x").runs}
            for p in STUDIES}
    assert arms["s1"] == {"continual", "fresh", "stationary", "l2", "er", "l2_er", "redo",
                          "shrink_perturb", "cbp_l2", "layernorm_l2", "head_reset", "opt_reset",
                          "l2_default_adam"}
    assert len(arms["s1"]) > len(arms["s2"]) >= len(arms["s3"])


def test_dqn_minigrid_study_matches_the_prototype_protocol():
    sweep = load_sweep(next(p for p in STUDIES if p.stem.startswith("s2")), out="/x")
    for run in sweep.runs:
        agent, shift = run.config["agent"], run.config["shift"]
        assert (agent["n_step"], agent["loss"], agent["max_grad_norm"]) == (3, "huber", 10.0)
        assert agent["buffer_size"] == run.config["env"]["period"] == 15_000
        assert agent["exploration_steps"] == 15_000 // 4
        # the oracle knobs are applied to every arm alike, continual included
        assert (shift["exploration"], shift["buffer"]) == ("rewarm", "flush")


# ----------------------------------------------------------------------------- smoke end to end
@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("studies")
    sweeps = []
    for path in STUDIES:
        sweep = load_sweep(path, out=root / path.stem, smoke=True, seeds=[0])
        sweep.runs = [r for r in sweep.runs if r.config["experiment"]["arm"] in SMOKE_ARMS]
        sweeps.append((path, sweep))
    # One process pool for the three studies (saves two pool start-ups); run_sweep writes
    # each member into its own study's directory, and the copies of the study files are
    # written as run_sweep would.
    everything = Sweep("smoke", root, [SweepRun(f"{s.name}/{r.name}", r.config)
                                       for _, s in sweeps for r in s.runs])
    result = run_sweep(everything, workers=2, progress="off")
    for _, sweep in sweeps:
        (sweep.directory / "sweep.toml").write_text(sweep.source, encoding="utf-8")
    sweeps = [(path, sweep, result) for path, sweep in sweeps]
    out = root / "docs" / "results.md"
    report = write_study_report([s.directory for _, s, _ in sweeps], out, root / "docs" / "figures",
                                n_resamples=200)
    return sweeps, report


def test_smoke_runs_all_finish_with_probes_at_every_shift(smoke):
    sweeps, _ = smoke
    for path, sweep, result in sweeps:
        assert len(sweep.runs) == len(SMOKE_ARMS)
        assert all(result.outcomes[f"{sweep.name}/{r.name}"]["status"] == "done"
                   for r in sweep.runs), result.outcomes
        for run in sweep.runs:
            d = run.run_dir
            assert (d / "DONE").is_file()
            shifts = _rows(d / "shifts.jsonl")
            if run.config["experiment"]["reference"] == "stationary":
                assert shifts == []
                continue
            assert len(shifts) == run.config["experiment"]["steps"] // run.config["env"]["period"] - 1
            probes = _rows(d / "probes.jsonl")
            nets = NETWORKS[run.config["agent"]["algo"]]
            for shift in shifts:
                at = {(p["phase"], p["network"]) for p in probes if p["step"] == shift["step"]}
                assert at == {(ph, n) for ph in ("pre", "init") for n in nets}, (path.stem, shift)
                init = [p for p in probes if p["step"] == shift["step"] and p["phase"] == "init"]
                assert all(p["task_id"] == shift["to_task"] for p in init)
                assert all(math.isfinite(p["hessian/top_1"]) for p in init)


def test_smoke_study_report_has_every_section_and_figure(smoke):
    sweeps, report = smoke
    text = report.read_text()
    positions = [text.index(title) for title in SECTIONS]
    assert positions == sorted(positions)
    for path, sweep, _ in sweeps:
        assert f"### {sweep.name}" in _section(text, SECTIONS[1])
        assert f"experiments/studies/{path.name} --out" in text
        # every run directory is cited with its config, copied next to the report
        for run in sweep.runs:
            assert f"{run.run_dir.name}/config.toml" in text
            link = f"configs/{sweep.name}/{run.run_dir.name}.toml"
            assert f"]({link})" in text
            copy, source = load_toml(report.parent / link), load_toml(run.run_dir / "config.toml")
            out = copy["experiment"].pop("out")
            assert Path(source["experiment"].pop("out")).resolve() == Path(out).resolve()
            assert copy == source
        # the tables (and CSVs) next to the report
        tables = report.parent / "tables" / sweep.name
        assert (tables / "study_correlations.csv").is_file()
        assert len(read_tables(tables).runs) == len(sweep.runs)
    # provenance: the versions the runs recorded (provenance.json), never the report writer's
    recorded = [json.loads(p.read_text()) for _, s, _ in sweeps for r in s.runs
                if (p := r.run_dir / "provenance.json").is_file()]
    head = _section(text, SECTIONS[0])
    if recorded:
        assert all(f"{k} {v}" in head for k, v in recorded[0]["versions"].items())
    else:
        assert "software versions: not recorded" in head
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) >= 3 * len(sweeps)
    for link in links:
        png = report.parent / link
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", link
    # the networks of both agents are probed and reported separately
    spectrum = _section(text, SECTIONS[2])
    for net in ("policy network", "value network", "q network"):
        assert f"**{net}**" in spectrum


def test_smoke_study_report_from_its_tables_alone_is_byte_identical(smoke):
    """Rebuilt from the tables it wrote (no run directory read), the document is the same
    byte for byte (rebuilt in place: its text names where it and its tables are)."""
    sweeps, report = smoke
    before = report.read_bytes()
    tables = [report.parent / "tables" / s.name for _, s, _ in sweeps]
    rebuilt = write_study_report(tables, report, report.parent / "figures", n_resamples=200)
    assert rebuilt == report and rebuilt.read_bytes() == before


def test_study_report_command_rejects_a_missing_directory(tmp_path):
    with pytest.raises(ConfigError, match="not a directory"):
        study_report_command([tmp_path / "nope"], tmp_path)


# ----------------------------------------------------------------------------- computed numbers
PERIOD = 2000  # 20 episodes of 100 steps
N_SEG = 6
SEEDS = 5


def _synthetic_study(root: Path, recover_continual, extra_arms: dict[str, int] | None = None
                     ) -> Path:
    """A sweep directory with continual (recovering after ``recover_continual(seed)[k]``
    episodes), l2_er (recovers like fresh) and fresh arms, plus ``extra_arms`` (name ->
    recovery delay at every task); probes track the recovery."""
    sweep = root / "synthetic_study"
    extra = extra_arms or {}
    arms = [("continual", "continual"), ("l2_er", "continual"), ("fresh", "fresh")]
    for arm, reference in arms + [(a, "continual") for a in extra]:
        for seed in range(SEEDS):
            if arm == "continual":
                recover = recover_continual(seed)
            else:
                recover = [0] + [extra.get(arm, 2)] * (N_SEG - 1)
            probes = []
            for k in range(1, N_SEG):
                for phase, task in (("pre", k - 1), ("init", k)):
                    probes.append({"step": k * PERIOD, "task_id": task, "phase": phase,
                                   "network": "q", "hessian/top_1": 1.0 + recover[k] + 0.1 * seed,
                                   "features/hidden.1/effective_rank": 30.0 - recover[k],
                                   "weights/norm": 10.0 + k})
            write_run(sweep / "runs" / f"{arm}-seed{seed}", arm=arm, seed=seed,
                      reference=reference, episodes=step_episodes(PERIOD, recover),
                      period=PERIOD, n_segments=N_SEG, probes=probes,
                      env_id="plasticity/MiniGridSynthetic-v0",
                      mitigations={"l2_er": {}} if arm == "l2_er" else None)
    return sweep


def _table_row(section: str, first_cell: str) -> list[str]:
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row {first_cell!r}")


def test_mean_gap_equals_direct_computation_and_conclusion_follows(tmp_path):
    rng = np.random.default_rng(1)
    plan = {s: [0, *rng.integers(6, 18, size=N_SEG - 1).tolist()] for s in range(SEEDS)}
    sweep = _synthetic_study(tmp_path, lambda s: plan[s])
    report = write_study_report([sweep], tmp_path / "docs" / "results.md",
                                tmp_path / "docs" / "figures", n_resamples=500)
    text = report.read_text()
    # direct: per seed, mean over tasks 1.. of (mean return continual - mean return fresh);
    # 20 episodes per task, return 0 before the recovery and 1 after
    per_seed = [np.mean([(20 - plan[s][k]) / 20 - (20 - 2) / 20 for k in range(1, N_SEG)])
                for s in range(SEEDS)]
    row = _table_row(_section(text, SECTIONS[4]), "continual")
    assert row[3].split(" ")[0] == f"{np.mean(per_seed):.3g}"
    mean, low, high, n = boot_mean(per_seed, n_resamples=500)
    assert n == SEEDS and math.isclose(mean, np.mean(per_seed)) and low <= mean <= high
    assert row[3] == f"{mean:.3g} [{low:.3g}, {high:.3g}]"
    # every continual gap is negative, so the conclusion says so; l2_er equals fresh
    claim = _section(text, SECTIONS[5])
    assert "adapts worse than a fresh one (CI excludes 0, negative)" in claim
    l2er_line = next(line for line in claim.splitlines() if line.startswith("- L2-ER: "))
    assert "covers 0" in l2er_line
    assert "L2-ER preserves more plasticity than plain backprop" in claim
    # the planted probe (top eigenvalue rises with the recovery delay) is found, within arm
    assert "q top eigenvalue" in _section(text, SECTIONS[3])
    assert re.search(r"best (Hessian )?probe[^.]*: q top eigenvalue", claim)


def test_no_gap_gives_the_no_difference_conclusion(tmp_path):
    sweep = _synthetic_study(tmp_path, lambda s: [0] + [2] * (N_SEG - 1))
    from experiments.cli import main

    assert main(["report", "--study", str(sweep), "--out", str(tmp_path / "docs")]) == 0
    report = tmp_path / "docs" / "results.md"
    assert report.exists()
    assert sorted(p.name for p in (tmp_path / "docs" / "figures").glob("*.png"))
    claim = _section(report.read_text(), SECTIONS[5])
    line = next(x for x in claim.splitlines() if x.startswith("- Loss of plasticity"))
    assert "covers 0" in line and "worse" not in line


def test_boot_diff_separates_shifted_samples():
    a, b = [1.0, 1.1, 0.9, 1.05, 0.95], [0.0, 0.1, -0.1, 0.05, -0.05]
    diff, low, high = boot_diff(a, b, n_resamples=500)
    assert math.isclose(diff, 1.0) and 0.8 < low < diff < high < 1.2
    diff, low, high = boot_diff(b, b, n_resamples=500)
    assert diff == 0.0 and low < 0.0 < high


@pytest.mark.parametrize(
    ("drop", "best", "verdict"),
    [
        # a CI that excludes 0 by 1e-5 on a solved task is not instability
        ((-1.6e-5, -3e-5, -2e-6), 0.95, "stable on one task"),
        ((-0.30, -0.45, -0.15), 0.95, "degrades without any shift"),
        ((-0.02, -0.12, 0.03), 0.95, "stability is not established"),
        ((0.0, 0.0, 0.0), 500.0, "stable on one task"),
    ],
)
def test_stationary_verdict_uses_a_practical_tolerance(drop, best, verdict):
    assert verdict in _stationary_text(drop, best)


def test_cross_arm_rank_correlation_orders_the_arms(tmp_path):
    # five arms whose recovery delay (and so AUC) falls as the planted feature rank rises
    sweep = _synthetic_study(tmp_path, lambda s: [0] + [14] * (N_SEG - 1),
                             extra_arms={"l2": 5, "b": 8, "c": 11})
    report = write_study_report([sweep], tmp_path / "docs" / "results.md",
                                tmp_path / "docs" / "figures", n_resamples=300)
    text = report.read_text()
    row = _table_row(_section(text, SECTIONS[4]), "q feature erank (init)")
    assert row[1] == "6" and row[2].startswith("+1.00")
    claim = _section(text, SECTIONS[5])
    assert "arms that keep more rank adapt faster" in claim
    # l2 recovers after 5 episodes, l2_er after 2: ER's contribution is positive
    assert "L2-ER preserves more plasticity than l2." in claim
