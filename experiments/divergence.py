"""When a run has diverged: NaN/inf anywhere, or a parameter norm grown by orders of magnitude.

NaN/inf in a loss or a parameter is caught by the agents themselves
(:class:`agents.base.DivergenceError`). A blow-up can stay finite, though: with a learning
rate of 1e6 a DQN finishes with a TD loss of 1e5 and PPO with a value loss of 1e13. The
rule here catches those, at every point where training pauses (log, checkpoint, switch):

    a network has diverged when ``||theta_t||_2 > factor * ||theta_0||_2``

with ``theta_0`` its parameters at initialisation and ``factor`` =
``experiment.divergence_factor`` (default 1000; 0 turns the rule off). The parameter norm
is used rather than a loss because it has a scale of its own: a loss's scale follows the
rewards, and healthy losses legitimately grow by orders of magnitude (a sparse reward found
for the first time, a shift), whereas Adam moves every weight by about the learning rate per
step, so an absurd learning rate multiplies the norm by orders of magnitude within a few
updates. Healthy runs stay far below the limit (docs/architecture.md gives the margin
measured on the study streams).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from agents.base import DivergenceError
from spectral import weight_norm

__all__ = ["parameter_norms", "NormRule"]


def parameter_norms(networks: Mapping[str, nn.Module]) -> dict[str, float]:
    """``{name: ||theta||_2}`` of each network (:func:`spectral.weight_norm`, the quantity the
    ``weights`` probe reports)."""
    return {name: weight_norm(net) for name, net in networks.items()}


class NormRule:
    """The parameter-norm rule for one agent; ``baseline`` = norms at initialisation
    (kept in checkpoints, so a resumed run compares with the same baseline)."""

    def __init__(self, factor: float, baseline: Mapping[str, float]) -> None:
        self.factor = float(factor)
        self.baseline = dict(baseline)

    def ratios(self, networks: Mapping[str, nn.Module]) -> dict[str, float]:
        """``||theta_t|| / ||theta_0||`` per network (what the metrics rows record)."""
        return {name: norm / (self.baseline.get(name) or 1.0)
                for name, norm in parameter_norms(networks).items()}

    def check(self, step: int, networks: Mapping[str, nn.Module]) -> dict[str, float]:
        """The ratios; raises :class:`DivergenceError` if one exceeds ``factor`` (> 0)."""
        ratios = self.ratios(networks)
        if self.factor > 0:
            for name, ratio in ratios.items():
                if ratio > self.factor:
                    raise DivergenceError(
                        step, f"parameter norm of {name} ({ratio:.3g}x its initial norm; limit "
                        f"experiment.divergence_factor = {self.factor:g})",
                        ratio * (self.baseline.get(name) or 1.0))
        return ratios
