"""The plain-language answer: each declared test lands under the question it answers, and
the tally repeats the verdicts of the confirmatory section, nothing else."""

from __future__ import annotations

import math
from types import SimpleNamespace

from experiments.reporting.answer import QUESTIONS, answer, question_of
from experiments.reporting.declarations import Declarations, Hypothesis
from experiments.reporting.outcome import INCONCLUSIVE, OPPOSITE, SUPPORTED, Outcome


def _outcome(hid: str, kind: str, arm: str, verdict: str, probe: str | None = None,
             target: str | None = "mean_return", **kw) -> Outcome:
    h = Hypothesis(hid, kind, "+", (arm,), target=target, probe=probe,
                   network="q" if probe else None, **kw)
    return Outcome(h, arm, "difference", 0.1, 0.05, 0.2, 0.01, 40, 10, "m", se=0.05, df=9,
                   p_holm=0.02, verdict=verdict, detectable=0.15)


CASES = [
    ("collapse", _outcome("A", "within_arm", "continual", SUPPORTED, "hessian/eps_rank", "auc")),
    ("features", _outcome("B", "within_arm", "continual", INCONCLUSIVE,
                          "features/hidden.1/effective_rank", "auc")),
    ("trainability", _outcome("C", "between_arms", "continual", OPPOSITE,
                              "trainability/random_final_ratio", None, versus="fresh")),
    ("trainability", _outcome("D", "trend", "continual", INCONCLUSIVE,
                              "trainability/random_final_ratio", None)),
    ("oracle", _outcome("E", "between_arms", "head_reset", SUPPORTED, versus="continual")),
    ("oracle", _outcome("F", "between_arms", "head_reset", INCONCLUSIVE,
                        "trainability/random_final_ratio", None, versus="continual")),
    ("er", _outcome("G", "dose_response", "l2_er", SUPPORTED, doses=(1.0,))),
    ("mitigation", _outcome("H", "between_arms", "l2", INCONCLUSIVE, versus="continual")),
    ("other", _outcome("I", "trend", "continual", INCONCLUSIVE)),
]


def test_each_declared_test_answers_the_question_its_fields_name():
    for question, outcome in CASES:
        assert question_of(outcome, "continual", ("head_reset",)) == question, outcome.hypothesis.id


def test_answer_lists_every_test_once_with_its_verdict_and_tallies_them():
    decl = Declarations(comparison_arm="continual", oracle_arms=("head_reset",))
    streams = [SimpleNamespace(name="s", declarations=decl, tests=tuple(o for _, o in CASES))]
    text = "\n".join(answer(streams))
    for question in ("collapse", "trainability", "oracle", "er", "mitigation", "other"):
        assert f"**{QUESTIONS[question]}**" in text
    assert ("**Has continual training cost the network its trainability?** 2 test(s): "
            "opposite in 1 (s C); inconclusive in 1 (s D).") in text
    assert text.count("- s ") == len(CASES)
    assert "- s A, continual:" in text and "-- **supported (+0.1 [+0.05, +0.2], Holm p 0.020)" in text
    # the fixed words of each verdict; an inconclusive one names what it could detect
    assert "-- **the opposite of the claim (" in text
    assert "-- **no evidence either way at this power (detectable |r| (within-seed ranks) ≈" in text
    nan = Outcome(CASES[0][1].hypothesis, "continual", "effect", math.nan, math.nan, math.nan,
                  math.nan, 2, 2, "m", reason="2 seed(s) < 3")
    one = [SimpleNamespace(name="s", declarations=decl, tests=(nan,))]
    assert "not testable: 2 seed(s) < 3" in "\n".join(answer(one))
    none = [SimpleNamespace(name="s", declarations=decl, tests=())]
    assert "No hypothesis is declared" in "\n".join(answer(none))
