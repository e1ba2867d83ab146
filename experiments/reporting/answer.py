"""The plain-language answer: the declared verdicts, sorted by the question each one answers.

Every sentence is made from the confirmatory tests (:class:`~experiments.reporting.outcome.
Outcome`) of the streams, with fixed words per verdict (:data:`WORDS`); nothing here is a new
test or a new number. A declared hypothesis answers one of the study's questions, read off its
declared fields by its kind (:attr:`experiments.reporting.kinds.Kind.question`):

* **collapse** -- does a collapsed spectrum at new-task init predict slower adaptation
  (``within_arm``, a ``hessian/`` probe)?
* **features** -- does low feature rank / many dormant units predict it (``within_arm``, a
  ``features/`` probe)?
* **trainability** -- has the continually trained network lost trainability (a
  ``trainability/`` probe in the comparison arm, ``between_arms`` or ``trend``)?
* **oracle** -- does an oracle that restores exploration or output layers (an arm of
  ``[report] oracle_arms``) restore return, and trainability?
* **er** -- does a larger ER dose raise feature rank (manipulation check) and adaptation
  (``dose_response``)?
* **mitigation** -- does a (non-oracle) mitigation adapt better than the comparison arm?

The same lines are the README's study summary (:func:`readme_block`, between
:data:`BLOCK_START` and :data:`BLOCK_END`), so the README says exactly what the report says.
"""

from __future__ import annotations

from collections.abc import Sequence

from experiments.reporting import format as fmt
from experiments.reporting.inference import Interval
from experiments.reporting.kinds import KINDS
from experiments.reporting.outcome import (
    EQUIVALENT,
    INCONCLUSIVE,
    OPPOSITE,
    SUPPORTED,
    VERDICTS,
    Outcome,
)

__all__ = ["QUESTIONS", "WORDS", "question_of", "answer", "verdict_line", "readme_block",
           "replace_block", "BLOCK_START", "BLOCK_END"]

#: Question id -> the question as the answer section asks it (in this order).
QUESTIONS = {
    "collapse": "Does spectral collapse at new-task initialisation predict slower adaptation?",
    "features": "Does a collapsed representation (feature rank, dormant units) predict it?",
    "trainability": "Has continual training cost the network its trainability?",
    "oracle": "Do oracles that restore exploration or the output layers restore return "
              "(and trainability)?",
    "er": "Does effective-rank regularisation act through feature rank (dose-response)?",
    "mitigation": "Do the other mitigations adapt better?",
    "other": "Other declared hypotheses",
}
#: The fixed words of each verdict (the estimate and its detail follow in parentheses).
WORDS = {
    SUPPORTED: "supported",
    OPPOSITE: "the opposite of the claim",
    EQUIVALENT: "equivalent: no effect as large as the declared smallest effect of interest",
    INCONCLUSIVE: "no evidence either way at this power",
}
BLOCK_START = "<!-- results-summary:start -->"
BLOCK_END = "<!-- results-summary:end -->"


def question_of(outcome: Outcome, comparison_arm: str | None, oracle_arms: Sequence[str]) -> str:
    """The question a test answers, from its hypothesis's declared fields."""
    h = outcome.hypothesis
    return KINDS[h.kind].question(h, outcome.arm, comparison_arm, oracle_arms)


def _estimate(t: Outcome) -> str:
    return fmt.interval(Interval(t.estimate, t.low, t.high, t.n_rows, t.n_seeds), signed=True)


def verdict_line(t: Outcome) -> str:
    """The verdict in its fixed words with the numbers that back it."""
    words = WORDS[t.verdict]
    if not t.defined:
        return f"{words} (not testable: {t.reason or 'undefined'})"
    seeds = f"{t.seeds}, " if t.seeds else ""
    detail = f"{_estimate(t)}, {seeds}Holm p {fmt.p_value(t.p_holm)}"
    if t.verdict == INCONCLUSIVE:
        unit = KINDS[t.hypothesis.kind].unit(t.hypothesis)
        return f"{words} (detectable {unit} ≈ {fmt.number(t.detectable, 2 if abs(t.detectable) < 100 else 3)}; {detail})"
    if t.verdict == EQUIVALENT:
        return f"{words} (±{fmt.number(t.hypothesis.sesoi)}; {detail})"
    return f"{words} ({detail})"


def _tally(tests: Sequence[tuple[str, Outcome]]) -> str:
    """``3 test(s): supported in 1 (A H1); no evidence either way in 2 (B H2, C H2).``"""
    parts = []
    for verdict in VERDICTS:
        where = [f"{stream} {t.hypothesis.id}" for stream, t in tests if t.verdict == verdict]
        if where:
            parts.append(f"{verdict} in {len(where)} ({', '.join(where)})")
    return f"{len(tests)} test(s): " + "; ".join(parts) + "."


def answer(streams: Sequence) -> list[str]:
    """The markdown lines of the answer section for ``streams``
    (:class:`~experiments.reporting.summary.StreamSummary`)."""
    by_question: dict[str, list[tuple[str, Outcome]]] = {q: [] for q in QUESTIONS}
    for s in streams:
        d = s.declarations
        for t in s.tests:
            by_question[question_of(t, d.comparison_arm, d.oracle_arms)].append((s.name, t))
    md = ["Each question below is answered only by the declared tests (the confirmatory "
          "section), in fixed words per verdict: supported / the opposite of the claim "
          "(Holm-adjusted p < 0.05) / equivalent (inside the declared smallest effect of "
          "interest) / no evidence either way at this power -- which is not evidence that "
          "the effect is absent: the detectable effect says how large it would have had to "
          "be to be found with 80% power.", ""]
    if not any(by_question.values()):
        return md + ["No hypothesis is declared: there is no confirmatory answer.", ""]
    for q, tests in by_question.items():
        if not tests:
            continue
        md += [f"**{QUESTIONS[q]}** {_tally(tests)}", ""]
        for stream, t in tests:
            h = t.hypothesis
            claim = h.statement or h.describe()
            md.append(f"- {stream} {h.id}, {t.arm}: {claim} -- **{verdict_line(t)}**.")
        md.append("")
    return md


def readme_block(streams: Sequence) -> str:
    """The README's study summary: the answer's lines between the two markers."""
    lines = answer(streams)
    while lines and not lines[-1]:
        lines = lines[:-1]
    return "\n".join([BLOCK_START, *lines, BLOCK_END])


def replace_block(text: str, block: str) -> str | None:
    """``text`` with its marked block replaced by ``block``; None without both markers."""
    start, end = text.find(BLOCK_START), text.find(BLOCK_END)
    if start < 0 or end < start:
        return None
    return text[:start] + block + text[end + len(BLOCK_END):]
