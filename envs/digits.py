"""Permuted digits: the spectral-collapse paper's Permuted MNIST as a contextual bandit.

``DigitsBandit`` shows one 8×8 handwritten digit per episode (64 pixels scaled to [0, 1],
permuted by the task's pixel permutation); the agent names its class (``Discrete(10)``) and
gets reward 1 if right, else 0; the episode ends there (``terminated`` on the one step, so
``Q*(s, a)`` is the reward of ``a``). Mean reward is accuracy.

Data: the 1,797 images of the UCI "Optical Recognition of Handwritten Digits" test set
(E. Alpaydin, C. Kaynak, 1998; https://archive.ics.uci.edu/dataset/80, CC BY 4.0), the
copy scikit-learn ships as ``sklearn/datasets/data/digits.csv.gz`` (``load_digits``),
stored here as ``data/digits.npz`` (``pixels`` uint8 in 0..16, ``labels`` uint8), so
nothing is downloaded and scikit-learn is not a dependency.

Split: a seeded draw (the stream's seed) puts ``heldout_fraction`` of the images, stratified
by class, in a held-out split; episodes show training images only, and the probe hooks use
the held-out ones (accuracy on images never trained on). The split is the same for every
task of a stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .equality import ReprEq
from .errors import EnvError, choices

__all__ = ["DigitsBandit", "PixelPermutation", "load_digits", "NUM_PIXELS", "NUM_CLASSES"]

NUM_PIXELS = 64
NUM_CLASSES = 10
#: Draws of training-image indices made at once: one numpy call per block, not per reset.
_BLOCK = 4096


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The bundled digits: ``(pixels (1797, 64) float32 in [0, 1], labels (1797,) int64)``."""
    with resources.files(__package__).joinpath("data/digits.npz").open("rb") as f, np.load(f) as data:
        pixels, labels = data["pixels"], data["labels"]
    return (pixels.astype(np.float32) / 16.0), labels.astype(np.int64)


def _split(labels: np.ndarray, heldout_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices: per class, a seeded ``heldout_fraction`` goes to held-out."""
    rng = np.random.default_rng([seed, 0x5D16])
    train, held = [], []
    for c in range(NUM_CLASSES):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_held = int(round(heldout_fraction * len(idx)))
        held.append(idx[:n_held])
        train.append(idx[n_held:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(held))


class DigitsBandit(gym.Env):
    """One permuted 8×8 digit per one-step episode; reward 1 for naming its class.

    Args:
        split_seed: seed of the train/held-out split (the stream passes its schedule seed).
        heldout_fraction: fraction of each class held out (in (0, 1)); default 0.2
            (359 held-out images, 1,438 training images).

    ``info`` of every reset and step has ``label`` (the shown image's class) and ``index``
    (its row in the bundled data). ``set_permutation(perm)`` changes the pixel order at
    once (the shift calls it). Probe hooks (docs/architecture.md): ``probe_transitions()``
    is every (held-out image, action) pair of the current permutation, and
    ``optimal_action_values(gamma)`` the reward of each action on each held-out image
    (episodes end after one step, so Q* does not depend on ``gamma``).
    """

    metadata = {"render_modes": []}

    def __init__(self, split_seed: int = 0, heldout_fraction: float = 0.2) -> None:
        if isinstance(split_seed, bool) or not isinstance(split_seed, (int, np.integer)) or split_seed < 0:
            raise EnvError(f"split_seed must be a non-negative integer, got {split_seed!r}")
        if not isinstance(heldout_fraction, (int, float)) or not 0 < heldout_fraction < 1:
            raise EnvError(f"heldout_fraction must be a number in (0, 1), got {heldout_fraction!r}")
        self.observation_space = spaces.Box(0.0, 1.0, (NUM_PIXELS,), np.float32)
        self.action_space = spaces.Discrete(NUM_CLASSES)
        self._pixels, self._labels = load_digits()
        self.train_indices, self.heldout_indices = _split(self._labels, heldout_fraction, int(split_seed))
        self.permutation = np.arange(NUM_PIXELS)
        self._images = self._pixels  # the pixels under the current permutation
        self._draws = np.empty(0, dtype=np.int64)
        self._next = 0
        self._index = int(self.train_indices[0])

    def set_permutation(self, perm: Any) -> None:
        """Show pixel ``perm[j]`` of each image at position ``j`` from now on."""
        perm = np.asarray(perm)
        if perm.shape != (NUM_PIXELS,) or not np.array_equal(np.sort(perm), np.arange(NUM_PIXELS)):
            raise EnvError(f"a pixel permutation must be a permutation of range({NUM_PIXELS}), got {perm!r}")
        self.permutation = perm.astype(np.int64)
        self._images = np.ascontiguousarray(self._pixels[:, self.permutation])

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None or self._next >= len(self._draws):
            if seed is not None:
                self._draws = np.empty(0, dtype=np.int64)
            self._draws = self.np_random.choice(self.train_indices, _BLOCK)
            self._next = 0
        self._index = int(self._draws[self._next])
        self._next += 1
        return self._images[self._index].copy(), {"label": int(self._labels[self._index]),
                                                   "index": self._index}

    def step(self, action):
        label = int(self._labels[self._index])
        reward = 1.0 if int(action) == label else 0.0
        return self._images[self._index].copy(), reward, True, False, {"label": label, "index": self._index}

    # ------------------------------------------------------------------ probe hooks
    def heldout(self) -> tuple[np.ndarray, np.ndarray]:
        """(held-out images under the current permutation, their labels)."""
        return self._images[self.heldout_indices], self._labels[self.heldout_indices]

    def probe_transitions(self) -> dict[str, np.ndarray]:
        """Every (held-out image, action) pair of the current task, one row each."""
        obs, labels = self.heldout()
        n = len(obs)
        actions = np.tile(np.arange(NUM_CLASSES), n)
        rows = np.repeat(obs, NUM_CLASSES, axis=0)
        rewards = (actions == np.repeat(labels, NUM_CLASSES)).astype(np.float32)
        return {"obs": rows, "actions": actions, "rewards": rewards, "next_obs": rows.copy(),
                "terminated": np.ones(n * NUM_CLASSES, dtype=np.float32)}

    def optimal_action_values(self, gamma: float) -> dict[str, np.ndarray]:
        """``Q*(s, a) = 1[a = label(s)]`` on every held-out image (one-step episodes)."""
        obs, labels = self.heldout()
        return {"obs": obs, "action_values": np.eye(NUM_CLASSES, dtype=np.float32)[labels]}


class PixelPermutation(ReprEq):
    """Permutes the digits' pixels: task parameter ``pixel_perm`` (a permutation of range(64)).

    Needs a :class:`DigitsBandit` (the permutation is applied to its image table once per
    task, not to every observation).
    """

    def bind(self, env: gym.Env) -> None:
        """Check the env is a digits bandit."""
        if not isinstance(env.unwrapped, DigitsBandit):
            raise EnvError(f"PixelPermutation needs an envs.digits.DigitsBandit, got {type(env.unwrapped).__name__}")

    def apply(self, env: gym.Env, params: Mapping[str, Any]) -> None:
        """``env.unwrapped.set_permutation(params["pixel_perm"])``."""
        if set(params) != {"pixel_perm"}:
            raise EnvError(f"PixelPermutation takes parameters {choices(('pixel_perm',))}, got {sorted(params)!r}")
        env.unwrapped.set_permutation(params["pixel_perm"])

    def __repr__(self) -> str:
        return "PixelPermutation()"
