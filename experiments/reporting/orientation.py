"""The opening of a ``plasticity report`` (the generic report, e.g. the default study's): a
"what you are looking at" section a newcomer can read before the tables.

It says, from the report's own numbers, which arm lost what against its fresh reference in
plain words (and, for the embedded default study, what outcome to expect), states once that
values are shown without an interval and why (instead of "(no interval: ...)" beside every
value), and explains each column of the tables the document shows. Nothing here is a
statistic: every number is one the report already holds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from experiments.reporting import format as fmt
from experiments.reporting.render import render
from experiments.reporting.summary import Report, StreamSummary

__all__ = ["document", "preface", "column_notes", "missing_interval_reasons",
           "strip_missing_intervals", "HEADING", "EXPECTED", "COLUMNS"]

HEADING = "## What you are looking at"
_NO_INTERVAL = re.compile(r" \(no interval: ((?:[^()]|\([^()]*\))*)\)")  # "1 seed(s) < 3"

#: The outcome to expect, per study name (the embedded default study's, from the committed
#: second-edition results on the same stream and agent, docs/results.md).
EXPECTED = {
    "default": (
        "**Expected outcome of this default job** (PPO on the MiniGrid hidden-moving-goal "
        "stream, one seed, 11 shifts): the continual network falls behind its fresh reference "
        "after the first shifts, often returning exactly 0 on a task (it never finds the moved "
        "goal), while fresh keeps finding it. The committed 10-seed study on this stream "
        "measured continual - fresh = -0.36 [-0.48, -0.25] mean return per task "
        "(docs/results.md, 'PPO, hidden goal'). One seed shows the direction, not its "
        "uncertainty: for intervals run `plasticity sweep` on a copy of "
        "experiments/defaults/default.toml with `seeds = [0, 1, 2, 3, 4]`."
    ),
}

#: Column header (regular expression, matched against the whole header) -> what it holds.
#: ``{target}`` is the stream's primary adaptation target.
COLUMNS: tuple[tuple[str, str], ...] = (
    (r"arm", "the arm: one configuration of the study, run once per seed"),
    (r"reference", "`continual` trains one network through every shift; `fresh` is the same "
     "agent re-initialised at every shift (full plasticity: the ceiling continual is compared "
     "with); `stationary` never shifts (the instability control)"),
    (r"role", "what the study file makes of the arm (fresh reference, comparison arm, oracle, "
     "key arm)"),
    (r"mitigations", "the mitigations applied, with their options (`none`: plain training)"),
    (r"shift knobs", "what the agent is told or reset at a switch (`none`: not told)"),
    (r"switch announced \(oracle\)", "whether the agent was told when the task switched"),
    (r"seeds", "the seeds of the arm's finished runs (the unit of replication)"),
    (r"runs done", "finished runs / runs of the arm"),
    (r"steps per run", "env steps of a finished run"),
    (r"shifts per run", "task switches in a finished run"),
    (r"wall s per run \(median\)", "wall-clock seconds of a run's process (a population's "
     "seeds share one process)"),
    (r"mean_return", "the mean episodic return of the episodes played on a task, "
     "after the shift into it, averaged over shifts and seeds (MiniGrid: 1 is the best possible "
     "on a task, 0 means the goal was never reached; CartPole: the episode length, at most "
     "500 for v1)"),
    (r"auc", "the area under the return curve after a shift, normalised (see Methods)"),
    (r"final_return", "the mean return of a task's last episodes"),
    (r"shifts reaching the threshold", "the share of shifts after which the trailing mean return "
     "reached the recovery threshold stated under 'What was run'"),
    (r"gap .*", "the arm's value minus its fresh reference's on the same seed and shift, "
     "averaged: below 0, the arm adapts worse than a network that starts afresh at each task "
     "(loss of plasticity)"),
    (r"fresh reference", "the fresh arm the gap is taken against (`none`: no fresh run has this "
     "arm's settings, so no gap)"),
    (r"minus .*", "the arm's value minus the comparison arm's (descriptive, not a test)"),
    (r"task \d+", "the gap on that task (task index = shifts before it)"),
    (r"window \d+", "the stationary control's mean return over one period"),
    (r"probe", "a probe at the shift: network, metric (phase: `init` = on the new task before "
     "any update on it, `pre` = just before the switch)"),
    (r"effect \[95% CI\]", "within-seed association of the probe with the target (mixed model "
     "on ranks), exploratory"),
    (r"difference \[95% CI\]", "the probe minus the fresh reference's probe"),
    (r"task-index coefficient \[95% CI\]", "trend of the gap over the tasks (negative: the gap "
     "grows)"),
    (r"rows", "the per-shift rows the test used (paired tests: the seeds it paired)"),
    (r"censored", "rows whose probe value is a bound (an eps-rank below its estimator's "
     "resolution, an eps-count that hit its cap), entered at the bound"),
    (r"detectable", "the effect the test could detect with 80% power at its rows and seeds: "
     "an inconclusive verdict means no evidence either way at this size"),
    (r"sesoi", "the smallest effect of interest the study file declared; a 90% interval inside "
     "plus or minus it is the verdict `equivalent`"),
    (r"p \(unadjusted\)", "p-value without a multiple-testing correction (exploratory only)"),
)


def _headers(text: str) -> list[str]:
    """The header cells of the markdown tables of ``text``, in order of first appearance."""
    lines = text.splitlines()
    cells: dict[str, None] = {}
    for line, below in zip(lines, lines[1:], strict=False):
        if line.startswith("| ") and below.startswith("|---"):
            for cell in line.strip("| ").split(" | "):
                cells[_NO_INTERVAL.sub("", cell).strip()] = None
    return list(cells)


def column_notes(text: str) -> list[str]:
    """One line per distinct column explanation, for the columns ``text``'s tables show."""
    notes: dict[str, list[str]] = {}
    for header in _headers(text):
        for pattern, note in COLUMNS:
            if re.fullmatch(pattern, header):
                notes.setdefault(note, []).append(header)
                break
    return [f"- {' ... '.join(f'**{h}**' for h in (heads if len(heads) < 3 else heads[::len(heads) - 1]))}"
            f": {note}." for note, heads in notes.items()]


def missing_interval_reasons(text: str) -> list[str]:
    return list(dict.fromkeys(_NO_INTERVAL.findall(text)))


def strip_missing_intervals(text: str) -> str:
    return _NO_INTERVAL.sub("", text)


def _arm_words(s: StreamSummary, arm: str) -> str:
    a = s.arm(arm)
    what = {"continual": "one network trained through every shift",
            "fresh": "re-initialised at every shift",
            "stationary": "never shifts"}.get(a.reference, a.reference)
    mit = "" if a.mitigations == "none" else f", with {a.mitigations}"
    return f"`{arm}` ({what}{mit})"


def _gap_sentences(s: StreamSummary) -> list[str]:
    out = []
    for g in s.gaps:
        if g.mean is None or not g.reference.matched:
            out.append(f"{_arm_words(s, g.arm)} has no fresh run with its settings, so no gap "
                       "is computed for it.")
            continue
        ref, gap = g.reference.reference_arm, g.mean.estimate
        levels = [s.arm(a).adaptation for a in (g.arm, ref) if a in {x.name for x in s.arms}]
        both = (f"{fmt.number(levels[0].estimate)} against {fmt.number(levels[1].estimate)}; "
                if len(levels) == 2 and all(v is not None for v in levels) else "")
        tasks = [i.estimate for i in g.per_task.y] if g.per_task else []
        behind = sum(1 for v in tasks if v < 0)
        where = f" It trailed on {behind} of {len(tasks)} tasks." if tasks else ""
        if gap < 0:
            out.append(f"{_arm_words(s, g.arm)} reached {fmt.number(abs(gap))} less "
                       f"`{s.target}` per task than its fresh reference `{ref}` ({both}the same "
                       f"agent re-initialised at every shift).{where} A network that has trained on "
                       "earlier tasks learning a new one worse than a fresh network does is the "
                       "loss of plasticity this testbed measures.")
        else:
            out.append(f"{_arm_words(s, g.arm)} reached {fmt.number(gap)} more `{s.target}` per "
                       f"task than its fresh reference `{ref}` ({both}the same agent re-initialised "
                       "at every shift): no loss of plasticity against a "
                       f"fresh network here.{where}")
    return out


def preface(report: Report, body: str) -> list[str]:
    """The section's lines for ``report``, whose document without it is ``body``."""
    md = [HEADING, ""]
    for s in report.streams:
        seeds = sorted({seed for a in s.arms for seed in a.seeds})
        md += [f"**{s.name}**: {s.n_runs} runs, arms {', '.join(f'`{a.name}`' for a in s.arms)}; "
               f"{len(seeds)} seed(s); adaptation is measured by `{s.target}` after each shift."
               + (" " + " ".join(_gap_sentences(s)) if s.gaps else ""), ""]
        if s.name in EXPECTED:
            md += [EXPECTED[s.name], ""]
    reasons = missing_interval_reasons(body)
    if reasons:
        md += ["**Note on intervals**: values shown without a `[low, high]` interval have none "
               f"because {'; '.join(reasons)} (an interval over seeds needs at least 3 seeds); "
               "they are a single run's numbers.", ""]
    notes = column_notes(body)
    if notes:
        md += ["**Columns** of the tables below:", ""] + notes + [""]
    return md


def document(report: Report, figures: Mapping[str, Mapping[str, str]],
             commands: Mapping[str, str] | None = None,
             configs: Mapping[str, Mapping[str, str]] | None = None,
             regenerate: str = "") -> str:
    """:func:`~experiments.reporting.render.render` with this section after the title and the
    missing intervals stated once (in the section) instead of beside each value."""
    body = render(report, figures, commands, configs, regenerate)
    lines = render(report, figures, commands, configs, regenerate,
                   preface=preface(report, body))
    return strip_missing_intervals(lines)
