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


#: The default study (``plasticity run`` alone) at smoke size: 4 tasks of 1,024 steps.
SMOKE_DEFAULT = ["experiment.steps=4096", "env.period=1024", "agent.num_steps=64",
                 "experiment.checkpoint_every=0", 'probes.metrics=["weights","features"]',
                 "logging.tensorboard=false"]


def _smoke_argv(command: str) -> list[str]:
    """The command's argv at smoke size: sweeps take their ``[smoke]`` table, the default
    study :data:`SMOKE_DEFAULT`, single runs :data:`SMOKE_RUN`."""
    argv = shlex.split(command)[1:]
    if argv[0] == "sweep":
        return [*argv, "--smoke"]
    if argv == ["run"]:
        return [*argv, *SMOKE_DEFAULT]
    if argv[0] != "run" or "--resume" in argv:
        return argv
    return [*argv, *SMOKE_RUN]


def _unfinish(run_dir: Path) -> None:
    """Make a run (or a population's members but its first) unfinished, as a killed run is."""
    if (run_dir / "config.toml").exists():
        (run_dir / "DONE").unlink()
        return
    members = sorted(p for p in run_dir.iterdir() if (p / "config.toml").exists())
    assert len(members) > 1
    for member in members[1:]:  # seed0 stays finished: as if resumed on its own
        (member / "DONE").unlink()


def _readme_figures() -> list[str]:
    """The default study's figure files the README names."""
    section = README.split("## Run the main job", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"`(default_[a-z_]+\.png)`", section)


@pytest.mark.timeout(900)  # ~1 min on a quiet machine; minutes when the 2 cores are shared
def test_every_readme_command_runs_as_written_at_smoke_size(tmp_path, monkeypatch, capsys):
    """In a fresh directory holding only docs/examples, in README order, so the resume and
    report commands act on what the earlier commands wrote."""
    from experiments.cli import main

    shutil.copytree(ROOT / "docs" / "examples", tmp_path / "docs" / "examples")
    monkeypatch.chdir(tmp_path)
    ran, outputs = [], {}
    for command in readme_commands():
        if command in SKIPPED:
            continue
        if "--resume" in command:
            _unfinish(Path(shlex.split(command)[-1]))  # resume finishes it again
        code = main(_smoke_argv(command))
        out = capsys.readouterr()
        assert code == 0, f"{command}\n{out.err[-2000:]}"
        ran.append(command)
        outputs[command] = out
    assert len(ran) == len(readme_commands()) - len(SKIPPED)
    runs = tmp_path / "runs"
    # "Where each command writes"
    assert (runs / "cartpole-l2er" / "DONE").exists()
    assert (runs / "cartpole-dqn" / "stationary-seed0" / "DONE").exists()  # the plain id
    assert (runs / "cartpole" / "continual-seed3" / "DONE").exists()       # my_run.toml
    assert (runs / "sweeps" / "my_sweep" / "runs" / "fresh-seed0" / "DONE").exists()
    assert (runs / "report" / "report.md").exists() and not (tmp_path / "report").exists()
    # the population's rerun resumed the members left unfinished, keeping seed0
    resumed = next(out for c, out in outputs.items() if c.endswith("--resume runs/cartpole-pop"))
    assert "resuming the population in runs/cartpole-pop: seed1, seed2 (1 already finished)" \
        in resumed.out
    assert all((runs / "cartpole-pop" / f"seed{s}" / "DONE").exists() for s in range(3))
    # the default study's report: the opening and every figure the README names
    report = (runs / "default" / "report.md").read_text()
    assert report.index("## What you are looking at") < report.index("## What was run")
    assert "(no interval" not in report and "**Expected outcome of this default job**" in report
    assert len(_readme_figures()) == 5
    for name in _readme_figures():
        assert (runs / "default" / "figures" / name).exists(), name
        assert f"(figures/{name})" in report
    # the example sweep's header promises each arm its fresh reference: both are matched
    sweep_report = (runs / "sweeps" / "my_sweep" / "report.md").read_text()
    assert "- continual: `fresh` (matched automatically)" in sweep_report
    assert "- l2_er: `fresh_l2_er` (matched automatically)" in sweep_report
    assert "**none**" not in sweep_report


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


def test_a_plain_gymnasium_id_is_refused_with_the_wrapping_call_the_readme_promises(capsys):
    from experiments.cli import main

    assert "`--env Taxi-v3`" in README and "`envs.make_nonstationary(...)`" in README
    assert main(["run", "--env", "Taxi-v3", "--agent", "dqn"]) == 2
    err = capsys.readouterr().err
    assert "wrap it as envs.make_nonstationary('Taxi-v4', shift=" in err


def test_every_readme_command_carries_its_measured_cpu_time():
    """The figure ``benchmarks/readme_times.py`` checks within 2x (it reruns every command
    at full size: too long for the test suite)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("readme_times",
                                                  ROOT / "benchmarks" / "readme_times.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    timed = bench.readme_commands(README)
    assert [c for c, _ in timed] == readme_commands()
    missing = [c for c, t in timed if t is None and bench.skip_reason(c) is None]
    assert not missing, missing
    assert "benchmarks/readme_times.py" in (ROOT / "benchmarks" / "RESULTS.md").read_text()
