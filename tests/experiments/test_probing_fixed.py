"""Fixed probe data, the trained-once phase and the trainability rows of a run."""

from __future__ import annotations

import pytest
import torch

import envs
import experiments
from experiments import probe_data, streams
from experiments.rundir import read_jsonl


def rows(run_dir, name="probes.jsonl"):
    return list(read_jsonl(run_dir / name))


def test_fixed_data_is_identical_across_arms_and_seeds(dqn_config, monkeypatch, tmp_path):
    """CartPoleRewardFlip's tasks do not depend on the schedule seed, so two seeds see the
    same tasks: every arm and seed must probe each task on identical fixed data."""
    seen: dict[tuple[str, int], list[tuple[int, dict]]] = {}
    original = probe_data.fixed_transitions

    def record(env, steps):
        data = original(env, steps)
        seen[key].append((streams.current_task(env), data))
        return data

    monkeypatch.setattr(probe_data, "fixed_transitions", record)
    for arm in ("continual", "fresh"):
        for seed in (0, 1):
            key = (arm, seed)
            seen[key] = []
            experiments.run(dqn_config(**{
                "env.id": "plasticity/CartPoleRewardFlip-v0", "experiment.reference": arm,
                "experiment.seed": seed, "experiment.steps": 1200, "env.period": 400,
                "probes.fixed_phases": ["pre", "init"], "probes.fixed_steps": 100,
                "probes.metrics": ["weights"],
                "experiment.out": str(tmp_path / f"{arm}-{seed}")}))
    first = seen[("continual", 0)]
    assert [task for task, _ in first] == [0, 1, 2]  # pre of task 0, init of 1 and 2 (cached after)
    for key, got in seen.items():
        assert [task for task, _ in got] == [0, 1, 2], key
        for (_, a), (_, b) in zip(first, got, strict=True):
            assert all(torch.equal(a[k], b[k]) for k in probe_data.KEYS), key
    tasks = {task: data for task, data in first}
    assert not torch.equal(tasks[0]["rewards"], tasks[1]["rewards"])  # the reward sign flips
    assert torch.equal(tasks[0]["obs"], tasks[2]["obs"])  # same task parameters, same data


def test_random_policy_data_depends_on_the_task_only():
    """A stream without the probe_transitions hook: uniform-random transitions seeded by
    the task's parameters (same schedule seed -> same task -> same data)."""
    a, b = (envs.make("plasticity/CartPoleDynamics-v0", seed=5, stationary=True) for _ in range(2))
    for env in (a, b):
        streams.set_task(env, 3)
    da, db = probe_data.fixed_transitions(a, 50), probe_data.fixed_transitions(b, 50)
    assert all(torch.equal(da[k], db[k]) for k in probe_data.KEYS) and len(da["obs"]) == 50
    streams.set_task(b, 4)
    assert not torch.equal(probe_data.fixed_transitions(b, 50)["next_obs"], da["next_obs"])
    assert probe_data.optimal_action_values(a, 0.99) is None  # no exact-values hook


def test_fresh_reference_rows_carry_phase_data_and_trainability(ppo_config):
    config = ppo_config(**{"experiment.reference": "fresh", "probes.trained_once": True,
                           "probes.fixed_phases": ["init", "trained_once"],
                           "probes.metrics": ["weights", "features", "trainability"],
                           "probes.trainability_steps": 10})
    probes = rows(experiments.run(config).run_dir)
    switches = range(512, 2048, 512)
    expected = [(s, phase, task + (phase != "pre"), data, net)
                for task, s in enumerate(switches)
                for phase, datas in (("pre", ["on_policy"]), ("trained_once", ["on_policy", "fixed"]),
                                     ("init", ["on_policy", "fixed"]))
                for data in datas for net in ("policy", "value")]
    assert [(p["step"], p["phase"], p["task_id"], p["data"], p["network"]) for p in probes] == expected
    by = {(p["step"], p["phase"], p["data"], p["network"]): p for p in probes}
    for s in switches:
        for net in ("policy", "value"):
            pre, once = by[(s, "pre", "on_policy", net)], by[(s, "trained_once", "on_policy", net)]
            init = by[(s, "init", "on_policy", net)]
            # trained_once probes the trained network (as pre) on the new task's data (as init)
            assert once["weights/norm"] == pre["weights/norm"] != init["weights/norm"]
            fixed_once, fixed_init = by[(s, "trained_once", "fixed", net)], by[(s, "init", "fixed", net)]
            for kind in ("random", "exact"):  # the hidden-goal room has exact targets
                # the fresh network's fit depends on the task only: the same in both rows
                assert fixed_once[f"trainability/{kind}_final_loss_fresh"] == \
                    fixed_init[f"trainability/{kind}_final_loss_fresh"]
                ratio = fixed_init[f"trainability/{kind}_final_loss"] / \
                    fixed_init[f"trainability/{kind}_final_loss_fresh"]
                assert fixed_init[f"trainability/{kind}_final_ratio"] == pytest.approx(ratio)
            assert fixed_once["weights/norm"] == pre["weights/norm"]


def test_continual_runs_have_no_trained_once_phase(ppo_config):
    probes = rows(experiments.run(ppo_config(**{
        "probes.metrics": ["weights"], "probes.trained_once": True,
        "probes.fixed_phases": ["init", "trained_once"]})).run_dir)
    assert {p["phase"] for p in probes} == {"pre", "init"}
    assert {(p["phase"], p["data"]) for p in probes} == {
        ("pre", "on_policy"), ("init", "on_policy"), ("init", "fixed")}


def test_eps_count_groups_on_fixed_and_on_policy_rows(dqn_config, tmp_path):
    """The exact ε-count runs on every row; its Gauss-Newton twin only where the target
    has a Gauss-Newton form (on-policy rows, not the fixed-data losses); never NaN."""
    run_dir = tmp_path / "run"
    experiments.run(dqn_config(**{
        "experiment.steps": 800, "env.period": 400, "probes.fixed_phases": ["init"],
        "probes.fixed_steps": 100, "probes.metrics": ["hessian_eps_count", "ggn_eps_count"],
        "probes.settings": {"eps_count_iters": 40},
        "experiment.out": str(run_dir)}))
    got = rows(run_dir)
    fixed = [r for r in got if r["data"] == "fixed"]
    on_policy = [r for r in got if r["data"] == "on_policy"]
    assert fixed and on_policy
    for row in got:
        for r in (0.001, 0.01, 0.03, 0.1):
            key = f"hessian/eps_count/rel{r:g}"
            assert row[key] >= 1 and row[key + "_censored"] in (0.0, 1.0)
    assert all("ggn/eps_count/rel0.01" in r for r in on_policy)
    assert not any("ggn/eps_count/rel0.01" in r for r in fixed)
