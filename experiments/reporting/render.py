"""Markdown from a :class:`~experiments.reporting.summary.Report` (no statistic computed here).

The document depends on the summary only -- no path, clock or machine state -- so the same
tables give the same bytes. Sections (:data:`SECTIONS`, in order): the answer in plain
language (the declared verdicts sorted by question, :mod:`experiments.reporting.answer`);
what was run; the confirmatory results (declared hypotheses, the only verdicts); the
hypotheses shared across streams (random-effects pooled, descriptive); descriptive results
with seed-level intervals; exploratory results (labelled, never verdicts); verdicts that
changed from a previous edition's report (when one is given); limitations; methods (with
the analysis stack's versions); the runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from experiments.reporting import format as fmt
from experiments.reporting.answer import answer
from experiments.reporting.frame import parse_probe_column
from experiments.reporting.hypotheses import LAGGED_DROPPED
from experiments.reporting.inference import Interval
from experiments.reporting.outcome import INCONCLUSIVE, Outcome
from experiments.reporting.summary import Report, StreamSummary

__all__ = ["SECTIONS", "ANSWER", "render", "changed_verdicts"]

ANSWER = "## Answer in plain language (from the declared verdicts only)"
SECTIONS = (
    ANSWER,
    "## What was run",
    "## Confirmatory results (declared hypotheses)",
    "## Hypotheses shared across streams (random-effects pooled)",
    "## Descriptive results (seed-level intervals)",
    "## Exploratory results (not declared: no verdicts)",
    "## Verdicts changed from the previous report",
    "## Limitations",
    "## Methods",
    "## Runs",
)
VARIANTS = {"effect": "within seeds, beyond the task index",
            "difference": "difference of seed means", "trend": "trend over the task index",
            "dose": "dose-response over the arms (run means)",
            "contrast": "declared contrast of the arms (run means)"}


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
        md += [f"{len(s.tests)} tests in this stream's family (Holm's rule, alpha 0.05). "
               "Seeds: the seeds that entered the test (paired: shared seeds of the arm and "
               "the one it is compared with, of each arm's seeds); detectable: the |effect| "
               "the test finds with 80% power at alpha 0.05 (two-sided), in the test's units.",
               ""]
        body = []
        for t in s.tests:
            h = t.hypothesis
            body.append([h.id, t.arm, VARIANTS.get(t.variant, t.variant), h.sign,
                         _estimate(t), t.seeds or "-", t.n_rows, t.n_censored or "-",
                         fmt.p_value(t.p), fmt.p_value(t.p_holm), fmt.number(t.detectable),
                         fmt.number(h.sesoi), f"**{t.verdict}**"])
        md += fmt.table(["id", "arm", "test", "declared sign", "estimate [95% CI]", "seeds",
                         "rows", "censored", "p", "Holm p", "detectable", "sesoi", "verdict"],
                        body)
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


def _pooled(report: Report) -> list[str]:
    """Each hypothesis id several streams declare: their tests and the pooled estimate."""
    md = [SECTIONS[3], ""]
    if not report.pooled:
        return md + ["No hypothesis id is declared by more than one stream.", ""]
    md += ["A hypothesis id declared by several study files: each stream's test and the "
           "DerSimonian-Laird random-effects estimate over them, with a (modified) "
           "Hartung-Knapp t(k-1) 95% interval, the between-stream variance tau^2 and "
           "I^2 (the share of the spread that is heterogeneity). Descriptive: the verdicts "
           "are the streams' own. Streams measure a hypothesis on their own networks and "
           "scales; where those differ (a large I^2), the pooled number is a summary of "
           "different quantities, not one effect.", ""]
    for pt in report.pooled:
        body = [[stream, t.arm, t.hypothesis.quantity, _estimate(t), t.verdict]
                for stream, t in pt.tests]
        p = pt.pooled
        pooled = (f"{fmt.interval(Interval(p.estimate, p.low, p.high, 0, p.k), signed=True)}, "
                  f"k = {p.k}, tau^2 = {fmt.number(p.tau2)}, I^2 = {p.i2:.0%}, "
                  f"p {fmt.p_value(p.p)}" if p.k >= 2 else "not computable (fewer than two "
                  "defined tests)")
        h = pt.tests[0][1].hypothesis
        what = f"`{h.probe or h.target}`" + (f" ({h.phase})" if h.probe else "")
        md += [f"**{pt.id}** ({VARIANTS.get(pt.variant, pt.variant)} of {what}): pooled "
               f"{pooled}.", ""]
        md += fmt.table(["stream", "arm", "quantity", "estimate [95% CI]", "verdict"], body)
    return md


#: Why a verdict can differ from the second edition's engine, per test variant.
_CHANGE_REASONS = {
    "difference": "the percentile seed bootstrap gave way to a paired t on the shared seeds "
                  "(Welch where fewer are shared), which covers 95% at 5-10 seeds",
    "effect": "the within-seed model now centres the task index on each seed, ranks within "
              "seeds and uses CR2 standard errors with t(G-1) instead of a Wald z",
    "trend": "the trend is now the within-seed slope with CR2 standard errors and t(G-1) "
             "instead of a Wald z",
    "dose": "the dose-response now takes the run as the unit (dose is constant within a run) "
            "instead of counting each shift as independent",
    "contrast": "the dose-response is now a declared contrast of run means",
}


def changed_verdicts(report: Report, previous: dict) -> list[tuple[str, str, str, str, str]]:
    """(stream, test, previous verdict, new verdict, why) for each test whose verdict moved
    (``not supported`` reads as ``inconclusive`` and ``opposite direction`` as
    ``opposite``: renamed, not changed) and each previous test that is gone."""
    rename = {"not supported": INCONCLUSIVE, "opposite direction": "opposite"}
    out = []
    for s in report.streams:
        old = (previous.get("tests") or {}).get(s.name, {})
        now = {f"{t.hypothesis.id} | {t.arm} | {t.variant}": t for t in s.tests}
        for key in sorted(old):
            before = rename.get(old[key]["verdict"], old[key]["verdict"])
            t = now.get(key)
            if t is None:
                why = LAGGED_DROPPED.split(":")[0] if key.endswith("| lagged") else (
                    "the test is no longer declared")
                out.append((s.name, key, old[key]["verdict"], "(no test)",
                            "dropped: Nickell bias (see Methods)" if key.endswith("| lagged")
                            else why))
            elif t.verdict != before:
                why = _CHANGE_REASONS.get(t.variant, "the method changed")
                paired, _, of = t.seeds.partition(" paired of ")
                if of and len(set(of.split()[0].split("/"))) > 1:
                    why += (f" (only the {paired} shared seeds enter; the other arm's "
                            "unshared seeds are left out)")
                if t.verdict == "inconclusive":
                    why += (f"; now {_estimate(t)}, Holm p {fmt.p_value(t.p_holm)} "
                            f"(was {old[key]['estimate']}, Holm p {old[key]['p_holm']})")
                else:
                    why += (f"; now {_estimate(t)}, Holm p {fmt.p_value(t.p_holm)} "
                            f"(was Holm p {old[key]['p_holm']})")
                out.append((s.name, key, old[key]["verdict"], t.verdict, why))
    return out


def _changes(report: Report, previous: dict | None) -> list[str]:
    if previous is None:
        return []
    rows = changed_verdicts(report, previous)
    md = [SECTIONS[6], "",
          f"Against {previous.get('edition', 'the previous report')}: the same tables, the "
          "new engine. A previous \"not supported\" reads as \"inconclusive\" and "
          "\"opposite direction\" as \"opposite\" (renamed, not changed); every other "
          "difference is listed. Every lagged test is gone (see Methods), which also makes "
          "each stream's Holm family smaller.", ""]
    moved = [r for r in rows if r[3] != "(no test)"]
    if not moved:
        md += ["No verdict of a test that is still run changed.", ""]
    else:
        md += fmt.table(["stream", "test (id / arm / variant)", "previous", "now", "why"],
                        [list(r) for r in moved])
    dropped = [r for r in rows if r[3] == "(no test)"]
    if dropped:
        md += [f"Dropped: {len(dropped)} lagged test(s) (previous verdicts: "
               + ", ".join(f"{r[0]} {r[1].split(' | ')[0]} {r[2]}" for r in dropped) + ").",
               ""]
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
           "reached the threshold, mean over seeds of each seed's mean over its shifts, with a "
           f"95% t interval over the seed means; gap = `{s.target}` minus the matched fresh run's "
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
        md += [f"Gap of `{s.target}` per task index (mean over seeds [95% t interval over "
               "seeds]):", ""]
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
        md += [f"Within-arm effects of probes on `{s.target}` that were not declared (the same "
               "within-seed slope as the confirmatory tests, ranks; unadjusted p, no verdict):", ""]
        md += fmt.table(["arm", "probe", "effect [95% CI]", "p (unadjusted)", "rows/seeds"],
                        [[arm, _probe_label(c), fmt.effect(e), fmt.p_value(e.p),
                          f"{e.n_rows}/{e.n_seeds}"] for arm, c, e in ex.effects])
    if ex.probe_diffs:
        md += ["Probe minus the matched fresh run's probe (seed means, paired t on the shared "
               "seeds):", ""]
        md += fmt.table(["arm", "reference", "probe", "difference [95% CI]"],
                        [[arm, ref, _probe_label(c), fmt.interval(d, signed=True)]
                         for arm, ref, c, d in ex.probe_diffs])
    if ex.gap_trends:
        md += [f"Trend of the gap of `{s.target}` over the task index (within-seed slope, "
               "ranks; negative = the gap grows):", ""]
        md += fmt.table(["arm", "task-index coefficient [95% CI]", "p (unadjusted)"],
                        [[arm, fmt.effect(e), fmt.p_value(e.p)] for arm, e in ex.gap_trends])
    if not (ex.effects or ex.probe_diffs or ex.gap_trends or _figure_links(figures)):
        md += ["Nothing to explore (no probes joined to shifts, no gap).", ""]
    return md


def _methods(report: Report) -> list[str]:
    stack = "; ".join(report.versions) or "not recorded"
    return [
        "- **Unit of replication**: the seed (one run). Shifts of one run are never treated "
        "as independent.",
        "- **Intervals**: 95% t intervals on seed-level means (each seed's mean over its "
        "shifts; G seeds, G - 1 df); fewer than 3 seeds: no interval. A difference of two "
        "arms is a paired t on the seeds both share (the same seed number gives both arms "
        "the same environment draws; the table says e.g. `5 paired of 5/10`), or Welch's t "
        "when fewer than 3 are shared. Measured coverage on simulated studies with the "
        "second edition's variance components: 95% at 5 and 10 seeds (the percentile "
        "cluster bootstrap of the earlier reports: 84% at 5 seeds, 89-90% at 10; "
        "benchmarks/RESULTS.md).",
        "- **Within-arm effects and trends**: the within-seed slope -- the target and every "
        "covariate (the probe, the task index) centred on their seed means, least squares "
        "(the fixed-effects estimator, equal to the Mundlak random-intercept model's within "
        "coefficient), CR2 cluster-robust standard error with the seed as the cluster, t on "
        "G - 1 df. On the rank scale the target and the probe are mid-ranks within each seed "
        "(divided by the seed's rows), so the slope is about a within-seed rank correlation. "
        "A probe that differs only between seeds has no within-seed effect.",
        "- **Dose-response**: each run's mean of the quantity (on the rank scale: of its "
        "ranks over the pooled rows) regressed on its arm's dose, t on runs - 2 df -- the "
        "run is the unit, since the dose is constant within it; or a declared contrast of "
        "the arms' means of run means (Welch-Satterthwaite df) for non-monotone doses.",
        f"- **Lagged tests**: {LAGGED_DROPPED}",
        "- **Censored values**: a recovery that never reached its threshold takes the worst "
        "rank (dropped on the raw scale). A probe value flagged censored (`K_censored`, a "
        "lower bound) enters at its bound, tied with equal values on the rank scale; tables "
        "written before the flag have NaN for an eps-rank below its estimator's resolution, "
        "which enters censored at the same estimator's eps-rank at the next larger relative "
        "eps it resolves (a lower bound). Each test's count is printed.",
        "- **Hypotheses**: declared in the study file (`[[hypotheses]]`), one family per "
        "stream, Holm's step-down rule at alpha 0.05 (a test that cannot be computed counts "
        "as p = 1). Verdicts: supported (adjusted p < alpha, declared sign), opposite "
        "(adjusted p < alpha, other sign), equivalent (a declared `sesoi`, and the test's "
        "90% interval inside +-sesoi: TOST at 5%), inconclusive (none of these; the "
        "detectable effect says what the test could have found).",
        "- **Fresh reference**: the fresh run with the same resolved config apart from "
        "bookkeeping keys (names, paths, logging, probe settings, the reference); a declared "
        "reference that differs elsewhere is refused.",
        "- **Adaptation**: per shift from the episode log (recovery threshold and AUC as "
        "stated per stream under 'What was run'); steps to threshold are censored when the "
        "threshold is never reached.",
        "- **Stationary control**: converged when, for every seed, its last windows of one "
        "period agree within the declared tolerance (default 5% of the best window).",
        f"- **Analysis stack**: {stack}. Every estimator is closed form (no resampling, no "
        "optimiser), so the printed numbers do not depend on a random seed or a solver.",
        "",
    ]


def _sections_after_answer(report: Report, figures: Mapping[str, Mapping[str, str]],
                           commands: Mapping[str, str],
                           configs: Mapping[str, Mapping[str, str]] | None, regenerate: str,
                           previous: dict | None) -> list[str]:
    md = [SECTIONS[1], ""]
    if regenerate:
        md += ["This document and its figures are made by (first line: from the run "
               "directories; second line: from the tables written next to it, without them):",
               "", "```", regenerate, "```", ""]
    for s in report.streams:
        md += _what_was_run(s, commands)
    md += [SECTIONS[2], "",
           "Each stream's declared hypotheses (its study file's `[[hypotheses]]`) are one "
           "family; the verdict is in the declared direction.", ""]
    for s in report.streams:
        md += _confirmatory(s)
    if len(report.streams) > 1:
        md += _pooled(report)
    md += [SECTIONS[4], ""]
    for s in report.streams:
        md += _descriptive(s, figures.get(s.name, {}))
    md += [SECTIONS[5], "",
           "Nothing in this section was declared before the analysis; it suggests what to "
           "declare next and is not evidence for or against the claim.", ""]
    for s in report.streams:
        md += _exploratory(s, figures.get(s.name, {}))
    md += _changes(report, previous)
    md += [SECTIONS[7], ""]
    for s in report.streams:
        md += [f"### {s.name}", ""] + [f"- {x}" for x in s.limitations] + [""]
    md += [SECTIONS[8], ""] + _methods(report)
    md += [SECTIONS[9], ""]
    for s in report.streams:
        links = (configs or {}).get(s.name, {})
        body = [[run_id, f"[config]({links[run_id]})" if run_id in links else "-"]
                for run_id in sorted(links)] if links else []
        md += [f"### {s.name}", ""]
        if body:
            md += fmt.table(["run", "resolved config (reproduces it)"], body)
        else:
            md += [f"{s.n_runs} runs; see the tables written next to this report.", ""]
    return md


def render(report: Report, figures: Mapping[str, Mapping[str, str]],
           commands: Mapping[str, str] | None = None,
           configs: Mapping[str, Mapping[str, str]] | None = None, regenerate: str = "",
           previous: dict | None = None, preface: Sequence[str] = ()) -> str:
    """The markdown document. ``figures[stream][kind]`` and ``configs[stream][run_id]`` are
    links relative to the document; ``commands[stream]`` the command that made the runs,
    ``regenerate`` the commands that make the document (from the runs, from the tables),
    ``previous`` a previous report's verdicts (``previous_verdicts.json``) to list the
    verdicts that changed; ``preface`` lines go after the title (:mod:`.orientation`)."""
    md = [f"# {report.title}", "",
          "Generated by `plasticity report` (`experiments/reporting/`) from the runs' tables; "
          "do not edit by hand. Only the declared hypotheses get verdicts; everything else is "
          "descriptive or exploratory.", ""]
    md += list(preface)
    md += [ANSWER, ""] + answer(report.streams)
    md += _sections_after_answer(report, figures, commands or {}, configs, regenerate,
                                 previous)
    return "\n".join(md).rstrip("\n") + "\n"
