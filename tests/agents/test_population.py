"""Populations: each member of a population trains exactly as a single run of its seed.

"Exactly" within float tolerance: the members' matmuls are batched, which may round
differently in the last bit. Every mitigation is checked (tiny networks and budgets with
hyperparameters that make each method act, as in test_mitigations_with_agents.py).
"""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

import spectral
from agents import DQN, PPO, DivergenceError, DQNConfig, PPOConfig, ShiftPolicy, population
from agents.mitigations import MITIGATIONS, make_mitigations
from tests.agents.conftest import cartpole, cartpole_vec
from tests.agents.mitigations.test_mitigations_with_agents import ACTIVE

SEEDS = (3, 4)
DQN_TINY = dict(widths=(16, 16), learning_starts=60, exploration_steps=300, train_frequency=2,
                batch_size=16, buffer_size=500, target_network_frequency=50, update_phase=50,
                n_step=2, max_grad_norm=1.0)
BUDGET = 300
ACTIVE_HERE = {**ACTIVE, "reset": {"every_steps": 150, "which": "all"},
               "cbp": {"maturity_threshold": 10, "replacement_rate": 0.05},
               "redo": {"tau": 0.5}}


PPO_TINY = dict(widths=(16, 16), num_envs=2, num_steps=32, num_minibatches=2, update_epochs=2,
                total_steps=1000)
PPO_BUDGET = 192  # 3 rollouts


def _ppo(names, seeds=None, seed=SEEDS[0], make=cartpole_vec, **overrides):
    vec = make(2)
    return PPO(vec.single_observation_space, vec.single_action_space,
               PPOConfig(**{**PPO_TINY, **overrides}, seed=seed), make_mitigations(_specs(names)),
               seeds=seeds)


def _specs(names):
    return [{"name": n, **ACTIVE_HERE.get(n, {})} for n in names]


def _dqn(names, seeds=None, seed=SEEDS[0], **overrides):
    env = cartpole()
    return DQN(env.observation_space, env.action_space, DQNConfig(**{**DQN_TINY, **overrides},
               seed=seed), make_mitigations(_specs(names)), seeds=seeds)


def _close(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.allclose(p, q, rtol=1e-4, atol=1e-5)
               for p, q in zip(a.parameters(), b.parameters(), strict=True))


def _assert_members_match_singles(pop, singles, pop_results, single_results):
    for k, (single, member) in enumerate(zip(singles, pop.members, strict=True)):
        assert member.config.seed == single.config.seed
        assert pop_results[k].episodes == single_results[k].episodes, f"member {k}"
        for name, net in single.networks().items():
            assert _close(member.networks()[name], net), f"member {k} {name}"
        if isinstance(pop, DQN):
            assert _close(member.target_network, single.target_network), f"member {k}"
        for key, value in single_results[k].metrics.items():
            if key != "charts/sps":
                assert pop_results[k].metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
        sa, sm = single.optimizer.state_dict()["state"], member.optimizer.state_dict()["state"]
        assert sa.keys() == sm.keys()
        for i in sa:
            for key in ("exp_avg", "exp_avg_sq"):
                assert torch.allclose(sa[i][key], sm[i][key], rtol=1e-3, atol=1e-7), (k, i, key)


@pytest.mark.parametrize("name", [None, *sorted(MITIGATIONS)])
def test_dqn_population_member_equals_single_run(name):
    names = [] if name is None else [name]
    singles = [_dqn(names, seed=s) for s in SEEDS]
    pop = _dqn(names, seeds=SEEDS)
    single_results = [agent.learn(cartpole(), BUDGET) for agent in singles]
    pop_results = pop.learn([cartpole() for _ in SEEDS], BUDGET)
    _assert_members_match_singles(pop, singles, pop_results, single_results)
    if name is not None and not MITIGATIONS[name].oracle:  # the method acted in the budget
        plain = _dqn([], seeds=SEEDS)
        plain.learn([cartpole() for _ in SEEDS], BUDGET)
        assert not _close(plain.members[1].q, pop.members[1].q)


@pytest.mark.parametrize("name", [None, *sorted(MITIGATIONS)])
def test_ppo_population_member_equals_single_run(name):
    names = [] if name is None else [name]
    singles = [_ppo(names, seed=s) for s in SEEDS]
    pop = _ppo(names, seeds=SEEDS)
    single_results = [agent.learn(cartpole_vec(2), PPO_BUDGET) for agent in singles]
    pop_results = pop.learn([cartpole_vec(2) for _ in SEEDS], PPO_BUDGET)
    _assert_members_match_singles(pop, singles, pop_results, single_results)
    # the members' rollouts kept different numbers of real steps: the padding was exercised
    assert len({len(m.last_rollout["obs"]) for m in pop.members}) > 1 or name is not None
    if name is not None and not MITIGATIONS[name].oracle:  # the method acted in the budget
        plain = _ppo([], seeds=SEEDS)
        plain.learn([cartpole_vec(2) for _ in SEEDS], PPO_BUDGET)
        assert not all(_close(net, pop.members[1].networks()[n])
                       for n, net in plain.members[1].networks().items())


def test_ppo_population_with_gaussian_policies_and_oracle_knobs():
    def pendulum(n):
        return gym.make_vec("Pendulum-v1", n, vectorization_mode="sync")

    singles = [_ppo(["reset_on_switch"], seed=s, make=pendulum) for s in SEEDS]
    pop = _ppo(["reset_on_switch"], seeds=SEEDS, make=pendulum)
    envs_single, envs_pop = [pendulum(2) for _ in SEEDS], [pendulum(2) for _ in SEEDS]
    for stop, policy in zip((128, 192), (ShiftPolicy(optimizer="reset"),
                                        ShiftPolicy(reinitialize=True)), strict=True):
        single_results = [a.learn(e, stop) for a, e in zip(singles, envs_single, strict=True)]
        _assert_members_match_singles(pop, singles, pop.learn(envs_pop, stop), single_results)
        for agent in (*singles, pop):
            agent.on_task_switch(policy)
    single_results = [a.learn(e, 256) for a, e in zip(singles, envs_single, strict=True)]
    _assert_members_match_singles(pop, singles, pop.learn(envs_pop, 256), single_results)


def test_dqn_population_oracle_knobs_and_fresh_reinitialisation_per_member():
    policies = [ShiftPolicy(optimizer="reset", exploration="rewarm", buffer="flush", target="sync"),
                ShiftPolicy(reinitialize=True)]
    singles = [_dqn(["reset_on_switch"], seed=s) for s in SEEDS]
    pop = _dqn(["reset_on_switch"], seeds=SEEDS)
    envs_single, envs_pop = [cartpole() for _ in SEEDS], [cartpole() for _ in SEEDS]
    for stop, policy in zip((150, 250), policies, strict=True):
        single_results = [a.learn(e, stop) for a, e in zip(singles, envs_single, strict=True)]
        pop_results = pop.learn(envs_pop, stop)
        _assert_members_match_singles(pop, singles, pop_results, single_results)
        for agent in (*singles, pop):
            agent.on_task_switch(policy)
    single_results = [a.learn(e, 350) for a, e in zip(singles, envs_single, strict=True)]
    _assert_members_match_singles(pop, singles, pop.learn(envs_pop, 350), single_results)


def test_dqn_population_checkpoint_resumes_as_if_uninterrupted_and_members_are_single_checkpoints():
    pop = _dqn(["redo"], seeds=SEEDS)
    pop.learn([cartpole() for _ in SEEDS], 200)
    state = copy.deepcopy(pop.state_dict())
    single = _dqn(["redo"], seed=SEEDS[1])  # a member's checkpoint is a single run's
    single.load_state_dict(state["members"][1])
    twin = _dqn(["redo"], seeds=SEEDS)
    twin.load_state_dict(state)
    a, b = pop.learn([cartpole() for _ in SEEDS], 320), twin.learn([cartpole() for _ in SEEDS], 320)
    s = single.learn(cartpole(), 320)
    assert [r.episodes for r in a] == [r.episodes for r in b] and a[1].episodes == s.episodes
    for m, n in zip(pop.members, twin.members, strict=True):
        assert all(torch.equal(p, q) for p, q in zip(m.q.parameters(), n.q.parameters(), strict=True))
    assert _close(single.q, pop.members[1].q)


def test_probes_of_a_member_equal_probes_of_the_single_run():
    single = _dqn([], seed=SEEDS[1])
    pop = _dqn([], seeds=SEEDS)
    single.learn(cartpole(), 200)
    pop.learn([cartpole() for _ in SEEDS], 200)
    metrics = ["hessian_top", "features", "gradient", "weights"]
    rows = []
    for agent in (single, pop.members[1]):
        target = agent.probe_targets()[0]
        batch = target.sample_batch(64, torch.Generator().manual_seed(0))
        rows.append(spectral.probe(target.module, lambda t=target, b=batch: t.loss(b),
                                   layers=target.layers, inputs=target.inputs(batch),
                                   metrics=metrics, generator=torch.Generator().manual_seed(1)))
        side = agent.collect(cartpole(), 50, seed=5)
        rows[-1]["side_loss"] = target.loss(side).item()
    assert rows[0].keys() == rows[1].keys()
    for key, value in rows[0].items():
        if key.startswith("time/"):
            continue
        assert rows[1][key] == pytest.approx(value, rel=1e-3, abs=1e-5), key


def test_a_diverged_member_is_reported_and_the_others_train_on():
    pop = _dqn([], seeds=SEEDS)
    clean = _dqn([], seed=SEEDS[1])
    envs = [cartpole() for _ in SEEDS]
    pop.learn(envs, 100)
    clean_env = cartpole()
    clean.learn(clean_env, 100)
    with torch.no_grad():
        pop.members[0].q.head.weight.fill_(float("nan"))
    results = pop.learn(envs, 200)
    assert isinstance(results[0].diverged, DivergenceError) and results[1].diverged is None
    assert results[0].diverged.what == "losses/td_loss"
    assert results[1].episodes == clean.learn(clean_env, 200).episodes
    assert _close(pop.members[1].q, clean.q)
    assert np.isfinite(results[1].metrics["losses/td_loss"])


def test_population_input_errors():
    from agents import AgentError

    with pytest.raises(AgentError, match="distinct"):
        _dqn([], seeds=[1, 1])
    pop = _dqn([], seeds=SEEDS)
    with pytest.raises(AgentError, match="one env per member"):
        pop.learn([cartpole()], 10)
    with pytest.raises(AttributeError, match="members"):
        pop.networks()


@pytest.mark.slow
def test_every_member_of_a_dqn_population_of_4_learns_cartpole():
    # As test_dqn_learns_cartpole, for 4 seeds at once: random ~22, learned >= 150.
    from tests.agents.conftest import mean_return
    from tests.agents.test_dqn import FAST

    env = cartpole()
    pop = DQN(env.observation_space, env.action_space, DQNConfig(**FAST), seeds=[1, 2, 3, 4])
    results = pop.learn([cartpole() for _ in range(4)], 10_000)
    returns = [mean_return(r.episodes, 10) for r in results]
    assert min(returns) >= 150, returns


@pytest.mark.slow
def test_every_member_of_a_ppo_population_of_4_learns_cartpole():
    # As test_ppo_learns_cartpole, for 4 seeds at once: random ~22, learned >= 150.
    from tests.agents.conftest import mean_return

    vec = cartpole_vec(4)
    pop = PPO(vec.single_observation_space, vec.single_action_space,
              PPOConfig(total_steps=100_000), seeds=[1, 2, 3, 4])
    results = pop.learn([cartpole_vec(4) for _ in range(4)], 40_000)
    returns = [mean_return(r.episodes, 20) for r in results]
    assert min(returns) >= 150, returns


@pytest.mark.parametrize("k", [1, 3])
def test_member_gradient_norms_and_clipping_are_each_members_own(k):
    """population.clip_per_member against each member's gradient concatenated by hand: the
    norm before clipping, and a clipped gradient of norm max_norm pointing the same way
    (a member already under max_norm is left as it is)."""
    g = torch.Generator().manual_seed(k)
    params = [torch.zeros(k, 4, 3, requires_grad=True), torch.zeros(k, 5, requires_grad=True)]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)  # norms ~4: over the threshold
        if k > 1:
            p.grad[0] *= 0.1  # but member 0's (~0.3)
    before = [torch.cat([p.grad[m].reshape(-1) for p in params]) for m in range(k)]
    norms = population.clip_per_member(params, max_norm=1.0)
    assert norms.shape == (k,)
    for m in range(k):
        after = torch.cat([p.grad[m].reshape(-1) for p in params])
        assert norms[m] == pytest.approx(before[m].norm().item(), rel=1e-6)
        scale = min(1.0, 1.0 / (before[m].norm().item() + 1e-6))
        assert torch.allclose(after, before[m] * scale, atol=1e-7)
