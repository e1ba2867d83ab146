"""CI runs the README's install and test commands verbatim: keep the three in step."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _fenced_command(readme: str, heading: str) -> str:
    """The first line of the first ```bash block after ``heading``."""
    section = readme.split(heading, 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    return block.strip().splitlines()[0].strip()


def test_ci_runs_the_readme_install_and_test_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    install = _fenced_command(readme, "## Install")
    test = _fenced_command(readme, "## Test")
    assert install.startswith("pip install")
    assert "pytest" in test
    assert install in [line.strip() for line in ci]
    assert test in [line.strip() for line in ci]
