"""DQN and PPO agents, their networks and plasticity mitigations."""

from agents.base import (
    AgentError,
    Batch,
    DivergenceError,
    LearnResult,
    Mitigation,
    ProbeTarget,
    ShiftPolicy,
)
from agents.networks import MLP

__all__ = [
    "MLP",
    "AgentError",
    "Batch",
    "DivergenceError",
    "LearnResult",
    "Mitigation",
    "ProbeTarget",
    "ShiftPolicy",
]
