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
from agents.dqn import DQN, DQNConfig
from agents.networks import MLP
from agents.normalization import ObservationNormalizer, RewardNormalizer, RunningMeanStd
from agents.ppo import PPO, PPOConfig
from agents.replay import ReplayBuffer

__all__ = [
    "DQN",
    "MLP",
    "PPO",
    "AgentError",
    "Batch",
    "DQNConfig",
    "DivergenceError",
    "LearnResult",
    "Mitigation",
    "ObservationNormalizer",
    "PPOConfig",
    "ProbeTarget",
    "ReplayBuffer",
    "RewardNormalizer",
    "RunningMeanStd",
    "ShiftPolicy",
]
