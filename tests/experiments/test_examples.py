"""The committed example (docs/examples/dqn_minigrid_smoke): its report rebuilds from its
committed tables alone, byte for byte, and the README's pandas example runs on them."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from experiments.analysis import check_commits, read_tables
from experiments.reporting.build import write_study_report

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = Path("docs/examples/dqn_minigrid_smoke")
TABLES = EXAMPLE / "tables" / "dqn_minigrid_smoke"


def test_committed_report_rebuilds_from_the_committed_tables_byte_for_byte(tmp_path,
                                                                           monkeypatch):
    # A copy of the tables in a fresh tree (no run directory anywhere), rebuilt with the
    # command the README gives, from the repository root of that tree.
    shutil.copytree(ROOT / TABLES, tmp_path / TABLES)
    shutil.copy(ROOT / EXAMPLE / "sweep.toml", tmp_path / EXAMPLE / "sweep.toml")
    monkeypatch.chdir(tmp_path)
    rebuilt = write_study_report([TABLES], EXAMPLE)
    assert rebuilt.read_bytes() == (ROOT / EXAMPLE / "results.md").read_bytes()
    # its tables are the committed ones, and its config copies too
    assert read_tables(TABLES).equals(read_tables(ROOT / TABLES))
    for copy in (ROOT / EXAMPLE / "configs").rglob("*.toml"):
        assert (tmp_path / copy.relative_to(ROOT)).read_bytes() == copy.read_bytes()
    for figure in (ROOT / EXAMPLE / "figures").glob("*.png"):
        assert (tmp_path / figure.relative_to(ROOT)).read_bytes() == figure.read_bytes()


def test_committed_tables_are_small_and_of_one_clean_commit():
    data = read_tables(ROOT / TABLES)
    assert sum(p.stat().st_size for p in (ROOT / TABLES).iterdir()) < 1_000_000
    (commit,) = check_commits(data)
    assert re.fullmatch(r"[0-9a-f]{40}", commit) and not data.runs["git_dirty"].any()
    assert set(data.runs["status"]) == {"done"} and len(data.runs) == 6


def test_readme_pandas_example_runs(monkeypatch, capsys):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Your runs as pandas tables", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    assert len(code.strip().splitlines()) == 5
    monkeypatch.chdir(ROOT)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "continual" in out and "fresh" in out and "init" in out
