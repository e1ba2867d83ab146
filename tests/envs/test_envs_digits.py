"""plasticity/PermutedDigits-v0: bundled data, permutation, rewards, split, probe hooks."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from envs.digits import DigitsBandit, load_digits

ID = "plasticity/PermutedDigits-v0"


def test_bundled_digits_are_the_uci_test_set():
    pixels, labels = load_digits()
    assert pixels.shape == (1797, 64) and pixels.dtype == np.float32
    assert pixels.min() == 0.0 and pixels.max() == 1.0  # 0..16 scaled by 1/16
    # class counts of sklearn.datasets.load_digits (UCI optdigits test set)
    assert np.bincount(labels).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert np.all(np.isclose(pixels * 16, np.round(pixels * 16)))


def test_observation_is_the_digit_under_the_task_permutation_and_reward_names_its_class():
    env = envs.make(ID, period=50, switch_at="step", seed=3)
    pixels, labels = load_digits()
    obs, info = env.reset(seed=0)
    rewards = []
    for t in range(120):
        perm = np.asarray(env.get_wrapper_attr("task_params")["pixel_perm"])
        assert np.array_equal(obs, pixels[info["index"]][perm])
        assert info["label"] == labels[info["index"]]
        action = info["label"] if t % 2 == 0 else (info["label"] + 1) % 10
        obs2, reward, terminated, truncated, step_info = env.step(action)
        assert terminated and not truncated  # every episode one step
        assert step_info["label"] == info["label"]
        rewards.append(reward)
        obs, info = env.reset()
    assert rewards == [1.0, 0.0] * 60
    assert env.get_wrapper_attr("task_id") == 2
    # task 0 is the identity; later tasks real permutations drawn from the seed
    schedule = env.get_wrapper_attr("schedule")
    assert schedule.task_params(0)["pixel_perm"] == tuple(range(64))
    assert schedule.task_params(1)["pixel_perm"] != tuple(range(64))
    assert envs.make(ID, seed=3).get_wrapper_attr("schedule").task_params(5) == schedule.task_params(5)
    assert envs.make(ID, seed=4).get_wrapper_attr("schedule").task_params(5) != schedule.task_params(5)


def test_split_is_stratified_disjoint_fixed_per_seed_and_episodes_show_training_images():
    a, b, c = DigitsBandit(split_seed=1), DigitsBandit(split_seed=1), DigitsBandit(split_seed=2)
    assert np.array_equal(a.heldout_indices, b.heldout_indices)
    assert not np.array_equal(a.heldout_indices, c.heldout_indices)
    assert len(np.intersect1d(a.train_indices, a.heldout_indices)) == 0
    assert len(a.train_indices) + len(a.heldout_indices) == 1797
    _, labels = load_digits()
    held_counts = np.bincount(labels[a.heldout_indices], minlength=10)
    assert np.all(np.abs(held_counts - 0.2 * np.bincount(labels)) <= 0.5)
    shown = {a.reset(seed=0 if i == 0 else None)[1]["index"] for i in range(3000)}
    assert shown <= set(a.train_indices.tolist())
    assert len(shown) > 1000  # draws cover the training split


def test_probe_hooks_are_the_heldout_images_under_the_current_permutation():
    env = envs.make(ID, seed=0)
    env.get_wrapper_attr("set_task")(4)
    base = env.unwrapped
    perm = np.asarray(env.get_wrapper_attr("task_params")["pixel_perm"])
    pixels, labels = load_digits()
    data = base.probe_transitions()
    n = len(base.heldout_indices)
    assert data["obs"].shape == (10 * n, 64)
    assert np.array_equal(data["obs"][::10], pixels[base.heldout_indices][:, perm])
    assert data["rewards"].sum() == n and np.all(data["terminated"] == 1)
    right = data["actions"] == np.repeat(labels[base.heldout_indices], 10)
    assert np.array_equal(data["rewards"] == 1, right)
    q = base.optimal_action_values(0.99)
    assert np.array_equal(q["obs"], data["obs"][::10])
    assert np.array_equal(q["action_values"].argmax(1), labels[base.heldout_indices])
    assert np.array_equal(q["action_values"].sum(1), np.ones(n))


def test_vector_env_switches_all_sub_envs_together():
    vec = envs.make_vector(ID, 4, period=40, seed=1)
    vec.reset(seed=0)
    for _ in range(30):
        _, _, _, _, info = vec.step(np.zeros(4, dtype=np.int64))
    assert len(set(info["task_id"].tolist())) == 1 and info["task_id"][0] >= 2


def test_same_seed_same_episodes():
    def run():
        env = envs.make(ID, seed=2)
        out = [env.reset(seed=7)[1]["index"]]
        out += [(env.step(0), env.reset()[1]["index"])[1] for _ in range(50)]
        return out
    assert run() == run()


def test_bad_options_are_env_errors():
    with pytest.raises(envs.EnvError, match="heldout_fraction"):
        envs.make(ID, heldout_fraction=1.5)
    with pytest.raises(envs.EnvError, match="permutation"):
        DigitsBandit().set_permutation([0, 1, 2])
