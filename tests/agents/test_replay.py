"""The replay buffer's n-step batches against a direct per-sample computation."""

from __future__ import annotations

import numpy as np
import pytest

from agents.base import AgentError
from agents.replay import ReplayBuffer


def brute_force_nstep(transitions, i, n, gamma, newest):
    """Walk forward from transition i, stopping at an episode end, n steps, or the newest."""
    ret, k = 0.0, 0
    j = i
    while True:
        _, r, next_obs, term, trunc = transitions[j]
        ret += gamma**k * r
        k += 1
        if term or trunc or k == n or j == newest:
            return ret, next_obs, gamma**k * (0.0 if term else 1.0)
        j += 1


def fill(buffer, rng, count):
    transitions = []
    for t in range(count):
        obs = np.array([t, -t], dtype=np.float32)
        next_obs = obs + 0.5
        r = float(rng.normal())
        term = bool(rng.random() < 0.1)
        trunc = (not term) and bool(rng.random() < 0.05)
        buffer.add(obs, next_obs, t % 3, r, term, trunc)
        transitions.append((obs, r, next_obs, term, trunc))
    return transitions


@pytest.mark.parametrize("n_step", [1, 3, 5])
def test_nstep_batch_matches_direct_computation_after_wraparound(n_step):
    rng = np.random.default_rng(0)
    capacity, count, gamma = 50, 137, 0.9
    buffer = ReplayBuffer(capacity, (2,), np.float32, n_step=n_step, gamma=gamma)
    transitions = fill(buffer, rng, count)
    assert len(buffer) == capacity
    stored = transitions[count - capacity :]  # the ring keeps the newest `capacity`
    idx = np.arange(capacity)
    batch = buffer.gather(idx)
    for slot in idx:
        age = (slot - buffer.pos) % capacity  # 0 = oldest stored transition
        ret, next_obs, disc = brute_force_nstep(stored, age, n_step, gamma, capacity - 1)
        assert batch["obs"][slot].tolist() == stored[age][0].tolist()
        assert batch["rewards"][slot].item() == pytest.approx(ret, rel=1e-5, abs=1e-6)
        assert batch["next_obs"][slot].tolist() == next_obs.tolist()
        assert batch["discounts"][slot].item() == pytest.approx(disc, rel=1e-6)


def test_termination_stops_bootstrap_but_truncation_does_not():
    buffer = ReplayBuffer(10, (1,), np.float32, n_step=3, gamma=0.5)
    buffer.add(np.zeros(1), np.ones(1), 0, 1.0, False, False)
    buffer.add(np.ones(1), np.full(1, 2.0), 0, 2.0, True, False)  # terminated
    buffer.add(np.zeros(1), np.ones(1), 0, 4.0, False, True)  # truncated
    batch = buffer.gather(np.array([0, 2]))
    assert batch["rewards"].tolist() == [1.0 + 0.5 * 2.0, 4.0]
    assert batch["discounts"].tolist() == [0.0, 0.5]
    assert batch["next_obs"][:, 0].tolist() == [2.0, 1.0]


def test_uint8_observations_are_stored_as_bytes_and_sampled_as_floats():
    buffer = ReplayBuffer(100, (7, 7, 3), np.uint8)
    assert buffer.nbytes == 2 * 100 * 147 + 100 * (8 + 4 + 1 + 1)
    buffer.add(np.full((7, 7, 3), 5, np.uint8), np.zeros((7, 7, 3), np.uint8), 1, 0.0, False, False)
    batch = buffer.sample(4, np.random.default_rng(0))
    assert batch["obs"].dtype.is_floating_point and batch["obs"].max().item() == 5.0


def test_state_dict_roundtrip_samples_identically():
    rng = np.random.default_rng(1)
    a = ReplayBuffer(30, (2,), n_step=3)
    fill(a, rng, 45)
    b = ReplayBuffer(30, (2,), n_step=3)
    b.load_state_dict(a.state_dict())
    ba, bb = a.sample(16, np.random.default_rng(5)), b.sample(16, np.random.default_rng(5))
    for key in ba:
        assert ba[key].equal(bb[key])


def test_bad_buffer_arguments_and_empty_sampling_raise():
    with pytest.raises(AgentError, match="capacity"):
        ReplayBuffer(0, (2,))
    with pytest.raises(AgentError, match="n_step"):
        ReplayBuffer(5, (2,), n_step=0)
    with pytest.raises(AgentError, match="empty"):
        ReplayBuffer(5, (2,)).sample(1, np.random.default_rng())
