"""The opening a newcomer reads (issue 28 point 2): which arm lost what against its fresh
reference in plain words, the default study's expected outcome, a missing interval stated
once instead of beside every value, and every shown column explained."""

from __future__ import annotations

import dataclasses
import re

import pytest

from experiments.reporting.orientation import COLUMNS, EXPECTED, HEADING, column_notes, document
from experiments.reporting.render import SECTIONS
from tests.experiments.test_reporting_report import _report, _tables


def _one_seed():
    data = _tables()
    keep = set(data.runs.loc[data.runs["seed"] == 0, "run_id"])
    for name in ("runs", "episodes", "shifts", "probes", "adaptation"):
        table = getattr(data, name)
        setattr(data, name, table[table["run_id"].isin(keep)].reset_index(drop=True))
    return data


@pytest.fixture(scope="module")
def one_seed():
    _, report = _report(_one_seed())
    return document(report, {})


def test_the_opening_says_which_arm_lost_what_before_anything_else(one_seed):
    head = one_seed.split(SECTIONS[0])[0]
    assert HEADING in head
    # continual adapts at 0.5, its fresh reference at 0.9: a gap of 0.4 on every task
    (sentence,) = re.findall(r"`continual` \(one network trained through every shift\) reached "
                             r"([0-9.]+) less `auc` per task than its fresh reference `fresh` "
                             r"\(([0-9.]+) against ([0-9.]+);", head)
    assert [float(v) for v in sentence] == pytest.approx([0.4, 0.5, 0.9], abs=0.02)
    assert "It trailed on 8 of 8 tasks" in head
    assert "is the loss of plasticity this testbed measures" in head
    assert "`l2` (one network trained through every shift, with l2) has no fresh run" in head
    assert "Expected outcome" not in head  # only the embedded default study states one


def test_a_missing_interval_is_said_once_not_beside_every_value(one_seed):
    assert "(no interval" not in one_seed
    (note,) = [line for line in one_seed.splitlines() if line.startswith("**Note on intervals**")]
    assert "because 1 seed(s) < 3" in note
    _, report = _report(_tables())  # 5 seeds: intervals everywhere, no note
    assert "Note on intervals" not in document(report, {})


def test_every_column_shown_is_explained(one_seed):
    body = one_seed.split(SECTIONS[0], 1)[1]
    headers = set()
    lines = body.splitlines()
    for line, below in zip(lines, lines[1:], strict=False):
        if line.startswith("| ") and below.startswith("|---"):
            headers |= set(line.strip("| ").split(" | "))
    notes = column_notes(body)
    confirmatory = {"id", "test", "declared sign", "estimate [95% CI]", "rows/seeds", "p",
                    "Holm p", "verdict"}  # the confirmatory section explains its own columns

    def explained(header):
        note = next((n for p, n in COLUMNS if re.fullmatch(p, header)), None)
        return note is not None and any(line.endswith(f": {note}.") for line in notes)

    missing = {h for h in headers - confirmatory if not explained(h)}
    assert not missing, missing
    assert "- **window 0** ... **window 8**: the stationary control's" in "\n".join(notes)
    notes = "\n".join(notes)
    assert "below 0, the arm adapts worse than a network that starts afresh" in notes


def test_the_default_study_states_its_expected_outcome():
    data = _one_seed()
    _, report = _report(data)
    report = dataclasses.replace(report, streams=tuple(
        dataclasses.replace(s, name="default") for s in report.streams))
    head = document(report, {}).split(SECTIONS[0])[0]
    assert EXPECTED["default"] in head
