"""Shared formatting of numbers, intervals and markdown tables (one style for every report)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from experiments.reporting.inference import Effect, Interval

__all__ = ["number", "interval", "effect", "p_value", "table"]


def number(value: Any, digits: int = 3) -> str:
    """``digits`` significant digits; ``-`` for None/NaN; integers as integers."""
    if value is None:
        return "-"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return str(int(value))
    value = float(value)
    if math.isnan(value):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}g}"


def _signed(value: float, digits: int) -> str:
    text = number(value, digits)
    return text if text.startswith(("-", "inf")) or text == "-" else "+" + text


def interval(i: Interval | None, digits: int = 3, signed: bool = False) -> str:
    """``0.42 [0.10, 0.70]``; ``0.42 (no interval: reason)``; ``-`` when nothing."""
    if i is None or not math.isfinite(i.estimate):
        return "-"
    f = (lambda v: _signed(v, digits)) if signed else (lambda v: number(v, digits))
    if not i.defined:
        return f"{f(i.estimate)} (no interval: {i.reason})" if i.reason else f(i.estimate)
    return f"{f(i.estimate)} [{f(i.low)}, {f(i.high)}]"


def effect(e: Effect, digits: int = 3) -> str:
    """``+0.31 [+0.10, +0.52]`` or ``n/a (reason)``."""
    if not e.defined:
        return f"n/a ({e.reason})"
    return f"{_signed(e.coef, digits)} [{_signed(e.low, digits)}, {_signed(e.high, digits)}]"


def p_value(p: float) -> str:
    if not math.isfinite(p):
        return "-"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def table(header: Sequence[str], body: Sequence[Sequence[Any]]) -> list[str]:
    """A markdown table (``|`` inside cells replaced by ``/``) and a blank line."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "/") for c in row) + " |" for row in body]
    return lines + [""]
