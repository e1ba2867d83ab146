"""The README's study summary is the report's: its marked block is exactly what the report
command writes there (the committed docs/results.md's answer section, between the markers),
and the committed report itself rebuilds byte for byte from the committed tables (``slow``
here; ``.ci/run`` does the same rebuild in its fresh environment)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from experiments.reporting.answer import BLOCK_END, BLOCK_START, replace_block
from experiments.reporting.render import ANSWER, SECTIONS

ROOT = Path(__file__).resolve().parents[2]
STUDIES = ("e2_ppo_hidden_goal", "e2_ppo_goal_shift", "e2_dqn_permuted_view",
           "e2_dqn_hidden_goal")


def _answer_block(results: str) -> str:
    """The block the report writes into the README: its answer section's lines."""
    start = results.index(ANSWER) + len(ANSWER)
    end = results.index(SECTIONS[1])
    lines = results[start:end].strip("\n").splitlines()
    return "\n".join([BLOCK_START, *lines, BLOCK_END])


def test_readme_block_is_what_the_report_writes():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    results = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    assert readme.count(BLOCK_START) == 1 and readme.count(BLOCK_END) == 1
    block = readme[readme.index(BLOCK_START):readme.index(BLOCK_END) + len(BLOCK_END)]
    assert block == _answer_block(results)
    assert replace_block(readme, block) == readme


def test_replace_block_needs_both_markers():
    assert replace_block("no markers", "x") is None
    text = f"a\n{BLOCK_START}\nold\n{BLOCK_END}\nb\n"
    assert replace_block(text, f"{BLOCK_START}\nnew\n{BLOCK_END}") == (
        f"a\n{BLOCK_START}\nnew\n{BLOCK_END}\nb\n")


@pytest.mark.slow
def test_committed_report_and_readme_block_rebuild_byte_for_byte(tmp_path, monkeypatch):
    from experiments.reporting.build import write_study_report

    shutil.copytree(ROOT / "docs" / "tables", tmp_path / "docs" / "tables")
    shutil.copy(ROOT / "docs" / "previous_verdicts.json", tmp_path / "docs")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    monkeypatch.chdir(tmp_path)
    rebuilt = write_study_report([Path("docs/tables") / s for s in STUDIES], Path("docs"))
    assert rebuilt.read_bytes() == (ROOT / "docs" / "results.md").read_bytes()
    assert (tmp_path / "README.md").read_bytes() == (ROOT / "README.md").read_bytes()
