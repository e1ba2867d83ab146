"""Write small synthetic run directories in the documented format (for the tests).

The returns are step functions with a known recovery point, so every adaptation metric has a
value one can work out by hand: in segment ``k`` each episode lasts ``episode_length`` steps
and returns ``low`` for the first ``recover_after[k]`` episodes and ``high`` afterwards. With
an absolute threshold between ``low`` and ``high`` and window ``N``, the trailing mean first
reaches the threshold after ``recover_after[k] + ceil(f * N)`` episodes, where ``f`` is the
fraction of the window that must be ``high``; a ``recover_after[k]`` at least as large as the
segment's episode count never recovers (censored).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.tomlio import dumps_toml

__all__ = ["step_episodes", "write_run"]


def step_episodes(period: int, recover_after: Sequence[int], *, episode_length: int = 100,
                  low: float = 0.0, high: float = 1.0) -> list[dict[str, Any]]:
    """Episode rows for ``len(recover_after)`` segments of ``period`` steps (see module doc)."""
    rows = []
    per_segment = period // episode_length
    for k, recover in enumerate(recover_after):
        for i in range(per_segment):
            rows.append({"step": k * period + (i + 1) * episode_length, "task_id": k,
                         "return": low if i < recover else high, "length": episode_length})
    return rows


def write_run(path: str | Path, *, arm: str, seed: int, episodes: Sequence[Mapping[str, Any]],
              period: int, n_segments: int, reference: str = "continual",
              env_id: str = "plasticity/Synthetic-v0", algo: str = "dqn",
              mitigations: Mapping[str, Any] | None = None,
              probes: Sequence[Mapping[str, Any]] = (), done: bool = True,
              diverged: Mapping[str, Any] | None = None, command: str | None = None,
              wall_time: float = 1.5, log_every: int = 500,
              provenance: Mapping[str, Any] | None = None) -> Path:
    """Write ``config.toml`` (``mitigations`` maps name -> options, written as the runner's
    ``[mitigations] names`` / ``[mitigations.options.<name>]``), ``episodes.jsonl``, ``metrics.jsonl``, ``shifts.jsonl``,
    ``probes.jsonl``, the ``DONE`` (and optionally ``DIVERGED``) marker and optionally
    ``provenance.json`` for one run with switches at ``period, 2 * period, ...``
    (``n_segments - 1`` shifts)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    steps = period * n_segments
    experiment: dict[str, Any] = {"name": f"{arm}-s{seed}", "arm": arm, "seed": seed,
                                  "reference": reference, "steps": steps}
    if command is not None:
        experiment["command"] = command
    mitigations = dict(mitigations or {})
    config = {"experiment": experiment, "env": {"id": env_id, "period": period},
              "agent": {"algo": algo},
              # the runner's layout: names in order, options per name
              "mitigations": {"names": list(mitigations),
                              "options": {k: dict(v) for k, v in mitigations.items() if v}}}
    (path / "config.toml").write_text(dumps_toml(config), encoding="utf-8")
    _write_jsonl(path / "episodes.jsonl", episodes)
    metrics = []
    for start in range(0, steps, log_every):
        inside = [e for e in episodes if start < e["step"] <= start + log_every]
        mean = sum(e["return"] for e in inside) / len(inside) if inside else None
        metrics.append({"step": start + log_every, "task_id": start // period, "time": 0.0,
                        "episodic_return": mean, "episodes": len(inside)})
    _write_jsonl(path / "metrics.jsonl", metrics)
    shifts = [{"step": k * period, "from_task": k - 1, "to_task": k, "params": {"k": k},
               "at_shift": {"optimizer": "keep", "oracle": reference == "fresh"}}
              for k in range(1, n_segments)]
    _write_jsonl(path / "shifts.jsonl", shifts)
    _write_jsonl(path / "probes.jsonl", probes)
    if done:
        (path / "DONE").write_text(json.dumps({"steps": steps, "wall_time": wall_time}))
    if diverged is not None:
        (path / "DIVERGED").write_text(json.dumps(dict(diverged)))
    if provenance is not None:
        (path / "provenance.json").write_text(json.dumps(dict(provenance)))
    return path


def _write_jsonl(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(dict(row)) + "\n")
