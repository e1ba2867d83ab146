"""The study files (experiments/studies/*.toml) and the study results document.

* Every study file expands into a valid sweep with the seeds and arms the issue requires.
* Its ``[smoke]`` setting runs end to end (1 seed, the core arms: the sweep machinery has no
  smoke override of seeds and arms, so the test selects them) and the study report is
  written from the smoke sweeps with every section and figure.
* Every study file declares signed hypotheses the report engine accepts.
* On synthetic run directories with planted returns, the study report's numbers equal a
  direct computation and the verdicts follow the declared hypotheses.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from experiments.analysis import read_tables
from experiments.errors import ConfigError
from experiments.reporting.build import write_study_report
from experiments.reporting.declarations import parse_declarations
from experiments.reporting.inference import mean_interval
from experiments.reporting.render import SECTIONS
from experiments.sweep import Sweep, SweepRun, load_sweep, run_sweep
from experiments.tomlio import load_toml
from tests.experiments.synthetic import step_episodes, write_run

STUDIES = sorted((Path(__file__).resolve().parents[2] / "experiments" / "studies").glob("*.toml"))
# the smoke sweeps run these arms where a study has them (one seed each)
SMOKE_ARMS = ("continual", "fresh", "stationary", "l2_er", "l2_er_lr1e-2", "l2_er_lr1e-1",
              "head_reset", "policy_head_reset", "entropy_rewarm")
# the PPO studies probe the full PPO loss too (probes.networks), as the spectral-collapse paper
NETWORKS = {"e2_ppo_hidden_goal": {"policy", "value", "actor_critic"},
            "e2_ppo_goal_shift": {"policy", "value", "actor_critic"},
            "e2_dqn_hidden_goal": {"q"}, "e2_dqn_permuted_view": {"q"}}
KEY_ARMS = ("continual", "fresh")  # >= 10 seeds (and the L2-ER doses where a study has them)
L2_ER_DOSES = ("l2_er", "l2_er_lr1e-2", "l2_er_lr1e-1")


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _section(text: str, title: str) -> str:
    start = text.index(title)
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else len(text)]


# ----------------------------------------------------------------------------- study files
def test_four_second_edition_studies_exist():
    assert [p.stem for p in STUDIES] == ["e2_dqn_hidden_goal", "e2_dqn_permuted_view",
                                         "e2_ppo_goal_shift", "e2_ppo_hidden_goal"]


def _arm_seeds(path: Path) -> dict[str, set[int]]:
    seeds: dict[str, set[int]] = {}
    for run in load_sweep(path, out="/nonexistent/never-written").runs:
        seeds.setdefault(run.config["experiment"]["arm"], set()).add(run.config["experiment"]["seed"])
    return seeds


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_study_file_expands_with_required_seeds_shifts_and_arms(path):
    sweep = load_sweep(path, out="/nonexistent/never-written")
    seeds = _arm_seeds(path)
    assert set(KEY_ARMS) <= set(seeds)
    for arm, arm_seeds in seeds.items():
        assert len(arm_seeds) >= (10 if arm in KEY_ARMS else 5), arm
    for run in sweep.runs:
        assert run.config["experiment"]["steps"] // run.config["env"]["period"] - 1 >= 10
    refs = {r.config["experiment"]["arm"]: r.config["experiment"]["reference"] for r in sweep.runs}
    assert refs["fresh"] == "fresh" and refs["continual"] == "continual"
    doses = [arm for arm in L2_ER_DOSES if arm in seeds]
    assert doses in ([], list(L2_ER_DOSES))
    for arm, lr in zip(doses, (1e-6, 1e-2, 1e-1), strict=False):
        run = next(r for r in sweep.runs if r.config["experiment"]["arm"] == arm)
        assert run.config["mitigations"]["options"]["l2_er"] == {
            "weight_decay": 1e-3, "lr": lr, "steps_per_update": 10, "adam_betas": [0.99, 0.99]}
    header = path.read_text().split("\nname =")[0]
    for word in ("Pre-registered", "tests", "Arms", "Seeds", "Wall time", "CUT", "[[hypotheses]]"):
        assert word in header, f"{path.name}: header comment lacks {word!r}"


def test_flagship_has_every_arm_and_ten_seeds_for_the_dose_response():
    path = next(p for p in STUDIES if p.stem == "e2_ppo_hidden_goal")
    seeds = _arm_seeds(path)
    assert set(seeds) == {"continual", "fresh", "stationary", "policy_head_reset",
                          "value_head_reset", "entropy_rewarm", "l2", *L2_ER_DOSES, "redo",
                          "cbp_l2", "layernorm_l2"}
    assert all(len(seeds[arm]) >= 10 for arm in L2_ER_DOSES)
    runs = load_sweep(path, out="/x").runs
    config = {r.config["experiment"]["arm"]: r.config for r in runs}
    assert config["entropy_rewarm"]["shift"]["exploration"] == "rewarm"
    assert config["policy_head_reset"]["mitigations"]["options"]["reset_on_switch"]["networks"] == ["actor"]
    assert config["value_head_reset"]["mitigations"]["options"]["reset_on_switch"]["networks"] == ["critic"]


@pytest.mark.parametrize("stem", ["e2_dqn_hidden_goal", "e2_dqn_permuted_view"])
def test_dqn_studies_match_the_first_edition_protocol(stem):
    sweep = load_sweep(next(p for p in STUDIES if p.stem == stem), out="/x")
    for run in sweep.runs:
        agent, shift = run.config["agent"], run.config["shift"]
        assert (agent["n_step"], agent["loss"], agent["max_grad_norm"]) == (3, "huber", 10.0)
        assert agent["buffer_size"] == run.config["env"]["period"] == 15_000
        assert agent["exploration_steps"] == 15_000 // 4
        # the oracle knobs are applied to every arm alike, continual included
        assert (shift["exploration"], shift["buffer"]) == ("rewarm", "flush")


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.stem)
def test_study_file_declares_signed_hypotheses(path):
    declared = parse_declarations(load_toml(path))
    assert len(declared.hypotheses) >= 2
    assert {h.kind for h in declared.hypotheses} >= {"within_arm", "between_arms"}
    assert all(h.sign in "+-" for h in declared.hypotheses)


# ----------------------------------------------------------------------------- smoke end to end
@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    root = tmp_path_factory.mktemp("studies")
    sweeps = []
    for path in STUDIES:
        sweep = load_sweep(path, out=root / path.stem, smoke=True, seeds=[0])
        sweep.runs = [r for r in sweep.runs if r.config["experiment"]["arm"] in SMOKE_ARMS]
        sweeps.append((path, sweep))
    # One process pool for the studies (saves two pool start-ups); run_sweep writes
    # each member into its own study's directory, and the copies of the study files are
    # written as run_sweep would.
    everything = Sweep("smoke", root, [SweepRun(f"{s.name}/{r.name}", r.config)
                                       for _, s in sweeps for r in s.runs])
    result = run_sweep(everything, workers=2, progress="off")
    for _, sweep in sweeps:
        (sweep.directory / "sweep.toml").write_text(sweep.source, encoding="utf-8")
    sweeps = [(path, sweep, result) for path, sweep in sweeps]
    report = write_study_report([s.directory for _, s, _ in sweeps], root / "docs")
    return sweeps, report


def test_smoke_runs_all_finish_with_probes_at_every_shift(smoke):
    sweeps, _ = smoke
    for path, sweep, result in sweeps:
        assert {r.config["experiment"]["arm"] for r in sweep.runs} >= set(KEY_ARMS)
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
            nets = NETWORKS[path.stem]
            probing = run.config["probes"]
            phases = ["pre", "init"]
            if run.config["experiment"]["reference"] == "fresh" and probing["trained_once"]:
                phases.append("trained_once")
            for shift in shifts:
                at = {(p["phase"], p["network"], p["data"]) for p in probes if p["step"] == shift["step"]}
                expected = {(ph, n, "on_policy") for ph in phases for n in nets}
                expected |= {(ph, n, "fixed") for ph in phases for n in nets - {"actor_critic"}
                             if ph in probing["fixed_phases"]}  # actor_critic has no fixed loss
                assert expected <= at, (path.stem, shift)
                init = [p for p in probes if p["step"] == shift["step"] and p["phase"] == "init"]
                assert all(p["task_id"] == shift["to_task"] for p in init)
                assert all(math.isfinite(p["hessian/top_1"]) for p in init)


def test_smoke_study_report_has_every_section_hypothesis_and_figure(smoke):
    sweeps, report = smoke
    assert report.name == "results.md"
    text = report.read_text()
    positions = [text.index(title) for title in SECTIONS if title in text]
    assert positions == sorted(positions) and len(positions) >= len(SECTIONS) - 1
    confirmatory = _section(text, SECTIONS[2])
    for path, sweep, _ in sweeps:
        assert f"### {sweep.name}" in _section(text, SECTIONS[1])
        assert f"plasticity sweep experiments/studies/{path.name} --workers 2" in text
        for h in parse_declarations(load_toml(path)).hypotheses:
            arms = ", ".join(h.arms) if h.kind == "dose_response" else h.arms[0]
            assert f"| {h.id} | {arms} |" in _section(confirmatory, f"### {sweep.name}")
        # every run's resolved config is copied next to the report
        for run in sweep.runs:
            link = f"configs/{sweep.name}/{run.run_dir.name}.toml"
            assert f"]({link})" in text
            copy, source = load_toml(report.parent / link), load_toml(run.run_dir / "config.toml")
            out = copy["experiment"].pop("out")
            assert Path(source["experiment"].pop("out")).resolve() == Path(out).resolve()
            assert copy == source
        tables = report.parent / "tables" / sweep.name
        assert len(read_tables(tables).runs) == len(sweep.runs)
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) >= 2 * len(sweeps)
    for link in links:
        png = report.parent / link
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", link
    # the smoke runs have no value_head_reset arm: its declared reference is simply absent
    assert "| value_head_reset |" not in _section(text, SECTIONS[1])


def test_smoke_study_report_from_its_tables_alone_is_byte_identical(smoke):
    """Rebuilt from the tables it wrote (no run directory read), the document and its
    figures are the same byte for byte."""
    sweeps, report = smoke
    before = report.read_bytes()
    figures = {p.name: p.read_bytes() for p in (report.parent / "figures").glob("*.png")}
    tables = [report.parent / "tables" / s.name for _, s, _ in sweeps]
    rebuilt = write_study_report(tables, report.parent)
    assert rebuilt == report and rebuilt.read_bytes() == before
    assert {p.name: p.read_bytes() for p in (report.parent / "figures").glob("*.png")} == figures


def test_study_report_rejects_a_missing_directory(tmp_path):
    with pytest.raises(ConfigError, match="not a directory"):
        write_study_report([tmp_path / "nope"], tmp_path)


# ----------------------------------------------------------------------------- computed numbers
PERIOD = 2000  # 20 episodes of 100 steps
N_SEG = 6
SEEDS = 5
STUDY_FILE = """name = "synthetic_study"
seeds = [0, 1, 2, 3, 4]

[report]
primary_target = "mean_return"
threshold = 0.8
max_return = 1.0

[[hypotheses]]
id = "H1"
kind = "between_arms"
target = "mean_return"
sign = "+"
arms = ["l2_er"]
versus = "continual"

[[hypotheses]]
id = "H2"
kind = "within_arm"
probe = "hessian/top_1"
network = "q"
target = "auc"
sign = "-"
arms = ["continual"]
"""


def _synthetic_study(root: Path, recover_continual) -> Path:
    """A sweep directory with continual (recovering after ``recover_continual(seed)[k]``
    episodes; its top eigenvalue rises with the delay, plus noise), l2_er (recovers after 2 episodes, no
    fresh L2-ER run) and fresh (after 2) arms."""
    sweep = root / "synthetic_study"
    sweep.mkdir(parents=True)
    (sweep / "sweep.toml").write_text(STUDY_FILE, encoding="utf-8")
    noise = np.random.default_rng(7)
    for arm, reference in (("continual", "continual"), ("l2_er", "continual"),
                           ("fresh", "fresh")):
        for seed in range(SEEDS):
            recover = (recover_continual(seed) if arm == "continual"
                       else [0] + [2] * (N_SEG - 1))
            probes = []
            for k in range(1, N_SEG):
                for phase, task in (("pre", k - 1), ("init", k)):
                    probes.append({"step": k * PERIOD, "task_id": task, "phase": phase,
                                   "network": "q",
                                   "hessian/top_1": 1.0 + recover[k] + noise.normal(),
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


def test_gap_equals_direct_computation_and_verdicts_follow_the_declarations(tmp_path):
    rng = np.random.default_rng(1)
    plan = {s: [0, *rng.integers(6, 18, size=N_SEG - 1).tolist()] for s in range(SEEDS)}
    sweep = _synthetic_study(tmp_path, lambda s: plan[s])
    report = write_study_report([sweep], tmp_path / "docs")
    text = report.read_text()
    # direct: mean over seeds and tasks 1.. of (mean return continual - mean return fresh);
    # 20 episodes per task, return 0 before the recovery and 1 after
    gaps = [(20 - plan[s][k]) / 20 - (20 - 2) / 20 for s in range(SEEDS) for k in range(1, N_SEG)]
    seeds = [s for s in range(SEEDS) for _ in range(1, N_SEG)]
    expected = mean_interval(gaps, seeds)
    row = _table_row(_section(text, SECTIONS[4]), "continual")
    assert row[4] == f"{expected.estimate:+.3g} [{expected.low:+.3g}, {expected.high:+.3g}]"
    assert expected.high < 0
    # l2_er has no fresh L2-ER run: no gap, and the report says so
    assert _table_row(_section(text, SECTIONS[4]), "l2_er")[4] == "-"
    assert "- l2_er: **none**: no fresh run with this arm's settings" in text
    # the declared hypotheses: l2_er adapts better than continual; a larger top eigenvalue
    # goes with a lower AUC within the continual arm (planted)
    confirmatory = _section(text, SECTIONS[2])
    assert re.search(r"\| H1 \| l2_er \| difference of seed means \| \+ \| .* \| \*\*supported\*\* \|", confirmatory)
    h2 = _table_row(confirmatory, "H2")
    assert h2[2] == "within seeds, beyond the task index" and h2[-1] == "**supported**"
    assert "weights/norm" not in confirmatory  # undeclared: exploratory only
    # the plain-language answer repeats those verdicts under the question each answers
    plain = _section(text, SECTIONS[0])
    assert ("**Does spectral collapse at new-task initialisation predict slower adaptation?** "
            "1 test(s): supported in 1 (synthetic_study H2)") in plain
    assert "**Do the other mitigations adapt better?** 1 test(s): supported in 1 (synthetic_study H1)." in plain


def test_no_gap_gives_no_supported_loss(tmp_path):
    sweep = _synthetic_study(tmp_path, lambda s: [0] + [2] * (N_SEG - 1))
    from experiments.cli import main

    assert main(["report", "--study", str(sweep), "--out", str(tmp_path / "docs")]) == 0
    text = (tmp_path / "docs" / "results.md").read_text()
    assert sorted(p.name for p in (tmp_path / "docs" / "figures").glob("*.png"))
    row = _table_row(_section(text, SECTIONS[4]), "continual")
    assert row[4] == "+0 [+0, +0]"  # every shift recovers like fresh: the gap is exactly 0
    assert _table_row(_section(text, SECTIONS[2]), "H1")[-1] == "**inconclusive**"
