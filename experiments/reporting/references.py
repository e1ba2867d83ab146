"""Matched fresh references: which fresh run a continual run's gap is measured against.

The fresh reference of a run is a run with ``reference = "fresh"`` whose resolved config is
the same as the run's in everything that shapes learning -- agent, network, mitigations,
shift knobs, stream, steps and seed -- and differs only in the keys of :data:`BOOKKEEPING`
(names, output paths, logging, probe settings, the reference itself). So an L2 arm is
compared with a fresh L2 run, never with a plain fresh run.

* Automatic: each arm's runs are matched with the fresh runs of equal key; an arm whose runs
  have no match gets no gap (:attr:`ArmReference.missing` says which seeds).
* Declared (``[report.references]`` of the study file): the named arm's runs must match the
  arm's runs seed by seed on the same key, except the keys the declaration lists in
  ``ignore`` (with its ``reason``, printed in the report). A declared reference that differs
  anywhere else, or whose runs are not fresh runs, is refused with a :class:`ConfigError`
  naming the differing keys. (Arm names are checked against the sweep when the study file is
  loaded; here an arm without runs simply has no reference.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from experiments.errors import ConfigError
from experiments.reporting.declarations import Reference

__all__ = ["BOOKKEEPING", "ArmReference", "match_references", "config_differences"]

#: Config keys (dotted prefixes) that do not change what is learned.
BOOKKEEPING = ("experiment.name", "experiment.arm", "experiment.out", "experiment.reference",
               "experiment.command", "experiment.log_every", "experiment.checkpoint_every",
               "logging", "probes")


@dataclass(frozen=True)
class ArmReference:
    """The fresh reference of one arm: run id of each of its runs' reference (``pairs``),
    the reference arm, the seeds without one, and the declared reason (if declared)."""

    arm: str
    reference_arm: str | None
    pairs: Mapping[str, str] = field(default_factory=dict)
    missing: tuple[Any, ...] = ()
    declared: bool = False
    ignore: tuple[str, ...] = ()
    reason: str = ""

    @property
    def matched(self) -> bool:
        return bool(self.pairs)


def _flat(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _ignored(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _key(config_json: str, ignore: tuple[str, ...] = ()) -> dict[str, Any]:
    config = json.loads(config_json) if isinstance(config_json, str) else dict(config_json)
    return {k: v for k, v in _flat(config).items() if not _ignored(k, BOOKKEEPING + ignore)}


def config_differences(a_json: str, b_json: str, ignore: tuple[str, ...] = ()) -> list[str]:
    """Dotted keys whose values differ between two resolved configs (bookkeeping and
    ``ignore`` aside), sorted."""
    a, b = _key(a_json, ignore), _key(b_json, ignore)
    return sorted(k for k in a.keys() | b.keys() if a.get(k, None) != b.get(k, None))


def _frozen(key: dict[str, Any]) -> str:
    return json.dumps(key, sort_keys=True, default=str)


def match_references(runs: pd.DataFrame, declared: Mapping[str, Reference] | None = None
                     ) -> dict[str, ArmReference]:
    """The fresh reference of every arm of ``runs`` whose runs are continual (module
    docstring). ``runs`` has the RunData columns ``run_id, arm, seed, reference, config``."""
    declared = dict(declared or {})
    arms = list(dict.fromkeys(runs["arm"]))
    for arm, ref in declared.items():
        if (runs.loc[runs["arm"] == ref.arm, "reference"] != "fresh").any():
            raise ConfigError(f"[report.references] {arm} = {ref.arm!r}: the runs of "
                              f"{ref.arm!r} are not fresh reference runs")
    fresh = runs[runs["reference"] == "fresh"].sort_values("run_id")
    fresh_by_key: dict[str, str] = {}
    for row in fresh.itertuples():
        fresh_by_key.setdefault(_frozen(_key(row.config)), row.run_id)
    out: dict[str, ArmReference] = {}
    for arm in arms:
        members = runs[runs["arm"] == arm].sort_values("run_id")
        if (members["reference"] != "continual").all():
            continue
        if arm in declared:
            out[arm] = _declared(arm, members, runs, declared[arm])
            continue
        pairs, missing = {}, []
        for row in members.itertuples():
            ref = fresh_by_key.get(_frozen(_key(row.config)))
            if ref is None:
                missing.append(row.seed)
            else:
                pairs[row.run_id] = ref
        ref_arms = sorted({runs.set_index("run_id").at[r, "arm"] for r in pairs.values()})
        out[arm] = ArmReference(arm, ", ".join(ref_arms) or None, pairs, tuple(missing))
    return out


def _declared(arm: str, members: pd.DataFrame, runs: pd.DataFrame, ref: Reference
              ) -> ArmReference:
    """The declared reference's runs, checked seed by seed; a reference arm without runs
    (e.g. a partial sweep) leaves every seed missing."""
    candidates = runs[runs["arm"] == ref.arm]
    pairs, missing = {}, []
    for row in members.itertuples():
        same_seed = candidates[candidates["seed"] == row.seed]
        if same_seed.empty:
            missing.append(row.seed)
            continue
        cand = same_seed.sort_values("run_id").iloc[0]
        diff = config_differences(row.config, cand["config"], ref.ignore)
        if diff:
            allowed = ", ".join(ref.ignore) or "none"
            raise ConfigError(
                f"[report.references] {arm} = {ref.arm!r} is refused: run {cand['run_id']!r} "
                f"differs from {row.run_id!r} in {', '.join(diff)} (keys allowed to differ: "
                f"{allowed}); a fresh reference must have the arm's agent, network and "
                "mitigation settings")
        pairs[row.run_id] = str(cand["run_id"])
    return ArmReference(arm, ref.arm, pairs, tuple(missing), declared=True, ignore=ref.ignore,
                        reason=ref.reason)
