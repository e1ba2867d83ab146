"""The built-in ``plasticity/`` streams: one factory per stream, registered on ``import envs``.

Every factory takes the same stream options:

* ``period``: global env steps per task (> 0);
* ``stationary``: the control arm (task 0 forever, no switch);
* ``switch_at``: ``"reset"`` (default), ``"step"`` or ``"truncate"`` (``make_vector`` uses it);
* ``seed``: the *schedule* seed (task parameters depend on it only, never on reset seeds);
* ``vector_size`` / ``autoreset_mode``: set by ``envs.make_vector``;
* ``num_tasks``: where given, the stream cycles through this many distinct tasks; ``None``
  (default) draws a fresh task at every switch;
* ``render_mode``: passed to the base env.

Task 0 is the unperturbed env wherever "unperturbed" means something (default physics,
identity permutation, zero offset, reward scale +1).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from .digits import DigitsBandit, PixelPermutation
from .errors import EnvError
from .factory import make_base_env, make_nonstationary
from .minigrid.rooms import RoomEnv
from .minigrid.shifts import GoalShift, LayoutShift, ViewPermutation
from .mujoco_friction import FrictionShift, mujoco_available
from .registry import register_stream
from .schedules import (
    Choice,
    CyclicSchedule,
    LogUniform,
    Normal,
    Permutation,
    RandomSchedule,
    RandomSigns,
)
from .shifts.observation import ObservationOffset, ObservationPermutation
from .shifts.params import ParamShift
from .shifts.reward import RewardScale
from .wrapper import NonStationaryWrapper

__all__ = [
    "cartpole_dynamics",
    "acrobot_dynamics",
    "mountaincar_dynamics",
    "pendulum_dynamics",
    "cartpole_reward_flip",
    "cartpole_permuted_obs",
    "cartpole_obs_offset",
    "minigrid_hidden_goal",
    "minigrid_goal_shift",
    "minigrid_layout_shift",
    "minigrid_permuted_view",
    "slippery_ant",
    "permuted_digits",
    "register_builtin_streams",
]

#: 60 PPO rollouts of 4 envs × 128 steps: the measured period of the hidden-goal stream.
MINIGRID_PERIOD = 30_720


def _wrap(env: gym.Env, shift: Any, schedule: Any, switch_at: str, stationary: bool,
          vector_size: int, autoreset_mode: str | None) -> NonStationaryWrapper:
    return make_nonstationary(
        env, shift, schedule, switch_at=switch_at, stationary=stationary,
        vector_size=vector_size, autoreset_mode=autoreset_mode,
    )


# ------------------------------------------------------------------ classic control dynamics
def cartpole_dynamics(period: int = 20_000, *, stationary: bool = False, switch_at: str = "reset",
                      seed: int = 0, vector_size: int = 1, num_tasks: int | None = None,
                      autoreset_mode: str | None = None, render_mode: str | None = None) -> NonStationaryWrapper:
    """``plasticity/CartPoleDynamics-v0``: CartPole-v1 whose physics is redrawn every ``period`` steps.

    Defaults: period 20,000 steps; task 0 = CartPole's own physics (gravity 9.8, masspole 0.1,
    length 0.5, force_mag 10); later tasks draw gravity ~ LogUniform(4.9, 19.6), masspole ~
    LogUniform(0.05, 0.5), length ~ LogUniform(0.25, 1.0), force_mag ~ LogUniform(5, 20)
    (total_mass and polemass_length follow). Observation Box(4), actions Discrete(2), 500-step
    episodes.
    """
    env = make_base_env("CartPole-v1", render_mode=render_mode)
    schedule = RandomSchedule(
        period,
        {"gravity": LogUniform(4.9, 19.6), "masspole": LogUniform(0.05, 0.5),
         "length": LogUniform(0.25, 1.0), "force_mag": LogUniform(5.0, 20.0)},
        seed, first={"gravity": 9.8, "masspole": 0.1, "length": 0.5, "force_mag": 10.0},
        num_tasks=num_tasks,
    )
    return _wrap(env, ParamShift(), schedule, switch_at, stationary, vector_size, autoreset_mode)


def acrobot_dynamics(period: int = 50_000, *, stationary: bool = False, switch_at: str = "reset",
                     seed: int = 0, vector_size: int = 1, num_tasks: int | None = None,
                     autoreset_mode: str | None = None, render_mode: str | None = None) -> NonStationaryWrapper:
    """``plasticity/AcrobotDynamics-v0``: Acrobot-v1 with link masses and first link length redrawn.

    Defaults: period 50,000 steps; task 0 = default (masses 1, lengths 1); later tasks draw
    LINK_MASS_1, LINK_MASS_2 ~ LogUniform(0.5, 2.0) and LINK_LENGTH_1 ~ LogUniform(0.6, 1.5).
    Observation Box(6), actions Discrete(3), 500-step episodes.
    """
    env = make_base_env("Acrobot-v1", render_mode=render_mode)
    schedule = RandomSchedule(
        period,
        {"LINK_MASS_1": LogUniform(0.5, 2.0), "LINK_MASS_2": LogUniform(0.5, 2.0),
         "LINK_LENGTH_1": LogUniform(0.6, 1.5)},
        seed, first={"LINK_MASS_1": 1.0, "LINK_MASS_2": 1.0, "LINK_LENGTH_1": 1.0},
        num_tasks=num_tasks,
    )
    return _wrap(env, ParamShift(), schedule, switch_at, stationary, vector_size, autoreset_mode)


def mountaincar_dynamics(period: int = 50_000, *, stationary: bool = False, switch_at: str = "reset",
                         seed: int = 0, vector_size: int = 1, num_tasks: int | None = None,
                         autoreset_mode: str | None = None, render_mode: str | None = None) -> NonStationaryWrapper:
    """``plasticity/MountainCarDynamics-v0``: MountainCar-v0 with engine force and gravity redrawn.

    Defaults: period 50,000 steps; task 0 = default (force 0.001, gravity 0.0025); later tasks
    draw force ~ LogUniform(0.0008, 0.0015), gravity ~ LogUniform(0.0018, 0.0032).
    Observation Box(2), actions Discrete(3), 200-step episodes.
    """
    env = make_base_env("MountainCar-v0", render_mode=render_mode)
    schedule = RandomSchedule(
        period, {"force": LogUniform(0.0008, 0.0015), "gravity": LogUniform(0.0018, 0.0032)},
        seed, first={"force": 0.001, "gravity": 0.0025}, num_tasks=num_tasks,
    )
    return _wrap(env, ParamShift(), schedule, switch_at, stationary, vector_size, autoreset_mode)


def pendulum_dynamics(period: int = 50_000, *, stationary: bool = False, switch_at: str = "reset",
                      seed: int = 0, vector_size: int = 1, num_tasks: int | None = None,
                      autoreset_mode: str | None = None, render_mode: str | None = None) -> NonStationaryWrapper:
    """``plasticity/PendulumDynamics-v0``: Pendulum-v1 (Box actions) with g, m, l redrawn.

    Defaults: period 50,000 steps; task 0 = default (g 10, m 1, l 1); later tasks draw
    g ~ LogUniform(5, 15), m ~ LogUniform(0.5, 1.5), l ~ LogUniform(0.6, 1.4).
    Observation Box(3), actions Box(1) in [-2, 2], 200-step episodes.
    """
    env = make_base_env("Pendulum-v1", render_mode=render_mode)
    schedule = RandomSchedule(
        period, {"g": LogUniform(5.0, 15.0), "m": LogUniform(0.5, 1.5), "l": LogUniform(0.6, 1.4)},
        seed, first={"g": 10.0, "m": 1.0, "l": 1.0}, num_tasks=num_tasks,
    )
    return _wrap(env, ParamShift(), schedule, switch_at, stationary, vector_size, autoreset_mode)


# ------------------------------------------------------------------ reward and interface shifts
def cartpole_reward_flip(period: int = 20_000, *, stationary: bool = False, switch_at: str = "reset",
                         seed: int = 0, vector_size: int = 1, num_tasks: int | None = None,
                         autoreset_mode: str | None = None, render_mode: str | None = None) -> NonStationaryWrapper:
    """``plasticity/CartPoleRewardFlip-v0``: CartPole-v1 whose reward sign flips every ``period`` steps.

    Defaults: period 20,000 steps; tasks alternate reward_scale +1, -1 (on the flipped task the
    best policy ends the episode fast). ``seed`` and ``num_tasks`` have no effect (the cycle is
    fixed); they are accepted for a uniform interface.
    """
    env = make_base_env("CartPole-v1", render_mode=render_mode)
    schedule = CyclicSchedule(period, [{"reward_scale": 1.0}, {"reward_scale": -1.0}])
    return _wrap(env, RewardScale(), schedule, switch_at, stationary, vector_size, autoreset_mode)


def cartpole_permuted_obs(period: int = 20_000, *, stationary: bool = False, switch_at: str = "reset",
                          seed: int = 0, vector_size: int = 1, num_tasks: int | None = None,
                          projection: int | None = None, projection_seed: int = 0,
                          autoreset_mode: str | None = None, render_mode: str | None = None) -> NonStationaryWrapper:
    """``plasticity/CartPolePermutedObs-v0``: CartPole-v1 with observations permuted and sign-flipped per task.

    Defaults: period 20,000 steps; task 0 = identity; later tasks draw a random permutation and
    random signs. ``projection=m`` (default None) first maps the 4 inputs through a fixed random
    ``(m, 4)`` matrix (seed ``projection_seed``) and permutes/flips the m-dim vector, so the
    shift is not undone by a few first-layer weights (e.g. ``projection=64``).
    """
    env = make_base_env("CartPole-v1", render_mode=render_mode)
    # The shift first: its check of `projection` names the option, not the schedule's `n`.
    shift = ObservationPermutation(projection=projection, projection_seed=projection_seed)
    n = projection or 4
    schedule = RandomSchedule(
        period, {"obs_perm": Permutation(n), "obs_sign": RandomSigns(n)}, seed,
        first={"obs_perm": tuple(range(n)), "obs_sign": (1.0,) * n}, num_tasks=num_tasks,
    )
    return _wrap(env, shift, schedule, switch_at, stationary, vector_size, autoreset_mode)


def cartpole_obs_offset(period: int = 20_000, *, stationary: bool = False, switch_at: str = "reset",
                        seed: int = 0, vector_size: int = 1, num_tasks: int | None = None,
                        offset_std: float = 2.0,
                        autoreset_mode: str | None = None, render_mode: str | None = None) -> NonStationaryWrapper:
    """``plasticity/CartPoleObsOffset-v0``: CartPole-v1 plus a fixed Gaussian observation offset per task.

    As TRAC / C-CHAIN's classic-control protocol: offset ~ N(0, offset_std²) per dimension per
    task (default offset_std 2.0), task 0 unperturbed (zero offset); period 20,000 steps.
    Observation Box(4) float32, unbounded.
    """
    if isinstance(offset_std, bool) or not isinstance(offset_std, (int, float)) or offset_std < 0:
        raise EnvError(f"offset_std must be a number >= 0, got {offset_std!r}")
    env = make_base_env("CartPole-v1", render_mode=render_mode)
    schedule = RandomSchedule(
        period, {"obs_offset": Normal(0.0, offset_std, 4)}, seed,
        first={"obs_offset": (0.0,) * 4}, num_tasks=num_tasks,
    )
    return _wrap(env, ObservationOffset(), schedule, switch_at, stationary, vector_size, autoreset_mode)


# ------------------------------------------------------------------ MiniGrid
def minigrid_hidden_goal(period: int = MINIGRID_PERIOD, *, stationary: bool = False, switch_at: str = "reset",
                         seed: int = 0, vector_size: int = 1, num_tasks: int | None = None,
                         max_steps: int = 144,
                         autoreset_mode: str | None = None, render_mode: str | None = None) -> NonStationaryWrapper:
    """``plasticity/MiniGridHiddenGoal-v0`` (flagship): a hidden goal that moves at every switch.

    An 8×8 MiniGrid room (6×6 interior), agent starting at (1, 1) facing east; the goal cell is
    not drawn and not in the observation, so a switch is a pure change of the reward function.
    Each task's goal is drawn uniformly from the 35 interior cells other than the start, never
    equal to the previous task's. Observation: one-hot x (8) + one-hot y (8) + one-hot
    direction (4) = Box(20) float32, computed without rendering the view. Actions: Discrete(3)
    = {left, right, forward}. Reward 1 - 0.9 * t / max_steps on reaching the goal (the episode
    ends there), else 0; max_steps 144. Default period 30,720 steps (60 PPO rollouts of
    4 × 128). A continually trained PPO agent was measured to lose almost all ability to adapt
    here while a freshly initialised one solves every task.
    """
    room = RoomEnv(size=8, agent_start=(1, 1), agent_start_dir=0, goal_visible=False,
                   obs="onehot", max_steps=max_steps, render_mode=render_mode)
    env = gym.wrappers.OrderEnforcing(room)
    schedule = RandomSchedule(period, {"goal": Choice(room.goal_cells())}, seed,
                              num_tasks=num_tasks, distinct=("goal",))
    return _wrap(env, GoalShift(), schedule, switch_at, stationary, vector_size, autoreset_mode)


def minigrid_goal_shift(period: int = MINIGRID_PERIOD, *, stationary: bool = False, switch_at: str = "reset",
                        seed: int = 0, vector_size: int = 1, num_tasks: int | None = None,
                        obs: str = "flat", max_steps: int = 144,
                        autoreset_mode: str | None = None, render_mode: str | None = None) -> NonStationaryWrapper:
    """``plasticity/MiniGridGoalShift-v0``: the same room with a *visible* goal that moves at every switch.

    8×8 room, start (1, 1) facing east, goal drawn as in the hidden-goal stream but drawn as a
    Goal tile (seen in the egocentric view). Observation ``obs="flat"`` (default: the 7×7×3 view
    flattened to Box(147) float32) or ``"image"`` (Box(7, 7, 3) uint8) or ``"onehot"``;
    actions Discrete(3); reward 1 - 0.9 * t / max_steps, max_steps 144; period 30,720 steps.
    """
    room = RoomEnv(size=8, agent_start=(1, 1), agent_start_dir=0, goal_visible=True,
                   obs=obs, max_steps=max_steps, render_mode=render_mode)
    env = gym.wrappers.OrderEnforcing(room)
    schedule = RandomSchedule(period, {"goal": Choice(room.goal_cells())}, seed,
                              num_tasks=num_tasks, distinct=("goal",))
    return _wrap(env, GoalShift(), schedule, switch_at, stationary, vector_size, autoreset_mode)


def minigrid_layout_shift(period: int = MINIGRID_PERIOD, *, stationary: bool = False, switch_at: str = "reset",
                          seed: int = 0, vector_size: int = 1, num_tasks: int | None = None,
                          obs: str = "flat", max_steps: int = 196,
                          autoreset_mode: str | None = None, render_mode: str | None = None) -> NonStationaryWrapper:
    """``plasticity/MiniGridLayoutShift-v0``: a two-room layout whose connecting gap moves at every switch.

    9×9 grid (7×7 interior) split by a wall at column 4 with one open row (the gap); start
    (1, 1) facing east in the left room, visible goal fixed at (7, 7) in the right room. Each
    task draws the gap row uniformly from 1..7, never equal to the previous one; task 0 has
    the gap at row 4. Observation ``obs="flat"`` (Box(147) float32, default), ``"image"`` or
    ``"onehot"``; actions Discrete(3); max_steps 196; period 30,720 steps.
    """
    room = RoomEnv(size=9, agent_start=(1, 1), agent_start_dir=0, goal=(7, 7), goal_visible=True,
                   gap=4, obs=obs, max_steps=max_steps, render_mode=render_mode)
    env = gym.wrappers.OrderEnforcing(room)
    schedule = RandomSchedule(period, {"gap": Choice(list(range(1, 8)))}, seed, first={"gap": 4},
                              num_tasks=num_tasks, distinct=("gap",))
    return _wrap(env, LayoutShift(), schedule, switch_at, stationary, vector_size, autoreset_mode)


def minigrid_permuted_view(period: int = MINIGRID_PERIOD, *, stationary: bool = False, switch_at: str = "reset",
                           seed: int = 0, vector_size: int = 1, num_tasks: int | None = None,
                           max_steps: int = 144,
                           autoreset_mode: str | None = None, render_mode: str | None = None) -> NonStationaryWrapper:
    """``plasticity/MiniGridPermutedView-v0``: the flattened 147-dim view permuted per task (J&A "Permute").

    8×8 room, start (1, 1) facing east, visible goal fixed at (6, 6); observation Box(147)
    float32 (the 7×7×3 view flattened); task 0 = identity, later tasks a random permutation of
    the 147 entries; actions Discrete(3); max_steps 144; period 30,720 steps.
    """
    room = RoomEnv(size=8, agent_start=(1, 1), agent_start_dir=0, goal=(6, 6), goal_visible=True,
                   obs="flat", max_steps=max_steps, render_mode=render_mode)
    env = gym.wrappers.OrderEnforcing(room)
    schedule = RandomSchedule(period, {"obs_perm": Permutation(147)}, seed,
                              first={"obs_perm": tuple(range(147))}, num_tasks=num_tasks)
    return _wrap(env, ViewPermutation(), schedule, switch_at, stationary, vector_size, autoreset_mode)


# ------------------------------------------------------------------ supervised positive control
def permuted_digits(period: int = 10_000, *, stationary: bool = False, switch_at: str = "reset",
                    seed: int = 0, vector_size: int = 1, num_tasks: int | None = None,
                    heldout_fraction: float = 0.2,
                    autoreset_mode: str | None = None, render_mode: str | None = None) -> NonStationaryWrapper:
    """``plasticity/PermutedDigits-v0``: the paper's Permuted MNIST as a one-step contextual bandit.

    Observation Box(64) float32 in [0, 1]: an 8×8 UCI digit (the copy scikit-learn's
    ``load_digits`` reads, bundled in ``envs/data``) with its pixels permuted by the task's
    permutation; actions Discrete(10) (the class); reward 1 if right, else 0; every episode
    one step (``info["label"]`` is the class). Task 0 is the identity permutation, later
    tasks draw a uniformly random permutation of the 64 pixels from ``seed``. ``seed`` also
    fixes the stratified train/held-out split (``heldout_fraction`` of each class held out,
    default 0.2): episodes show training images; the probe hooks give the held-out images
    under the current permutation (every image × action, and Q* = the reward of each
    action). Default period 10,000 steps (~7 passes over the 1,438 training images).
    """
    env = gym.wrappers.OrderEnforcing(DigitsBandit(split_seed=seed, heldout_fraction=heldout_fraction))
    schedule = RandomSchedule(period, {"pixel_perm": Permutation(64)}, seed,
                              first={"pixel_perm": tuple(range(64))}, num_tasks=num_tasks)
    return _wrap(env, PixelPermutation(), schedule, switch_at, stationary, vector_size, autoreset_mode)


# ------------------------------------------------------------------ MuJoCo
def slippery_ant(period: int = 1_000_000, *, stationary: bool = False, switch_at: str = "reset",
                 seed: int = 0, vector_size: int = 1, num_tasks: int | None = None,
                 autoreset_mode: str | None = None, render_mode: str | None = None) -> NonStationaryWrapper:
    """``plasticity/SlipperyAnt-v0`` (needs mujoco): Ant-v5 whose floor friction is redrawn per task.

    A Slippery-Ant analogue (Dohare et al. 2024): floor sliding friction ~ LogUniform(0.02, 2.0)
    every task (task 0 included), the floor given contact priority so its friction is the one
    used. Defaults: period 1,000,000 steps; Ant-v5's observation Box(105), actions Box(8),
    1,000-step episodes.
    """
    env = make_base_env("Ant-v5", render_mode=render_mode)
    schedule = RandomSchedule(period, {"friction": LogUniform(0.02, 2.0)}, seed, num_tasks=num_tasks)
    return _wrap(env, FrictionShift("floor"), schedule, switch_at, stationary, vector_size, autoreset_mode)


def register_builtin_streams() -> None:
    """Register the ``plasticity/`` streams (SlipperyAnt only when MuJoCo envs can be built)."""
    entries = [
        ("plasticity/CartPoleDynamics-v0", cartpole_dynamics,
         "CartPole gravity, pole mass/length and force redrawn log-uniformly every 20k steps"),
        ("plasticity/AcrobotDynamics-v0", acrobot_dynamics,
         "Acrobot link masses and first link length redrawn log-uniformly every 50k steps"),
        ("plasticity/MountainCarDynamics-v0", mountaincar_dynamics,
         "MountainCar engine force and gravity redrawn log-uniformly every 50k steps"),
        ("plasticity/PendulumDynamics-v0", pendulum_dynamics,
         "Pendulum (Box actions) g, m, l redrawn log-uniformly every 50k steps"),
        ("plasticity/CartPoleRewardFlip-v0", cartpole_reward_flip,
         "CartPole reward sign flips (+1 / -1) every 20k steps"),
        ("plasticity/CartPolePermutedObs-v0", cartpole_permuted_obs,
         "CartPole observation permuted and sign-flipped (optionally after a wide random projection) every 20k steps"),
        ("plasticity/CartPoleObsOffset-v0", cartpole_obs_offset,
         "CartPole observation offset by N(0, 2^2) per dimension, redrawn every 20k steps (TRAC / C-CHAIN)"),
        ("plasticity/MiniGridHiddenGoal-v0", minigrid_hidden_goal,
         "flagship: MiniGrid 8x8 room, hidden goal cell moves every 30,720 steps (pure reward change)"),
        ("plasticity/MiniGridGoalShift-v0", minigrid_goal_shift,
         "MiniGrid 8x8 room, visible goal cell moves every 30,720 steps"),
        ("plasticity/MiniGridLayoutShift-v0", minigrid_layout_shift,
         "MiniGrid two rooms, the gap in the dividing wall moves every 30,720 steps"),
        ("plasticity/MiniGridPermutedView-v0", minigrid_permuted_view,
         "MiniGrid 8x8 room, flattened 147-dim view permuted every 30,720 steps"),
        ("plasticity/PermutedDigits-v0", permuted_digits,
         "8x8 digits bandit (Permuted MNIST analogue): pixels permuted every 10k steps, reward 1 for the class"),
    ]
    if mujoco_available():
        entries.append(("plasticity/SlipperyAnt-v0", slippery_ant,
                        "Ant floor friction redrawn log-uniformly in [0.02, 2] every 1M steps"))
    for id, factory, description in entries:
        register_stream(id, factory, description=description)
