"""The one exception type of :mod:`spectral` for bad input."""

from __future__ import annotations


class SpectralError(ValueError):
    """Bad input to a probe: the message names the bad value and the valid choices."""
