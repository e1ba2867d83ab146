"""The registry of hypothesis kinds: each kind's keys, checks, estimator, claim and question.

A kind is one :class:`Kind` entry in :data:`KINDS`. Adding a kind is one entry here plus its
estimator in :mod:`.inference`; declarations (parsing), hypotheses (the family), the answer
and the rendered tables read everything kind-specific from the entry:

* ``keys`` -- the declaration keys only this kind takes (besides the common ones);
* ``check(raw, where)`` -- refuses a declaration that cannot be this kind's test
  (:class:`ConfigError` naming the value);
* ``tests(h, frame, arm)`` -- the kind's :class:`~.outcome.Outcome` s on the analysis frame
  (``arm`` is None for a kind that tests all its arms at once);
* ``describe(h)`` -- the claim in one line, from the declared fields;
* ``unit(h)`` -- what the detectable effect is measured in (e.g. ``|r|`` on within-seed
  ranks);
* ``question(h, arm, comparison_arm, oracle_arms)`` -- which question of the answer section
  (:data:`experiments.reporting.answer.QUESTIONS`) the test answers.

Kinds:

* ``within_arm`` -- the within-seed slope of ``target`` on the probe beyond the seed-centred
  task index (:func:`~.inference.within_effect`, CR2, t(G-1)).
* ``between_arms`` -- ``mean(arm) - mean(versus)`` of the probe or target: paired t on the
  shared seeds, Welch otherwise (``paired = false`` forces Welch; ``paired = true`` demands
  pairing and is refused when the arms share fewer than 3 seeds in the study file).
* ``trend`` -- the within-seed slope of the quantity on the task index.
* ``dose_response`` -- each run's mean of the quantity regressed on its arm's dose (the run
  is the unit), or with ``contrast`` (one weight per arm, summing to 0) the declared contrast
  of the arms' means -- for a dose whose effect need not be monotone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import pandas as pd

from experiments.errors import ConfigError
from experiments.reporting.frame import probe_column
from experiments.reporting.inference import (
    Effect,
    Interval,
    difference,
    dose_contrast,
    dose_slope,
    within_effect,
)
from experiments.reporting.outcome import Outcome

if TYPE_CHECKING:
    from experiments.reporting.declarations import Hypothesis

__all__ = ["Kind", "KINDS", "column_of", "censored_column"]


@dataclass(frozen=True)
class Kind:
    """One hypothesis kind (module docstring)."""

    name: str
    keys: tuple[str, ...]
    check: Callable[[Mapping[str, Any], str], None]
    tests: Callable[[Hypothesis, pd.DataFrame, str | None], list[Outcome]]
    describe: Callable[[Hypothesis], str]
    unit: Callable[[Hypothesis], str]
    question: Callable[[Hypothesis, str, str | None, Sequence[str]], str]
    per_arm: bool = True


# ----------------------------------------------------------------------------- shared parts
def column_of(h: Hypothesis, frame: pd.DataFrame, phase: str | None = None
              ) -> tuple[str | None, str]:
    """The frame column of the hypothesis's quantity (probe if given, else target), or None
    with the reason."""
    if h.probe is not None:
        col = probe_column(phase or h.phase, str(h.network), h.data, h.probe)
    else:
        col = str(h.target)
    if col not in frame.columns or frame[col].isna().all():
        what = "probe" if h.probe is not None else "target"
        return None, f"no {what} column {col!r} in the runs"
    return col, ""


def censored_column(column: str) -> str:
    """The 0/1 column flagging censored values of a probe column (``K_censored``)."""
    return f"{column}_censored"


def _censored_count(rows: pd.DataFrame, column: str) -> int:
    flag = censored_column(column)
    if flag not in rows.columns:
        return 0
    values = pd.to_numeric(rows[column], errors="coerce")
    return int(((rows[flag].fillna(0.0) > 0) & values.notna()).sum())


def _undefined(h: Hypothesis, arm: str, variant: str, method: str, reason: str) -> Outcome:
    return Outcome(h, arm, variant, math.nan, math.nan, math.nan, math.nan, 0, 0, method,
                   reason=reason)


def _from_effect(h: Hypothesis, arm: str, variant: str, method: str, e: Effect,
                 seeds: str = "") -> Outcome:
    return Outcome(h, arm, variant, e.coef, e.low, e.high, e.p, e.n_rows, e.n_seeds, method,
                   reason=e.reason, note=e.note, se=e.se, df=e.df,
                   seeds=seeds or f"{e.n_seeds} seeds", n_censored=e.n_censored)


def _from_interval(h: Hypothesis, arm: str, variant: str, method: str, d: Interval,
                   reason: str, n_censored: int) -> Outcome:
    return Outcome(h, arm, variant, d.estimate, d.low, d.high, d.p if d.defined else math.nan,
                   d.n_rows, d.n_seeds, method, reason=reason, se=d.se, df=d.df,
                   seeds=d.seeds, n_censored=n_censored)


def _one_quantity(kind: str) -> Callable[[Mapping[str, Any], str], None]:
    def check(raw: Mapping[str, Any], where: str) -> None:
        if (raw.get("probe") is None) == (raw.get("target") is None):
            raise ConfigError(f"{where}: kind = {kind!r} tests one quantity: give probe or "
                              "target, not both")
    return check


def _up(h: Hypothesis) -> str:
    return "higher" if h.sign == "+" else "lower"


# ----------------------------------------------------------------------------- within_arm
def _check_within(raw: Mapping[str, Any], where: str) -> None:
    if raw.get("probe") is None or raw.get("target") is None:
        raise ConfigError(f"{where}: kind = 'within_arm' needs both probe and target")


def _tests_within(h: Hypothesis, frame: pd.DataFrame, arm: str | None) -> list[Outcome]:
    assert arm is not None
    method = (f"within-seed slope ({h.scale}, seed-centred task index), CR2 t(G-1): "
              f"{h.target} ~ probe")
    rows = frame[frame["arm"] == arm]
    x, why = column_of(h, frame)
    target = str(h.target)
    if target not in frame.columns or (rows[target].isna().all() if len(rows) else True):
        why = why or (f"no {target!r} values in arm {arm!r}"
                      + (" (no matched fresh reference)" if target.startswith("gap_") else ""))
    if x is None or why:
        return [_undefined(h, arm, "effect", method, why)]
    e = within_effect(rows, target, x, scale=h.scale, censored=censored_column(x))
    return [_from_effect(h, arm, "effect", method, e)]


def _describe_within(h: Hypothesis) -> str:
    return (f"within an arm, a {_up(h)} {h.quantity} goes with a higher {h.target} "
            "(within seeds, beyond the task index)")


def _question_within(h: Hypothesis, arm: str, comparison: str | None,
                     oracles: Sequence[str]) -> str:
    probe = h.probe or ""
    if probe.startswith(("hessian/", "ggn/")):
        return "collapse"
    if probe.startswith("features/"):
        return "features"
    return "other"


# ----------------------------------------------------------------------------- between_arms
def _check_between(raw: Mapping[str, Any], where: str) -> None:
    _one_quantity("between_arms")(raw, where)
    if not isinstance(raw.get("versus"), str):
        raise ConfigError(f"{where}: kind = 'between_arms' needs versus = \"<arm>\"")
    if "versus_phase" in raw and raw.get("probe") is None:
        raise ConfigError(f"{where}: versus_phase needs a probe")
    if "paired" in raw and not isinstance(raw["paired"], bool):
        raise ConfigError(f"{where}: paired = {raw['paired']!r}; expected true or false")
    if "scale" in raw:
        raise ConfigError(f"{where}: scale is only for within_arm, trend and dose_response (a "
                          "difference of means has no rank scale)")


def _tests_between(h: Hypothesis, frame: pd.DataFrame, arm: str | None) -> list[Outcome]:
    assert arm is not None and h.versus is not None
    col, why = column_of(h, frame)
    other = col
    if col is not None and h.versus_phase is not None:
        other, why = column_of(h, frame, phase=h.versus_phase)
    test = "Welch t" if h.paired is False else "paired t on shared seeds, else Welch t"
    method = f"difference of seed means, {arm} - {h.versus}: {test}"
    if col is None or other is None:
        return [_undefined(h, arm, "difference", method, why)]
    a = frame[frame["arm"] == arm]
    b = frame[frame["arm"] == h.versus]
    d = difference(a[col], a["seed"], b[other], b["seed"], paired=h.paired is not False)
    reason = d.reason
    if a[col].notna().sum() == 0 or b[other].notna().sum() == 0:
        reason = (f"no {col!r} values in {arm!r}" if a[col].notna().sum() == 0
                  else f"no {other!r} values in {h.versus!r}")
    n_cens = _censored_count(a, col) + _censored_count(b, other)
    return [_from_interval(h, arm, "difference", method, d, reason, n_cens)]


def _describe_between(h: Hypothesis) -> str:
    phase = f" ({h.versus_phase})" if h.versus_phase else ""
    return f"{h.quantity} is {_up(h)} in the arm than in {h.versus}{phase}"


def _question_between(h: Hypothesis, arm: str, comparison: str | None,
                      oracles: Sequence[str]) -> str:
    if arm in oracles:
        return "oracle"
    if (h.probe or "").startswith("trainability/") and arm == comparison:
        return "trainability"
    if h.probe is None:
        return "mitigation"
    return "other"


# ----------------------------------------------------------------------------- trend
def _tests_trend(h: Hypothesis, frame: pd.DataFrame, arm: str | None) -> list[Outcome]:
    assert arm is not None
    col, why = column_of(h, frame)
    method = f"within-seed slope ({h.scale}) on the task index, CR2 t(G-1)"
    if col is None:
        return [_undefined(h, arm, "trend", method, why)]
    rows = frame[frame["arm"] == arm]
    e = within_effect(rows, col, "task_index", covariates=(), scale=h.scale,
                      censored=censored_column(col))
    return [_from_effect(h, arm, "trend", method, e)]


def _describe_trend(h: Hypothesis) -> str:
    return f"{h.quantity} becomes {_up(h)} with the task index"


def _question_trend(h: Hypothesis, arm: str, comparison: str | None,
                    oracles: Sequence[str]) -> str:
    if (h.probe or "").startswith("trainability/") and arm == comparison:
        return "trainability"
    return "other"


# ----------------------------------------------------------------------------- dose_response
def _number_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(d, (int, float)) and not isinstance(d, bool) for d in value)


def _check_dose(raw: Mapping[str, Any], where: str) -> None:
    _one_quantity("dose_response")(raw, where)
    doses, arms = raw.get("doses"), raw.get("arms")
    n_arms = len(arms) if isinstance(arms, list) else 1
    if not _number_list(doses) or len(doses) != n_arms or len(set(doses)) < 2:
        raise ConfigError(f"{where}: doses = {doses!r}; kind = 'dose_response' needs one "
                          "number per arm (at least two different doses)")
    contrast = raw.get("contrast")
    if contrast is not None and (not _number_list(contrast) or len(contrast) != n_arms
                                 or abs(sum(contrast)) > 1e-9 or not any(contrast)):
        raise ConfigError(f"{where}: contrast = {contrast!r}; expected one weight per arm, "
                          "summing to 0 (e.g. [-1, 0, 1])")


def _tests_dose(h: Hypothesis, frame: pd.DataFrame, arm: str | None) -> list[Outcome]:
    col, why = column_of(h, frame)
    label = ", ".join(h.arms)
    if h.contrast:
        weights = " ".join(f"{w:+g} {a}" for a, w in zip(h.arms, h.contrast, strict=True))
        method = f"contrast of run means ({weights}), Welch-Satterthwaite t"
        variant = "contrast"
    else:
        method = "slope of run means on the dose (the run is the unit), t(runs - 2)"
        variant = "dose"
    if col is None:
        return [_undefined(h, label, variant, method, why)]
    rows = frame[frame["arm"].isin(h.arms)].copy()
    values = rows[col]
    if h.scale == "ranks":  # ranks over the pooled rows, then each run's mean rank
        values = pd.to_numeric(values, errors="coerce").astype(float).rank() / values.notna().sum()
        method = method.replace("run means", "run means of pooled ranks")
    if h.contrast:
        e = dose_contrast(values, rows["run_id"], rows["arm"],
                          dict(zip(h.arms, h.contrast, strict=True)))
    else:
        dose = rows["arm"].map(dict(zip(h.arms, h.doses, strict=True)))
        e = dose_slope(values, rows["run_id"], dose)
    e = replace(e, n_censored=_censored_count(rows, col))
    return [_from_effect(h, label, variant, method, e, seeds=f"{e.n_seeds} runs")]


def _describe_dose(h: Hypothesis) -> str:
    if h.contrast:
        weights = ", ".join(f"{w:+g} x {a}" for a, w in zip(h.arms, h.contrast, strict=True))
        return f"the contrast {weights} of {h.quantity} is {'positive' if h.sign == '+' else 'negative'}"
    return f"{h.quantity} becomes {_up(h)} as the dose rises"


def _unit_dose(h: Hypothesis) -> str:
    scale = "rank" if h.scale == "ranks" else "value"
    return f"|contrast| ({scale})" if h.contrast else f"|slope per dose unit| ({scale})"


# ----------------------------------------------------------------------------- registry
def _unit_within(h: Hypothesis) -> str:
    return "|r| (within-seed ranks)" if h.scale == "ranks" else "|slope|"


KINDS: dict[str, Kind] = {
    "within_arm": Kind("within_arm", ("scale",), _check_within, _tests_within,
                       _describe_within, _unit_within, _question_within),
    "between_arms": Kind("between_arms", ("versus", "versus_phase", "paired"), _check_between,
                         _tests_between, _describe_between, lambda h: "|difference|",
                         _question_between),
    "trend": Kind("trend", ("scale",), _one_quantity("trend"), _tests_trend, _describe_trend,
                  lambda h: "|slope| (within-seed ranks)" if h.scale == "ranks"
                  else "|slope per task|", _question_trend),
    "dose_response": Kind("dose_response", ("doses", "contrast", "scale"), _check_dose,
                          _tests_dose, _describe_dose, _unit_dose,
                          lambda h, arm, comparison, oracles: "er", per_arm=False),
}
