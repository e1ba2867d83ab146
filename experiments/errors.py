"""Errors for user mistakes in configs, sweep files and command lines."""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad config key, value or file; the message names it and the valid choices."""


class RunDiverged(RuntimeError):
    """A run stopped because a loss or parameter became NaN/inf (see ``DIVERGED``)."""
