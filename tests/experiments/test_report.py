"""``write_report`` on tiny synthetic sweeps: content, planted results, figures, edge cases."""

from __future__ import annotations

import csv
import struct

import numpy as np
import pytest

from experiments.analysis import AdaptationSpec
from experiments.analysis.synthetic import step_episodes, write_run
from experiments.report import write_report

PERIOD = 2400  # 24 episodes of 100 steps
SPEC = AdaptationSpec(window=10, threshold=0.8, max_return=1.0)
N_SEG = 6


def _write_arm(root, arm, recover_by_seed, *, reference="continual", mitigations=None):
    for seed, recover in enumerate(recover_by_seed):
        probes = []
        for k in range(1, N_SEG):
            probes.append({"step": k * PERIOD, "task_id": k - 1, "phase": "pre", "network": "q",
                           "dormant": 0.02 * recover[k], "erank": 30.0 - k + 0.1 * seed})
            probes.append({"step": k * PERIOD, "task_id": k, "phase": "init", "network": "q",
                           "dormant": 0.5, "erank": 31.0 - k})
        write_run(root / "runs" / f"{arm}-s{seed}", arm=arm, seed=seed, reference=reference,
                  episodes=step_episodes(PERIOD, recover), period=PERIOD, n_segments=N_SEG,
                  probes=probes, mitigations=mitigations,
                  command=f"plasticity run --arm {arm} --seed {seed}")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    rng = np.random.default_rng(0)
    plain = [[0, *rng.integers(2, 15, size=N_SEG - 1).tolist()] for _ in range(3)]
    plain[1][3] = 40  # never recovers: censored
    _write_arm(root, "plain", plain)
    _write_arm(root, "l2", [[0, 2, 3, 2, 4, 3]] * 3, mitigations={"l2": {"coef": 0.001}})
    _write_arm(root, "fresh", [[0, 2, 2, 2, 2, 2]] * 3, reference="fresh")
    write_run(root / "runs" / "plain-unfinished", arm="plain", seed=7,
              episodes=step_episodes(PERIOD, [0, 0]), period=PERIOD, n_segments=2, done=False)
    write_run(root / "runs" / "plain-diverged", arm="plain", seed=8,
              episodes=step_episodes(PERIOD, [0, 0]), period=PERIOD, n_segments=2, done=False,
              diverged={"step": 3000, "what": "td_loss", "value": "nan"})
    report = write_report([root], spec=SPEC, n_resamples=300)
    return root, report, plain


def _section(text, title):
    """From the heading ``title`` to the next heading of the same or a higher level."""
    start = text.index(title)
    level = title.split(" ")[0]
    ends = [text.find(f"\n{h} ", start + 1) for h in ("#", "##", "###")[:len(level)]]
    ends = [e for e in ends if e >= 0]
    end = min(ends) if ends else -1
    return text[start:end if end >= 0 else len(text)]


def test_report_opens_with_what_was_run(sweep):
    root, report, _ = sweep
    assert report == root / "report.md"
    text = report.read_text()
    assert text.startswith("# Plasticity report\n\n## What was run")
    assert [text.index(s) for s in ("## What was run", "## Results", "## Methods",
                                    "## Caveats")] == sorted(
        text.index(s) for s in ("## What was run", "## Results", "## Methods", "## Caveats"))
    head = _section(text, "## What was run")
    assert "11 runs, 9 finished and analysed" in head
    (l2_line,) = [line for line in head.splitlines() if line.startswith("| l2 |")]
    for expected in ("continual", "`l2-s0`, `l2-s1`, `l2-s2`", "| 0, 1, 2 |",
                     "plasticity/Synthetic-v0", "| dqn |", f"| {N_SEG * PERIOD} |",
                     f"| {PERIOD} |", "l2(coef=0.001)", "4.5 s total (3 runs)"):
        assert expected in l2_line
    assert "plasticity run --arm l2 --seed 0" in head
    assert "`plain-unfinished` has no DONE marker (partial); skipped" in head
    assert "`plain-diverged` stopped at step 3000 (td_loss = nan)" in head
    assert "Fresh reference found for 6 of 6 continual runs" in head


def test_planted_probe_gives_rho_one_in_the_table(sweep):
    _, report, plain = sweep
    text = report.read_text()
    table = _section(text, "### Probes at the shift vs adaptation")
    # The censored shift takes the worst rank and has the largest probe: rho stays exactly 1.
    row = [line for line in table.splitlines()
           if line.startswith("| plain | pre/q/dormant | steps_to_threshold |")]
    assert row and "| 15 | 1 | +1.00 [+1.00, +1.00] |" in row[0]
    assert "Bonferroni threshold" in table and "Benjamini-Hochberg" in table
    assert "**Pooled over continual runs" in table
    # plain's final-return gap is 0 but for the censored shift: heavy ties, flagged CI.
    (flagged,) = [line for line in table.splitlines()
                  if line.startswith("| plain | pre/q/dormant | gap_final_return |")]
    assert "(!)" in flagged and "marked (!)" in _section(text, "## Caveats")
    # Constant init probes are reported as n/a with the reason, not dropped silently.
    with open(report.parent / "correlations.csv", newline="") as fh:
        cells = list(csv.DictReader(fh))
    reasons = {c["reason"] for c in cells if c["probe"] == "init/q/dormant"}
    assert reasons == {"constant probe"}


def test_censored_recovery_reported_as_censored(sweep):
    root, report, plain = sweep
    text = report.read_text()
    adaptation = _section(text, "### Adaptation after each shift")
    (line,) = [ln for ln in adaptation.splitlines() if ln.startswith("| plain |")]
    assert "14/15 reached" in line and "1 censored" in line
    assert "plain: 1 of 15 recoveries censored" in _section(text, "## Caveats")
    with open(root / "adaptation.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 9 * (N_SEG - 1)
    (cens,) = [r for r in rows if r["censored"] == "True"]
    assert (cens["run"], cens["segment"]) == ("plain-s1", "3")
    assert cens["steps_to_threshold"] == "" and cens["steps_lower_bound"] == str(PERIOD)
    # The warm - fresh step gap of that shift is censored too.
    assert cens["gap_steps_censored"] == "True" and cens["gap_steps_to_threshold"] == ""


def test_gap_section_and_probe_trends(sweep):
    _, report, _ = sweep
    text = report.read_text()
    gaps = _section(text, "### Warm - fresh gap per segment")
    # l2 recovers after 2-4 episodes, fresh after 2: segment 1 identical -> gap 0 exactly.
    (l2_seg1,) = [ln for ln in gaps.splitlines() if ln.startswith("| l2 | 1 | 3 |")]
    assert "| 0 [0, 0] |" in l2_seg1
    # l2 segment 2 recovers one episode later than fresh on every seed: mean return gap -1/24.
    (l2_seg2,) = [ln for ln in gaps.splitlines() if ln.startswith("| l2 | 2 | 3 |")]
    assert f"| {-1 / 24:.3g} [{-1 / 24:.3g}, {-1 / 24:.3g}] |" in l2_seg2
    trends = _section(text, "### Probes over successive shifts")
    (erank,) = [ln for ln in trends.splitlines() if ln.startswith("| fresh | pre/q/erank |")]
    assert "| 15 | -0.98 [" in erank


def test_figures_are_small_headless_pngs(sweep):
    root, report, _ = sweep
    text = report.read_text()
    names = ["returns.png", "segment_returns.png", "probes_q.png", "scatter_1.png"]
    for name in names:
        path = root / "figures" / name
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        assert (width, height) == (700, 400)
        assert len(data) < 200_000
        assert f"(figures/{name})" in text


def test_single_run_with_too_few_shifts_flags_cells(tmp_path):
    run_dir = write_run(tmp_path / "one", arm="solo", seed=3, episodes=step_episodes(
        PERIOD, [0, 3, 5]), period=PERIOD, n_segments=3, probes=[
        {"step": PERIOD, "task_id": 0, "phase": "pre", "network": "q", "erank": 3.0},
        {"step": 2 * PERIOD, "task_id": 1, "phase": "pre", "network": "q", "erank": 2.0}])
    report = write_report([run_dir], spec=SPEC, n_resamples=50)
    assert report == run_dir / "report.md"
    text = report.read_text()
    assert "n/a (n=2 < 5)" in text
    assert "No continual run has a matching fresh reference run" in text
    assert "Fewer than 10 seeds in: solo (1)" in text
    assert write_report([run_dir], spec=SPEC, n_resamples=50).read_text() == text  # reproducible


def test_several_paths_default_to_report_dir_and_stationary_runs(tmp_path, monkeypatch):
    a = write_run(tmp_path / "a", arm="stat", seed=0, reference="stationary",
                  episodes=step_episodes(PERIOD, [0]), period=PERIOD, n_segments=1)
    b = write_run(tmp_path / "b", arm="stat", seed=1, reference="stationary",
                  episodes=step_episodes(PERIOD, [0]), period=PERIOD, n_segments=1)
    monkeypatch.chdir(tmp_path)
    report = write_report([a, b], n_resamples=50)
    assert report.resolve() == (tmp_path / "report" / "report.md").resolve()
    text = report.read_text()
    assert "No shifts in the analysed runs." in text
    assert (tmp_path / "report" / "figures" / "returns.png").is_file()
