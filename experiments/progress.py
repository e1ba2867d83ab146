"""A dependency-free progress display: one carriage-return line on a TTY, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Shows ``steps / total``, steps per second and a free-form status.

    Args:
        total: the step count at 100%.
        mode: "bar" (rewrite one line), "lines" (a line every ``interval`` seconds), "off",
            or "auto" (a bar when ``stream`` is a TTY, lines otherwise).
        interval: seconds between plain lines (bars redraw at most 10 times a second).
    """

    def __init__(self, total: int, mode: str = "auto", stream: TextIO | None = None,
                 interval: float = 10.0, label: str = "") -> None:
        self.stream = stream if stream is not None else sys.stderr
        if mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "lines"
        self.mode, self.total, self.label = mode, max(int(total), 1), label
        self.interval = interval if mode == "lines" else 0.1
        self._start = time.perf_counter()
        self._start_step: int | None = None
        self._last = -float("inf")

    def update(self, step: int, status: str = "", force: bool = False) -> None:
        if self.mode == "off":
            return
        now = time.perf_counter()
        if self._start_step is None:
            self._start_step = step  # a resumed run measures SPS from where it restarted
        if not force and now - self._last < self.interval:
            return
        self._last = now
        sps = (step - self._start_step) / max(now - self._start, 1e-9)
        frac = min(step / self.total, 1.0)
        text = f"{self.label}{step:>9,}/{self.total:,} {frac:6.1%} | {sps:7.0f} sps"
        if status:
            text += " | " + status
        if self.mode == "bar":
            bar = "#" * int(frac * 20)
            self.stream.write(f"\r[{bar:<20}] {text}\033[K")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.mode == "bar":
            self.stream.write("\n")
            self.stream.flush()
