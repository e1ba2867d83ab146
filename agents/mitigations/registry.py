"""Mitigations by name: what configs and the CLI select (``mitigations = ["l2", "er"]``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from agents.base import AgentError, Mitigation, check_choice, check_field_types
from agents.mitigations.cbp import ContinualBackprop
from agents.mitigations.er import ER, L2ER
from agents.mitigations.induced_collapse import InducedCollapse
from agents.mitigations.l2 import L2, L2Init
from agents.mitigations.network_options import CReLU, LayerNorm, NonStationaryAdam
from agents.mitigations.redo import ReDo
from agents.mitigations.resets import Reset, ResetOnSwitch
from agents.mitigations.shrink_perturb import ShrinkPerturb
from agents.mitigations.spectral_norm import SpectralNormReg

MITIGATIONS: dict[str, type[Mitigation]] = {
    cls.name: cls
    for cls in (
        L2,
        L2Init,
        ER,
        L2ER,
        ShrinkPerturb,
        ReDo,
        ContinualBackprop,
        LayerNorm,
        CReLU,
        NonStationaryAdam,
        Reset,
        ResetOnSwitch,
        SpectralNormReg,
        InducedCollapse,
    )
}


def register_mitigation(cls: type[Mitigation]) -> type[Mitigation]:
    """Make a user-defined mitigation selectable by its ``name`` (usable as a decorator).

    ``cls`` must be a dataclass subclass of :class:`agents.base.Mitigation` whose fields are
    its hyperparameters. Registering a name again replaces the previous class.
    """
    if not (isinstance(cls, type) and issubclass(cls, Mitigation) and dataclasses.is_dataclass(cls)):
        raise AgentError(f"{cls!r} is not a dataclass subclass of agents.base.Mitigation")
    if not isinstance(cls.name, str) or not cls.name or cls.name == Mitigation.name:
        raise AgentError(f"{cls.__name__} needs a class attribute `name` (got {cls.name!r})")
    MITIGATIONS[cls.name] = cls
    return cls


def available_mitigations() -> dict[str, str]:
    """``{name: one-line description}`` of every registered mitigation."""
    return {
        name: (cls.__doc__ or "").strip().splitlines()[0]
        for name, cls in sorted(MITIGATIONS.items())
    }


def mitigation_params(name: str) -> dict[str, Any]:
    """The hyperparameters of mitigation ``name`` with their defaults."""
    check_choice("mitigation", name, sorted(MITIGATIONS))
    cls = MITIGATIONS[name]
    return {f.name: f.default for f in dataclasses.fields(cls) if f.init}


def make_mitigation(name: str, **params: Any) -> Mitigation:
    """Build mitigation ``name`` with hyperparameters ``params`` (unknown ones raise)."""
    valid = mitigation_params(name)
    for key in params:
        if key not in valid:
            raise AgentError(
                f"unknown parameter {key!r} for mitigation {name!r}; valid parameters: "
                + (", ".join(sorted(valid)) or "none")
            )
    check_field_types(MITIGATIONS[name], params)
    return MITIGATIONS[name](**params)


def make_mitigations(specs: Sequence[str | Mapping[str, Any]]) -> list[Mitigation]:
    """Build a list of mitigations from names or ``{"name": ..., **params}`` tables.

    The same name may not appear twice (two copies would apply the method twice).
    """
    if isinstance(specs, (str, Mapping)):
        specs = [specs]
    built: list[Mitigation] = []
    seen: set[str] = set()
    for spec in specs:
        if isinstance(spec, str):
            name, params = spec, {}
        elif isinstance(spec, Mapping):
            params = dict(spec)
            if "name" not in params:
                raise AgentError(
                    f"mitigation table {dict(spec)!r} has no 'name'; valid names: {', '.join(sorted(MITIGATIONS))}"
                )
            name = params.pop("name")
        else:
            raise AgentError(
                f"invalid mitigation spec {spec!r}; give a name or a {{'name': ..., **params}} table"
            )
        if name in seen:
            raise AgentError(f"mitigation {name!r} is listed twice; list each method once")
        seen.add(name)
        built.append(make_mitigation(name, **params))
    return built
