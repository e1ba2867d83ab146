"""``plasticity report`` (the generic configuration of the report engine) on tiny synthetic
run directories: content, unfinished runs, references, the tables next to the report and the
byte-identical rebuild from them (mixed commits: tests/experiments/test_analysis_tables.py)."""

from __future__ import annotations

import pytest

from experiments.reporting.build import write_report
from experiments.reporting.render import SECTIONS
from tests.experiments.synthetic import step_episodes, write_run

PERIOD = 2400  # 24 episodes of 100 steps
N_SEG = 6


def _write_arm(root, arm, recover_by_seed, *, reference="continual", mitigations=None):
    for seed, recover in enumerate(recover_by_seed):
        probes = [{"step": k * PERIOD, "task_id": k, "phase": "init", "network": "q",
                   "dormant": 0.02 * recover[k] + 0.001 * seed, "erank": 30.0 - k}
                  for k in range(1, N_SEG)]
        write_run(root / "runs" / f"{arm}-s{seed}", arm=arm, seed=seed, reference=reference,
                  episodes=step_episodes(PERIOD, recover), period=PERIOD, n_segments=N_SEG,
                  probes=probes, mitigations=mitigations)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    _write_arm(root, "plain", [[0, 3, 9, 4, 12, 6], [0, 8, 2, 40, 5, 7], [0, 4, 6, 11, 3, 9]])
    _write_arm(root, "l2", [[0, 2, 3, 2, 4, 3]] * 3, mitigations={"l2": {"coef": 0.001}})
    _write_arm(root, "fresh", [[0, 2, 2, 2, 2, 2]] * 3, reference="fresh")
    write_run(root / "runs" / "plain-unfinished", arm="plain", seed=7,
              episodes=step_episodes(PERIOD, [0, 0]), period=PERIOD, n_segments=2, done=False)
    report = write_report([root])
    return root, report


def _section(text, title):
    start = text.index(title)
    end = text.find("\n## ", start + 1)
    return text[start:end if end >= 0 else len(text)]


def test_report_opens_with_what_was_run_and_names_the_references(sweep):
    root, report = sweep
    assert report == root / "report.md"
    text = report.read_text()
    assert text.startswith("# Plasticity report\n")
    present = [s for s in SECTIONS if s in text]
    assert [text.index(s) for s in present] == sorted(text.index(s) for s in present)
    head = _section(text, SECTIONS[1])
    assert "10 runs, 9 finished and analysed" in head
    assert "`runs/plain-unfinished` is left out of every number" in head
    assert "| l2 | continual | - | l2(coef=0.001) |" in head
    assert "- plain: `fresh` (matched automatically)" in head
    # l2 has no fresh run with its mitigation: no gap, never the plain fresh run's
    assert "- l2: **none**" in head
    assert "No hypothesis is declared for this stream" in _section(text, SECTIONS[2])
    # the planted probe (dormant rises with the recovery delay) is exploratory only
    exploratory = _section(text, SECTIONS[5])
    assert "| plain | q dormant (init) | -" in exploratory


def test_report_rebuilt_from_its_tables_is_byte_identical(sweep, tmp_path):
    root, report = sweep
    again = write_report([root / "tables"], tmp_path / "again")
    assert again.read_bytes() == report.read_bytes()
    for png in (root / "figures").glob("*.png"):
        assert (tmp_path / "again" / "figures" / png.name).read_bytes() == png.read_bytes()
