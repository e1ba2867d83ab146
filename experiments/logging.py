"""Run-directory writers: append-and-flush JSONL files and TensorBoard scalars.

Every JSONL row is flushed as it is written, so a killed run loses at most the row being
written; :func:`experiments.rundir.rewind_jsonl` drops rows past a checkpoint (and a torn
last line) when a run resumes, so rows are never lost or duplicated across a kill.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["JsonlWriter", "TensorBoardWriter", "jsonable"]


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


class TensorBoardWriter:
    """Scalars to TensorBoard event files in the run directory.

    On resume ``purge_step`` makes TensorBoard hide events written past the checkpoint by
    the killed process, as ``rundir.rewind_jsonl`` does for the JSONL files.
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
