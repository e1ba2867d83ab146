"""Markdown from a :class:`~experiments.reporting.summary.Report` (no statistic computed here).

The document depends on the summary only -- no path, clock or machine state -- so the same
tables give the same bytes. Sections (:data:`SECTIONS`, in order): what was run; the
confirmatory results (declared hypotheses, the only verdicts); descriptive results with
seed-level intervals; exploratory results (labelled, never verdicts); the answer in plain
language (the declared verdicts sorted by question, :mod:`experiments.reporting.answer`);
limitations; methods; the runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from experiments.reporting import format as fmt
from experiments.reporting.answer import answer
from experiments.reporting.frame import parse_probe_column
from experiments.reporting.hypotheses import Outcome
from experiments.reporting.inference import Interval
from experiments.reporting.summary import Report, StreamSummary

__all__ = ["SECTIONS", "render"]

SECTIONS = (
    "## What was run",
    "## Confirmatory results (declared hypotheses)",
    "## Descriptive results (seed-level intervals)",
    "## Exploratory results (not declared: no verdicts)",
    "## Answer in plain language (from the declared verdicts only)",
    "## Limitations",
    "## Methods",
    "## Runs",
)
VARIANTS = {"effect": "within seeds, beyond the task index",
            "lagged": "shift k predicts shift k+1 beyond shift k",
            "difference": "difference of means", "trend": "trend over the task index",
            "dose": "dose-response over the arms"}


def _probe_label(column: str) -> str:
    phase, network, data, metric = parse_probe_column(column)
    return f"{network} {metric} ({phase}{'' if data == 'on_policy' else ', ' + data})"


def _what_was_run(s: StreamSummary, commands: Mapping[str, str]) -> list[str]:
    md = [f"### {s.name}", ""]
    if s.name in commands:
        md += ["```", commands[s.name], "```", ""]
    done = s.n_runs - len(s.not_done)
    commits = ", ".join(f"`{c}`" for c in s.commits) or "not recorded"
    md += [f"{s.n_runs} runs, {done} finished and analysed; code commit(s) of the runs: "
           f"{commits}" + (f"; {s.dirty} from a dirty working tree" if s.dirty else "")
           + f". Software the runs recorded: {'; '.join(s.versions) or 'not recorded'}. "
           f"Adaptation: {s.spec or 'as recorded in the adaptation table'}.", ""]
    body = [[a.name, a.reference, ", ".join(a.roles) or "-", a.mitigations, a.shift_knobs,
             "yes" if a.oracle_switches else "no", ", ".join(map(str, a.seeds)) or "-",
             f"{a.runs_done}/{a.runs_total}", fmt.number(a.steps), a.shifts,
             fmt.number(a.wall_s)] for a in s.arms]
    md += fmt.table(["arm", "reference", "role", "mitigations", "shift knobs",
                     "switch announced (oracle)", "seeds", "runs done", "steps per run",
                     "shifts per run", "wall s per run (median)"], body)
    md += ["Wall time is the process's: the seeds of one arm run as one population in one "
           "process, so they share it.", ""]
    if s.references:
        md += ["Fresh reference of each continual arm (same agent, network, mitigations, "
               "stream, steps and seed; only bookkeeping keys may differ):", ""]
        for arm, ref in sorted(s.references.items()):
            if ref.matched and ref.declared:
                allowed = ", ".join(ref.ignore) or "nothing"
                line = (f"`{ref.reference_arm}` (declared; allowed to differ: {allowed} -- "
                        f"{ref.reason})" if ref.ignore else f"`{ref.reference_arm}` (declared)")
            elif ref.matched:
                line = f"`{ref.reference_arm}` (matched automatically)"
            else:
                line = "**none**: no fresh run with this arm's settings, so no gap is computed"
            if ref.matched and ref.missing:
                line += f"; seeds without one: {', '.join(map(str, ref.missing))}"
            md.append(f"- {arm}: {line}")
        md.append("")
    for run_id, status in s.not_done:
        md.append(f"- **{status}**: `{run_id}` is left out of every number.")
    if s.not_done:
        md.append("")
    return md


def _confirmatory(s: StreamSummary) -> list[str]:
    md = [f"### {s.name}", ""]
    if not s.tests:
        md += ["No hypothesis is declared for this stream: nothing here is confirmatory.", ""]
    else:
        md += [f"{len(s.tests)} tests in this stream's family (Holm's rule, alpha 0.05).", ""]
        body = []
        for t in s.tests:
            h = t.hypothesis
            body.append([h.id, t.arm, VARIANTS[t.variant], h.sign, _estimate(t),
                         f"{t.n_rows}/{t.n_seeds}", fmt.p_value(t.p), fmt.p_value(t.p_holm),
                         f"**{t.verdict}**"])
        md += fmt.table(["id", "arm", "test", "declared sign", "estimate [95% CI]",
                         "rows/seeds", "p", "Holm p", "verdict"], body)
        for h in dict.fromkeys(t.hypothesis for t in s.tests):
            claim = f"{h.statement}; tested as: {h.describe()}" if h.statement else h.describe()
            verdicts = "; ".join(f"{t.arm} ({t.variant}): {t.verdict}"
                                 + (f" -- not testable: {t.reason}" if t.reason else "")
                                 for t in s.tests if t.hypothesis == h)
            md.append(f"- **{h.id}** ({claim}): {verdicts}.")
        methods = dict.fromkeys(t.method for t in s.tests)
        notes = dict.fromkeys(f"{t.hypothesis.id} {t.arm} ({t.variant}): {t.note}"
                              for t in s.tests if t.note)
        md += ["", "Tests: " + "; ".join(methods) + "."]
        if notes:
            md += ["Fit notes: " + "; ".join(notes) + "."]
        md.append("")
    verdict = s.negative_control
    if verdict is not None:
        md += [f"**Negative control**: {s.name} {verdict}.", ""]
    return md


def _estimate(t: Outcome) -> str:
    if not t.defined:
        return f"n/a ({t.reason})"
    return fmt.interval(Interval(t.estimate, t.low, t.high, t.n_rows, t.n_seeds), signed=True)


def _descriptive(s: StreamSummary, figures: Mapping[str, str]) -> list[str]:
    md = [f"### {s.name}", ""]
    gaps = {g.arm: g for g in s.gaps}
    comparison = s.declarations.comparison_arm
    md += [f"Per arm: `{s.target}` over the shifts and the share of shifts whose recovery "
           "reached the threshold, mean over all shifts of all seeds with a 95% cluster "
           f"bootstrap interval over seeds; gap = `{s.target}` minus the matched fresh run's "
           "on the same seed and shift"
           + (f"; the last column is the arm's `{s.target}` minus the comparison arm "
              f"`{comparison}`'s (descriptive: only declared hypotheses are tests)"
              if comparison else "") + ".", ""]
    body = []
    for a in s.arms:
        g = gaps.get(a.name)
        ref = ("-" if g is None else (g.reference.reference_arm or "none"))
        row = [a.name, len(a.seeds), fmt.interval(a.adaptation), fmt.interval(a.reached),
               fmt.interval(g.mean if g else None, signed=True), ref]
        body.append(row + ([fmt.interval(a.versus_comparison, signed=True)]
                           if comparison else []))
    md += fmt.table(["arm", "seeds", s.target, "shifts reaching the threshold",
                     f"gap {s.target} [95% CI]", "fresh reference"]
                    + ([f"minus {comparison} [95% CI]"] if comparison else []), body)
    if "gap" in figures:
        md += [f"![gap per task]({figures['gap']})", ""]
        per_task = [g for g in s.gaps if g.per_task is not None]
        tasks = sorted({int(x) for g in per_task for x in g.per_task.x})
        rows = []
        for g in per_task:
            by = dict(zip((int(x) for x in g.per_task.x), g.per_task.y, strict=True))
            rows.append([g.arm] + [fmt.interval(by.get(k), signed=True) for k in tasks])
        md += [f"Gap of `{s.target}` per task index (mean over seeds [95% bootstrap interval "
               "over seeds]):", ""]
        md += fmt.table(["arm"] + [f"task {k}" for k in tasks], rows)
    if "returns" in figures:
        md += [f"![return curves]({figures['returns']})", ""]
    for st in s.stationary:
        windows = [fmt.interval(i) for i in st.windows.y]
        md += [f"**Stationary control** `{st.arm}` (one task for the whole run): mean return "
               "per window of one period, mean over seeds [95% interval]:", ""]
        md += fmt.table([f"window {int(x)}" for x in st.windows.x], [windows])
        md += [f"Converged (last {st.n_windows} windows within {fmt.number(st.tolerance)} of "
               f"each other, i.e. {s.declarations.stationary_tolerance:.0%} of the best "
               f"window): {st.converged_seeds} of {len(st.last_spread)} seeds -- "
               + ("the control is stable on one task." if st.converged else
                  "**not converged**: the control does not show that the agent is stable "
                  "without shifts, and no conclusion rests on it."), ""]
    return md


def _figure_links(figures: Mapping[str, str]) -> list[str]:
    """The exploratory figures: one per probed network, then the probe-vs-adaptation scatter."""
    md = [f"![{kind.removeprefix('probes_')} probes at each shift]({link})"
          for kind, link in figures.items() if kind.startswith("probes_")]
    if "scatter" in figures:
        md.append(f"![probe at init vs adaptation]({figures['scatter']})")
    return [line for link in md for line in (link, "")]


def _exploratory(s: StreamSummary, figures: Mapping[str, str]) -> list[str]:
    md = [f"### {s.name}", ""]
    ex = s.exploratory
    md += _figure_links(figures)
    if ex.effects:
        md += [f"Within-arm effects of probes on `{s.target}` that were not declared (same "
               "mixed model as the confirmatory tests, ranks; unadjusted p, no verdict):", ""]
        md += fmt.table(["arm", "probe", "effect [95% CI]", "p (unadjusted)", "rows/seeds"],
                        [[arm, _probe_label(c), fmt.effect(e), fmt.p_value(e.p),
                          f"{e.n_rows}/{e.n_seeds}"] for arm, c, e in ex.effects])
    if ex.probe_diffs:
        md += ["Probe minus the matched fresh run's probe (mean over shifts and seeds, seed-"
               "cluster bootstrap):", ""]
        md += fmt.table(["arm", "reference", "probe", "difference [95% CI]"],
                        [[arm, ref, _probe_label(c), fmt.interval(d, signed=True)]
                         for arm, ref, c, d in ex.probe_diffs])
    if ex.gap_trends:
        md += [f"Trend of the gap of `{s.target}` over the task index (mixed model, ranks; "
               "negative = the gap grows):", ""]
        md += fmt.table(["arm", "task-index coefficient [95% CI]", "p (unadjusted)"],
                        [[arm, fmt.effect(e), fmt.p_value(e.p)] for arm, e in ex.gap_trends])
    if not (ex.effects or ex.probe_diffs or ex.gap_trends or _figure_links(figures)):
        md += ["Nothing to explore (no probes joined to shifts, no gap).", ""]
    return md


def _methods(report: Report) -> list[str]:
    n = report.n_resamples
    return [
        "- **Unit of replication**: the seed (one run). Shifts of one run are never treated "
        "as independent.",
        f"- **Intervals**: 95% percentile cluster bootstrap over seeds ({n} resamples, seed "
        f"{report.seed}): seeds are drawn with replacement and each drawn seed brings all its "
        "shifts; a difference of two arms draws one set of seeds for both. Fewer than 3 seeds: "
        "no interval.",
        "- **Within-arm effects**: statsmodels MixedLM (REML) of `target ~ probe_within + "
        "probe_seed_mean + task_index + (1 | seed)` on mid-ranks (censored recoveries take the "
        "worst rank); the effect is the coefficient of the probe's deviation from its seed "
        "mean, with a Wald 95% interval. A probe that differs only between seeds has no "
        "within-seed effect. The lagged test regresses the target at shift k+1 on the probe "
        "and the target at shift k.",
        "- **Hypotheses**: declared in the study file (`[[hypotheses]]`), one family per "
        "stream, Holm's step-down rule at alpha 0.05 (a test that cannot be computed counts "
        "as p = 1). Verdict: supported (adjusted p < alpha, declared sign), opposite "
        "direction (adjusted p < alpha, other sign), not supported.",
        "- **Fresh reference**: the fresh run with the same resolved config apart from "
        "bookkeeping keys (names, paths, logging, probe settings, the reference); a declared "
        "reference that differs elsewhere is refused.",
        "- **Adaptation**: per shift from the episode log (recovery threshold and AUC as "
        "stated per stream under 'What was run'); steps to threshold are censored when the "
        "threshold is never reached.",
        "- **Stationary control**: converged when, for every seed, its last windows of one "
        "period agree within the declared tolerance (default 5% of the best window).",
        "",
    ]


def render(report: Report, figures: Mapping[str, Mapping[str, str]],
           commands: Mapping[str, str] | None = None,
           configs: Mapping[str, Mapping[str, str]] | None = None, regenerate: str = "",
           preface: Sequence[str] = ()) -> str:
    """The markdown document. ``figures[stream][kind]`` and ``configs[stream][run_id]`` are
    links relative to the document; ``commands[stream]`` the command that made the runs,
    ``regenerate`` the commands that make the document (from the runs, from the tables);
    ``preface`` lines go after the title (:mod:`.orientation`)."""
    commands = commands or {}
    md = [f"# {report.title}", "",
          "Generated by `plasticity report` (`experiments/reporting/`) from the runs' tables; "
          "do not edit by hand. Only the declared hypotheses get verdicts; everything else is "
          "descriptive or exploratory.", ""]
    md += list(preface)
    md += [SECTIONS[0], ""]
    if regenerate:
        md += ["This document and its figures are made by (first line: from the run "
               "directories; second line: from the tables written next to it, without them):",
               "", "```", regenerate, "```", ""]
    for s in report.streams:
        md += _what_was_run(s, commands)
    md += [SECTIONS[1], "",
           "Each stream's declared hypotheses (its study file's `[[hypotheses]]`) are one "
           "family; the verdict is in the declared direction.", ""]
    for s in report.streams:
        md += _confirmatory(s)
    md += [SECTIONS[2], ""]
    for s in report.streams:
        md += _descriptive(s, figures.get(s.name, {}))
    md += [SECTIONS[3], "",
           "Nothing in this section was declared before the analysis; it suggests what to "
           "declare next and is not evidence for or against the claim.", ""]
    for s in report.streams:
        md += _exploratory(s, figures.get(s.name, {}))
    md += [SECTIONS[4], ""] + answer(report.streams)
    md += [SECTIONS[5], ""]
    for s in report.streams:
        md += [f"### {s.name}", ""] + [f"- {x}" for x in s.limitations] + [""]
    md += [SECTIONS[6], ""] + _methods(report)
    md += [SECTIONS[7], ""]
    for s in report.streams:
        links = (configs or {}).get(s.name, {})
        body = [[run_id, f"[config]({links[run_id]})" if run_id in links else "-"]
                for run_id in sorted(links)] if links else []
        md += [f"### {s.name}", ""]
        if body:
            md += fmt.table(["run", "resolved config (reproduces it)"], body)
        else:
            md += [f"{s.n_runs} runs; see the tables written next to this report.", ""]
    return "\n".join(md).rstrip("\n") + "\n"

