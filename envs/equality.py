"""Value equality for shifts, schedules and distributions.

``gymnasium.make`` records every wrapper's constructor arguments in the env spec and, when a
spec is re-made (``env.spec.make()``, as ``check_env`` does), compares the recorded arguments
of wrappers the entry point applied with ``==``. Our wrappers record shift and schedule
objects, so these compare by their ``repr`` (which spells out their configuration).
"""

from __future__ import annotations

__all__ = ["ReprEq"]


class ReprEq:
    """Mixin: equal when of the same type with the same ``repr``."""

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and repr(self) == repr(other)

    def __hash__(self) -> int:
        return hash((type(self).__name__, repr(self)))
