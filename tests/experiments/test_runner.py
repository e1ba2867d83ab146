"""The runner: probes bracket every shift on the right data, never change training, and
the reference arms, divergence and finished directories behave as documented."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import experiments
from agents.dqn import DQNMember
from agents.ppo import PPOMember
from experiments import streams
from experiments.errors import ConfigError, RunDiverged
from experiments.rundir import read_jsonl
from experiments.runner import run_population

TIMING_KEYS = ("time", "charts/sps", "perf/probe_seconds")


def rows(run_dir: Path, name: str) -> list[dict]:
    return list(read_jsonl(run_dir / name))


def record_side_rollouts(monkeypatch, cls) -> list[tuple[int, dict]]:
    """Record (task id, task params) of the env each side rollout runs on."""
    seen: list[tuple[int, dict]] = []
    original = cls.collect

    def collect(self, env, num_steps, seed):
        wrapper = streams.stream_wrappers(env)[0]
        seen.append((wrapper.task_id, dict(wrapper.task_params)))
        return original(self, env, num_steps, seed)

    monkeypatch.setattr(cls, "collect", collect)
    return seen


@pytest.mark.parametrize(("algo", "networks"), [("dqn", ["q"]), ("ppo", ["policy", "value"])])
def test_probes_bracket_every_shift_with_new_task_data(algo, networks, dqn_config, ppo_config,
                                                       monkeypatch):
    config = dqn_config() if algo == "dqn" else ppo_config()
    side = record_side_rollouts(monkeypatch, DQNMember if algo == "dqn" else PPOMember)
    result = experiments.run(config)
    run_dir = result.run_dir
    period, steps = config.env.period, config.experiment.steps
    switches = list(range(period, steps, period))

    from envs import make  # the schedule the run used: same id, period and seed

    schedule = streams.schedule_of(make(config.env.id, period=period, seed=config.experiment.seed))
    shifts = rows(run_dir, "shifts.jsonl")
    assert [s["step"] for s in shifts] == switches
    assert [(s["from_task"], s["to_task"]) for s in shifts] == [(k, k + 1) for k in range(len(switches))]
    assert all(s["at_shift"]["oracle"] is False for s in shifts)

    probes = rows(run_dir, "probes.jsonl")
    expected = [(s, phase, k + (phase == "init"), net)
                for k, s in enumerate(switches, start=0) for phase in ("pre", "init") for net in networks]
    assert [(p["step"], p["phase"], p["task_id"], p["network"]) for p in probes] == expected
    assert all(p["hessian/top_1"] > 0 and "weights/norm" in p for p in probes)
    # each init probe ran on a side rollout of the *new* task's parameters
    assert [task for task, _ in side] == [k + 1 for k in range(len(switches))]
    assert [params for _, params in side] == [dict(schedule.task_params(k + 1)) for k in range(len(switches))]
    assert side[0][1] != dict(schedule.task_params(0))

    metrics = rows(run_dir, "metrics.jsonl")
    log = config.experiment.log_every
    assert [m["step"] for m in metrics] == list(range(log, steps + 1, log))
    assert [m["task_id"] for m in metrics][: period // log] == [0] * (period // log)
    done = json.loads((run_dir / "DONE").read_text())
    assert done["steps"] == steps and 0 < done["probe_time"] < done["wall_time"]
    assert result.probe_time == pytest.approx(done["probe_time"], abs=1e-3)


def training_rows(run_dir: Path) -> tuple[list[dict], list[dict]]:
    metrics = [{k: v for k, v in m.items() if k not in TIMING_KEYS} for m in rows(run_dir, "metrics.jsonl")]
    return metrics, rows(run_dir, "episodes.jsonl")


#: Keys every fixed-data row of the trainability group carries (the hidden-goal room and
#: CartPole streams: random targets; exact ones where the stream has them).
TRAINABILITY_KEYS = ("trainability/random_final_ratio", "trainability/random_final_fraction",
                     "trainability/random_final_fraction_logratio",
                     "trainability/features_final_loss", "trainability/features_final_ratio",
                     "trainability/features_auc_ratio", "weights/output_layer_norm",
                     "outputs/mean_abs")


@pytest.mark.parametrize("population", [False, True], ids=["single", "population"])
@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_probes_do_not_change_training(algo, population, dqn_config, ppo_config, tmp_path):
    make = dqn_config if algo == "dqn" else ppo_config
    log = make().experiment.log_every
    seeds = (0, 1) if population else (None,)

    def launch(name, **overrides):
        configs = [make(**overrides, **{"experiment.out": str(tmp_path / f"{name}{s}")},
                        **({} if s is None else {"experiment.seed": s})) for s in seeds]
        if population:  # a population of two: one process, stacked networks
            return [r.run_dir for r in run_population(configs)]
        return [experiments.run(configs[0]).run_dir]

    # every probe, the trainability fits on copies of the networks (feature fit, head
    # scale) and the fixed data's own env included, at every phase
    metrics = [*make().probes.metrics, "trainability", "hessian_eps_count"]
    probed = launch("a", **{"probes.cadence": log, "probes.metrics": metrics,
                            "probes.fixed_phases": ["pre", "init", "cadence"],
                            "probes.trainability_steps": 5})
    plain = launch("b", **{"probes.enabled": False})
    for probed_dir, plain_dir in zip(probed, plain, strict=True):
        probes = rows(probed_dir, "probes.jsonl")
        assert probes and not rows(plain_dir, "probes.jsonl")
        assert {(p["phase"], p["data"]) for p in probes} == {
            (phase, data) for phase in ("pre", "init", "cadence") for data in ("on_policy", "fixed")}
        assert all(key in p for p in probes if p["data"] == "fixed" for key in TRAINABILITY_KEYS)
        metrics_a, episodes_a = training_rows(probed_dir)
        metrics_b, episodes_b = training_rows(plain_dir)
        assert len(episodes_a) > 5 and any(k.startswith("losses/") for k in metrics_a[-1])
        assert metrics_a == metrics_b
        assert episodes_a == episodes_b


def test_fresh_reference_reinitialises_at_every_shift(dqn_config, tmp_path):
    continual = experiments.run(dqn_config(**{"experiment.out": str(tmp_path / "c")}))
    fresh = experiments.run(dqn_config(**{"experiment.reference": "fresh",
                                          "experiment.out": str(tmp_path / "f")}))
    for run_dir, changed in ((continual.run_dir, False), (fresh.run_dir, True)):
        probes = rows(run_dir, "probes.jsonl")
        pre = [p["weights/norm"] for p in probes if p["phase"] == "pre"]
        init = [p["weights/norm"] for p in probes if p["phase"] == "init"]
        # no update happens between the two probes: only a re-initialisation moves weights
        assert (pre != init) is changed
        shifts = rows(run_dir, "shifts.jsonl")
        assert all(s["at_shift"]["reinitialize"] is changed and s["at_shift"]["oracle"] is changed
                   for s in shifts)
    assert "reference = \"fresh\"" in (fresh.run_dir / "config.toml").read_text()


def test_oracle_shift_settings_are_labelled(dqn_config):
    result = experiments.run(dqn_config(**{"shift.buffer": "flush", "shift.exploration": "rewarm"}))
    for s in rows(result.run_dir, "shifts.jsonl"):
        assert s["at_shift"]["buffer"] == "flush" and s["at_shift"]["exploration"] == "rewarm"
        assert s["at_shift"]["oracle"] is True and s["at_shift"]["optimizer"] == "keep"


def test_divergence_stops_with_a_marker_and_keeps_rows(dqn_config):
    config = dqn_config(**{"agent.learning_rate": 1e8, "agent.loss": "mse"})
    with pytest.raises(RunDiverged, match="diverged at env step"):
        experiments.run(config)
    run_dir = config.run_dir
    marker = json.loads((run_dir / "DIVERGED").read_text())
    last = rows(run_dir, "metrics.jsonl")[-1]
    assert last["diverged"] is True and last["step"] == marker["step"]
    assert marker["what"].startswith("losses/") or "parameter" in marker["what"]
    assert not (run_dir / "DONE").exists()
    with pytest.raises(ConfigError, match="diverged"):
        experiments.run(config)


def test_finished_run_directory_is_not_overwritten_unless_asked(dqn_config):
    config = dqn_config(**{"experiment.steps": 400, "experiment.checkpoint_every": 0,
                           "experiment.reference": "stationary", "agent.exploration_steps": 200})
    experiments.run(config)
    before = (config.run_dir / "metrics.jsonl").read_text()
    with pytest.raises(ConfigError, match="--overwrite"):
        experiments.run(config)
    assert (config.run_dir / "metrics.jsonl").read_text() == before
    again = experiments.run(config, overwrite=True)
    assert again.status == "done" and len(rows(config.run_dir, "metrics.jsonl")) == 2


def test_unfinished_directory_of_another_config_is_refused(dqn_config):
    config = dqn_config()
    config.run_dir.mkdir(parents=True)
    from experiments.config import save_config
    from experiments.resolve import resolve

    # a run directory's config.toml is always the resolved config
    save_config(resolve(dqn_config(**{"agent.learning_rate": 0.5})), config.run_dir / "config.toml")
    with pytest.raises(ConfigError, match="agent.learning_rate"):
        experiments.run(config)


def test_expensive_probes_are_thinned_by_shift_and_phase(dqn_config):
    """SLQ density and trace run at every ``slq_every_n_shifts``-th shift, only in
    ``slq_phases``; the cheap metrics run at every probe."""
    config = dqn_config(**{"experiment.steps": 3000, "probes.metrics": ["hessian_top", "hessian_trace"],
                           "probes.slq_every_n_shifts": 2, "probes.slq_phases": ["init"],
                           "probes.settings": {"trace_samples": 6}})
    probes = rows(experiments.run(config).run_dir, "probes.jsonl")
    with_trace = [(p["step"], p["phase"]) for p in probes if "hessian/trace" in p]
    assert with_trace == [(600, "init"), (1800, "init")]  # shifts 0 and 2 of 4
    assert all("hessian/top_1" in p for p in probes) and len(probes) == 8
