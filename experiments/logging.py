"""Run-directory writers: append-and-flush JSONL files and TensorBoard scalars.

Every JSONL row is flushed as it is written, so a killed run loses at most the row being
written; :func:`truncate_jsonl` drops rows past a checkpoint (and a torn last line) when
a run resumes, so rows are never lost or duplicated across a kill.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["JsonlWriter", "TensorBoardWriter", "read_jsonl", "truncate_jsonl", "jsonable"]


def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars/arrays become Python ones, NaN/inf become None
    (strict JSON has no NaN; the DIVERGED marker keeps the raw value as a string)."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and callable(value.item):  # a 0-d torch tensor
        return jsonable(value.item())
    return value


class JsonlWriter:
    """Appends one JSON object per line and flushes it (the file is opened in append mode)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 -- closed in close()

    def write(self, row: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(jsonable(row), allow_nan=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of a JSONL file; a torn (partially written) line is skipped."""
    path = Path(path)
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def truncate_jsonl(path: str | Path, max_step: int) -> int:
    """Keep only well-formed rows with ``row["step"] <= max_step``; return how many were kept.

    The file is rewritten atomically (temp file + rename), so a kill during truncation
    leaves either the old or the new file.
    """
    path = Path(path)
    if not path.exists():
        return 0
    kept = [row for row in read_jsonl(path) if int(row.get("step", 0)) <= max_step]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in kept:
            f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(kept)


class TensorBoardWriter:
    """Scalars to TensorBoard event files in the run directory.

    On resume ``purge_step`` makes TensorBoard hide events written past the checkpoint by
    the killed process, as ``truncate_jsonl`` does for the JSONL files.
    """

    def __init__(self, log_dir: str | Path, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imported here: it is slow

        self._writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)

    def scalars(self, values: Mapping[str, Any], step: int, prefix: str = "") -> None:
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                continue
            if math.isfinite(float(value)):
                self._writer.add_scalar(prefix + key, float(value), step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
