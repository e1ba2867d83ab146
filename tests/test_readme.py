"""The README cannot rot: CI runs its install and test commands verbatim, every
``plasticity ...`` command in it runs (at smoke size) in a fresh directory, its Python
snippets run, its config example is the shipped file, and every run it shows is sane at
full size (epsilon reaches its final value within the run, at least one update happens,
a shifting run shifts)."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

#: The study files the committed docs/results.md reports (README, "Reproducing the study").
STUDIES = ("e2_ppo_hidden_goal", "e2_ppo_goal_shift", "e2_dqn_permuted_view", "e2_dqn_hidden_goal")

#: Commands that cannot run in the test suite, each with the reason.
SKIPPED = {
    "plasticity sweep docs/examples/my_sweep.toml --backend ray --address auto":
        "needs a running Ray cluster; the Ray backend runs on a local instance in "
        "tests/experiments/test_sweep.py and a missing cluster's message is tested in "
        "tests/experiments/test_cli.py",
    **{f"plasticity sweep experiments/studies/{s}.toml --workers 2 --no-report":
       "a study sweep takes 20 min to 2 h here; its [smoke] setting runs end to end in "
       "tests/experiments/test_studies.py"
       for s in STUDIES},
    "plasticity run":
        "the default study at smoke size (the same command with its [smoke] overrides) runs in "
        "tests/experiments/test_cli.py::test_run_without_config_runs_the_default_study_and_writes_the_report",
    " ".join(["plasticity report --study", *(f"runs/studies/{s}" for s in STUDIES), "--out docs"]):
        "needs the study sweeps; the study report of their smoke runs is tested in "
        "tests/experiments/test_studies.py",
    " ".join(["plasticity report --study", *(f"docs/tables/{s}" for s in STUDIES), "--out docs"]):
        "rewrites the committed docs/ from the committed study tables; the same command on "
        "the committed example's tables is tested byte for byte in "
        "tests/experiments/test_examples.py",
}

#: Appended to a single run's command line: the same run, a few hundred steps per task.
SMOKE_RUN = ["experiment.steps=1200", "env.period=400", "experiment.checkpoint_every=400",
             "experiment.log_every=200", 'probes.metrics=["weights","features"]',
             "probes.init_rollout_steps=32", "logging.tensorboard=false"]


def _fenced_command(readme: str, heading: str) -> str:
    """The first line of the first ```bash block after ``heading``."""
    section = readme.split(heading, 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    return block.strip().splitlines()[0].strip()


def readme_commands() -> list[str]:
    """Every ``plasticity`` command of the README's bash blocks (continuations joined,
    comments dropped, whitespace normalised)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "plasticity":
                commands.append(shlex.join(words))
    return commands


def test_ci_runs_the_readme_install_and_test_commands() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    install = _fenced_command(README, "## Install")
    test = _fenced_command(README, "## Test")
    assert install.startswith("pip install")
    assert "pytest" in test
    assert install in [line.strip() for line in ci]
    assert test in [line.strip() for line in ci]


def test_the_readme_commands_are_found_and_every_skip_names_a_readme_command() -> None:
    commands = readme_commands()
    assert len(commands) >= 12
    assert set(SKIPPED) <= set(commands), set(SKIPPED) - set(commands)


def test_the_readme_config_and_plugin_are_the_shipped_example_files() -> None:
    blocks = re.findall(r"```(?:toml|python)\n(.*?)```", README, re.S)
    assert (ROOT / "docs/examples/my_run.toml").read_text() in blocks
    plugin = (ROOT / "docs/examples/my_streams.py").read_text().split('"""\n\n', 1)[1]
    assert plugin in blocks


def _smoke_argv(command: str) -> list[str]:
    """The command's argv at smoke size: sweeps take their ``[smoke]`` table, single runs
    :data:`SMOKE_RUN`."""
    argv = shlex.split(command)[1:]
    if argv[0] == "sweep":
        return [*argv, "--smoke"]
    if argv[0] != "run" or "--resume" in argv:
        return argv
    return [*argv, *SMOKE_RUN]


@pytest.mark.timeout(900)  # ~40 s on a quiet machine; minutes when the 2 cores are shared
def test_every_readme_command_runs_as_written_at_smoke_size(tmp_path, monkeypatch, capsys):
    """In a fresh directory holding only docs/examples, in README order, so the resume and
    report commands act on what the earlier commands wrote."""
    from experiments.cli import main

    shutil.copytree(ROOT / "docs" / "examples", tmp_path / "docs" / "examples")
    monkeypatch.chdir(tmp_path)
    ran = []
    for command in readme_commands():
        if command in SKIPPED:
            continue
        if "--resume" in command:
            # Make the run unfinished, as a killed run is: resume finishes it again.
            run_dir = Path(shlex.split(command)[-1])
            (run_dir / "DONE").unlink()
        code = main(_smoke_argv(command))
        out = capsys.readouterr()
        assert code == 0, f"{command}\n{out.err[-2000:]}"
        ran.append(command)
    assert (tmp_path / "runs" / "cartpole-l2er" / "DONE").exists()
    assert (tmp_path / "runs" / "sweeps" / "my_sweep" / "runs" / "fresh-seed0" / "DONE").exists()
    assert (tmp_path / "report" / "report.md").exists()
    assert len(ran) == len(readme_commands()) - len(SKIPPED)


def test_the_readme_python_snippets_run(tmp_path, monkeypatch):
    """The "From Python" and plug-in snippets, with the run lengths shrunk as listed."""
    shutil.copytree(ROOT / "docs" / "examples", tmp_path / "docs" / "examples")
    monkeypatch.chdir(tmp_path)
    snippets = [b for b in re.findall(r"```python\n(.*?)```", README, re.S)]
    shrink = {"until=20_000": "until=2_000",
              '["experiment.seed=1"]': "[\"experiment.seed=1\", *" + repr(SMOKE_RUN) + "]"}
    for code in snippets:
        for old, new in shrink.items():
            code = code.replace(old, new)
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    assert (tmp_path / "runs" / "cartpole" / "continual-seed1" / "DONE").exists()


def _resolved_runs(command: str):
    """The resolved configs the command would run (at full size)."""
    from experiments.cli import DEFAULT_STUDY, parse_args, run_data
    from experiments.config import from_dict
    from experiments.resolve import resolve
    from experiments.sweep import load_sweep

    argv = shlex.split(command)[1:]
    if argv[0] == "sweep":
        return [from_dict(r.config) for r in load_sweep(argv[1]).runs]
    data = run_data(parse_args(argv))
    if data is None:
        return [from_dict(r.config) for r in load_sweep(DEFAULT_STUDY).runs]
    return [resolve(from_dict(data))]


def _sane_runs():
    return [c for c in readme_commands()
            if shlex.split(c)[1] in ("run", "sweep") and "--resume" not in c
            and "experiments/studies/" not in c]


@pytest.mark.parametrize("command", _sane_runs())
def test_every_readme_run_is_sane_at_full_size(command, monkeypatch):
    monkeypatch.chdir(ROOT)
    for config in _resolved_runs(command):
        e, env, s = config.experiment, config.env, config.agent.settings
        if e.reference != "stationary":
            assert 0 < env.period < e.steps, "a shifting run that never shifts"
        if config.agent.algo == "dqn":
            # epsilon at the last step, from the linear schedule the agent follows
            frac = e.steps / s.exploration_steps if s.exploration_steps else 1.0
            assert max(s.start_e + frac * (s.end_e - s.start_e), s.end_e) == s.end_e
            first_update = -(-max(s.learning_starts + 1, s.batch_size) // s.train_frequency)
            assert first_update * s.train_frequency <= e.steps, "no update would happen"
            assert s.exploration_steps <= env.period or e.reference == "stationary"
        else:
            assert env.num_envs * s.num_steps <= e.steps, "not one PPO update"
            assert not s.anneal_lr or s.total_steps >= e.steps
