"""``plasticity``: user mistakes give one line and exit code 2 with nothing written;
``envs``/``list`` print the registries; a run from the command line works."""

from __future__ import annotations

import sys

import pytest

from experiments.cli import main

GOOD = """
[experiment]
steps = 400
log_every = 200
checkpoint_every = 0
[env]
id = "plasticity/CartPoleDynamics-v0"
period = 200
[agent]
algo = "dqn"
learning_starts = 50
batch_size = 16
widths = [16]
[probes]
metrics = ["weights"]
init_rollout_steps = 16
[logging]
tensorboard = false
progress = "off"
"""

SWEEP_BAD_KEY = """
seeds = [0]
[base.experiment]
steps = 400
[grids]
"agent.learning_rate" = [1e-3]
"""


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "good.toml").write_text(GOOD)
    (tmp_path / "broken.toml").write_text("[experiment\nsteps = 1\n")
    (tmp_path / "sweep_bad.toml").write_text(SWEEP_BAD_KEY)
    (tmp_path / "sweep_smokeless.toml").write_text("seeds = [0]\n[base.experiment]\nsteps = 400\n")
    (tmp_path / "sweep_no_arms.toml").write_text("seeds = [0]\narms = []\n[base.experiment]\nsteps = 400\n")
    (tmp_path / "sweep_twice.toml").write_text("seeds = [0, 1, 0]\n[base.experiment]\nsteps = 400\n")
    (tmp_path / "sweep_good.toml").write_text("seeds = [0]\n" + GOOD.replace("\n[", "\n[base."))
    (tmp_path / "empty").mkdir()
    return tmp_path


MISTAKES = [
    (["run", "missing.toml"], "config file 'missing.toml' does not exist"),
    (["run", "broken.toml"], "broken.toml: invalid TOML"),
    (["run", "good.toml", "experiment.stepz=3"], "unknown key experiment.stepz"),
    (["run", "good.toml", "--steps", "-5"], "experiment.steps = -5 is out of range"),
    (["run", "good.toml", "--set", "agent.learning_rate=fast"], "agent.learning_rate = 'fast': expected a number"),
    (["run", "good.toml", "--env", "plasticity/CartPol-v0"], "env.id = 'plasticity/CartPol-v0' is not a registered stream"),
    (["run", "good.toml", "--agent", "sac"], "argument --agent: invalid choice: 'sac'"),
    (["run", "good.toml", "mitigations.names=[\"l3\"]"], "unknown mitigation 'l3'"),
    (["run", "good.toml", "probes.metrics=[\"hessian\"]"], "unknown metric 'hessian'"),
    (["run", "good.toml", "experiment.reference=frozen"], "experiment.reference = 'frozen' is not valid"),
    (["run", "good.toml", "--set", "agent.gamma=1.5"], "gamma"),  # the agent's own check (AgentError)
    (["run", "good.toml", "--set", "lr"], "override 'lr' is not of the form table.key=value"),
    (["run", "good.toml", "other.toml"], "more than one config file"),
    (["run", "--resume", "nowhere"], "no config.toml there"),
    (["run", "good.toml", "--seeds", "3-1"], "--seeds '3-1' is not a list of distinct seeds"),
    (["run", "good.toml", "--seeds", "0-1", "--seed", "2"], "do not also give --seed"),
    (["run", "good.toml", "--set", "probes.settings={slq_iters=0}"], "slq_iters must be a positive integer"),
    (["sweep", "sweep_bad.toml"], "unknown sweep key 'grids'"),
    (["sweep", "sweep_smokeless.toml", "--smoke"], "has no [smoke] table"),
    (["sweep", "good.toml", "--workers", "0"], "unknown sweep key 'experiment'"),
    (["report", "no_such_dir"], "'no_such_dir' is not a directory"),
    # issue 15's list of bad inputs that used to write something or print a traceback
    (["report", "empty", "--out", "good.toml"], "report --out 'good.toml' is a file"),
    (["report", "--study", "empty"], "'empty' holds no run directories"),
    (["report", "empty"], "'empty' holds no run directories"),
    (["run", "good.toml", "env.period=400"], "env.period = 400 >= experiment.steps = 400: the run would end before its first shift"),
    (["run", "good.toml", "--env", "plasticity/CartPolePermutedObs-v0", "env.kwargs={projection=-3}"],
     "env.kwargs = {'projection': -3} for plasticity/CartPolePermutedObs-v0: projection must be a positive integer"),
    (["run", "good.toml", "--env", "plasticity/CartPoleObsOffset-v0", "env.kwargs={offset_std=-1}"],
     "offset_std must be a number >= 0, got -1"),
    (["sweep", "sweep_no_arms.toml"], "arms = []: expected a non-empty array of tables"),
    (["sweep", "sweep_twice.toml"], "seeds = [0, 1, 0] lists seed 0 more than once"),
    # flags give a run that can learn, or a message saying what is inconsistent
    (["run", "good.toml", "agent.exploration_steps=1000"], "epsilon would not reach end_e = 0.05 within the run"),
    (["run", "good.toml", "agent.learning_starts=400"], "the first update would come at step 410, after experiment.steps = 400"),
    (["run", "--agent", "ppo", "--env", "plasticity/CartPoleDynamics-v0", "--steps", "1000000"],
     "agent.total_steps = 500000 < experiment.steps = 1000000 with agent.anneal_lr = true"),
    (["run", "--env", "FrozenLake-v1", "--agent", "dqn"],
     "it is a plain Gymnasium env, which does not shift; wrap it as envs.make_nonstationary('FrozenLake-v1', shift="),
    # Gymnasium 1.x renamed Taxi-v3: the hint names the id it has now
    (["run", "--env", "Taxi-v3", "--agent", "dqn"],
     "(Gymnasium registers it as 'Taxi-v4'), which does not shift; wrap it as envs.make_nonstationary('Taxi-v4', shift="),
    (["run", "--env", "CartPole-v1", "--agent", "dqn", "experiment.reference=fresh"], "has no shift to re-initialise at"),
    (["list", "optimizers"], "invalid choice: 'optimizers'"),
    (["run", "good.toml", 'probes.metrics=["trainability"]', "probes.fixed_phases=[]"],
     "probes.fixed_phases is empty"),
    (["run", "good.toml", 'probes.fixed_phases=["later"]'], "probes.fixed_phases entry = 'later'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
]


@pytest.mark.parametrize(("argv", "needle"), MISTAKES, ids=[" ".join(a) for a, _ in MISTAKES])
def test_user_mistakes_give_one_line_and_exit_code_2(workdir, capsys, argv, needle):
    before = sorted(p.name for p in workdir.iterdir())
    code = call(argv)
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("plasticity: error: ") and needle in lines[0], lines[0]
    assert sorted(p.name for p in workdir.iterdir()) == before  # nothing written


def test_a_ray_address_without_a_cluster_is_one_line_and_writes_nothing(workdir, capsys, monkeypatch):
    """``--backend ray --address auto`` with no cluster: ray.init's ConnectionError (here from
    a stand-in module, so the test needs neither ray nor a cluster) becomes one line, before
    the sweep directory is made."""
    import types

    def init(**kwargs):
        raise ConnectionError("Could not find any running Ray instance. Please specify the one "
                              "to connect to by setting `--address` flag.\nmore detail")

    fake = types.SimpleNamespace(is_initialized=lambda: False, init=init, shutdown=lambda: None)
    monkeypatch.setitem(sys.modules, "ray", fake)
    before = sorted(p.name for p in workdir.iterdir())
    assert call(["sweep", "sweep_good.toml", "--backend", "ray", "--address", "auto"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["plasticity: error: --address 'auto': no Ray cluster to connect to (Could not "
                     "find any running Ray instance. Please specify the one to connect to by "
                     "setting `--address` flag.); start one with `ray start --head`, or leave "
                     "out --address for a local Ray instance"]
    assert sorted(p.name for p in workdir.iterdir()) == before


def call(argv: list[str]) -> int:
    """main(argv)'s exit code, whether it returns it or argparse raises SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


def test_distinct_mistakes_are_at_least_ten():
    assert len({needle for _, needle in MISTAKES}) >= 10


def test_envs_and_list_print_the_registries(capsys):
    assert main(["envs"]) == 0
    assert "plasticity/MiniGridHiddenGoal-v0" in capsys.readouterr().out
    assert main(["list", "mitigations"]) == 0
    assert "l2" in capsys.readouterr().out.split()
    assert main(["list", "metrics"]) == 0
    out = capsys.readouterr().out
    assert "* hessian_top" in out and "one_step_gain" in out
    (line,) = [ln for ln in out.splitlines() if ln.split()[:1] == ["trainability"]]
    assert "fresh" in line and len(line) < 120  # the new group, with its one-line description


def test_run_from_the_command_line_writes_a_finished_run(workdir, capsys):
    # an override may come after a flag
    assert main(["run", "good.toml", "--out", "r", "--seed", "3", "experiment.log_every=100"]) == 0
    assert "run finished: r" in capsys.readouterr().out
    assert (workdir / "r" / "DONE").exists()
    saved = (workdir / "r" / "config.toml").read_text()
    assert "seed = 3" in saved and "log_every = 100" in saved
    assert main(["run", "good.toml", "--out", "r"]) == 2  # another seed: refuses the finished dir
    assert "--overwrite" in capsys.readouterr().err


TINY = ["--steps", "400", "env.period=200", "agent.learning_starts=50", "agent.batch_size=16",
        "agent.widths=[16]", 'probes.metrics=["weights"]', "probes.init_rollout_steps=16",
        "logging.tensorboard=false", "logging.progress=off"]


def test_flag_runs_get_a_directory_named_after_the_stream_and_agent(workdir, capsys):
    """Two flag runs of different streams no longer collide in runs/run/continual-seed0."""
    for env, name in (("plasticity/CartPoleDynamics-v0", "cartpoledynamics-dqn"),
                      ("plasticity/CartPoleRewardFlip-v0", "cartpolerewardflip-dqn")):
        assert main(["run", "--env", env, "--agent", "dqn", *TINY]) == 0
        run_dir = f"runs/{name}/continual-seed0"
        out = capsys.readouterr()
        assert out.out.startswith(f"run directory: {run_dir}\n")  # at the start
        assert f"run finished: {run_dir}" in out.out                # and at the end
        assert (workdir / run_dir / "DONE").exists()
        assert f'name = "{name}"' in (workdir / run_dir / "config.toml").read_text()


def test_run_with_seeds_runs_a_population_into_one_directory_per_seed(workdir, capsys):
    assert main(["run", "good.toml", "--out", "pop", "--seeds", "0-1,4"]) == 0
    assert "population of 3" in capsys.readouterr().out
    for seed in (0, 1, 4):
        assert (workdir / "pop" / f"seed{seed}" / "DONE").exists()
        assert f"seed = {seed}" in (workdir / "pop" / f"seed{seed}" / "config.toml").read_text()
    # the report goes next to what it reports, never into the working directory
    assert main(["report", "pop/seed0", "pop/seed4"]) == 0
    assert (workdir / "pop" / "report" / "report.md").exists()
    assert "report: pop/report/report.md" in capsys.readouterr().out
    assert main(["run", "good.toml", "--out", "elsewhere"]) == 0
    before = sorted(p.name for p in workdir.iterdir())
    assert main(["report", "pop", "elsewhere"]) == 2
    assert "share no directory below the working directory" in capsys.readouterr().err
    assert sorted(p.name for p in workdir.iterdir()) == before
    # --resume on the finished population's directory says so
    assert main(["run", "--resume", "pop"]) == 0
    assert "population pop is already finished (3 members, all DONE)" in capsys.readouterr().out


def test_run_without_config_runs_the_default_study_and_writes_the_report(tmp_path, capsys):
    """The embedded default (continual + fresh in parallel, then the report), shortened."""
    argv = ["run", "--out", str(tmp_path / "study"), "experiment.steps=2048", "env.period=1024",
            "agent.num_steps=64", "experiment.checkpoint_every=0", 'probes.metrics=["weights"]']
    assert call(argv) == 0
    out = capsys.readouterr().out
    runs = tmp_path / "study" / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["continual-seed0", "fresh-seed0"]
    assert all((runs / name / "DONE").exists() for name in ("continual-seed0", "fresh-seed0"))
    assert 'reference = "fresh"' in (runs / "fresh-seed0" / "config.toml").read_text()
    assert "report:" in out
