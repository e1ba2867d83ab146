"""The one validator (agents/validation.py) that agents' configs and run configs share."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pytest

from agents.base import AgentError, check_field_types
from agents.validation import Mismatch, conform, describe, in_range, range_text
from experiments.config import coerce
from experiments.errors import ConfigError


def test_conform_checks_converts_and_names_the_innermost_value():
    assert conform([64, 64], tuple[int, ...]) == (64, 64)
    assert conform(3, float) == 3.0 and isinstance(conform(3, float), float)
    assert conform(np.int64(5), int) == 5 and type(conform(np.int64(5), int)) is int
    assert conform(None, float | None) is None
    assert conform({"a": [1]}, dict[str, tuple[int, ...]]) == {"a": (1,)}
    assert conform([0.9, 1], tuple[float, float]) == (0.9, 1.0)
    with pytest.raises(Mismatch) as bad:
        conform([64, "a"], tuple[int, ...])
    assert (bad.value.where, bad.value.value, bad.value.expected) == ("[1]", "a", "an integer")
    for value, tp in [(True, int), (True, float), ("1", float), (1, bool), ([1], tuple[int, int]),
                      (1.5, int), ("x", float | None), ([1, 2], dict)]:
        with pytest.raises(Mismatch):
            conform(value, tp)
    with pytest.raises(Mismatch) as bad:
        conform("zero", Literal["keep", "reset"])
    assert bad.value.choices == ("keep", "reset")
    assert describe(float | None) == "a number or None"
    assert describe(tuple[int, ...]) == "a sequence of integers"


@dataclass
class _Fields:
    n: int = 1
    lr: float = 1e-3
    widths: tuple[int, ...] = (64,)
    clip: float | None = None


@pytest.mark.parametrize("field, value", [
    ("n", 3), ("n", "3"), ("n", True), ("n", 2.5), ("lr", 1), ("lr", "fast"), ("lr", None),
    ("widths", [32, 32]), ("widths", (32, "a")), ("widths", 32), ("clip", None), ("clip", 0.5),
    ("clip", "off"),
])
def test_agents_and_run_configs_accept_and_refuse_the_same_values(field, value):
    hint = {"n": int, "lr": float, "widths": tuple[int, ...], "clip": float | None}[field]
    try:
        check_field_types(_Fields, {field: value})
        agent_ok = True
    except AgentError as err:
        agent_ok = False
        assert str(err).startswith(f"invalid {field}={value!r} for _Fields; expected ")
    try:
        coerce(value, hint, f"agent.{field}")
        config_ok = True
    except ConfigError as err:
        config_ok = False
        assert str(err).startswith(f"agent.{field}")
    assert agent_ok == config_ok


def test_in_range_is_an_interval_of_finite_numbers():
    assert in_range(0.0, low=0.0) and not in_range(0.0, low=0.0, low_open=True)
    assert in_range(1.0, high=1.0) and not in_range(1.0, high=1.0, high_open=True)
    assert in_range(np.int32(3), low=1, integer=True) and not in_range(3.0, integer=True)
    for bad in (True, math.nan, math.inf, "1", None):
        assert not in_range(bad)
    assert range_text(low=0, low_open=True, integer=True) == "an integer in (0, inf]"
