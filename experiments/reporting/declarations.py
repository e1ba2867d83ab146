"""What a study file declares for its report: signed hypotheses, arm roles, references.

A study file (``experiments/studies/*.toml``, a sweep file) may carry, besides the sweep keys::

    [report]
    key_arms = ["continual", "fresh", "l2_er"]   # drawn in the figures (default: every arm)
    comparison_arm = "continual"                 # mitigation arms are compared with it
    oracle_arms = ["head_reset"]                 # told about the switch (labelled "oracle")
    negative_control = false                     # the study is meant as a negative control
    primary_target = "mean_return"               # adaptation column of the gap and exploration
    exploratory_probes = ["features/hidden.1/effective_rank"]  # init probes shown as
                                                 # exploratory besides the declared ones
                                                 # (fnmatch patterns; default: the headline
                                                 # probes, reporting.summary.DEFAULT_EXPLORATORY_PROBES)
    threshold = 0.8                              # absolute recovery threshold (else relative)
    max_return = 1.0                             # AUC normaliser in absolute mode
    limitations = ["...", "..."]                 # printed before the limitations derived from runs
    [report.stationary]                          # when the stationary control counts as converged
    windows = 3                                  # its last 3 windows of one period ...
    tolerance = 0.05                             # ... agree within 5% of the best window's return
    [report.references]                          # per-arm fresh reference (default: automatic)
    l2 = "fresh_l2"                              # must match l2's agent, network and mitigations
    head_reset = { arm = "fresh", ignore = ["mitigations"],
                   reason = "resetting the head is a no-op in a run re-initialised at every switch" }

    [[hypotheses]]                               # confirmatory: one family, Holm's rule
    id = "H1"
    statement = "lower value eps-rank at init predicts slower adaptation"   # optional
    kind = "within_arm"          # within_arm | between_arms | trend | dose_response
    probe = "hessian/eps_rank"   # probe metric (a probes.jsonl column)
    phase = "init"               # pre | init | trained_once | cadence (default init)
    network = "value"            # q | policy | value | actor_critic
    data = "on_policy"           # on_policy | fixed (default on_policy)
    target = "auc"               # adaptation column, or gap_<column> (vs the matched fresh run)
    sign = "+"                   # expected sign: "+" or "-" (see below)
    arms = ["continual"]         # one test per arm
    versus = "fresh"             # between_arms only: the arm compared with
    versus_phase = "trained_once"  # between_arms, optional: the versus arm's probe phase
    paired = true                # between_arms, optional: demand a paired t on the shared
                                 # seeds (refused when the arms share < 3 seeds); false: Welch
                                 # (default: paired when >= 3 seeds are shared, else Welch)
    doses = [1e-6, 1e-4, 1e-3]   # dose_response only: the dose of each arm, in order
    contrast = [-1, 2, -1]       # dose_response, optional: test this contrast of the arms'
                                 # means instead of the slope (non-monotone doses; sums to 0)
    scale = "ranks"              # within_arm / trend / dose_response: ranks (default) or raw
    sesoi = 0.3                  # optional: smallest effect size of interest, in the test's
                                 # units; a non-significant test whose 90% interval lies
                                 # inside +-sesoi is "equivalent" (TOST)

Kinds and what ``sign`` is the sign of: :mod:`experiments.reporting.kinds` (the registry:
each kind's keys, checks, estimator and claim). Every declared test of a study is one
family; Holm's rule keeps the family-wise error at ``alpha`` (0.05). Verdicts: supported ·
opposite · equivalent · inconclusive (:mod:`experiments.reporting.outcome`).
Nothing that is not declared here reaches the verdicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from experiments.errors import ConfigError
from experiments.reporting.inference import MIN_SEEDS
from experiments.reporting.kinds import KINDS

__all__ = [
    "Hypothesis",
    "Reference",
    "Declarations",
    "parse_declarations",
    "arm_seeds",
    "PHASES",
    "NETWORKS",
    "DATA",
]

PHASES = ("pre", "init", "trained_once", "cadence")
NETWORKS = ("q", "policy", "value", "actor_critic")
DATA = ("on_policy", "fixed")
SIGNS = ("+", "-")
SCALES = ("ranks", "raw")
REPORT_KEYS = ("key_arms", "comparison_arm", "oracle_arms", "negative_control",
               "primary_target", "exploratory_probes", "threshold", "max_return", "limitations",
               "stationary", "references")
#: Keys every kind takes; each kind adds its own (``KINDS[kind].keys``).
COMMON_KEYS = ("id", "statement", "kind", "probe", "phase", "network", "data", "target",
               "sign", "arms", "sesoi")
HYPOTHESIS_KEYS = tuple(dict.fromkeys(COMMON_KEYS + tuple(k for kind in KINDS.values()
                                                          for k in kind.keys)))
ALPHA = 0.05


@dataclass(frozen=True)
class Hypothesis:
    """One declared, signed hypothesis (module docstring)."""

    id: str
    kind: str
    sign: str
    arms: tuple[str, ...]
    target: str | None = None
    probe: str | None = None
    phase: str = "init"
    network: str | None = None
    data: str = "on_policy"
    versus: str | None = None
    versus_phase: str | None = None
    doses: tuple[float, ...] = ()
    scale: str = "ranks"
    statement: str = ""
    sesoi: float | None = None
    paired: bool | None = None
    contrast: tuple[float, ...] = ()

    @property
    def probe_key(self) -> tuple[str, str, str, str] | None:
        """``(phase, network, data, metric)`` of the probe, or None."""
        if self.probe is None:
            return None
        return (self.phase, str(self.network), self.data, self.probe)

    @property
    def quantity(self) -> str:
        """What is tested, in words: ``value hessian/eps_rank (init)`` or the target."""
        if self.probe is not None:
            data = "" if self.data == "on_policy" else f", {self.data} data"
            return f"{self.network} {self.probe} ({self.phase}{data})"
        return str(self.target)

    def describe(self) -> str:
        """The claim in one line, from the declared fields (the kind's wording)."""
        return KINDS[self.kind].describe(self)


@dataclass(frozen=True)
class Reference:
    """A declared fresh reference: the arm whose runs are the reference, the config keys
    allowed to differ and why."""

    arm: str
    ignore: tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True)
class Declarations:
    """Everything a study file declares for its report (defaults: nothing declared)."""

    hypotheses: tuple[Hypothesis, ...] = ()
    key_arms: tuple[str, ...] = ()
    comparison_arm: str | None = None
    oracle_arms: tuple[str, ...] = ()
    negative_control: bool = False
    primary_target: str = "mean_return"
    exploratory_probes: tuple[str, ...] = ()
    threshold: float | None = None
    max_return: float | None = None
    limitations: tuple[str, ...] = ()
    stationary_windows: int = 3
    stationary_tolerance: float = 0.05
    references: Mapping[str, Reference] = field(default_factory=dict)

    def arms_named(self) -> set[str]:
        """Every arm name the declarations mention (checked against the runs)."""
        names = set(self.key_arms) | set(self.oracle_arms) | set(self.references)
        names |= {r.arm for r in self.references.values()}
        if self.comparison_arm:
            names.add(self.comparison_arm)
        for h in self.hypotheses:
            names |= set(h.arms)
            if h.versus:
                names.add(h.versus)
        return names


def _choice(where: str, key: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ConfigError(f"{where}: {key} = {value!r}; valid choices: {', '.join(choices)}")
    return str(value)


def _names(where: str, key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key} = {value!r}; expected a non-empty list of arm names")
    return tuple(value)


def _hypothesis(raw: Any, index: int) -> Hypothesis:
    where = f"[[hypotheses]] #{index + 1}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a table, got {raw!r}")
    if "id" in raw:
        where = f"hypothesis {raw['id']!r}"
    unknown = sorted(set(raw) - set(HYPOTHESIS_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; valid keys: "
                          f"{', '.join(HYPOTHESIS_KEYS)}")
    for key in ("id", "kind", "sign", "arms"):
        if key not in raw:
            raise ConfigError(f"{where}: missing {key!r} (every hypothesis needs id, kind, "
                              "sign and arms)")
    kind = KINDS[_choice(where, "kind", raw["kind"], tuple(KINDS))]
    probe, target = raw.get("probe"), raw.get("target")
    for key, value in (("probe", probe), ("target", target)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{where}: {key} = {value!r}; expected a column name")
    foreign = sorted(k for k in set(raw) - set(COMMON_KEYS) if k not in kind.keys)
    if foreign:
        owners = [k.name for k in KINDS.values() if foreign[0] in k.keys]
        raise ConfigError(f"{where}: {foreign[0]} is only for kind = "
                          f"{' / '.join(repr(o) for o in owners)}")
    kind.check(raw, where)
    if probe is not None and "network" not in raw:
        raise ConfigError(f"{where}: probe {probe!r} needs network (valid choices: "
                          f"{', '.join(NETWORKS)})")
    sesoi = raw.get("sesoi")
    if sesoi is not None and (isinstance(sesoi, bool) or not isinstance(sesoi, (int, float))
                              or not sesoi > 0):
        raise ConfigError(f"{where}: sesoi = {sesoi!r}; expected a number > 0 (the smallest "
                          "effect size of interest, in the test's units)")
    statement = raw.get("statement", "")
    if not isinstance(statement, str):
        raise ConfigError(f"{where}: statement = {statement!r}; expected a string")
    return Hypothesis(
        id=str(raw["id"]), kind=kind.name, sign=_choice(where, "sign", raw["sign"], SIGNS),
        arms=_names(where, "arms", raw["arms"]), target=target, probe=probe,
        phase=_choice(where, "phase", raw.get("phase", "init"), PHASES),
        network=(_choice(where, "network", raw["network"], NETWORKS)
                 if "network" in raw else None),
        data=_choice(where, "data", raw.get("data", "on_policy"), DATA),
        versus=raw.get("versus"),
        versus_phase=(_choice(where, "versus_phase", raw["versus_phase"], PHASES)
                      if "versus_phase" in raw else None),
        doses=tuple(float(d) for d in raw.get("doses", ())),
        scale=_choice(where, "scale", raw.get("scale", "ranks"), SCALES), statement=statement,
        sesoi=None if sesoi is None else float(sesoi), paired=raw.get("paired"),
        contrast=tuple(float(w) for w in raw.get("contrast", ())))


def arm_seeds(study: Mapping[str, Any]) -> dict[str, set[int]]:
    """Each ``[[arms]]`` name's seeds in a study file (the arm's own, else the file's)."""
    seeds = study.get("seeds", [0])
    out = {}
    for arm in study.get("arms", []) or []:
        if isinstance(arm, Mapping) and isinstance(arm.get("name"), str):
            own = arm.get("seeds", seeds)
            out[arm["name"]] = {s for s in own if isinstance(s, int)} if isinstance(
                own, list) else set()
    return out


def _check_pairing(hypotheses: Sequence[Hypothesis], study: Mapping[str, Any]) -> None:
    """A declared paired comparison needs arms that share at least MIN_SEEDS seeds."""
    seeds = arm_seeds(study)
    for h in hypotheses:
        if not h.paired or h.versus not in seeds:
            continue
        for arm in h.arms:
            if arm not in seeds:
                continue
            shared = seeds[arm] & seeds[h.versus]
            if len(shared) < MIN_SEEDS:
                raise ConfigError(
                    f"hypothesis {h.id!r}: paired = true, but arms {arm!r} and {h.versus!r} "
                    f"share {len(shared)} seed(s) ({', '.join(map(str, sorted(shared))) or 'none'}); "
                    f"a paired test needs >= {MIN_SEEDS} shared seeds (give the arms common "
                    "seeds, or paired = false for Welch's t)")


def _reference(arm: str, raw: Any) -> Reference:
    where = f"[report.references] {arm}"
    if isinstance(raw, str):
        return Reference(raw)
    if not isinstance(raw, Mapping) or not isinstance(raw.get("arm"), str):
        raise ConfigError(f"{where} = {raw!r}; expected an arm name or "
                          "{ arm = ..., ignore = [...], reason = ... }")
    unknown = sorted(set(raw) - {"arm", "ignore", "reason"})
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; valid keys: arm, ignore, reason")
    ignore = raw.get("ignore", [])
    if not isinstance(ignore, list) or not all(isinstance(k, str) for k in ignore):
        raise ConfigError(f"{where}: ignore = {ignore!r}; expected a list of config keys")
    reason = raw.get("reason", "")
    if ignore and not (isinstance(reason, str) and reason.strip()):
        raise ConfigError(f"{where}: ignore = {ignore!r} needs a reason (why the reference "
                          "is still a match although those settings differ)")
    return Reference(raw["arm"], tuple(ignore), str(reason))


def parse_declarations(study: Mapping[str, Any]) -> Declarations:
    """The report declarations of a parsed study file (module docstring); raises
    :class:`ConfigError` naming the bad value. A file without them declares nothing."""
    report = study.get("report", {})
    if not isinstance(report, Mapping):
        raise ConfigError(f"[report] must be a table, got {report!r}")
    unknown = sorted(set(report) - set(REPORT_KEYS))
    if unknown:
        raise ConfigError(f"[report]: unknown key {unknown[0]!r}; valid keys: "
                          f"{', '.join(REPORT_KEYS)}")
    raw_h = study.get("hypotheses", [])
    if not isinstance(raw_h, list):
        raise ConfigError("hypotheses must be an array of tables ([[hypotheses]])")
    hypotheses = tuple(_hypothesis(h, i) for i, h in enumerate(raw_h))
    _check_pairing(hypotheses, study)
    ids = [h.id for h in hypotheses]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ConfigError(f"hypothesis id {dupes[0]!r} is declared twice; ids must be unique")
    stationary = report.get("stationary", {})
    if not isinstance(stationary, Mapping) or set(stationary) - {"windows", "tolerance"}:
        raise ConfigError(f"[report.stationary] = {stationary!r}; valid keys: windows, tolerance")
    windows = stationary.get("windows", 3)
    tolerance = stationary.get("tolerance", 0.05)
    if not isinstance(windows, int) or windows < 2:
        raise ConfigError(f"[report.stationary] windows = {windows!r}; expected an integer >= 2")
    if not isinstance(tolerance, (int, float)) or not tolerance > 0:
        raise ConfigError(f"[report.stationary] tolerance = {tolerance!r}; expected a fraction > 0")
    refs = report.get("references", {})
    if not isinstance(refs, Mapping):
        raise ConfigError(f"[report.references] = {refs!r}; expected a table arm = reference")
    limitations = report.get("limitations", [])
    if not isinstance(limitations, list) or not all(isinstance(x, str) for x in limitations):
        raise ConfigError(f"[report] limitations = {limitations!r}; expected a list of strings")
    for key in ("threshold", "max_return"):
        value = report.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ConfigError(f"[report] {key} = {value!r}; expected a number")
    comparison = report.get("comparison_arm")
    if comparison is not None and not isinstance(comparison, str):
        raise ConfigError(f"[report] comparison_arm = {comparison!r}; expected an arm name")
    target = report.get("primary_target", "mean_return")
    if not isinstance(target, str):
        raise ConfigError(f"[report] primary_target = {target!r}; expected a column name")
    exploratory = report.get("exploratory_probes", [])
    if not isinstance(exploratory, list) or not all(isinstance(x, str) for x in exploratory):
        raise ConfigError(f"[report] exploratory_probes = {exploratory!r}; expected a list of "
                          "probe metric names")
    return Declarations(
        hypotheses=hypotheses, exploratory_probes=tuple(exploratory),
        key_arms=_names("[report]", "key_arms", report["key_arms"]) if "key_arms" in report else (),
        comparison_arm=comparison,
        oracle_arms=(_names("[report]", "oracle_arms", report["oracle_arms"])
                     if "oracle_arms" in report else ()),
        negative_control=bool(report.get("negative_control", False)),
        primary_target=target,
        threshold=None if report.get("threshold") is None else float(report["threshold"]),
        max_return=None if report.get("max_return") is None else float(report["max_return"]),
        limitations=tuple(limitations), stationary_windows=windows,
        stationary_tolerance=float(tolerance),
        references={str(arm): _reference(str(arm), raw) for arm, raw in refs.items()})
