"""Experiments: configs, the runner, shift-aware probing, sweeps and the ``plasticity`` CLI.

Public API (imported lazily, so ``import experiments`` stays cheap)::

    from experiments import RunConfig, load_config, run
    result = run(load_config("my_run.toml", ["agent.learning_rate=3e-4"]))

``run`` is the code path of ``plasticity run``; ``load_sweep`` + ``run_sweep`` that of
``plasticity sweep``.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from experiments.errors import ConfigError, RunDiverged

__all__ = [
    "ConfigError",
    "RunConfig",
    "RunDiverged",
    "RunResult",
    "load_config",
    "load_sweep",
    "run",
    "run_sweep",
]

_LAZY = {
    "RunConfig": "experiments.config",
    "load_config": "experiments.config",
    "RunResult": "experiments.runner",
    "run": "experiments.runner",
    "load_sweep": "experiments.sweep",
    "run_sweep": "experiments.sweep",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'experiments' has no attribute {name!r}")
