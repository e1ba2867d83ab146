"""One test of one declared hypothesis, and the four verdict words.

A verdict is one of :data:`VERDICTS`:

* ``supported`` -- Holm-adjusted p < alpha, estimate of the declared sign;
* ``opposite`` -- Holm-adjusted p < alpha, estimate of the other sign;
* ``equivalent`` -- not significant, and the hypothesis declares a smallest effect size of
  interest (``sesoi``) with the test's 90% interval inside ``+-sesoi`` (TOST at 5%): evidence
  that the effect, if any, is smaller than what was declared to matter;
* ``inconclusive`` -- none of these (or the test could not be computed): no evidence either
  way at this power; the outcome carries the effect the test could detect with 80% power.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from experiments.reporting.declarations import Hypothesis

__all__ = ["Outcome", "SUPPORTED", "OPPOSITE", "EQUIVALENT", "INCONCLUSIVE", "VERDICTS"]

SUPPORTED = "supported"
OPPOSITE = "opposite"
EQUIVALENT = "equivalent"
INCONCLUSIVE = "inconclusive"
VERDICTS = (SUPPORTED, OPPOSITE, EQUIVALENT, INCONCLUSIVE)


@dataclass(frozen=True)
class Outcome:
    """One test of one declared hypothesis in one arm (or over a dose's arms)."""

    hypothesis: Hypothesis
    arm: str
    variant: str            # "effect" | "difference" | "trend" | "dose" | "contrast"
    estimate: float
    low: float
    high: float
    p: float
    n_rows: int
    n_seeds: int
    method: str
    reason: str = ""
    note: str = ""
    se: float = math.nan
    df: float = math.nan
    seeds: str = ""         # which seeds entered, e.g. "5 paired of 5/10"
    n_censored: int = 0     # probe values that entered as censored (at their bound)
    p_holm: float = math.nan
    verdict: str = INCONCLUSIVE
    detectable: float = math.nan  # |effect| detectable with 80% power at alpha (two-sided)

    @property
    def defined(self) -> bool:
        return math.isfinite(self.estimate) and math.isfinite(self.p)
