"""The plain-language answer: the declared verdicts, sorted by the question each one answers.

Every sentence is made from the confirmatory tests (:class:`~experiments.reporting.hypotheses.
Outcome`) of the streams; nothing here is a new test or a new number. A declared hypothesis
answers one of the study's questions, read off its declared fields (:func:`question_of`):

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

A question's answer lists, per stream, the verdict of each of its tests with the estimate;
"supported" means Holm-adjusted p < 0.05 in the declared direction, so "not supported" is
absence of evidence, not evidence of absence.
"""

from __future__ import annotations

from collections.abc import Sequence

from experiments.reporting import format as fmt
from experiments.reporting.hypotheses import NOT_SUPPORTED, OPPOSITE, SUPPORTED, Outcome
from experiments.reporting.inference import Interval

__all__ = ["QUESTIONS", "question_of", "answer"]

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


def question_of(outcome: Outcome, comparison_arm: str | None, oracle_arms: Sequence[str]) -> str:
    """The question a test answers, from its hypothesis's declared fields."""
    h = outcome.hypothesis
    probe = h.probe or ""
    if h.kind == "within_arm":
        if probe.startswith("hessian/"):
            return "collapse"
        if probe.startswith("features/"):
            return "features"
    if h.kind == "dose_response":
        return "er"
    if outcome.arm in oracle_arms and h.kind == "between_arms":
        return "oracle"
    if probe.startswith("trainability/") and outcome.arm == comparison_arm:
        return "trainability"
    if h.kind == "between_arms" and h.probe is None:
        return "mitigation"
    return "other"


def _estimate(t: Outcome) -> str:
    if not t.defined:
        return f"not testable: {t.reason}" if t.reason else "not testable"
    text = fmt.interval(Interval(t.estimate, t.low, t.high, t.n_rows, t.n_seeds), signed=True)
    return f"{text}, {t.n_rows} rows / {t.n_seeds} seeds, Holm p {fmt.p_value(t.p_holm)}"


def _tally(tests: Sequence[tuple[str, Outcome]]) -> str:
    """``supported in 2 of 5 tests (A, B); opposite direction in 1 (C); not supported: 2``."""
    parts = []
    for verdict in (SUPPORTED, OPPOSITE, NOT_SUPPORTED):
        where = [f"{stream} {t.hypothesis.id}" + (" lagged" if t.variant == "lagged" else "")
                 for stream, t in tests if t.verdict == verdict]
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
          "section); the sentence under each test is its declared claim and its verdict. "
          "\"Not supported\" means no evidence at Holm-adjusted p < 0.05 either way -- it is "
          "not evidence that the effect is absent.", ""]
    if not any(by_question.values()):
        return md + ["No hypothesis is declared: there is no confirmatory answer.", ""]
    for q, tests in by_question.items():
        if not tests:
            continue
        md += [f"**{QUESTIONS[q]}** {_tally(tests)}", ""]
        for stream, t in tests:
            h = t.hypothesis
            claim = h.statement or h.describe()
            variant = {"lagged": " (shift k predicts shift k+1)", "effect": ""}.get(t.variant, "")
            md.append(f"- {stream} {h.id}{variant}, {t.arm}: {claim} -- **{t.verdict}** "
                      f"({_estimate(t)}).")
        md.append("")
    return md
