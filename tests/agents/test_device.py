"""Each agent module puts what it creates on the device it is given.

There is no GPU here, so the device handed over is ``meta`` (shapes without data): a tensor
that a module creates on the CPU instead would meet a meta tensor and raise ("Tensor on
device cpu is not on the expected device meta"), or show up in the ``.device`` checks below.
What needs values (a whole training loop) is checked in tests/experiments/test_device.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from agents import DQN, PPO, DQNConfig, PPOConfig
from agents._common import to_device
from agents.base import AgentError, parse_device
from agents.batched import StackedMLP
from agents.distributions import CategoricalPolicy, GaussianPolicy
from agents.networks import MLP
from agents.replay import ReplayBuffer

META = torch.device("meta")


def test_devices_are_cpu_cuda_or_an_indexed_cuda_and_anything_else_names_the_choices():
    assert parse_device("cpu") == torch.device("cpu")
    assert parse_device("cuda") == torch.device("cuda")
    assert parse_device("cuda:1") == torch.device("cuda", 1)
    for bad in ("gpu", "CUDA", "cuda:", "cuda:x", "meta", 0):
        with pytest.raises(AgentError, match=r"device = .* valid choices: 'cpu', 'cuda', 'cuda:N'"):
            parse_device(bad)
    for config in (DQNConfig, PPOConfig):
        assert config().device == "cpu"
        with pytest.raises(AgentError, match="device = 'gpu' is not a valid device"):
            config(device="gpu")


def test_host_data_crosses_to_the_device_once_and_shares_memory_on_the_cpu():
    array = np.arange(6, dtype=np.float32)
    on_cpu = to_device(array, torch.device("cpu"))
    array[0] = 7.0
    assert on_cpu[0] == 7.0  # no copy on the CPU: CPU runs are what they were
    assert to_device(array, META).device == META
    cast = to_device(np.ones(3, dtype=np.uint8), META, torch.float32)
    assert (cast.device, cast.dtype) == (META, torch.float32)
    with torch.device(META):  # never torch's default device: host data starts on the host
        assert to_device(array, torch.device("cpu")).device.type == "cpu"


def test_networks_are_built_on_their_device_and_drawn_from_a_cpu_generator():
    net = MLP(4, 2, (8, 8), layer_norm=True, init="orthogonal",
              generator=torch.Generator().manual_seed(0), device=META)
    assert {p.device for p in net.parameters()} == {META}
    cpu = [MLP(4, 2, (8,), generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    cpu[1].reset_parameters(torch.Generator().manual_seed(3))  # re-draw in place: same values
    for a, b in zip(cpu[0].parameters(), cpu[1].parameters(), strict=True):
        assert torch.equal(a, b)


def test_stacked_networks_run_on_their_device_and_skip_the_numpy_path_off_the_cpu():
    members = [MLP(3, 2, (5,), device=META) for _ in range(2)]
    stacked = StackedMLP(members)
    assert {p.device for p in stacked.params} == {META}
    assert stacked.inference(torch.zeros(2, 4, 3, device=META)).device == META
    assert stacked.member_inference(1, torch.zeros(4, 3, device=META)).device == META
    assert stacked.numpy_forward(np.zeros((2, 3), dtype=np.float32)) is None


def test_replay_batches_come_out_on_the_buffer_device():
    buffer = ReplayBuffer(8, (3,), np.uint8, n_step=2, members=2, device=META)
    for _ in range(4):
        buffer.add(np.ones((2, 3)), np.ones((2, 3)), np.zeros(2), np.ones(2), np.zeros(2, bool),
                   np.zeros(2, bool))
    batch = buffer.sample(5, [np.random.default_rng(0), np.random.default_rng(1)])
    assert {v.device for v in batch.values()} == {META}
    assert batch["obs"].dtype == batch["next_obs"].dtype == torch.float32


@pytest.mark.parametrize("population", [False, True])
def test_actions_are_drawn_from_cpu_generators_and_land_on_the_logits_device(population):
    generators = ([torch.Generator().manual_seed(k) for k in range(2)] if population
                  else torch.Generator().manual_seed(0))
    shape = (2, 5) if population else (5,)
    actions, logprob = CategoricalPolicy().sample(torch.zeros(*shape, 3, device=META), generators)
    assert actions.device == logprob.device == META
    log_std = torch.zeros(2, 1, 1, device=META) if population else torch.zeros(1, device=META)
    actions, logprob = GaussianPolicy(log_std).sample(torch.zeros(*shape, 1, device=META),
                                                      generators)
    assert actions.device == logprob.device == META


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_an_agent_builds_every_network_buffer_and_parameter_on_its_device(monkeypatch, algo):
    # a device setting that resolves to meta (no config may name it): whatever the agent
    # builds elsewhere than on its device shows up below
    monkeypatch.setattr(f"agents.{algo}.parse_device", lambda value: META)
    box = spaces.Box(-1.0, 1.0, (3,), np.float32)
    if algo == "dqn":
        agent = DQN(box, spaces.Discrete(2), DQNConfig(buffer_size=16, batch_size=4), seeds=[0, 1])
        assert agent.buffer.device == META
        stacked = [agent.q, agent.target_network]
    else:  # Box actions: the Gaussian's log-std is a parameter too
        agent = PPO(box, spaces.Box(-1.0, 1.0, (1,), np.float32),
                    PPOConfig(num_envs=1, num_steps=4), seeds=[0, 1])
        stacked = [agent._actor, agent._critic]
    assert {p.device for s in stacked for p in s.params} == {META}
    members = [p for m in agent.members for net in m.networks().values() for p in net.parameters()]
    assert {p.device for p in members} == {META}


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")
def test_a_checkpoint_loads_onto_the_device_of_the_agent_that_loads_it(monkeypatch):
    from agents.mitigations import make_mitigations
    from tests.agents.conftest import cartpole_vec

    config = PPOConfig(num_envs=2, num_steps=16, widths=(8,))
    theta0 = [{"name": "shrink_perturb", "noise": "theta0"}]  # keeps the initial parameters
    env = cartpole_vec(2)
    trained = PPO(env.single_observation_space, env.single_action_space, config,
                  make_mitigations(theta0))
    trained.learn(env, 32)
    state = trained.state_dict()  # CPU tensors, as a checkpoint reads back (map_location="cpu")
    monkeypatch.setattr("agents.ppo.parse_device", lambda value: META)
    agent = PPO(env.single_observation_space, env.single_action_space, config,
                make_mitigations(theta0))
    agent.load_state_dict(state)
    assert {v.device for v in agent.last_rollout.values()} == {META}
    adam = agent._optimizer
    assert {t.device for s in adam.state.values() for t in s.values()} == {META}  # fused: step too
    assert {v.device for v in agent.mitigations[0].initial.values()} == {META}
    env.close()
