"""Power before the runs: ``plasticity power STUDY.toml --from TABLES_DIR``.

For each declared hypothesis of a study file, the variance components of its quantity are
estimated from a pilot's (or a previous edition's) tables -- the between-seed variance of
seed means and the within-seed (shift-to-shift) variance, by one-way ANOVA on the rows of
the hypothesis's arms in the pilot (of every pilot arm that has the quantity when those arms
are new) -- and studies with the file's design (its seeds per arm and its shifts per run) are
simulated under a true zero and analysed by the report's own estimator (:mod:`.kinds`). From
the simulated null estimates ``b_i`` and standard errors ``s_i``:

* the **detectable effect** at 80% power: the ``delta`` for which the share of simulations
  with ``|b_i + delta| / s_i > t(1 - alpha/2, df)`` is 0.8 (a true effect shifts a linear
  estimator's estimate by ``delta`` and leaves its residuals, hence its standard error, as
  they are; on the rank scale this treats ranks as a linear scale, an approximation);
* **P(equivalent | true zero)**: the share of null simulations the TOST calls equivalent,
  for a hypothesis that declares ``sesoi`` (else not defined).

Paired comparisons keep the pilot's correlation of the two arms' seed means (on the seeds
both share; 0 when fewer than 3 are shared). alpha is the unadjusted 0.05 of one test; under
Holm the first-ranked test of an m-test family is held to 0.05 / m, so the detectable effect
at the family level is larger (printed beside it).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from experiments.errors import ConfigError
from experiments.reporting.declarations import ALPHA, Declarations, Hypothesis, arm_seeds
from experiments.reporting.inference import equivalent, within_effect
from experiments.reporting.kinds import KINDS, column_of

__all__ = ["Components", "PowerRow", "components", "power_rows", "format_rows", "POWER_SIMS"]

POWER = 0.8
POWER_SIMS = 400


@dataclass(frozen=True)
class Components:
    """Variance components of one quantity: between seed means, within seeds (rows)."""

    between: float
    within: float
    rho: float = 0.0   # correlation of two arms' seed effects (paired comparisons)


@dataclass(frozen=True)
class PowerRow:
    hypothesis: Hypothesis
    arm: str
    seeds: str
    shifts: int
    detectable: float
    detectable_holm: float
    p_equivalent: float
    unit: str
    components: Components
    reason: str = ""


def _one_way(rows: pd.DataFrame, column: str) -> tuple[float, float] | None:
    values = pd.to_numeric(rows[column], errors="coerce").astype(float)
    table = pd.DataFrame({"v": values, "seed": rows["run_id"].to_numpy()})
    table = table[np.isfinite(table["v"])]
    groups = table.groupby("seed")["v"]
    if groups.ngroups < 2:
        return None
    within = float(groups.var(ddof=1).dropna().mean()) if (groups.size() > 1).any() else 0.0
    n_bar = float(groups.size().mean())
    between = max(0.0, float(groups.mean().var(ddof=1)) - within / n_bar)
    return between, within


def components(frame: pd.DataFrame, h: Hypothesis, arms: Sequence[str], column: str
               ) -> Components | None:
    """One-way ANOVA components of ``column`` over the pilot's runs of ``arms`` (every arm
    with the column when none of them is in the pilot)."""
    rows = frame[frame["arm"].isin(arms) & frame[column].notna()]
    if rows.empty:
        rows = frame[frame[column].notna()]
    parts = [p for arm in sorted(set(rows["arm"]))
             if (p := _one_way(rows[rows["arm"] == arm], column)) is not None]
    if not parts:
        return None
    return Components(float(np.mean([b for b, _ in parts])), float(np.mean([w for _, w in parts])))


def _rho(frame: pd.DataFrame, a: str, b: str, col_a: str, col_b: str) -> float:
    ma = frame[frame["arm"] == a].groupby("seed")[col_a].mean().dropna()
    mb = frame[frame["arm"] == b].groupby("seed")[col_b].mean().dropna()
    shared = ma.index.intersection(mb.index)
    if len(shared) < 3 or ma[shared].std() == 0 or mb[shared].std() == 0:
        return 0.0
    return float(np.clip(np.corrcoef(ma[shared], mb[shared])[0, 1], 0.0, 1.0))


def _arm_frame(arm: str, seeds: Sequence[int], shifts: int, values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"arm": arm, "seed": np.repeat(seeds, shifts),
                         "run_id": [f"{arm}-seed{s}" for s in np.repeat(seeds, shifts)],
                         "shift_index": np.tile(np.arange(1, shifts + 1), len(seeds)),
                         "task_index": np.tile(np.arange(1, shifts + 1, dtype=float), len(seeds)),
                         "q": values})


def _simulate(h: Hypothesis, arm: str, seeds: Mapping[str, Sequence[int]], shifts: int,
              comp: Components, rng: np.random.Generator) -> pd.DataFrame:
    """One null study with the file's design (column ``q`` is the quantity)."""
    sb, sw = math.sqrt(comp.between), math.sqrt(comp.within)
    if h.kind == "between_arms":
        everyone = sorted(set(seeds[arm]) | set(seeds[str(h.versus)]))
        shared = dict(zip(everyone, rng.normal(0, sb * math.sqrt(comp.rho), len(everyone)),
                          strict=True))
        parts = []
        for name in (arm, str(h.versus)):
            s = sorted(seeds[name])
            own = rng.normal(0, sb * math.sqrt(1 - comp.rho), len(s))
            level = np.array([shared[x] for x in s]) + own
            parts.append(_arm_frame(name, s, shifts,
                                    np.repeat(level, shifts) + rng.normal(0, sw, len(s) * shifts)))
        return pd.concat(parts, ignore_index=True)
    names = list(h.arms) if h.kind == "dose_response" else [arm]
    parts = []
    for name in names:
        s = sorted(seeds[name])
        level = rng.normal(0, sb, len(s))
        values = np.repeat(level, shifts) + rng.normal(0, sw, len(s) * shifts)
        frame = _arm_frame(name, s, shifts, values)
        if h.kind == "within_arm":  # an independent probe with the same structure
            frame["x"] = (np.repeat(rng.normal(0, 1, len(s)), shifts)
                          + rng.normal(0, 1, len(s) * shifts))
        parts.append(frame)
    return pd.concat(parts, ignore_index=True)


def _as_test(h: Hypothesis) -> Hypothesis:
    """The hypothesis pointed at the simulated quantity column ``q``."""
    return replace(h, probe=None, target="q", versus_phase=None)


def _null_tests(h: Hypothesis, arm: str, seeds: Mapping[str, Sequence[int]], shifts: int,
                comp: Components, n_sims: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    kind = KINDS[h.kind]
    test_h = _as_test(h)
    est, se, df = [], [], []
    for _ in range(n_sims):
        data = _simulate(h, arm, seeds, shifts, comp, rng)
        if h.kind == "within_arm":  # the simulated probe is column x
            e = within_effect(data, "q", "x", scale=h.scale)
            est.append(e.coef)
            se.append(e.se)
            df.append(e.df)
            continue
        (t,) = kind.tests(test_h, data, None if not kind.per_arm else arm)
        est.append(t.estimate)
        se.append(t.se)
        df.append(t.df)
    return np.array(est), np.array(se), np.array(df)


def _detectable(est: np.ndarray, se: np.ndarray, df: np.ndarray, alpha: float) -> float:
    keep = np.isfinite(est) & np.isfinite(se) & (se > 0) & np.isfinite(df)
    est, se, df = est[keep], se[keep], df[keep]
    if len(est) == 0:
        return math.nan
    crit = stats.t.ppf(1 - alpha / 2, df)

    def power(delta: float) -> float:
        return float(np.mean(np.abs(est + delta) / se > crit))

    lo, hi = 0.0, float(np.max(np.abs(est) + 10 * crit * se))
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if power(mid) < POWER else (lo, mid)
    return 0.5 * (lo + hi)


def power_rows(frame: pd.DataFrame, decl: Declarations, study: Mapping[str, Any], shifts: int,
               *, n_sims: int = POWER_SIMS, seed: int = 0, alpha: float = ALPHA
               ) -> list[PowerRow]:
    """One row per declared test of ``decl`` (module docstring); ``frame`` is the pilot's
    analysis frame, ``study`` the parsed study file (its seeds per arm)."""
    seeds = arm_seeds(study)
    n_tests = sum(1 if not KINDS[h.kind].per_arm else len(h.arms) for h in decl.hypotheses)
    out = []
    for h in decl.hypotheses:
        kind = KINDS[h.kind]
        for arm in (h.arms if kind.per_arm else (", ".join(h.arms),)):
            names = list(h.arms) if not kind.per_arm else [arm] + (
                [str(h.versus)] if h.versus else [])
            missing = [n for n in names if n not in seeds]
            col, why = column_of(h, frame)
            if h.kind == "within_arm":
                col, why = (str(h.target), "") if h.target in frame.columns else (
                    None, f"no target column {h.target!r} in the pilot")
            if missing or col is None:
                reason = why or f"arm {missing[0]!r} is not in the study file"
                out.append(PowerRow(h, arm, "-", shifts, math.nan, math.nan, math.nan,
                                    kind.unit(h), Components(math.nan, math.nan), reason))
                continue
            comp = components(frame, h, names, col)
            if comp is None:
                out.append(PowerRow(h, arm, "-", shifts, math.nan, math.nan, math.nan,
                                    kind.unit(h), Components(math.nan, math.nan),
                                    "the pilot has too few runs with the quantity"))
                continue
            if h.kind == "between_arms" and h.paired is not False:
                other, _ = column_of(h, frame, phase=h.versus_phase) if h.versus_phase else (
                    col, "")
                comp = Components(comp.between, comp.within,
                                  _rho(frame, arm, str(h.versus), col, other or col))
            if h.kind == "within_arm" and h.scale == "ranks":
                comp = Components(1.0, 1.0)  # ranks within seeds: the scale is fixed
            est, se, df = _null_tests(h, arm, seeds, shifts, comp, n_sims, seed)
            p_eq = (float(np.mean([equivalent(b, s, d, h.sesoi, alpha=alpha)
                                   for b, s, d in zip(est, se, df, strict=True)]))
                    if h.sesoi is not None else math.nan)
            design = " / ".join(f"{len(seeds[n])}" for n in names)
            out.append(PowerRow(h, arm, design, shifts, _detectable(est, se, df, alpha),
                                _detectable(est, se, df, alpha / max(n_tests, 1)), p_eq,
                                kind.unit(h), comp))
    return out


def format_rows(rows: Sequence[PowerRow]) -> str:
    """The table ``plasticity power`` prints."""
    from experiments.reporting import format as fmt

    lines = fmt.table(["id", "arm", "seeds", "shifts", "detectable (80% power, alpha 0.05)",
                       "at the Holm level of the first test", "P(equivalent | true 0)",
                       "unit", "pilot sd between / within"],
                      [[r.hypothesis.id, r.arm, r.seeds, r.shifts,
                        fmt.number(r.detectable) if not r.reason else f"n/a ({r.reason})",
                        fmt.number(r.detectable_holm),
                        "-" if math.isnan(r.p_equivalent) else f"{r.p_equivalent:.0%}",
                        r.unit.replace("|", ""), f"{fmt.number(math.sqrt(r.components.between))} / "
                        f"{fmt.number(math.sqrt(r.components.within))}"
                        if math.isfinite(r.components.between) else "-"] for r in rows])
    return "\n".join(lines)


def study_shifts(study: Mapping[str, Any]) -> int:
    """Shifts per run of a study file: ``steps // period - 1`` from its ``[base]``."""
    base = study.get("base", {}) or {}
    steps = (base.get("experiment", {}) or {}).get("steps")
    period = (base.get("env", {}) or {}).get("period")
    if not (isinstance(steps, int) and isinstance(period, int) and period > 0):
        raise ConfigError("the study file's [base] needs experiment.steps and env.period (the "
                          "shifts per run) for a power analysis")
    return max(1, steps // period - 1)


def power_report(study_path: str, tables_dir: str, *, n_sims: int = POWER_SIMS) -> str:
    """``plasticity power STUDY.toml --from TABLES_DIR``: the printed table (module
    docstring), with a header naming the pilot and the design."""
    from pathlib import Path

    from experiments.analysis.load import load_data
    from experiments.reporting.build import load_streams
    from experiments.reporting.declarations import parse_declarations
    from experiments.reporting.frame import shift_frame
    from experiments.reporting.references import match_references
    from experiments.tomlio import load_toml

    if not Path(study_path).is_file():
        raise ConfigError(f"power: study file {study_path!r} does not exist")
    if not Path(tables_dir).is_dir():
        raise ConfigError(f"power: --from {tables_dir!r} is not a directory; give a pilot's or "
                          "a previous edition's tables directory, e.g. docs/tables/<study>")
    study = load_toml(study_path)
    decl = parse_declarations(study)
    if not decl.hypotheses:
        raise ConfigError(f"power: {study_path!r} declares no [[hypotheses]]")
    streams = load_streams(load_data([Path(tables_dir)]))
    if not streams:
        raise ConfigError(f"power: {tables_dir!r} holds no runs")
    frames = []
    for stream in streams:
        data = stream.data
        runs = data.runs.sort_values("run_id", kind="stable")
        refs = match_references(runs, stream.declarations.references)
        frames.append(shift_frame(runs, data.adaptation, data.probes, data.shifts, refs))
    frame = pd.concat(frames, ignore_index=True)
    shifts = study_shifts(study)
    rows = power_rows(frame, decl, study, shifts, n_sims=n_sims)
    head = (f"Power of {study_path}'s {len(rows)} declared test(s) from the pilot {tables_dir} "
            f"({frame['run_id'].nunique()} runs): {n_sims} simulated null studies each, with "
            f"the file's seeds and {shifts} shifts per run.")
    return head + "\n\n" + format_rows(rows)
