"""Progress of a run or a sweep: a tqdm bar on a TTY, plain tqdm-formatted lines otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from tqdm import tqdm

__all__ = ["Progress"]


class Progress:
    """Shows ``steps / total``, steps per second, the time left and a free-form status.

    Args:
        total: the step count at 100%.
        mode: "bar" (a tqdm bar), "lines" (tqdm's statistics as a new line every
            ``interval`` seconds, for logs and pipes, where a redrawn bar would be one
            endless line), "off", or "auto" (a bar when ``stream`` is a TTY, lines otherwise).
        interval: seconds between plain lines.
        label: shown before the counts (the arm or the sweep name).

    The rate counts from the first :meth:`update`, so a resumed run shows its own speed; a
    step below that first one (a resumed sweep's count drops when its runs cut their logs
    back to their checkpoints) starts the count again there, so the rate and the time left
    never go negative.
    """

    def __init__(self, total: int, mode: str = "auto", stream: TextIO | None = None,
                 interval: float = 10.0, label: str = "") -> None:
        self.stream = stream if stream is not None else sys.stderr
        if mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "lines"
        self.mode, self.total, self.label = mode, max(int(total), 1), label.strip()
        self.interval = interval
        self._bar: tqdm | None = None
        self._start = time.perf_counter()
        self._start_step: int | None = None
        self._last = -float("inf")

    def update(self, step: int, status: str = "", force: bool = False) -> None:
        if self.mode == "off":
            return
        if self._start_step is not None and step < self._start_step:
            self.close()
            self._bar, self._start_step = None, None
        if self._start_step is None:
            self._start_step, self._start = step, time.perf_counter()
            if self.mode == "bar":
                self._bar = tqdm(total=self.total, initial=step, desc=self.label or None,
                                 file=self.stream, unit="step", unit_scale=True,
                                 dynamic_ncols=True, mininterval=0.1)
        if self._bar is not None:
            self._bar.set_postfix_str(status, refresh=False)
            self._bar.update(step - self._bar.n)
            if force:
                self._bar.refresh()
            return
        now = time.perf_counter()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        elapsed = now - self._start
        rate = (step - self._start_step) / elapsed if elapsed > 0 else None
        line = tqdm.format_meter(step, self.total, elapsed, ncols=0, prefix=self.label,
                                 unit="step", unit_scale=True, rate=rate, postfix=status or None)
        self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
