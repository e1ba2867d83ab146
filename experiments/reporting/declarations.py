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
    doses = [1e-6, 1e-4, 1e-3]   # dose_response only: the dose of each arm, in order
    scale = "ranks"              # within_arm / trend: ranks (default) or raw

Kinds and what ``sign`` is the sign of:

* ``within_arm``: the within-seed coefficient of the probe in ``target ~ probe + task_index
  + (1 | seed)`` (:func:`~experiments.reporting.inference.mixed_effect`); each one also gets the
  lagged test "probe at shift k predicts ``target`` at shift k+1 beyond ``target`` at shift k",
  with the same expected sign, in the same family.
* ``between_arms``: ``mean(arm) - mean(versus)`` of the probe (when ``probe`` is given) or of
  ``target``, seed-cluster bootstrap.
  With ``versus_phase`` the versus arm's probe is taken at that phase (e.g. the continual
  network at ``init`` against the fresh arm's ``trained_once`` network).
* ``trend``: the coefficient of the task index in ``quantity ~ task_index + (1 | seed)``
  (quantity = the probe when given, else ``target``).
* ``dose_response``: the coefficient of the dose in ``quantity ~ dose + task_index +
  (1 | seed)`` over the rows of all listed arms (``doses[i]`` is the dose of ``arms[i]``;
  one test for the whole list).

Every declared test of a study is one family; Holm's rule keeps the family-wise error at
``alpha`` (0.05). A verdict is "supported" (adjusted p < alpha, estimate of the declared
sign), "opposite direction" (adjusted p < alpha, the other sign) or "not supported".
Nothing that is not declared here reaches the verdicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from experiments.errors import ConfigError

__all__ = [
    "Hypothesis",
    "Reference",
    "Declarations",
    "parse_declarations",
    "KINDS",
    "PHASES",
    "NETWORKS",
    "DATA",
]

KINDS = ("within_arm", "between_arms", "trend", "dose_response")
PHASES = ("pre", "init", "trained_once", "cadence")
NETWORKS = ("q", "policy", "value", "actor_critic")
DATA = ("on_policy", "fixed")
SIGNS = ("+", "-")
SCALES = ("ranks", "raw")
REPORT_KEYS = ("key_arms", "comparison_arm", "oracle_arms", "negative_control",
               "primary_target", "exploratory_probes", "threshold", "max_return", "limitations",
               "stationary", "references")
HYPOTHESIS_KEYS = ("id", "statement", "kind", "probe", "phase", "network", "data", "target",
                   "sign", "arms", "versus", "versus_phase", "doses", "scale")
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
        """The claim in one line, from the declared fields."""
        up = "higher" if self.sign == "+" else "lower"
        if self.kind == "within_arm":
            return (f"within an arm, a {up} {self.quantity} goes with a higher {self.target} "
                    "(within seeds, beyond the task index)")
        if self.kind == "between_arms":
            phase = f" ({self.versus_phase})" if self.versus_phase else ""
            return f"{self.quantity} is {up} in the arm than in {self.versus}{phase}"
        if self.kind == "dose_response":
            return f"{self.quantity} becomes {up} as the dose rises"
        return f"{self.quantity} becomes {up} with the task index"


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
    kind = _choice(where, "kind", raw["kind"], KINDS)
    probe, target = raw.get("probe"), raw.get("target")
    for key, value in (("probe", probe), ("target", target)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{where}: {key} = {value!r}; expected a column name")
    if kind == "within_arm" and (probe is None or target is None):
        raise ConfigError(f"{where}: kind = 'within_arm' needs both probe and target")
    if kind != "within_arm" and (probe is None) == (target is None):
        raise ConfigError(f"{where}: kind = {kind!r} tests one quantity: give probe or target, "
                          "not both")
    if probe is not None and "network" not in raw:
        raise ConfigError(f"{where}: probe {probe!r} needs network (valid choices: "
                          f"{', '.join(NETWORKS)})")
    versus = raw.get("versus")
    if kind == "between_arms":
        if not isinstance(versus, str):
            raise ConfigError(f"{where}: kind = 'between_arms' needs versus = \"<arm>\"")
    elif versus is not None or "versus_phase" in raw:
        raise ConfigError(f"{where}: versus and versus_phase are only for kind = 'between_arms'")
    if "versus_phase" in raw and probe is None:
        raise ConfigError(f"{where}: versus_phase needs a probe")
    doses = raw.get("doses")
    if kind == "dose_response":
        if (not isinstance(doses, list) or len(doses) != len(_names(where, "arms", raw["arms"]))
                or not all(isinstance(d, (int, float)) and not isinstance(d, bool)
                           for d in doses) or len(set(doses)) < 2):
            raise ConfigError(f"{where}: doses = {doses!r}; kind = 'dose_response' needs one "
                              "number per arm (at least two different doses)")
    elif doses is not None:
        raise ConfigError(f"{where}: doses is only for kind = 'dose_response'")
    if "scale" in raw and kind == "between_arms":
        raise ConfigError(f"{where}: scale is only for within_arm and trend (a difference of "
                          "means has no rank scale)")
    statement = raw.get("statement", "")
    if not isinstance(statement, str):
        raise ConfigError(f"{where}: statement = {statement!r}; expected a string")
    return Hypothesis(
        id=str(raw["id"]), kind=kind, sign=_choice(where, "sign", raw["sign"], SIGNS),
        arms=_names(where, "arms", raw["arms"]), target=target, probe=probe,
        phase=_choice(where, "phase", raw.get("phase", "init"), PHASES),
        network=(_choice(where, "network", raw["network"], NETWORKS)
                 if "network" in raw else None),
        data=_choice(where, "data", raw.get("data", "on_policy"), DATA), versus=versus,
        versus_phase=(_choice(where, "versus_phase", raw["versus_phase"], PHASES)
                      if "versus_phase" in raw else None),
        doses=tuple(float(d) for d in doses) if kind == "dose_response" else (),
        scale=_choice(where, "scale", raw.get("scale", "ranks"), SCALES), statement=statement)


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
