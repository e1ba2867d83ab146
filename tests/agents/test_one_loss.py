"""One loss: what a probe target measures is what the update minimises.

Each test records the batches of a real ``learn`` call (the update's own minibatches,
before its optimiser step) and evaluates the members' probe targets on their rows of them:
the probe loss must equal the training loss of that member, for a single run and for each
member of a population of two, in every loss variant.
"""

from __future__ import annotations

import gymnasium as gym
import pytest
import torch

from agents.dqn import DQN, DQNConfig
from agents.ppo import PPO, PPOConfig

TOL = dict(rel=1e-6, abs=1e-6)


def _envs(make, k):
    envs = [make() for _ in range(k)]
    return envs if k > 1 else envs[0]


@pytest.mark.parametrize("k", [1, 2], ids=["single", "population"])
@pytest.mark.parametrize(("loss", "n_step", "double"),
                         [("mse", 1, False), ("huber", 1, False), ("mse", 3, True),
                          ("huber", 3, True)])
def test_dqn_probe_loss_is_the_training_td_loss(k, loss, n_step, double):
    env = gym.make("CartPole-v1")
    config = DQNConfig(learning_starts=100, buffer_size=1000, batch_size=32, train_frequency=4,
                       exploration_steps=200, widths=(16, 16), target_network_frequency=50,
                       loss=loss, n_step=n_step, double_dqn=double)
    agent = DQN(env.observation_space, env.action_space, config, seeds=list(range(k)))
    seen = []
    backward = agent._backward

    def recording(batch):
        value, q_mean, closed = backward(batch)
        with torch.no_grad():  # the parameters of this update, before its optimiser step
            probe = [m.probe_targets()[0].loss({key: v[i] for key, v in batch.items()}).item()
                     for i, m in enumerate(agent.members)]
        seen.append((value.tolist(), probe, closed))
        return value, q_mean, closed

    agent._backward = recording
    agent.learn(_envs(lambda: gym.make("CartPole-v1"), k), 400)
    assert len(seen) == 75 and all(closed for *_, closed in seen)  # the closed-form update
    for trained, probed, _ in seen:
        assert probed == pytest.approx(trained, **TOL)
    assert min(min(t) for t, _, _ in seen) > 0


@pytest.mark.parametrize("k", [1, 2], ids=["single", "population"])
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"], ids=["categorical", "gaussian"])
@pytest.mark.parametrize("clip_vloss", [True, False], ids=["clip_vloss", "plain_vloss"])
@pytest.mark.parametrize("ent_coef", [0.0, 0.05], ids=["no_entropy", "entropy"])
def test_ppo_probe_losses_are_the_training_loss(k, env_id, clip_vloss, ent_coef):
    def make():
        return gym.vector.SyncVectorEnv([lambda: gym.make(env_id)] * 2)

    envs = make()
    config = PPOConfig(num_envs=2, num_steps=64, widths=(16, 16), clip_vloss=clip_vloss,
                       ent_coef=ent_coef, update_epochs=2, num_minibatches=2)
    agent = PPO(envs.single_observation_space, envs.single_action_space, config,
                seeds=list(range(k)))
    seen = []
    losses = agent._losses

    def recording(mb, lengths):
        loss, stats = losses(mb, lengths)
        rows = []
        with torch.no_grad():
            for i, m in enumerate(agent.members):
                member = {key: v[:lengths[0]] if k == 1 else v[i, : lengths[i]]
                          for key, v in mb.items()}
                policy, value, both = m.probe_targets()
                rows.append((policy.loss(member).item(), value.loss(member).item(),
                             both.loss(member).item()))
        seen.append((loss.tolist(), [s.tolist() for s in stats], rows, lengths))
        return loss, stats

    agent._losses = recording
    agent.learn(_envs(make, k), 256)
    assert len(seen) == 2 * 2 * 2  # 2 rollouts x 2 epochs x 2 minibatches
    if k == 2 and env_id == "CartPole-v1":  # autoreset steps dropped: members padded
        assert any(len(set(lengths)) > 1 for *_, lengths in seen)
    for loss, stats, rows, _ in seen:
        pg, entropy, v_loss = stats[0], stats[1], stats[5]
        for i, (policy, value, both) in enumerate(rows):
            assert both == pytest.approx(loss[i], **TOL)
            assert policy == pytest.approx(pg[i] - ent_coef * entropy[i], **TOL)
            assert value == pytest.approx(config.vf_coef * v_loss[i], **TOL)
