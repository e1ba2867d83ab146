"""``LeanSyncVectorEnv`` steps exactly as gymnasium's ``SyncVectorEnv``: observations,
rewards, terminations, truncations, autoreset in both modes, task switches, ``same_step``'s
final observations, snapshots; and PPO trains bit-identically on either."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium.vector import SyncVectorEnv

import envs
from agents import PPO, PPOConfig
from envs.vector import LeanSyncVectorEnv
from experiments import streams

STREAMS = ["plasticity/MiniGridHiddenGoal-v0", "plasticity/MiniGridPermutedView-v0",
           "plasticity/CartPoleDynamics-v0"]


def _pair(stream: str, autoreset_mode: str, n: int = 3, period: int = 240):
    kw = dict(autoreset_mode=autoreset_mode, period=period, seed=1)
    sync, lean = (envs.make_vector(stream, n, mode, **kw) for mode in ("sync", "lean"))
    assert type(sync) is SyncVectorEnv and type(lean) is LeanSyncVectorEnv
    return sync, lean


def _assert_same_step(a, b, mode: str) -> None:
    (obs_a, r_a, term_a, trunc_a, info_a), (obs_b, r_b, term_b, trunc_b, info_b) = a, b
    np.testing.assert_array_equal(obs_a, obs_b)
    assert obs_a.dtype == obs_b.dtype and r_a.dtype == r_b.dtype
    np.testing.assert_array_equal(r_a, r_b)
    np.testing.assert_array_equal(term_a, term_b)
    np.testing.assert_array_equal(trunc_a, trunc_b)
    if mode == "same_step":  # what PPO reads: final observations of ended episodes
        assert ("final_obs" in info_a) == ("final_obs" in info_b)
        if "final_obs" in info_a:
            np.testing.assert_array_equal(info_a["_final_obs"], info_b["_final_obs"])
            for j in np.flatnonzero(info_a["_final_obs"]):
                np.testing.assert_array_equal(info_a["final_obs"][j], info_b["final_obs"][j])


@pytest.mark.parametrize("mode", ["next_step", "same_step"])
@pytest.mark.parametrize("stream", STREAMS)
def test_lean_vector_env_steps_exactly_as_sync_vector_env(stream, mode):
    sync, lean = _pair(stream, mode)
    np.testing.assert_array_equal(sync.reset(seed=5)[0], lean.reset(seed=5)[0])
    rng = np.random.default_rng(0)
    ends = switches = 0
    tasks = set()
    for t in range(700):  # 2,100 global steps, period 240: 8 switches
        actions = rng.integers(0, sync.single_action_space.n, sync.num_envs)
        a, b = sync.step(actions), lean.step(actions)
        _assert_same_step(a, b, mode)
        ends += int((a[2] | a[3]).sum())
        assert streams.current_task(sync) == streams.current_task(lean)
        assert sync.get_attr("global_step") == lean.get_attr("global_step")
        tasks.add(streams.current_task(lean))
        if t == 350:  # a snapshot mid-episode continues exactly (the runner's checkpoints)
            lean = streams.restore(streams.snapshot(lean))
            assert type(lean) is LeanSyncVectorEnv
    switches = len(tasks) - 1
    assert ends > 20 and switches >= 7


def test_ppo_trains_bit_identically_on_the_lean_vector_env():
    config = PPOConfig(num_envs=4, num_steps=64, widths=(16, 16), update_epochs=2,
                       num_minibatches=2, anneal_lr=False, seed=3)
    params = []
    for mode in ("sync", "lean"):
        vec = envs.make_vector("plasticity/MiniGridHiddenGoal-v0", 4, mode, period=512, seed=3)
        agent = PPO(vec.single_observation_space, vec.single_action_space, config)
        result = agent.learn(vec, 1536)  # 6 rollouts, two task switches
        params.append((torch.cat([p.detach().flatten() for net in agent.networks().values()
                                  for p in net.parameters()]), result.episodes))
    assert torch.equal(params[0][0], params[1][0])
    assert params[0][1] == params[1][1] and len(params[0][1]) > 0
