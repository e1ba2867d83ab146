"""Progress lines: the rate counts from the first update and never goes negative."""

from __future__ import annotations

import io

from experiments import progress as progress_module
from experiments.progress import Progress


def _lines(monkeypatch, updates: list[tuple[float, int]]) -> list[str]:
    clock = iter(t for t, _ in updates for _ in range(2))
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: next(clock))
    out = io.StringIO()
    bar = Progress(1_000, "lines", stream=out, interval=0.0, label="sweep")
    for _, step in updates:
        bar.update(step)
    return out.getvalue().splitlines()


def test_rate_counts_from_the_first_update(monkeypatch):
    lines = _lines(monkeypatch, [(0.0, 100), (10.0, 300)])
    assert "20.0step/s" in lines[-1]  # (300 - 100) / 10 s, not 300 / 10 s


def test_a_drop_below_the_first_step_restarts_the_rate(monkeypatch):
    # A resumed sweep first counts its runs' logged rows, then the runs cut their logs back
    # to their checkpoints: the count drops from 500 to 400 and then rises again.
    lines = _lines(monkeypatch, [(0.0, 500), (1.0, 400), (11.0, 600)])
    assert "-" not in lines[-1].split("step/s")[0].split(",")[-1]
    assert "20.0step/s" in lines[-1]  # (600 - 400) / 10 s
