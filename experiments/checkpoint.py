"""Checkpoints: ``checkpoints/ckpt-<step>.pt``, verified when written and when loaded.

Each checkpoint has a digest beside it (``ckpt-<step>.pt.sha256``: SHA-256 and size of the
file). Writing serialises in memory, writes a synced temp file, reads it back and compares
digests, writes the digest, and only then renames the temp file into place: a kill at any
moment leaves only complete, verifiable checkpoints. Loading recomputes the digest and
unpickles; a checkpoint that fails either is *corrupt*. :func:`load_latest` falls back from
corrupt checkpoints to the newest intact one, renames each corrupt file to
``ckpt-<step>.pt.corrupt`` (kept for inspection, never picked again) and says what it did.
Checkpoints written before digests existed (no ``.sha256``) are verified by loading alone.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["CorruptCheckpoint", "LoadedCheckpoint", "CommonCheckpoint", "save_checkpoint",
           "latest_checkpoint", "load_checkpoint", "load_latest", "load_common", "checkpoint_steps",
           "checkpoint_path"]

_NAME = re.compile(r"^ckpt-(\d+)\.pt$")


class CorruptCheckpoint(RuntimeError):
    """A checkpoint whose bytes do not match its digest or do not unpickle."""


@dataclass
class LoadedCheckpoint:
    """The newest intact checkpoint (``path`` None: there is none) and what was skipped."""

    path: Path | None
    state: dict[str, Any] | None
    skipped: list[str] = field(default_factory=list)  # one message per corrupt checkpoint


def checkpoint_path(directory: str | Path, step: int) -> Path:
    return Path(directory) / f"ckpt-{step}.pt"


def _digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def checkpoint_steps(directory: str | Path) -> list[int]:
    """Steps of the checkpoints in ``directory`` (renamed into place: complete), ascending."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    steps = [int(m.group(1)) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return sorted(steps)


def _digest(data: bytes) -> str:
    return f"{hashlib.sha256(data).hexdigest()} {len(data)}"


def save_checkpoint(directory: str | Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Write and verify ``ckpt-<step>.pt`` (see the module docstring); delete all but the
    newest ``keep`` checkpoints."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(directory, step)
    tmp = directory / f".ckpt-{step}.pt.tmp"
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    digest = _digest(data)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    written = _digest(tmp.read_bytes())
    if written != digest:
        tmp.unlink(missing_ok=True)
        raise CorruptCheckpoint(f"{path}: the file read back differs from what was written "
                                f"({written} vs {digest}); is the disk full or failing?")
    digest_tmp = directory / f".ckpt-{step}.pt.sha256.tmp"
    digest_tmp.write_text(digest + "\n", encoding="utf-8")
    os.replace(digest_tmp, _digest_path(path))
    os.replace(tmp, path)
    for old in checkpoint_steps(directory)[:-keep]:
        old_path = checkpoint_path(directory, old)
        old_path.unlink(missing_ok=True)
        _digest_path(old_path).unlink(missing_ok=True)
    return path


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest checkpoint file (not verified; :func:`load_latest` verifies), or None."""
    steps = checkpoint_steps(directory)
    return checkpoint_path(directory, steps[-1]) if steps else None


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Verify and load a checkpoint written by :func:`save_checkpoint` (our own file: full
    unpickling). Raises :class:`CorruptCheckpoint` naming what is wrong."""
    path = Path(path)
    data = path.read_bytes()
    digest_file = _digest_path(path)
    if digest_file.exists():
        expected = digest_file.read_text(encoding="utf-8").strip()
        actual = _digest(data)
        if actual != expected:
            raise CorruptCheckpoint(f"{path.name} does not match its digest (size "
                                    f"{len(data)} bytes, expected {expected.split()[-1]})")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 -- any unpickling failure means a bad file
        raise CorruptCheckpoint(f"{path.name} does not load ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else ''})") from exc


def load_latest(directory: str | Path) -> LoadedCheckpoint:
    """The newest checkpoint that verifies (``path`` None if none does); corrupt newer ones
    are renamed to ``*.corrupt`` and described in ``skipped``."""
    common = load_common([directory])
    return LoadedCheckpoint(common.paths[0], common.states[0], common.skipped[0])


@dataclass
class CommonCheckpoint:
    """The newest step at which every directory of a population has an intact checkpoint
    (``step`` None: there is none), each directory's file and state, and per directory
    what was skipped."""

    step: int | None
    paths: list[Path | None]
    states: list[dict[str, Any] | None]
    skipped: list[list[str]]


def load_common(directories: list[str | Path]) -> CommonCheckpoint:
    """Load the newest checkpoint step present and intact in *every* directory (members of a
    population killed while writing their checkpoints one after the other resume together
    from the last step all of them wrote); corrupt files are renamed to ``*.corrupt`` and
    described in ``skipped``, as :func:`load_latest` does for one directory."""
    directories = [Path(d) for d in directories]
    skipped: list[list[str]] = [[] for _ in directories]
    common = set.intersection(*(set(checkpoint_steps(d)) for d in directories))
    for step in sorted(common, reverse=True):
        paths, states = [], []
        for k, directory in enumerate(directories):
            path = checkpoint_path(directory, step)
            try:
                states.append(load_checkpoint(path))
            except CorruptCheckpoint as exc:
                path.rename(path.with_name(path.name + ".corrupt"))
                _digest_path(path).unlink(missing_ok=True)
                skipped[k].append(f"checkpoint {exc}; renamed to {path.name}.corrupt")
                break
            paths.append(path)
        else:
            return CommonCheckpoint(step, paths, states, skipped)
    none = [None] * len(directories)
    return CommonCheckpoint(None, list(none), list(none), skipped)
