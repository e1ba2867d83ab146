"""Test the declared hypotheses of a study as one family and give each its verdict.

Each hypothesis (:class:`~experiments.reporting.declarations.Hypothesis`) gives its kind's
tests (:mod:`.kinds`: one per listed arm, or one over all its arms for a dose-response). All
tests of a study form one family, adjusted with Holm's rule
(:func:`~experiments.reporting.inference.holm`); a test that cannot be computed counts as
p = 1. The verdict (:mod:`.outcome`) is in the declared direction -- supported, opposite,
equivalent (a declared ``sesoi`` and a 90% interval inside it) or inconclusive -- and every
test carries the effect it could detect with 80% power at alpha (two-sided), the measure of
what an inconclusive verdict could have found.

Since the third edition the within-arm hypotheses get no lagged test ("the probe at shift k
predicts the target at shift k+1 beyond the target at shift k"): with the lagged target
beside seed effects and 10 shifts per seed, its coefficient carries the Nickell bias of a
dynamic panel (of order -1/T on the autoregression, leaking into the probe's slope), and the
bias-free alternatives (Arellano-Bond instruments) need far more seeds than a study has.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd

from experiments.reporting.declarations import ALPHA, Hypothesis
from experiments.reporting.inference import detectable, equivalent, holm
from experiments.reporting.kinds import KINDS
from experiments.reporting.outcome import (
    EQUIVALENT,
    INCONCLUSIVE,
    OPPOSITE,
    SUPPORTED,
    Outcome,
)

__all__ = ["evaluate", "verdict", "LAGGED_DROPPED"]

#: Why the lagged test is gone (printed in the report's methods).
LAGGED_DROPPED = ("The lagged test of within-arm hypotheses (probe at shift k against the "
                  "target at shift k+1, beyond the target at shift k) is no longer run: with "
                  "the lagged target beside seed effects over about 10 shifts per seed its "
                  "coefficient carries the Nickell bias of a dynamic panel, and the bias-free "
                  "instrumented estimators need many more seeds than a study has.")


def verdict(t: Outcome, p_holm: float, alpha: float = ALPHA) -> str:
    """The test's verdict word (:mod:`.outcome`)."""
    if not t.defined:
        return INCONCLUSIVE
    if p_holm < alpha:
        declared = 1.0 if t.hypothesis.sign == "+" else -1.0
        return SUPPORTED if t.estimate * declared > 0 else OPPOSITE
    sesoi = t.hypothesis.sesoi
    if sesoi is not None and equivalent(t.estimate, t.se, t.df, sesoi, alpha=alpha):
        return EQUIVALENT
    return INCONCLUSIVE


def _missing_arm(h: Hypothesis, arm: str) -> Outcome:
    return Outcome(h, arm, h.kind, math.nan, math.nan, math.nan, math.nan, 0, 0, h.kind,
                   reason=f"no finished run of arm {arm!r}")


def evaluate(frame: pd.DataFrame, hypotheses: tuple[Hypothesis, ...], *,
             alpha: float = ALPHA) -> list[Outcome]:
    """Every test of the declared ``hypotheses`` on the analysis frame (one row per run x
    shift, :func:`experiments.reporting.frame.shift_frame`), Holm-adjusted as one family."""
    tests: list[Outcome] = []
    arms = set(frame["arm"]) if len(frame) else set()
    for h in hypotheses:
        kind = KINDS[h.kind]
        if not kind.per_arm:
            tests += kind.tests(h, frame, None)
            continue
        for arm in h.arms:
            tests += kind.tests(h, frame, arm) if arm in arms else [_missing_arm(h, arm)]
    adjusted = holm([t.p for t in tests])
    return [replace(t, p_holm=q, verdict=verdict(t, q, alpha),
                    detectable=detectable(t.se, t.df, alpha=alpha))
            for t, q in zip(tests, adjusted, strict=True)]
