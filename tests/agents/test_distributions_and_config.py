"""Action distributions against torch.distributions; config validation errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from agents import DQN, PPO, AgentError, DQNConfig, PPOConfig
from agents.distributions import CategoricalPolicy, GaussianPolicy
from agents.normalization import RunningMeanStd


def test_categorical_log_prob_and_entropy_match_torch():
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    actions = torch.tensor([0, 1, 2, 3, 1, 0])
    log_prob, entropy = CategoricalPolicy().log_prob_entropy(logits, actions)
    ref = torch.distributions.Categorical(logits=logits)
    assert torch.allclose(log_prob, ref.log_prob(actions), atol=1e-6)
    assert torch.allclose(entropy, ref.entropy(), atol=1e-6)


def test_categorical_samples_follow_the_probabilities_and_the_generator():
    policy = CategoricalPolicy()
    logits = torch.log(torch.tensor([[0.1, 0.6, 0.3]])).expand(20000, 3)
    a1, lp = policy.sample(logits, torch.Generator().manual_seed(3))
    a2, _ = policy.sample(logits, torch.Generator().manual_seed(3))
    assert a1.equal(a2)
    freq = torch.bincount(a1, minlength=3).float() / len(a1)
    assert torch.allclose(freq, torch.tensor([0.1, 0.6, 0.3]), atol=0.015)
    assert torch.allclose(lp, torch.log(torch.tensor([0.1, 0.6, 0.3]))[a1], atol=1e-6)


def test_gaussian_log_prob_entropy_and_sample_match_torch():
    log_std = nn.Parameter(torch.tensor([-0.5, 0.3]))
    policy = GaussianPolicy(log_std)
    mean = torch.randn(5, 2, generator=torch.Generator().manual_seed(1))
    actions, sampled_lp = policy.sample(mean, torch.Generator().manual_seed(2))
    ref = torch.distributions.Normal(mean, log_std.exp())
    log_prob, entropy = policy.log_prob_entropy(mean, actions)
    assert torch.allclose(log_prob, ref.log_prob(actions).sum(-1), atol=1e-5)
    assert torch.allclose(sampled_lp, log_prob, atol=1e-5)
    assert torch.allclose(entropy, ref.entropy().sum(-1), atol=1e-6)


def test_numpy_sampling_draws_what_torch_sampling_draws_member_by_member():
    """sample_numpy (acting on the CPU) against sample: the same generators' draws give
    the same actions and log-probabilities, for a population (one generator per member)
    and a single run; the generators end in the same state."""
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 500, 5, generator=g) * 3
    means = torch.randn(3, 500, 2, generator=g)
    gaussian = GaussianPolicy(torch.tensor([[[-0.5, 0.3]], [[0.1, 0.0]], [[1.0, -2.0]]]))
    for policy, out in ((CategoricalPolicy(), logits), (gaussian, means)):
        for k in (3, 1):
            gens_t = [torch.Generator().manual_seed(10 + i) for i in range(k)]
            gens_n = [torch.Generator().manual_seed(10 + i) for i in range(k)]
            if k == 1 and policy is gaussian:
                policy = GaussianPolicy(gaussian.log_std[:1])
            a_t, lp_t = policy.sample(out[:k], gens_t)
            a_n, lp_n = policy.sample_numpy(out[:k].numpy(), gens_n)
            assert a_n.shape == tuple(a_t.shape) and lp_n.dtype == np.float32
            if policy.continuous:
                assert np.allclose(a_n, a_t.numpy(), atol=1e-6)
            else:
                # equal but where a uniform falls within float32 rounding of a CDF step
                # (none of these 2,000 draws)
                assert a_n.dtype == np.int64 and np.array_equal(a_n, a_t.numpy())
            assert np.allclose(lp_n, lp_t.numpy(), atol=1e-5)
            assert all(torch.equal(x.get_state(), y.get_state())
                       for x, y in zip(gens_t, gens_n, strict=True))


def test_running_mean_std_matches_numpy_over_batches():
    data = np.random.default_rng(0).normal(3.0, 2.0, size=(1000, 3))
    rms = RunningMeanStd((3,), epsilon=0.0 + 1e-12)
    for chunk in np.array_split(data, 7):
        rms.update(chunk)
    assert np.allclose(rms.mean, data.mean(0)) and np.allclose(rms.var, data.var(0))


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (DQNConfig, {"activation": "sigmoid"}, "activation 'sigmoid'.*'relu'"),
        (PPOConfig, {"activation": "swish"}, "activation 'swish'"),
        (DQNConfig, {"widths": (64, 0)}, "widths=\\(64, 0\\)"),
        (PPOConfig, {"widths": (-1,)}, "widths"),
        (DQNConfig, {"batch_size": 512, "buffer_size": 100}, "batch_size=512.*buffer_size=100"),
        (DQNConfig, {"loss": "l1"}, "loss 'l1'.*'huber', 'mse'"),
        (DQNConfig, {"tau": 0.0}, "tau=0.0.*\\(0, 1\\]"),
        (DQNConfig, {"n_step": 0}, "n_step=0.*positive integer"),
        (DQNConfig, {"end_e": 1.5}, "end_e=1.5"),
        (DQNConfig, {"max_grad_norm": -1.0}, "max_grad_norm=-1.0"),
        (PPOConfig, {"num_minibatches": 1000}, "num_minibatches=1000.*512"),
        (PPOConfig, {"gae_lambda": 2.0}, "gae_lambda=2.0"),
        (PPOConfig, {"adam_betas": (0.9, 1.0)}, "adam_betas"),
        (PPOConfig, {"learning_rate": 0.0}, "learning_rate=0.0"),
        (PPOConfig, {"init": "xavier"}, "init 'xavier'.*'orthogonal'"),
    ],
)
def test_bad_config_values_are_named_with_their_valid_range(cls, kwargs, match):
    with pytest.raises(AgentError, match=match):
        cls(**kwargs)


def _wrong_type(value):
    """A value of a type no annotation of our configs accepts for a field holding ``value``."""
    return "fast" if not isinstance(value, str) else 3


@pytest.mark.parametrize("cls", [DQNConfig, PPOConfig])
def test_every_config_field_of_the_wrong_type_is_named_with_its_expected_type(cls):
    """Generic: each field, given a value of the wrong type, raises one AgentError naming
    the field and its type (never a raw TypeError from a comparison)."""
    import dataclasses

    for f in dataclasses.fields(cls):
        bad = _wrong_type(getattr(cls(), f.name))
        with pytest.raises(AgentError, match=rf"invalid {f.name}={bad!r} for {cls.__name__}; expected "):
            cls(**{f.name: bad})


def test_wrong_types_name_the_expected_type():
    with pytest.raises(AgentError, match=r"learning_rate='fast' for DQNConfig; expected a number$"):
        DQNConfig(learning_rate="fast")
    with pytest.raises(AgentError, match=r"widths=\(64, 'a'\).*expected a sequence of integers"):
        DQNConfig(widths=(64, "a"))
    with pytest.raises(AgentError, match=r"max_grad_norm='x'.*expected a number or None"):
        PPOConfig(max_grad_norm="x")
    with pytest.raises(AgentError, match=r"n_step=True.*expected an integer"):
        DQNConfig(n_step=True)  # a bool is not an int here
    assert DQNConfig(learning_rate=1, widths=[64, 64]).widths == (64, 64)  # ints are numbers


def test_mitigation_parameters_of_the_wrong_type_are_named():
    from agents.mitigations.registry import make_mitigation

    with pytest.raises(AgentError, match=r"invalid weight_decay='big' for L2; expected a number"):
        make_mitigation("l2", weight_decay="big")


def test_dqn_refuses_box_actions_and_dict_observations():
    env = gym.make("Pendulum-v1")
    with pytest.raises(AgentError, match="Discrete.*PPO"):
        DQN(env.observation_space, env.action_space)
    dict_space = gym.spaces.Dict({"image": gym.spaces.Box(0, 1, (3,))})
    with pytest.raises(AgentError, match="ImgObsWrapper"):
        DQN(dict_space, gym.spaces.Discrete(3))


def test_ppo_refuses_unsupported_action_spaces_and_mismatched_num_envs():
    box = gym.spaces.Box(-1, 1, (4,))
    with pytest.raises(AgentError, match="Discrete or a 1-D Box"):
        PPO(box, gym.spaces.MultiDiscrete([2, 2]))
    envs = gym.make_vec("CartPole-v1", 2, vectorization_mode="sync")
    agent = PPO(envs.single_observation_space, envs.single_action_space, PPOConfig(num_envs=4))
    with pytest.raises(AgentError, match="2 sub-envs.*num_envs = 4"):
        agent.learn(envs, 10)
