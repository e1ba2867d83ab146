"""PPO: learning (discrete, Box, MiniGrid), determinism, probe/collect isolation, hooks, state."""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

import spectral
from agents import PPO, AgentError, PPOConfig, ShiftPolicy
from tests.agents.conftest import Recorder, cartpole_vec, empty_room, mean_return, params_equal


def make_agent(envs, **overrides) -> PPO:
    config = PPOConfig(**{"total_steps": 100_000, **overrides})
    return PPO(envs.single_observation_space, envs.single_action_space, config)


def test_ppo_learns_cartpole():
    # 1 seed, 40k steps: random ~22 mean return; CleanRL-default PPO is at ~200-300 here.
    envs = cartpole_vec(4)
    agent = make_agent(envs, seed=1)
    result = agent.learn(envs, 40_000)
    assert mean_return(result.episodes, 20) >= 150
    keys = {
        "losses/policy_loss",
        "losses/value_loss",
        "losses/entropy",
        "losses/approx_kl",
        "losses/old_approx_kl",
        "losses/clipfrac",
        "losses/explained_variance",
        "charts/learning_rate",
        "charts/sps",
        "losses/grad_norm",
    }
    assert keys <= set(result.metrics)
    assert result.global_step == 40_448  # rounded up to whole rollouts of 512
    assert result.updates == (40_448 // 512) * 16


def test_ppo_gaussian_policy_learns_pendulum():
    # 1 seed, 45k steps, Box actions with obs/reward normalisation: a random policy scores
    # about -1200 per episode; this config reaches about -400 at 45k.
    envs = gym.make_vec("Pendulum-v1", 4, vectorization_mode="sync")
    agent = make_agent(
        envs,
        seed=1,
        num_steps=256,
        learning_rate=1e-3,
        total_steps=150_000,
        ent_coef=0.0,
        normalize_observation=True,
        normalize_reward=True,
        update_epochs=10,
        num_minibatches=8,
    )
    first = agent.learn(envs, 5_000)
    last = agent.learn(envs, 45_000)
    assert mean_return(first.episodes, 20) < -900
    assert mean_return(last.episodes, 20) > -750
    assert agent.obs_normalizer.rms.count > 40_000  # statistics live in the agent


def test_ppo_learns_minigrid_empty_room():
    # 1 seed, 12k steps: random ~0.3 mean return, solved ~0.95.
    envs = gym.vector.SyncVectorEnv([empty_room] * 8)
    agent = make_agent(envs, seed=0, num_envs=8, learning_rate=1e-3, anneal_lr=False)
    result = agent.learn(envs, 12_000)
    assert mean_return(result.episodes, 40) >= 0.8


def run(agent, envs, stops, interleave=None):
    out = []
    for stop in stops:
        result = agent.learn(envs, stop)
        out.append(
            (result.episodes, result.metrics["losses/value_loss"], result.metrics["losses/entropy"])
        )
        if interleave:
            interleave(agent)
    return out


@pytest.mark.parametrize("mode", ["next_step", "same_step"])
def test_same_seed_gives_identical_training_and_probes_do_not_change_it(mode):
    autoreset = {
        "next_step": gym.vector.AutoresetMode.NEXT_STEP,
        "same_step": gym.vector.AutoresetMode.SAME_STEP,
    }[mode]

    def make_envs():
        return gym.vector.SyncVectorEnv(
            [lambda: gym.make("CartPole-v1")] * 4, autoreset_mode=autoreset
        )

    side_envs = make_envs()

    def probe(agent):
        batch = agent.collect(side_envs, 300, seed=11)
        assert len(batch["obs"]) <= 300 and len(batch["obs"]) > 250
        torch.rand(3)
        for target in agent.probe_targets():
            target.loss(target.sample_batch(64, None)).backward()
            target.loss(batch)
        agent.optimizer.zero_grad()

    stops = [2048, 4096, 6144]
    a, b = make_agent(make_envs(), seed=3), make_agent(make_envs(), seed=3)
    ea, eb = make_envs(), make_envs()
    assert run(a, ea, stops) == run(b, eb, stops, interleave=probe)
    assert params_equal(a.actor, b.actor) and params_equal(a.critic, b.critic)


def test_value_probe_loss_is_the_clipped_value_loss_of_the_critic_only():
    envs = cartpole_vec(4)
    agent = make_agent(envs, seed=0)
    agent.learn(envs, 512)
    policy, value, _ = agent.probe_targets()
    assert (policy.name, value.name) == ("policy", "value")
    assert policy.module is agent.actor and value.module is agent.critic
    assert list(policy.layers) == ["hidden.0", "hidden.1"]
    batch = policy.sample_batch(10_000, torch.Generator().manual_seed(0))
    assert len(batch["obs"]) == len(agent.last_rollout["obs"]) <= 512
    # value probe loss = vf_coef * 0.5 * clipped squared error
    v_new = agent.critic(batch["obs"]).squeeze(-1)
    clipped = batch["values"] + (v_new - batch["values"]).clamp(-0.2, 0.2)
    expected = (
        0.5
        * 0.5
        * torch.max((v_new - batch["returns"]) ** 2, (clipped - batch["returns"]) ** 2).mean()
    )
    assert value.loss(batch).item() == pytest.approx(expected.item(), rel=1e-5)
    # on fresh on-policy data the ratio is 1, so the clipped surrogate is -mean(normalised
    # advantage) = 0 and the policy loss is just -ent_coef * entropy
    fresh = agent.collect(cartpole_vec(4), 256, seed=1)
    probs = torch.softmax(agent.actor(fresh["obs"]), -1)
    entropy = -(probs * probs.log()).sum(-1).mean()
    assert policy.loss(fresh).item() == pytest.approx(-0.01 * entropy.item(), abs=1e-6)
    agent.optimizer.zero_grad(set_to_none=True)
    value.loss(batch).backward()
    assert all(p.grad is None for p in agent.actor.parameters())


def test_actor_critic_target_is_the_full_ppo_loss_over_both_networks():
    envs = cartpole_vec(2)
    agent = make_agent(envs, seed=0, widths=(8,), num_envs=2, num_steps=64)
    agent.learn(envs, 128)
    policy, value, both = agent.probe_targets()
    assert both.name == "actor_critic" and both.ggn is None
    params = list(both.module.parameters())
    assert params == [*agent.actor.parameters(), *agent.critic.parameters()]
    assert list(both.layers) == ["actor.hidden.0", "critic.hidden.0"]
    batch = agent.last_rollout
    # The training loss of one minibatch: clipped surrogate - entropy bonus + value loss.
    assert both.loss(batch).item() == pytest.approx(
        (agent.policy_loss(batch)[0] + agent.value_loss(batch)).item(), rel=1e-6
    )
    # Dense Hessians (float64 products on the float32 model): block diagonal, the blocks
    # are the per-network Hessians, so the spectrum is the union of theirs.
    full = spectral.HessianOperator(lambda: both.loss(batch), both.module).to_dense()
    h_pi = spectral.HessianOperator(lambda: policy.loss(batch), policy.module).to_dense()
    h_v = spectral.HessianOperator(lambda: value.loss(batch), value.module).to_dense()
    torch.testing.assert_close(full, torch.block_diag(h_pi, h_v), rtol=1e-4, atol=1e-6)
    union = torch.sort(torch.cat([torch.linalg.eigvalsh(h_pi), torch.linalg.eigvalsh(h_v)]))[0]
    torch.testing.assert_close(torch.linalg.eigvalsh(full), union, rtol=1e-4, atol=1e-6)
    # Its features forward runs both networks (the probe's feature hooks fire on each).
    out = spectral.probe(
        both.module,
        lambda: both.loss(batch),
        layers=both.layers,
        inputs=both.inputs(batch),
        metrics=["features"],
    )
    assert {
        "features/actor.hidden.0/effective_rank",
        "features/critic.hidden.0/effective_rank",
    } <= set(out)


def test_policy_and_value_gauss_newton_matrices():
    envs = cartpole_vec(2)
    agent = make_agent(envs, seed=0, widths=(8,), num_envs=2, num_steps=64)
    agent.learn(envs, 128)
    policy, value, _ = agent.probe_targets()
    batch = agent.last_rollout
    n = len(batch["obs"])

    def ggn_dense(target, b):
        output_fn, output_loss = target.ggn(b)
        return spectral.GGNOperator(output_fn, target.module, output_loss).to_dense()

    def jacobian(net):  # ∂ vec(net(obs)) / ∂θ, one row per output entry
        out = net(batch["obs"]).reshape(-1)
        params = list(net.parameters())
        rows = [
            torch.cat([g.reshape(-1) for g in torch.autograd.grad(o, params, retain_graph=True)])
            for o in out
        ]
        return torch.stack(rows).double()

    # Policy: the Fisher matrix of the softmax, Jᵀ (diag p − ppᵀ) J / B; independent of the
    # actions taken and of the advantages.
    jac = jacobian(agent.actor)
    p = torch.softmax(agent.actor(batch["obs"]), -1).detach().double()
    h_out = torch.block_diag(*[torch.diag(p[i]) - torch.outer(p[i], p[i]) for i in range(n)]) / n
    fisher = ggn_dense(policy, batch)
    torch.testing.assert_close(fisher, jac.T @ h_out @ jac, rtol=1e-4, atol=1e-7)
    other = dict(batch, actions=1 - batch["actions"], advantages=-batch["advantages"])
    torch.testing.assert_close(ggn_dense(policy, other), fisher, rtol=1e-5, atol=1e-8)
    # Value: vf_coef · ½ MSE, so G = vf_coef · JᵀJ / B.
    jac = jacobian(agent.critic)
    torch.testing.assert_close(ggn_dense(value, batch), 0.5 * jac.T @ jac / n, rtol=1e-4, atol=1e-7)


def test_collect_does_not_touch_agent_state():
    envs = cartpole_vec(4)
    agent = make_agent(envs, seed=2, normalize_observation=True, normalize_reward=True)
    agent.learn(envs, 1024)
    before = copy.deepcopy(agent.state_dict())
    batch = agent.collect(cartpole_vec(2), 100, seed=0)
    assert len(batch["obs"]) <= 100 and set(batch) == set(agent.last_rollout)
    after = agent.state_dict()
    assert np.array_equal(before["obs_normalizer"]["mean"], after["obs_normalizer"]["mean"])
    assert before["rng"]["numpy"] == after["rng"]["numpy"]
    assert torch.equal(before["rng"]["torch"], after["rng"]["torch"])
    assert agent.global_step == 1024


def test_hooks_order_and_oracle_knobs():
    envs = cartpole_vec(4)
    rec = Recorder()
    agent = PPO(
        envs.single_observation_space,
        envs.single_action_space,
        PPOConfig(total_steps=10_000),
        [rec],
    )
    assert isinstance(agent.critic.hidden[1].norm, torch.nn.LayerNorm)
    result = agent.learn(envs, 1024)
    assert rec.calls[:2] == ["configure", "attach"]
    assert rec.calls.count("before") == rec.calls.count("after_step") == result.updates == 32
    assert rec.calls.count("after_update") == 2 and len(rec.batches[-1]["obs"]) <= 512
    actor = copy.deepcopy(agent.actor)
    agent.on_task_switch(ShiftPolicy(reinitialize=True))
    assert not params_equal(actor, agent.actor) and len(agent.optimizer.state) == 0
    assert rec.calls[-2:] == ["attach", "switch"]
    with pytest.raises(AgentError, match="shift.buffer = 'flush': PPO has no buffer.*'keep'"):
        agent.on_task_switch(ShiftPolicy(buffer="flush"))


def test_entropy_rewarm_raises_the_bonus_at_a_switch_and_decays_it_back():
    """shift.exploration = "rewarm": ent_coef jumps to rewarm_ent_coef at the switch and
    decays linearly to ent_coef over rewarm_steps; the policy's entropy rises after it
    (against the same agent switched without the re-warm), and a checkpoint keeps it."""
    cfg = dict(seed=2, ent_coef=0.0, rewarm_ent_coef=5.0, rewarm_steps=2048)
    a, b = make_agent(cartpole_vec(4), **cfg), make_agent(cartpole_vec(4), **cfg)
    ra, rb = a.learn(cartpole_vec(4), 4096), b.learn(cartpole_vec(4), 4096)
    ra.metrics.pop("charts/sps"), rb.metrics.pop("charts/sps")
    assert ra.metrics["charts/ent_coef"] == 0.0 and ra.metrics == rb.metrics
    a.on_task_switch(ShiftPolicy(exploration="rewarm"))
    b.on_task_switch(ShiftPolicy())
    assert a.entropy_coef() == 5.0 and b.entropy_coef() == 0.0
    state = a.state_dict()
    ra, rb = a.learn(cartpole_vec(4), 5120), b.learn(cartpole_vec(4), 5120)
    assert a.entropy_coef() == pytest.approx(5.0 * (1 - 1024 / 2048))
    assert ra.metrics["losses/entropy"] > rb.metrics["losses/entropy"] + 0.01
    c = make_agent(cartpole_vec(4), **cfg)
    c.load_state_dict(state)
    assert c.entropy_coef() == 5.0
    a.learn(cartpole_vec(4), 8192)
    assert a.entropy_coef() == 0.0  # back to ent_coef after rewarm_steps


def test_checkpoint_resume_is_identical_to_continuing():
    cfg = dict(seed=4, normalize_observation=True, normalize_reward=True)
    a = make_agent(cartpole_vec(4), **cfg)
    a.learn(cartpole_vec(4), 2048)
    state = a.state_dict()
    b = make_agent(cartpole_vec(4), **cfg)
    b.learn(cartpole_vec(4), 512)
    b.load_state_dict(state)
    assert params_equal(a.actor, b.actor) and b.global_step == 2048
    ra, rb = a.learn(cartpole_vec(4), 4096), b.learn(cartpole_vec(4), 4096)
    ra.metrics.pop("charts/sps"), rb.metrics.pop("charts/sps")
    assert ra.episodes == rb.episodes and ra.metrics == rb.metrics
    assert params_equal(a.critic, b.critic)


def test_member_means_over_padded_rows_equal_each_members_own_means():
    from agents.ppo import _MemberMeans

    g = torch.Generator().manual_seed(0)
    lengths = [5, 3, 1]
    x = torch.randn(3, 5, generator=g)
    padded = _MemberMeans(lengths, torch.device("cpu"))
    means, standardized = padded(x), padded.standardize(x)
    for k, n in enumerate(lengths):
        own = _MemberMeans([n], torch.device("cpu"))  # a single run: (n,) rows, (1,) means
        assert not own.padded and own(x[k, :n]).shape == (1,)
        assert torch.allclose(means[k], own(x[k, :n])[0])
        assert torch.allclose(means[k], x[k, :n].mean())
        assert torch.allclose(standardized[k, :n], own.standardize(x[k, :n]), atol=1e-6)
    assert torch.allclose(standardized[0], (x[0] - x[0].mean()) / (x[0].std() + 1e-8))
    assert torch.equal(standardized[2, :1], x[2, :1])  # one row: left as it is
