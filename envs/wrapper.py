"""``NonStationaryWrapper``: runs a schedule of tasks on one env and reports the task in ``info``."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import RecordConstructorArgs

from .errors import EnvError, choices
from .schedules import Schedule

__all__ = ["NonStationaryWrapper", "SWITCH_MODES", "AUTORESET_MODES"]

#: When a due task switch takes effect (see ``NonStationaryWrapper``).
SWITCH_MODES = ("reset", "step", "truncate")
#: How the vector env around this wrapper resets finished episodes (None: not in a vector env).
AUTORESET_MODES = (None, "next_step", "same_step", "disabled")


class NonStationaryWrapper(gym.Wrapper, RecordConstructorArgs):
    """Switches ``env`` between tasks on a schedule of *global* env steps.

    Step accounting: ``global_step`` is the global index of the next env step. Every local
    ``step()`` adds ``vector_size`` (in a vector env of n sub-envs, each sub-env advances
    n global steps per vector step, so a period is in the same units as the agent's step
    count). With ``autoreset_mode="next_step"`` (gymnasium's default for vector envs) a vector
    step spends a sub-env's turn on the reset after a finished episode, so that reset also
    adds ``vector_size``: every sub-env counter then equals the agent's step count.

    When a new task becomes due (``schedule.task_at(global_step)`` changes), ``switch_at``:

    * ``"reset"`` (default): applied at the next ``reset()``; the episode in progress finishes
      under the old task.
    * ``"step"``: applied before the next ``step()``, mid-episode.
    * ``"truncate"``: the step that reaches the switch step returns ``truncated=True`` (unless
      it terminated), so the reset that follows applies the new task. In a vector env every
      sub-env then changes task at the same global step.

    In ``"next_step"`` mode, when such a reset falls on the last global step of a task (the
    sub-env's episode ended just before a switch), the new task is applied for the coming
    episode but that reset's info still reports the old task, the schedule's task for that
    vector step: so every sub-env reports the same ``task_id`` at every vector step
    (``task_switched`` is then true on its first step).

    In ``"same_step"`` mode the truncating step and its reset are one vector step: its info
    is the reset's (new task, ``task_switched`` true) and ``final_info`` has the old task.

    ``info`` of every ``reset``/``step`` has ``task_id`` (int), ``task_switched`` (on a reset:
    this reset applied a new task; on a step: first step since a new task was applied) and
    ``task`` (a shallow copy of the current parameters). ``set_task(k)`` applies task
    ``k`` now (external control); automatic switching resumes at the next scheduled switch.
    ``get_state()`` / ``set_state(d)`` save and restore ``global_step``, the applied task and
    the schedule's last seen task (plain ints) for resuming a run; ``set_state`` applies the
    saved task at once, and the caller resets next.

    Reach it through gymnasium's wrappers with ``env.get_wrapper_attr("set_task")`` etc., and
    in a vector env with ``vec.get_attr("task_id")`` / ``vec.call("set_task", k)``.

    Args:
        env: the env to make non-stationary.
        shift: an object with ``apply(env, params)`` (see ``envs.shifts.base``); the wrapper
            works on its own deep copy of it (``wrapper.shift``).
        schedule: an object with ``task_params(k)``, ``task_at(step)``, ``switch_steps(n)``.
        switch_at: ``"reset"``, ``"step"`` or ``"truncate"``.
        vector_size: global steps per local step (the number of sub-envs in a vector env).
        autoreset_mode: the surrounding vector env's autoreset mode, or None.
    """

    def __init__(
        self,
        env: gym.Env,
        shift: Any,
        schedule: Schedule,
        switch_at: str = "reset",
        vector_size: int = 1,
        autoreset_mode: str | None = None,
    ):
        RecordConstructorArgs.__init__(
            self, shift=shift, schedule=schedule, switch_at=switch_at,
            vector_size=vector_size, autoreset_mode=autoreset_mode,
        )
        gym.Wrapper.__init__(self, env)
        if switch_at not in SWITCH_MODES:
            raise EnvError(f"switch_at={switch_at!r} is not one of {choices(SWITCH_MODES)}")
        if isinstance(vector_size, bool) or not isinstance(vector_size, int) or vector_size <= 0:
            raise EnvError(f"vector_size must be a positive integer, got {vector_size!r}")
        if autoreset_mode not in AUTORESET_MODES:
            raise EnvError(f"autoreset_mode={autoreset_mode!r} is not one of {choices(AUTORESET_MODES)}")
        if not callable(getattr(shift, "apply", None)):
            raise EnvError(f"shift {shift!r} has no apply(env, params) method")
        for name in ("task_params", "task_at", "switch_steps"):
            if not callable(getattr(schedule, name, None)):
                raise EnvError(
                    f"schedule {schedule!r} has no {name}() method; a schedule needs "
                    "task_params(k), task_at(step) and switch_steps(total_steps)"
                )
        # Shifts hold per-env state (the current permutation, scale, ...): work on a private
        # copy so that an env re-made from the spec, or a sibling sub-env, never shares it.
        try:
            shift = copy.deepcopy(shift)
        except Exception:  # an uncopyable user shift (holding a lock, a socket): use it as is
            pass
        self.shift = shift
        self.schedule = schedule
        self.switch_at = switch_at
        self.vector_size = vector_size
        self._count_resets = autoreset_mode == "next_step"

        if hasattr(shift, "bind"):
            shift.bind(env)
        if hasattr(shift, "observation_space"):
            self.observation_space = shift.observation_space(env.observation_space)
        if hasattr(shift, "action_space"):
            self.action_space = shift.action_space(env.action_space)
        # Bound hooks looked up once: no per-step attribute search.
        self._obs_fn = getattr(shift, "observation", None)
        self._act_fn = getattr(shift, "action", None)
        self._rew_fn = getattr(shift, "reward", None)

        self.global_step = 0
        self._scheduled = schedule.task_at(0)
        self.task_id = -1
        self.task_params: Mapping[str, Any] = {}
        self._apply(self._scheduled)
        self._new_task_step = False  # task 0 at construction is not a switch
        self._episode_over = False

    # ----------------------------------------------------------------- tasks
    def _apply(self, k: int) -> None:
        params = self.schedule.task_params(k)
        self.shift.apply(self.env, params)
        self.task_id = k
        self.task_params = params
        self._new_task_step = True

    def _due(self) -> bool:
        """True when the schedule moved to another task since the last automatic switch."""
        due = self.schedule.task_at(self.global_step)
        if due != self._scheduled:
            self._scheduled = due
            return due != self.task_id
        return False

    def set_task(self, k: int) -> None:
        """Apply task ``k`` now (external control; call ``reset()`` next to start clean)."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise EnvError(f"task index must be a non-negative integer, got {k!r}")
        self._apply(int(k))

    def get_state(self) -> dict[str, int]:
        """Counters for resume: ``{"global_step", "task_id", "scheduled_task"}`` (plain ints)."""
        return {
            "global_step": int(self.global_step),
            "task_id": int(self.task_id),
            "scheduled_task": int(self._scheduled),
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore ``get_state()``'s counters and apply its task now (reset the env next)."""
        keys = ("global_step", "task_id", "scheduled_task")
        missing = [k for k in keys if k not in state]
        if missing:
            raise EnvError(f"state is missing {missing!r}; expected keys {choices(keys)}, got {sorted(state)!r}")
        self.global_step = int(state["global_step"])
        self._scheduled = int(state["scheduled_task"])
        self.set_task(int(state["task_id"]))
        self._new_task_step = False
        self._episode_over = False

    # ---------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Reset; apply a due task first (``"reset"``/``"truncate"`` modes)."""
        call_step = self.global_step
        counted = self._count_resets and self._episode_over
        if counted:
            self.global_step += self.vector_size
        self._episode_over = False
        previous, previous_params = self.task_id, self.task_params
        switched = self._due()
        if switched:
            self._apply(self._scheduled)
        obs, info = self.env.reset(seed=seed, options=options)
        if self._obs_fn is not None:
            obs = self._obs_fn(obs)
        reported, reported_params = self.task_id, self.task_params
        if switched and counted and self.schedule.task_at(call_step) != self._scheduled:
            # A vector env's next-step autoreset spends the last step of the old task on
            # this reset: the coming episode is the new task's, but this vector step is
            # still the old task's, and the other sub-envs report the old task on it.
            reported, reported_params, switched = previous, previous_params, False
        info["task_id"] = reported
        info["task_switched"] = switched
        info["task"] = dict(reported_params)  # a fresh dict: callers may keep infos
        return obs, info

    def step(self, action):
        """Step under the current task; see the class docstring for when tasks switch."""
        if self.switch_at == "step" and self._due():
            self._apply(self._scheduled)
        if self._act_fn is not None:
            action = self._act_fn(action)
        if isinstance(action, np.integer):
            # A vector env hands each sub-env a numpy integer; MiniGrid compares it with its
            # IntEnum actions, which for a numpy scalar costs ~8 µs a step (a Python int: 0).
            action = int(action)
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.global_step += self.vector_size
        if self._obs_fn is not None:
            obs = self._obs_fn(obs)
        if self._rew_fn is not None:
            reward = self._rew_fn(reward)
        if (
            self.switch_at == "truncate"
            and not terminated
            and self.schedule.task_at(self.global_step) != self._scheduled
        ):
            truncated = True
        self._episode_over = terminated or truncated
        info["task_id"] = self.task_id
        info["task_switched"] = self._new_task_step
        info["task"] = dict(self.task_params)  # a fresh dict: callers may keep infos
        self._new_task_step = False
        return obs, reward, terminated, truncated, info
