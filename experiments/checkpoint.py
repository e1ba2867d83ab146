"""Checkpoints: ``checkpoints/ckpt-<step>.pt``, written atomically, the last few kept."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

__all__ = ["save_checkpoint", "latest_checkpoint", "load_checkpoint", "checkpoint_steps"]

_NAME = re.compile(r"^ckpt-(\d+)\.pt$")


def checkpoint_steps(directory: str | Path) -> list[int]:
    """Steps of the complete checkpoints in ``directory``, ascending."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    steps = [int(m.group(1)) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return sorted(steps)


def save_checkpoint(directory: str | Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Write ``state`` to ``ckpt-<step>.pt`` via a temp file and a rename, so a kill at
    any moment leaves only complete checkpoints; delete all but the newest ``keep``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"ckpt-{step}.pt"
    tmp = directory / f".ckpt-{step}.pt.tmp"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    for old in checkpoint_steps(directory)[:-keep]:
        (directory / f"ckpt-{old}.pt").unlink(missing_ok=True)
    return path


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    steps = checkpoint_steps(directory)
    return Path(directory) / f"ckpt-{steps[-1]}.pt" if steps else None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (our own file: full unpickling)."""
    return torch.load(path, map_location="cpu", weights_only=False)
