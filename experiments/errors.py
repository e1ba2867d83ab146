"""Errors for user mistakes in configs, sweep files and command lines."""

from __future__ import annotations


class ConfigError(ValueError):
    """A bad config key, value or file; the message names it and the valid choices."""


class RunDiverged(RuntimeError):
    """A run stopped because it diverged: NaN/inf, or a parameter-norm blow-up (``DIVERGED``)."""
