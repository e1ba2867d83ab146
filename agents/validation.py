"""One validator for config values: types against annotations, and numeric ranges.

The agents' config dataclasses and mitigations (``agents.base.check_field_types``,
``agents.mitigations._common.check_number``) and the run-config loader
(``experiments.config.coerce``) all check through these functions; each caller only words
the error for its audience (a Python field, a TOML key). A leaf module: it imports nothing
of ours, so ``agents`` and ``experiments`` can both use it.
"""

from __future__ import annotations

import math
import numbers
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["Mismatch", "conform", "describe", "in_range", "range_text"]


class Mismatch(ValueError):
    """``value`` (found at ``where`` inside the checked value, e.g. ``"[1]"``; ``""`` for the
    value itself) does not fit; ``expected`` says what would; ``choices`` is set when the
    annotation is a ``Literal``."""

    def __init__(self, where: str, value: Any, expected: str,
                 choices: tuple[Any, ...] | None = None) -> None:
        super().__init__(f"{where or 'value'} = {value!r}: expected {expected}")
        self.where, self.value, self.expected, self.choices = where, value, expected, choices


def describe(tp: Any) -> str:
    """Plain words for the annotation ``tp`` ("an integer", "a number or None", ...)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (tuple, list, Sequence) or tp in (tuple, list):
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return f"a sequence of {len(args)} values ({', '.join(describe(a) for a in args)})"
        if not args:
            return "a sequence"
        return f"a sequence of {describe(args[0]).removeprefix('an ').removeprefix('a ')}s"
    if origin in (dict, Mapping) or tp is dict:
        return "a table"
    return {type(None): "None", bool: "true or false", int: "an integer", float: "a number",
            str: "a string"}.get(tp, getattr(tp, "__name__", str(tp)))


def conform(value: Any, tp: Any, where: str = "") -> Any:
    """``value`` checked against the annotation ``tp`` and converted where the annotation
    says so (a list for a tuple field becomes a tuple -- configs arrive from TOML --, an
    integer for a float field a float). Integers count as numbers, bools as neither; an
    annotation this does not model passes the value through (the field's own checks
    decide). Raises :class:`Mismatch` naming the innermost value that does not fit."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return conform(value, arg, where)
            except Mismatch:
                continue
        raise Mismatch(where, value, describe(tp))
    if origin is typing.Literal:
        if value not in args:
            raise Mismatch(where, value, describe(tp), choices=args)
        return value
    if tp is type(None):
        if value is not None:
            raise Mismatch(where, value, describe(tp))
        return None
    if tp is bool:
        if not isinstance(value, bool):
            raise Mismatch(where, value, describe(tp))
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise Mismatch(where, value, describe(tp))
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise Mismatch(where, value, describe(tp))
        return float(value)
    if origin in (tuple, list, Sequence) or tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise Mismatch(where, value, describe(tp))
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(value):
                raise Mismatch(where, value, describe(tp))
            return tuple(conform(v, a, f"{where}[{i}]")
                         for i, (v, a) in enumerate(zip(value, args, strict=True)))
        items = [conform(v, args[0] if args else Any, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise Mismatch(where, value, describe(tp))
        vt = args[1] if len(args) == 2 else Any
        return {str(k): conform(v, vt, f"{where}.{k}") for k, v in value.items()}
    if origin is not None or not isinstance(tp, type):
        return value
    if not isinstance(value, tp):
        raise Mismatch(where, value, describe(tp))
    return value


def range_text(*, low: float | None = None, high: float | None = None, low_open: bool = False,
               high_open: bool = False, integer: bool = False) -> str:
    """The interval in words, e.g. "a number in (0, inf]"."""
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    return (f"{'an integer' if integer else 'a number'} in {left}"
            f"{low if low is not None else '-inf'}, {high if high is not None else 'inf'}{right}")


def in_range(value: Any, *, low: float | None = None, high: float | None = None,
             low_open: bool = False, high_open: bool = False, integer: bool = False) -> bool:
    """Whether ``value`` is a finite number (an integer if ``integer``; never a bool) in the
    interval (open or closed at each end; ``None``: unbounded)."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
        return False
    if low is not None and not (value > low if low_open else value >= low):
        return False
    return high is None or (value < high if high_open else value <= high)
