"""Shared helpers for the envs tests."""

from __future__ import annotations

import warnings

import pytest


@pytest.fixture(autouse=True)
def _quiet_gymnasium_warnings():
    # gymnasium warns (UserWarning) when check_env gets a wrapped env and on a few passive checks;
    # the tests assert behaviour, the warnings are noise here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        yield
