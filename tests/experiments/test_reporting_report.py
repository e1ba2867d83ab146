"""The report engine on synthetic tables whose truth is known: declared hypotheses are the
only verdicts (an undeclared, strong correlation stays exploratory), gaps only against a
matched reference, the negative control needs a converged stationary run, deterministic
output, legible figures."""

from __future__ import annotations

import json
import struct
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from experiments.reporting.declarations import parse_declarations
from experiments.reporting.figures import write_figures
from experiments.reporting.render import SECTIONS, render
from experiments.reporting.summary import Report, StreamInput, summarize

PERIOD = 1000
SHIFTS = 8
SEEDS = 5


def _config(arm, seed, reference, mitigations=()):
    return json.dumps({"experiment": {"arm": arm, "seed": seed, "reference": reference,
                                      "steps": PERIOD * (SHIFTS + 1), "out": f"/x/{arm}{seed}"},
                       "env": {"id": "plasticity/Synthetic-v0", "period": PERIOD},
                       "agent": {"algo": "dqn"},
                       "mitigations": {"names": list(mitigations), "options": {}}})


def _tables(*, stationary_converges=True, seed=0):
    """continual: ``driver`` (undeclared) sets each shift's auc within seeds; ``noise`` (the
    declared probe) is unrelated. fresh adapts at 0.9; ``l2`` has no fresh L2 run."""
    rng = np.random.default_rng(seed)
    arms = {"continual": ("continual", ()), "fresh": ("fresh", ()), "l2": ("continual", ("l2",)),
            "stationary": ("stationary", ())}
    runs, episodes, shifts, probes, adaptation = [], [], [], [], []
    for arm, (reference, mitigations) in arms.items():
        for s in range(SEEDS):
            run_id = f"runs/{arm}-seed{s}"
            runs.append({"run_id": run_id, "arm": arm, "seed": s, "reference": reference,
                         "status": "done", "period": PERIOD, "git_commit": "abc123",
                         "git_dirty": False, "config": _config(arm, s, reference, mitigations)})
            for w in range(SHIFTS + 1):
                if reference == "stationary":
                    level = 0.9 if stationary_converges else 0.1 * w
                else:
                    level = 0.5
                for e in range(10):
                    episodes.append({"run_id": run_id, "step": w * PERIOD + 100 * (e + 1),
                                     "task_id": 0 if reference == "stationary" else w,
                                     "return": level, "length": 100})
            if reference == "stationary":
                continue
            for k in range(1, SHIFTS + 1):
                driver = rng.normal()
                auc = (0.9 if arm == "fresh" else 0.5 + 0.1 * driver) + 0.01 * rng.normal()
                shifts.append({"run_id": run_id, "shift_index": k, "step": k * PERIOD,
                               "from_task": k - 1, "to_task": k, "oracle": reference == "fresh"})
                probes.append({"run_id": run_id, "step": k * PERIOD, "task_id": k,
                               "phase": "init", "network": "q", "data": "on_policy",
                               "driver": driver, "noise": rng.normal()})
                adaptation.append({"run_id": run_id, "shift_index": k, "task_id": k,
                                   "step": k * PERIOD, "auc": auc, "mean_return": auc,
                                   "censored": False})
    return SimpleNamespace(runs=pd.DataFrame(runs), episodes=pd.DataFrame(episodes),
                           shifts=pd.DataFrame(shifts), probes=pd.DataFrame(probes),
                           adaptation=pd.DataFrame(adaptation))


STUDY = {
    "report": {"key_arms": ["continual", "fresh", "l2"], "comparison_arm": "continual",
               "negative_control": True, "primary_target": "auc",
               "limitations": ["A synthetic study."]},
    "hypotheses": [
        {"id": "H1", "kind": "within_arm", "probe": "noise", "network": "q", "target": "auc",
         "sign": "+", "arms": ["continual"]},
        {"id": "H2", "kind": "between_arms", "target": "auc", "sign": "-",
         "arms": ["continual"], "versus": "fresh"},
    ],
}


def _report(data, study=STUDY):
    stream = StreamInput("synthetic", data, parse_declarations(study), commits=("abc123",))
    summary = summarize(stream)
    return summary, Report("Synthetic report", (summary,))


def _section(text, title):
    start = text.index(title)
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else len(text)]


@pytest.fixture(scope="module")
def built():
    summary, report = _report(_tables())
    return summary, report, render(report, {})


def test_sections_in_order_and_only_declared_hypotheses_get_verdicts(built):
    summary, _, text = built
    present = [s for s in SECTIONS if s in text]  # one stream, no previous report: no pooling
    assert present == [s for i, s in enumerate(SECTIONS) if i not in (3, 6)]
    assert [text.index(s) for s in present] == sorted(text.index(s) for s in present)
    verdicts = _section(text, SECTIONS[2])
    assert "| H1 | continual |" in verdicts and "| H2 | continual |" in verdicts
    # the undeclared driver sets adaptation exactly, yet never reaches the verdicts ...
    assert "driver" not in verdicts
    (driver,) = [e for arm, c, e in summary.exploratory.effects
                 if arm == "continual" and c.endswith("/driver")]
    assert driver.low > 0 and driver.p < 1e-6
    # ... it is listed as exploratory, with an unadjusted p and no verdict
    exploratory = _section(text, SECTIONS[5])
    assert "q driver (init)" in exploratory and "supported" not in exploratory
    by_id = {(t.hypothesis.id, t.variant): t.verdict for t in summary.tests}
    assert by_id == {("H1", "effect"): "inconclusive", ("H2", "difference"): "supported"}
    # the answer comes first, before the tables, and says only what the verdicts say
    assert text.index(SECTIONS[0]) < text.index("| arm |")


def test_gap_only_against_the_matched_reference(built):
    summary, _, text = built
    gaps = {g.arm: g for g in summary.gaps}
    assert gaps["continual"].mean.estimate == pytest.approx(-0.4, abs=0.05)
    assert gaps["l2"].mean is None and not gaps["l2"].reference.matched
    what = _section(text, SECTIONS[1])
    assert "- l2: **none**: no fresh run with this arm's settings, so no gap" in what
    assert "- continual: `fresh` (matched automatically)" in what
    assert "No matched fresh reference (same agent, network and mitigations) for l2" in text
    # the comparison arm: every other arm's adaptation minus continual's, seed-paired
    fresh = summary.arm("fresh").versus_comparison
    assert fresh.estimate == pytest.approx(0.4, abs=0.05) and fresh.low > 0
    assert summary.arm("continual").versus_comparison is None
    assert "minus continual [95% CI]" in _section(text, SECTIONS[4])


def test_negative_control_needs_a_converged_stationary_run(built):
    summary, _, text = built
    assert summary.stationary[0].converged
    assert "**Negative control**: synthetic can serve as a negative control" in text
    still_learning, _ = _report(_tables(stationary_converges=False))
    assert not still_learning.stationary[0].converged
    assert still_learning.negative_control.startswith("cannot serve as a negative control: "
                                                      "its stationary control has not converged")


def test_roles_and_limitations_come_from_the_study_file_and_configs(built):
    summary, _, text = built
    assert summary.arm("continual").roles == ("comparison arm", "key arm")
    assert summary.arm("fresh").roles == ("fresh reference", "key arm")
    assert summary.arm("fresh").oracle_switches and not summary.arm("continual").oracle_switches
    assert summary.arm("l2").mitigations == "l2"
    limitations = _section(text, SECTIONS[7])
    assert "- A synthetic study." in limitations
    assert "Fewer than 10 seeds in continual (5)" in limitations
    assert "100% of the probe rows were taken on a rollout of the arm's own policy" in limitations


def test_report_is_deterministic_and_figures_are_legible_pngs(built, tmp_path):
    summary, report, text = built
    _, again = _report(_tables())
    assert render(again, {}) == text
    paths = write_figures(summary, tmp_path / "a")
    again_paths = write_figures(summary, tmp_path / "b")
    assert set(paths) == {"gap", "returns", "probes_q", "scatter"}
    for kind, path in paths.items():
        data = path.read_bytes()
        assert data == again_paths[kind].read_bytes()  # byte for byte
        width, height = struct.unpack(">II", data[16:24])
        assert width >= 320 and height >= 240 and len(data) < 300_000
    # one small-multiple panel per gap arm: 1 arm with a reference -> a single panel
    assert struct.unpack(">II", paths["gap"].read_bytes()[16:24]) == (320, 260)


def test_a_report_without_declarations_is_all_exploratory():
    summary, report = _report(_tables(), study={})
    text = render(report, {})
    assert "No hypothesis is declared for this stream: nothing here is confirmatory." in text
    assert summary.tests == ()
    assert "No hypothesis was declared: every result is exploratory." in text
