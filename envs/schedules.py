"""Schedules: which task is due at a given global env step, and what each task's parameters are.

A schedule is a *period* (global env steps per task) combined with a *task source*: a cyclic
list of task values, or random draws from a seeded generator. Everything here is pure: the
parameters of task ``k`` depend only on the schedule's arguments (its seed, never the env's
reset seed), so the same seed gives the same task sequence, in any order of access.

Task parameters are plain JSON-friendly values (floats, ints, tuples/lists of them) so a runner
can log them as they are.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .equality import ReprEq
from .errors import EnvError, choices

__all__ = [
    "Schedule",
    "Distribution",
    "CyclicSchedule",
    "RandomSchedule",
    "StationarySchedule",
    "Uniform",
    "LogUniform",
    "Choice",
    "Normal",
    "Permutation",
    "RandomSigns",
]


@runtime_checkable
class Schedule(Protocol):
    """Maps global env steps to task indices and task indices to task parameters."""

    def task_params(self, k: int) -> Mapping[str, Any]:
        """Parameters of task ``k`` (pure: same ``k`` gives the same mapping)."""
        ...

    def task_at(self, step: int) -> int:
        """Index of the task due at global env step ``step`` (0-based)."""
        ...

    def switch_steps(self, total_steps: int) -> list[int]:
        """Global env steps ``< total_steps`` at which a new task is due (task 0 at step 0 excluded)."""
        ...


def _check_period(period: Any) -> int:
    if isinstance(period, bool) or not isinstance(period, (int, np.integer)) or period <= 0:
        raise EnvError(f"period must be a positive integer number of env steps, got {period!r}")
    return int(period)


def _check_task_index(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise EnvError(f"task index must be a non-negative integer, got {k!r}")
    return int(k)


class _Periodic(ReprEq):
    """A new task every ``period`` global env steps: task ``step // period``."""

    period: int

    def task_at(self, step: int) -> int:
        """Task due at global step ``step``: ``step // period``."""
        return step // self.period

    def switch_steps(self, total_steps: int) -> list[int]:
        """Multiples of ``period`` in ``(0, total_steps)``."""
        return list(range(self.period, int(total_steps), self.period))


class CyclicSchedule(_Periodic):
    """Every ``period`` steps, the next entry of ``tasks``, cycling: task ``k`` is ``tasks[k % len]``.

    Example: ``CyclicSchedule(10_000, [{"reward_scale": 1.0}, {"reward_scale": -1.0}])``.
    """

    def __init__(self, period: int, tasks: Sequence[Mapping[str, Any]]):
        self.period = _check_period(period)
        if isinstance(tasks, Mapping) or not isinstance(tasks, Sequence) or len(tasks) == 0:
            raise EnvError(
                f"tasks must be a non-empty list of parameter mappings, got {tasks!r}"
            )
        for i, t in enumerate(tasks):
            if not isinstance(t, Mapping):
                raise EnvError(f"tasks[{i}] must be a mapping of parameter names to values, got {t!r}")
        self.tasks = [dict(t) for t in tasks]

    def task_params(self, k: int) -> Mapping[str, Any]:
        """``tasks[k % len(tasks)]``."""
        return self.tasks[_check_task_index(k) % len(self.tasks)]

    def __repr__(self) -> str:
        return f"CyclicSchedule(period={self.period}, tasks={self.tasks!r})"


class Distribution(Protocol):
    """One random task parameter: ``sample(rng)`` returns a JSON-friendly value."""

    def sample(self, rng: np.random.Generator) -> Any:
        """Draw one value from ``rng``."""
        ...


class Uniform(ReprEq):
    """Uniform float on ``[low, high)``."""

    def __init__(self, low: float, high: float):
        if not high > low:
            raise EnvError(f"Uniform needs low < high, got low={low!r}, high={high!r}")
        self.low, self.high = float(low), float(high)

    def sample(self, rng: np.random.Generator) -> float:
        """One uniform draw."""
        return float(rng.uniform(self.low, self.high))

    def __repr__(self) -> str:
        return f"Uniform({self.low}, {self.high})"


class LogUniform(ReprEq):
    """Log-uniform float on ``[low, high)`` (uniform in ``log``): the usual law for physical scales."""

    def __init__(self, low: float, high: float):
        if not (low > 0 and high > low):
            raise EnvError(f"LogUniform needs 0 < low < high, got low={low!r}, high={high!r}")
        self.low, self.high = float(low), float(high)

    def sample(self, rng: np.random.Generator) -> float:
        """One log-uniform draw."""
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))

    def __repr__(self) -> str:
        return f"LogUniform({self.low}, {self.high})"


class Choice(ReprEq):
    """One of ``values``, uniformly."""

    def __init__(self, values: Sequence[Any]):
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise EnvError(f"Choice needs a non-empty list of values, got {values!r}")
        self.values = list(values)

    def sample(self, rng: np.random.Generator) -> Any:
        """One uniform pick."""
        return self.values[int(rng.integers(len(self.values)))]

    def __repr__(self) -> str:
        return f"Choice({self.values!r})"


class Normal(ReprEq):
    """``size`` independent draws from N(mean, std²), as a tuple of floats (e.g. an observation offset)."""

    def __init__(self, mean: float, std: float, size: int):
        if not std >= 0 or not isinstance(size, int) or size <= 0:
            raise EnvError(f"Normal needs std >= 0 and a positive int size, got std={std!r}, size={size!r}")
        self.mean, self.std, self.size = float(mean), float(std), size

    def sample(self, rng: np.random.Generator) -> tuple[float, ...]:
        """One vector draw."""
        return tuple(float(x) for x in rng.normal(self.mean, self.std, self.size))

    def __repr__(self) -> str:
        return f"Normal({self.mean}, {self.std}, size={self.size})"


class Permutation(ReprEq):
    """A uniformly random permutation of ``range(n)``, as a tuple of ints."""

    def __init__(self, n: int):
        if not isinstance(n, int) or n <= 0:
            raise EnvError(f"Permutation needs a positive int n, got {n!r}")
        self.n = n

    def sample(self, rng: np.random.Generator) -> tuple[int, ...]:
        """One permutation."""
        return tuple(int(i) for i in rng.permutation(self.n))

    def __repr__(self) -> str:
        return f"Permutation({self.n})"


class RandomSigns(ReprEq):
    """``n`` independent signs in {-1.0, +1.0}, as a tuple of floats."""

    def __init__(self, n: int):
        if not isinstance(n, int) or n <= 0:
            raise EnvError(f"RandomSigns needs a positive int n, got {n!r}")
        self.n = n

    def sample(self, rng: np.random.Generator) -> tuple[float, ...]:
        """One sign vector."""
        return tuple(float(s) for s in rng.choice((-1.0, 1.0), self.n))

    def __repr__(self) -> str:
        return f"RandomSigns({self.n})"


class RandomSchedule(_Periodic):
    """Every ``period`` steps, a fresh random draw of each parameter.

    Task ``k``'s parameters are drawn from ``numpy.random.default_rng([seed, k])``, so they
    depend only on ``(seed, k)``. ``draws`` maps parameter names to distributions (``Uniform``,
    ``LogUniform``, ``Choice``, ``Normal``, ``Permutation``, ``RandomSigns`` or any object with
    ``sample(rng)``); plain values are passed through as constants.

    Args:
        period: global env steps per task (> 0).
        draws: parameter name -> distribution or constant.
        seed: schedule seed.
        first: if given, task 0's parameters (e.g. the env's defaults, so that the first task
            is the unperturbed env, as in TRAC / C-CHAIN's first level).
        num_tasks: if given, the sequence cycles through this many distinct tasks
            (task ``k`` = task ``k % num_tasks``); otherwise every task is a fresh draw.
        distinct: parameter names whose value must differ from the previous task's
            (redrawn until it does; e.g. a goal cell that must move at every switch).
    """

    def __init__(
        self,
        period: int,
        draws: Mapping[str, Any],
        seed: int = 0,
        *,
        first: Mapping[str, Any] | None = None,
        num_tasks: int | None = None,
        distinct: Sequence[str] = (),
    ):
        self.period = _check_period(period)
        if not isinstance(draws, Mapping) or not draws:
            raise EnvError(f"draws must be a non-empty mapping of parameter names to distributions, got {draws!r}")
        if num_tasks is not None and (isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks <= 0):
            raise EnvError(f"num_tasks must be a positive integer or None, got {num_tasks!r}")
        unknown = [d for d in distinct if d not in draws]
        if unknown:
            raise EnvError(f"distinct names {unknown!r} are not drawn; drawn names: {choices(draws)}")
        self.draws = dict(draws)
        self.seed = int(seed)
        self.first = None if first is None else dict(first)
        self.num_tasks = num_tasks
        self.distinct = tuple(distinct)
        self._cache: dict[int, dict[str, Any]] = {}

    def _draw(self, k: int, previous: Mapping[str, Any] | None) -> dict[str, Any]:
        if k == 0 and self.first is not None:
            return dict(self.first)
        rng = np.random.default_rng([self.seed, k])
        params = {}
        for name, dist in self.draws.items():
            value = dist.sample(rng) if hasattr(dist, "sample") else dist
            if previous is not None and name in self.distinct:
                for _ in range(1000):  # a redraw loop that ends: distributions here have > 1 value
                    if value != previous.get(name):
                        break
                    value = dist.sample(rng)
                else:
                    raise EnvError(f"parameter {name!r} cannot be made distinct: {dist!r} has one value")
            params[name] = value
        return params

    def task_params(self, k: int) -> Mapping[str, Any]:
        """Parameters of task ``k`` (cached; computed in order when ``distinct`` is used)."""
        k = _check_task_index(k)
        if self.num_tasks is not None:
            k %= self.num_tasks
        if k not in self._cache:
            if self.distinct:
                # Task k depends on task k-1: fill the cache in order.
                start = max((i for i in self._cache if i < k), default=-1) + 1
                for i in range(start, k + 1):
                    self._cache[i] = self._draw(i, self._cache.get(i - 1))
            else:
                self._cache[k] = self._draw(k, None)
        return self._cache[k]

    def __repr__(self) -> str:
        return (
            f"RandomSchedule(period={self.period}, draws={self.draws!r}, seed={self.seed}, "
            f"first={self.first!r}, num_tasks={self.num_tasks}, distinct={self.distinct!r})"
        )


class StationarySchedule(ReprEq):
    """The control arm: task 0 of ``base`` forever (``task_at`` is always 0, no switch steps).

    ``task_params`` still delegates to ``base``, so ``set_task(k)`` can drive it by hand.
    """

    def __init__(self, base: Schedule):
        self.base = base

    def task_params(self, k: int) -> Mapping[str, Any]:
        """``base.task_params(k)``."""
        return self.base.task_params(k)

    def task_at(self, step: int) -> int:
        """Always 0."""
        return 0

    def switch_steps(self, total_steps: int) -> list[int]:
        """Always empty."""
        return []

    def __repr__(self) -> str:
        return f"StationarySchedule({self.base!r})"
