"""Plasticity mitigations: small composable objects that plug into the agents' hooks.

Select them by name (``make_mitigations(["l2", "er"])`` or
``make_mitigations([{"name": "redo", "tau": 0.1}])``); ``available_mitigations()`` lists
them. ``induced_collapse`` is registered here too but is an oracle *perturbation* (a positive
control that silences units; ``perturbation = True``), not a mitigation. Each is a dataclass whose fields are its hyperparameters (defaults from the cited
papers, documented in its docstring) and implements only the hooks of
:class:`agents.base.Mitigation` it needs.
"""

from agents.mitigations.cbp import ContinualBackprop
from agents.mitigations.er import ER, L2ER
from agents.mitigations.induced_collapse import InducedCollapse
from agents.mitigations.l2 import L2, L2Init
from agents.mitigations.network_options import CReLU, LayerNorm, NonStationaryAdam
from agents.mitigations.redo import ReDo, unit_scores
from agents.mitigations.registry import (
    MITIGATIONS,
    available_mitigations,
    make_mitigation,
    make_mitigations,
    mitigation_params,
    register_mitigation,
)
from agents.mitigations.resets import Reset, ResetOnSwitch
from agents.mitigations.shrink_perturb import ShrinkPerturb
from agents.mitigations.spectral_norm import SpectralNormReg, spectral_norm_penalty

__all__ = [
    "ER",
    "L2",
    "L2ER",
    "MITIGATIONS",
    "CReLU",
    "ContinualBackprop",
    "InducedCollapse",
    "L2Init",
    "LayerNorm",
    "NonStationaryAdam",
    "ReDo",
    "Reset",
    "ResetOnSwitch",
    "ShrinkPerturb",
    "SpectralNormReg",
    "available_mitigations",
    "make_mitigation",
    "make_mitigations",
    "mitigation_params",
    "register_mitigation",
    "spectral_norm_penalty",
    "unit_scores",
]
