"""The one error type for user mistakes in ``envs``."""

from __future__ import annotations

__all__ = ["EnvError"]


class EnvError(ValueError):
    """A bad argument to an ``envs`` function: the message names the bad value and the valid choices."""


def choices(values) -> str:
    """Format valid choices for an error message: ``'a', 'b', 'c'``."""
    return ", ".join(repr(v) for v in values)
