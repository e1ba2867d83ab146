from __future__ import annotations

import torch

import spectral
from agents.mitigations import ReDo, unit_scores
from agents.mitigations._common import capture_features, hidden_layers
from tests.agents.mitigations.mitigation_fakes import FakeAgent as make_agent
from tests.agents.mitigations.mitigation_fakes import FakeConfig as fake_config
from tests.agents.mitigations.mitigation_fakes import make_obs_batch

obs_batch = make_obs_batch()

DEAD = {0: [1, 5, 7], 1: [2, 3]}


def _dormant(agent, obs, tau=0.025):
    with torch.no_grad():
        feats = capture_features(agent.nets["q"], obs)
    return {
        layer.index: torch.nonzero(unit_scores(layer, feats[layer.name]) <= tau).flatten().tolist()
        for layer in hidden_layers(agent.nets)
    }


def _kill(agent):
    with torch.no_grad():
        for i, units in DEAD.items():
            block = agent.nets["q"].hidden[i]
            bias = (
                block.norm.bias if isinstance(block.norm, torch.nn.LayerNorm) else block.linear.bias
            )
            bias[units] = -100.0


def test_redo_revives_forced_dead_units_and_resets_exactly_their_adam_moments():
    redo = ReDo()
    agent = make_agent(config=fake_config(widths=(32, 32), layer_norm=True), mitigations=[redo])
    obs = obs_batch["obs"]
    _kill(agent)
    agent.optimizer.param_groups[0]["lr"] = 1e-6  # fill Adam's moments, barely move weights
    for _ in range(3):
        agent.train_step(obs[:64])
    dead = _dormant(agent, obs)  # the forced units plus any the initial draw left dormant
    assert all(set(units) <= set(dead[i]) for i, units in DEAD.items())
    net = agent.nets["q"]
    state = agent.optimizer.state
    w0, w1, head = net.hidden[0].linear.weight, net.hidden[1].linear.weight, net.head.weight
    saved = {
        name: {k: v.clone() for k, v in state[p].items()}
        for name, p in (("w0", w0), ("w1", w1), ("head", head))
    }
    params = {"w0": w0.detach().clone(), "w1": w1.detach().clone(), "head": head.detach().clone()}

    agent.update_phase(obs_batch)

    assert redo.last_recycled == {"q.hidden.0": len(dead[0]), "q.hidden.1": len(dead[1])}
    alive0 = [j for j in range(32) if j not in dead[0]]
    alive1 = [j for j in range(32) if j not in dead[1]]
    # incoming rows of dead units redrawn, others untouched
    assert not torch.equal(w0[dead[0]], params["w0"][dead[0]])
    assert torch.equal(w0[alive0], params["w0"][alive0])
    # outgoing columns zeroed: hidden.1 columns of hidden.0's dead units (except in rows that
    # were themselves redrawn as hidden.1's dead units), head columns of hidden.1's
    assert torch.all(w1[alive1][:, dead[0]] == 0) and torch.all(head[:, dead[1]] == 0)
    assert torch.equal(head[:, alive1], params["head"][:, alive1])
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.all(state[w0][key][dead[0]] == 0)
        assert torch.equal(state[w0][key][alive0], saved["w0"][key][alive0])
        assert torch.all(state[w1][key][:, dead[0]] == 0)
        assert torch.all(state[w1][key][dead[1]] == 0)  # w1 rows are hidden.1's incoming
        assert torch.all(state[head][key][:, dead[1]] == 0)
        assert torch.equal(state[head][key][:, alive1], saved["head"][key][:, alive1])
        assert state[w0][key][alive0].abs().sum() > 0
    # a redrawn unit can land dormant again (ReLU units on non-negative inputs often do
    # at initialisation); ReDo redraws it at its next pass, so a few passes leave none
    for _ in range(4):
        agent.update_phase(obs_batch)
    assert _dormant(agent, obs) == {0: [], 1: []}


def test_redo_crelu_units_and_layernorm_params():
    redo = ReDo()
    agent = make_agent(
        config=fake_config(widths=(8,), activation="crelu", layer_norm=True), mitigations=[redo]
    )
    net = agent.nets["q"]
    with torch.no_grad():  # a CReLU unit is dormant only if its pre-activation is 0
        net.hidden[0].norm.weight[3] = 0.0
        net.hidden[0].norm.bias[3] = 0.0
        net.hidden[0].norm.weight[4] = 2.5
    assert _dormant(agent, obs_batch["obs"]) == {0: [3]}
    agent.update_phase(obs_batch)
    assert _dormant(agent, obs_batch["obs"]) == {0: []}
    assert net.hidden[0].norm.weight[3] == 1.0 and net.hidden[0].norm.bias[3] == 0.0
    assert net.hidden[0].norm.weight[4] == 2.5  # untouched
    assert torch.all(net.head.weight[:, [3, 3 + 8]] == 0)
    assert torch.all(net.head.weight[:, [0, 8]] != 0)


def test_redo_every_updates_and_determinism():
    redo = ReDo(tau=0.5, every_updates=2)
    agent = make_agent(mitigations=[redo])
    _kill(agent)
    agent.update_phase(obs_batch)
    assert redo.last_recycled == {}
    agent.update_phase(obs_batch)
    assert redo.last_recycled["q.hidden.0"] >= 3
    # same seed and state -> same redraws, global RNG untouched
    other_redo = ReDo(tau=0.5, every_updates=2)
    other = make_agent(mitigations=[other_redo])
    _kill(other)
    global_rng = torch.random.get_rng_state()
    other.update_phase(obs_batch)
    other.update_phase(obs_batch)
    assert torch.equal(torch.random.get_rng_state(), global_rng)
    for a, b in zip(agent.nets["q"].parameters(), other.nets["q"].parameters(), strict=True):
        assert torch.equal(a, b)


def test_redo_and_the_dormant_probe_score_crelu_units_alike():
    agent = make_agent(config=fake_config(widths=(16, 16), activation="crelu"))
    net, obs = agent.nets["q"], obs_batch["obs"]
    with torch.no_grad():  # units 0-3: pre-activation -0.5 on every sample (relu(x) half is 0)
        net.hidden[0].linear.weight[:4] = 0.0
        net.hidden[0].linear.bias[:4] = -0.5
    feats = capture_features(net, obs)
    layers = hidden_layers(agent.nets)
    out = spectral.probe(
        net,
        lambda: net(obs).sum(),
        layers=net.layers(),
        inputs=obs,
        metrics=["features"],
        config=spectral.ProbeConfig(dormant_tau=0.025),
    )
    for layer in layers:
        scores = unit_scores(layer, feats[layer.name])
        assert scores.shape == (16,)
        torch.testing.assert_close(scores, spectral.redo_scores(feats[layer.name], units=16))
        probed = out[f"features/{layer.name}/dormant_fraction"]
        assert probed == float((scores <= 0.025).double().mean())
    # The forced units are active through relu(-x): neither ReDo nor the probe calls them
    # dormant, though half of their features are exactly 0.
    assert out["features/hidden.0/dormant_fraction"] == 0.0
    assert spectral.dormant_fraction(feats["hidden.0"]) >= 4 / 32  # per-feature view differs
