"""``experiment.device``: checked up front, saved, handed to the agent, and every tensor of a
run follows it.

No GPU is needed. The device-discipline check runs a DQN and a PPO population with their
probes (fixed data and trainability included) and plasticity mitigations on the CPU while
torch's *default* device is ``meta``: a tensor made without naming a device (``torch.zeros(k)``
instead of ``torch.zeros(k, device=...)``) -- on a GPU run, a CPU tensor among CUDA ones --
lands on ``meta`` there, has no data, and fails the run or is caught by the recorder, which
sees every tensor of every op. The same run must give exactly the rows of a plain run.
What it cannot see is a host tensor that should have been moved (``.to(device)``) and was
not, since the agent's device is the CPU itself; that is what the test marked ``cuda``
(skipped here) checks on a GPU machine.
"""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from experiments.checkpoint import latest_checkpoint, load_checkpoint
from experiments.cli import main
from experiments.config import load_config, to_dict
from experiments.errors import ConfigError
from experiments.rundir import CHECKPOINTS, CONFIG
from experiments.runner import run_population
from tests.experiments.conftest import DQN_RUN, PPO_RUN, make_config

# Short populations that still reach every device-relevant path: a shift with pre, init and
# fixed-data probes (trainability too), re-initialisation (fresh), mitigations that keep
# tensors (CBP utilities, L2-init / shrink-and-perturb draws, ReDo and ER feature batches).
DQN_TINY = {"experiment.steps": 400, "experiment.log_every": 200, "experiment.checkpoint_every": 200,
            "env.period": 200, "agent.learning_starts": 50, "agent.exploration_steps": 100,
            "agent.n_step": 2, "agent.update_phase": 50, "experiment.reference": "fresh",
            "mitigations.names": ["redo", "er", "l2_init"], "probes.fixed_phases": ["init"],
            "probes.metrics": ["hessian_top", "features", "gradient", "weights", "trainability"],
            "probes.fixed_steps": 64, "probes.trainability_steps": 2}
PPO_TINY = {"experiment.steps": 256, "experiment.log_every": 128, "experiment.checkpoint_every": 128,
            "env.period": 128, "agent.num_steps": 32, "probes.networks": ["policy", "value"],
            "mitigations.names": ["cbp", "shrink_perturb"], "probes.fixed_phases": ["init"],
            "probes.metrics": ["hessian_top", "features", "weights", "one_step_gain", "trainability"],
            "probes.fixed_steps": 64, "probes.trainability_steps": 2}
RUNS = {"dqn": (DQN_RUN, DQN_TINY), "ppo": (PPO_RUN, PPO_TINY)}
RESULTS = ("metrics.jsonl", "probes.jsonl", "shifts.jsonl", "episodes.jsonl")
#: Ops that take tensors from one device to another by design.
TRANSFERS = {"aten._to_copy", "aten.copy_", "aten.empty_like", "aten._copy_from"}


class DeviceRecorder(TorchDispatchMode):
    """Records each op (by name) whose tensors -- arguments and results -- lie on more than
    one device, other than the transfers. 0-dim CPU tensors do not count: CUDA kernels take
    them as scalars (``tensor.item()`` of a host count, Adam's host step counter)."""

    def __init__(self) -> None:
        super().__init__()
        self.mixed: dict[str, set[str]] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        seen = {t.device.type for t in tree_leaves((args, kwargs, out))
                if isinstance(t, torch.Tensor) and (t.dim() > 0 or t.device.type != "cpu")}
        name = func.overloadpacket._qualified_op_name.replace("::", ".")
        if len(seen) > 1 and name not in TRANSFERS:
            self.mixed.setdefault(name, set()).update(seen)
        return out


def _rows(run_dir) -> dict[str, list[dict]]:
    """Each result file's rows without wall-clock fields."""
    out = {}
    for name in RESULTS:
        rows = [json.loads(line) for line in (run_dir / name).read_text().splitlines()]
        out[name] = [{k: v for k, v in row.items()
                      if "time" not in k and "seconds" not in k and k != "charts/sps"}
                     for row in rows]
    return out


def _population(algo: str, root, **overrides):
    base, tiny = RUNS[algo]
    return [make_config(base, root / f"{algo}{seed}", **{**tiny, **overrides, "experiment.seed": seed})
            for seed in (0, 1)]


@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_every_tensor_of_a_run_follows_the_device_and_the_rows_are_the_default_runs(tmp_path, algo):
    plain = _population(algo, tmp_path / "plain")
    assert plain[0].experiment.device == "cpu"  # the default
    run_population(plain)
    explicit = _population(algo, tmp_path / "explicit", **{"experiment.device": "cpu"})
    recorder = DeviceRecorder()
    with torch.device("meta"), recorder:
        results = run_population(explicit)
    assert [r.status for r in results] == ["done", "done"]
    assert recorder.mixed == {}, f"ops mixing devices: {recorder.mixed}"
    for a, b in zip(plain, explicit, strict=True):
        assert _rows(b.run_dir) == _rows(a.run_dir)
        assert load_config(b.run_dir / CONFIG).experiment.device == "cpu"


def test_the_device_is_a_checked_experiment_field_saved_with_the_run(tmp_path):
    config = make_config(DQN_RUN, tmp_path / "r", **{"experiment.device": "cuda:1"})
    assert to_dict(config)["experiment"]["device"] == "cuda:1"
    assert "device" not in to_dict(config)["agent"]  # one owner: experiment.device
    with pytest.raises(ConfigError, match=r"^experiment.device = 'gpu' is not a valid device; "
                                          r"valid choices: 'cpu', 'cuda', 'cuda:N'$"):
        make_config(DQN_RUN, tmp_path / "r", **{"experiment.device": "gpu"})
    with pytest.raises(ConfigError, match="agent.device is set by experiment.device"):
        make_config(DQN_RUN, tmp_path / "r", **{"agent.device": "cpu"})


@pytest.fixture
def no_cuda(monkeypatch):
    # so that the refusal is tested on a CUDA machine too
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


CLI_MISTAKES = [
    (["run", "good.toml", "experiment.device=gpu"],
     "experiment.device = 'gpu' is not a valid device; valid choices: 'cpu', 'cuda', 'cuda:N'"),
    (["run", "good.toml", "experiment.device=cuda"],
     "experiment.device = 'cuda' but this torch build/machine has no CUDA device; valid here: 'cpu'"),
    (["sweep", "sweep.toml", "--set", "experiment.device=cuda:0"],
     "experiment.device = 'cuda:0' but this torch build/machine has no CUDA device; valid here: 'cpu'"),
]


@pytest.mark.parametrize(("argv", "line"), CLI_MISTAKES, ids=[" ".join(a) for a, _ in CLI_MISTAKES])
def test_a_device_this_machine_lacks_is_one_line_exit_2_and_nothing_written(
        tmp_path, monkeypatch, capsys, no_cuda, argv, line):
    from tests.experiments.test_cli import GOOD

    monkeypatch.chdir(tmp_path)
    (tmp_path / "good.toml").write_text(GOOD)
    (tmp_path / "sweep.toml").write_text("seeds = [0]\n" + GOOD.replace("\n[", "\n[base."))
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("plasticity: error: "), lines
    assert lines[0].endswith(line), lines[0]  # a sweep names the run it refused first
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("algo", ["dqn", "ppo"])
def test_cuda_runs_keep_every_tensor_on_the_gpu_and_their_checkpoints_load_on_the_cpu(tmp_path, algo):
    from experiments.resolve import resolve
    from experiments.runner import _make_agent, streams

    configs = _population(algo, tmp_path, **{"experiment.device": "cuda"})
    recorder = DeviceRecorder()
    with recorder:
        results = run_population(configs)
    assert [r.status for r in results] == ["done", "done"]
    # host scalars (0-dim CPU tensors) may meet CUDA ones; nothing larger may
    assert recorder.mixed == {}, f"ops mixing CPU and CUDA tensors: {recorder.mixed}"
    state = load_checkpoint(latest_checkpoint(configs[0].run_dir / CHECKPOINTS))
    base, tiny = RUNS[algo]
    cpu = resolve(make_config(base, tmp_path / "cpu", **{**tiny, "experiment.seed": 0}))
    env = streams.make_stream(cpu, stationary=True, seed=0)
    agent = _make_agent(cpu, env, [0])
    agent.load_state_dict(state["agent"])
    for net in agent.networks().values():
        assert {p.device.type for p in net.parameters()} == {"cpu"}
    env.close()
