"""The run-directory layout: file names, markers, JSONL reading, atomic writes, the lock.

This module is the one owner of what a run directory (and a sweep directory) holds; the
runner, the sweep, the checkpoints and the analysis loader use its names and readers
instead of spelling file names themselves. The schema is in docs/architecture.md::

    RUN_DIR/config.toml metrics.jsonl episodes.jsonl probes.jsonl shifts.jsonl
            provenance.json checkpoints/ DONE | DIVERGED  LOCK (while a process owns it)
    SWEEP_DIR/sweep.toml runs/<run_name>/ LOCK (while a sweep runs) + the report's files

JSONL files are appended one flushed line at a time, so a process killed mid-write can
leave one *torn* last line (a row cut short, without its newline). :func:`scan_jsonl`
finds it; :func:`read_jsonl` refuses it or warns about it (never drops it silently);
:func:`rewind_jsonl` removes it, with every row past a checkpoint, when a run resumes.

The lock (:func:`locked`) is an exclusive ``flock`` on ``LOCK``, which also names its
owner (pid, host, start time): a second process refuses with one line naming it, and the
kernel releases the lock of a process that dies, so a killed run's stale ``LOCK`` is
simply taken over by the next process.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from experiments.errors import ConfigError

__all__ = [
    "CONFIG", "METRICS", "EPISODES", "PROBES", "SHIFTS", "PROVENANCE", "CHECKPOINTS", "DONE",
    "DIVERGED", "LOCK", "SWEEP_FILE", "SWEEP_RUNS", "JSONL_FILES", "RUN_FILES", "REPORT_FILES",
    "STATUSES", "TornLineError", "RunDirLocked", "JsonlScan", "Rewind",
    "run_status", "read_marker", "write_json_atomic", "scan_jsonl", "read_jsonl", "rewind_jsonl",
    "check_out", "locked", "clear", "clear_report", "provenance", "read_provenance",
    "start_segment", "git_info", "versions", "utc_now",
]

CONFIG = "config.toml"
METRICS = "metrics.jsonl"
EPISODES = "episodes.jsonl"
PROBES = "probes.jsonl"
SHIFTS = "shifts.jsonl"
PROVENANCE = "provenance.json"
CHECKPOINTS = "checkpoints"
DONE = "DONE"
DIVERGED = "DIVERGED"
LOCK = "LOCK"
SWEEP_FILE = "sweep.toml"
SWEEP_RUNS = "runs"
TENSORBOARD_GLOB = "events.out.tfevents.*"

JSONL_FILES = (METRICS, EPISODES, PROBES, SHIFTS)
#: What a run writes in its directory (``--overwrite`` deletes these, its TensorBoard
#: events and its report; never the ``LOCK`` of the process doing it).
RUN_FILES = (CONFIG, *JSONL_FILES, PROVENANCE, CHECKPOINTS, DONE, DIVERGED)
#: What ``plasticity report`` writes beside the runs it describes (names and patterns).
REPORT_FILES = ("report.md", "figures", "tables", "*.csv", "*.parquet")
STATUSES = ("done", "diverged", "partial", "empty")


class TornLineError(ConfigError):
    """A JSONL file ends in a torn line (a write cut short) where none may be."""


class RunDirLocked(ConfigError):
    """Another live process owns the run (or sweep) directory."""


# ----------------------------------------------------------------------------- markers
def run_status(run_dir: str | Path) -> str:
    """"done" | "diverged" | "partial" (config written, not finished) | "empty"."""
    run_dir = Path(run_dir)
    if (run_dir / DONE).exists():
        return "done"
    if (run_dir / DIVERGED).exists():
        return "diverged"
    if (run_dir / CONFIG).exists():
        return "partial"
    return "empty"


def read_marker(path: str | Path) -> dict[str, Any] | None:
    """A JSON marker (``DONE``, ``DIVERGED``, ``provenance.json``) as a dict; None if absent.
    Hand-written markers are tolerated: empty -> ``{}``, non-JSON -> ``{"text": ...}``."""
    path = Path(path)
    if not path.exists():
        return None
    text = path.read_text(encoding="utf-8").strip()
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {"text": text}
    return value if isinstance(value, dict) else {"value": value}


def write_json_atomic(path: str | Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON via a synced temp file and a rename: readers and a kill at any
    moment see the old file or the new one, never a part."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(json.dumps(data, indent=1) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- JSONL
@dataclass(frozen=True)
class JsonlScan:
    """A JSONL file, parsed: its rows and, if the last line was cut short, that line."""

    rows: list[dict[str, Any]]
    torn: str | None = None


def scan_jsonl(path: str | Path) -> JsonlScan:
    """Parse ``path`` (missing: no rows). The last line is *torn* when it has no newline and
    is not valid JSON (a write cut short); a bad line anywhere else is corruption, a
    :class:`ConfigError` naming the file and line."""
    path = Path(path)
    if not path.is_file():
        return JsonlScan([])
    text = path.read_text(encoding="utf-8", errors="replace")
    if text.endswith("\n"):  # no torn line possible: parse the whole file in one call (a
        try:                 # study's 10^6 episode rows load several times faster)
            return JsonlScan(json.loads("[" + text[:-1].replace("\n", ",") + "]"))
        except json.JSONDecodeError:
            pass  # a blank or bad line: the line-by-line pass below names it
    lines = text.split("\n")
    last = lines.pop()  # "" when the file ends with a newline
    rows = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{i + 1}: not a JSON object ({exc.msg}); the file is "
                              "corrupt") from None
    torn = None
    if last.strip():
        try:
            rows.append(json.loads(last))  # complete, only its newline missing
        except json.JSONDecodeError:
            torn = last
    return JsonlScan(rows, torn)


def _torn_message(path: Path, torn: str) -> str:
    return (f"{path}: the last line is torn ({len(torn)} characters cut short, from a "
            "process killed while writing)")


def read_jsonl(path: str | Path, *, torn: str = "raise") -> list[dict[str, Any]]:
    """The rows of a JSONL file (missing: ``[]``).

    Args:
        torn: what a torn last line does: ``"raise"`` a :class:`TornLineError`, or
            ``"warn"``: one line on stderr, and the rows before it. Never silent.
    """
    if torn not in ("raise", "warn"):
        raise ValueError(f"torn={torn!r}; valid: 'raise', 'warn'")
    path = Path(path)
    scan = scan_jsonl(path)
    if scan.torn is not None:
        message = _torn_message(path, scan.torn)
        if torn == "raise":
            raise TornLineError(f"{message}; refusing to read it (resuming an unfinished "
                                "run repairs it)")
        print(f"plasticity: warning: {message}; that row is left out", file=sys.stderr,
              flush=True)
    return scan.rows


@dataclass(frozen=True)
class Rewind:
    """What :func:`rewind_jsonl` did to one file."""

    kept: int
    dropped: int
    torn: str | None


def rewind_jsonl(path: str | Path, max_step: int) -> Rewind:
    """Keep only the rows with ``row["step"] <= max_step`` (and no torn line), rewriting the
    file atomically; a run resuming from a checkpoint at ``max_step`` calls it on each
    JSONL file, so no row is lost or duplicated across a kill."""
    path = Path(path)
    if not path.exists():
        return Rewind(0, 0, None)
    scan = scan_jsonl(path)
    kept = [row for row in scan.rows if int(row.get("step", 0)) <= max_step]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in kept:
            f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return Rewind(len(kept), len(scan.rows) - len(kept), scan.torn)


# ----------------------------------------------------------------------------- directories
def check_out(path: str | Path, what: str = "--out") -> Path:
    """Refuse an output directory that cannot be one: an existing non-directory, or a
    place that cannot be written (checked on the nearest existing ancestor). Writes nothing."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {str(path)!r} is an existing file, not a directory; "
                          "give a directory path (new or existing)")
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"{what} {str(path)!r}: {str(probe)!r} is a file, so the directory "
                          "cannot be created; give a directory path")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {str(path)!r}: {str(probe)!r} is not writable; give a "
                          "directory you can write to")
    return path


def _remove(path: Path) -> None:
    import shutil

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def clear_report(directory: str | Path) -> None:
    """Delete what ``plasticity report`` wrote in ``directory`` (:data:`REPORT_FILES`)."""
    directory = Path(directory)
    for pattern in REPORT_FILES:
        for path in directory.glob(pattern):
            _remove(path)


def clear(run_dir: str | Path) -> None:
    """Delete everything a run and its report wrote in ``run_dir`` (not the ``LOCK``)."""
    run_dir = Path(run_dir)
    for name in RUN_FILES:
        _remove(run_dir / name)
    for events in run_dir.glob(TENSORBOARD_GLOB):
        events.unlink()
    clear_report(run_dir)


# ----------------------------------------------------------------------------- the lock
def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _owner_text(owner: Mapping[str, Any]) -> str:
    return (f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')} "
            f"(started {owner.get('started', '?')})")


@contextmanager
def locked(directory: str | Path, what: str = "run directory") -> Iterator[Path]:
    """Own ``directory`` (created if needed) while the block runs.

    Raises:
        RunDirLocked: another live process owns it; the message names that process.
    A ``LOCK`` left by a process that died is taken over, with one line on stderr. A
    directory this call created is removed again if the block left it empty.
    """
    directory = Path(directory)
    created = not directory.exists()
    path = directory / LOCK
    while True:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # permissions, a read-only file system, ...
            raise ConfigError(f"{what} {str(directory)!r} cannot be written "
                              f"({exc.strerror or exc}); give a directory you can write to") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_owner(fd)
            os.close(fd)
            raise RunDirLocked(f"{what} {str(directory)!r} is in use by {_owner_text(owner)}; "
                               "wait for it to finish or choose another directory") from None
        # The holder we waited for may have unlinked the file we opened: lock the live one.
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    stale = _read_owner(fd)
    if stale:
        print(f"plasticity: taking over the stale lock of {what} {str(directory)!r} left by "
              f"{_owner_text(stale)}, which is no longer running", file=sys.stderr, flush=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": utc_now()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
    os.fsync(fd)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)  # still ours: nobody else holds the flock
        os.close(fd)
        if created and not any(directory.iterdir()):
            directory.rmdir()  # a refused start leaves no trace


def _read_owner(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


# ----------------------------------------------------------------------------- provenance
def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def git_info(root: str | Path | None = None) -> dict[str, Any]:
    """``{"git_commit", "git_dirty"}`` of the checkout holding this package (None, None
    when it is not in a git checkout of its own, e.g. an installed wheel)."""
    root = Path(root) if root is not None else Path(__file__).resolve().parents[1]
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or Path(top.strip()).resolve() != root.resolve():
        return {"git_commit": None, "git_dirty": None}
    commit = _git(root, "rev-parse", "HEAD")
    status = _git(root, "status", "--porcelain")
    return {"git_commit": commit.strip() if commit else None,
            "git_dirty": None if status is None else bool(status.strip())}


def versions() -> dict[str, str | None]:
    """Versions of Python and of the packages a run's numbers depend on."""
    from importlib import metadata

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("torch", "gymnasium", "minigrid", "numpy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def read_provenance(run_dir: str | Path) -> dict[str, Any] | None:
    return read_marker(Path(run_dir) / PROVENANCE)


def provenance(resumed_from: int | None, previous: Mapping[str, Any] | None = None,
               notes: list[str] | None = None) -> dict[str, Any]:
    """``provenance.json`` with one more segment (this process's start) appended.

    Top-level ``git_commit``/``git_dirty``/``versions`` are the first segment's; each
    segment is ``{git_commit, git_dirty, resumed_from, started, versions}`` plus ``notes``
    (what that start repaired or fell back from) when there are any.
    """
    segment: dict[str, Any] = {**git_info(), "resumed_from": resumed_from, "started": utc_now(),
                               "versions": versions()}
    if notes:
        segment["notes"] = list(notes)
    segments = list(previous.get("segments", [])) if previous else []
    segments.append(segment)
    first = segments[0]
    return {"git_commit": first.get("git_commit"), "git_dirty": first.get("git_dirty"),
            "versions": first.get("versions", segment["versions"]), "segments": segments}


def start_segment(run_dir: str | Path, resumed_from: int | None,
                  notes: list[str] | None = None) -> dict[str, Any]:
    """Write ``provenance.json`` for a (re)start: a new file for a fresh start, one more
    segment for a resume. Returns what was written."""
    run_dir = Path(run_dir)
    previous = read_provenance(run_dir) if resumed_from is not None else None
    data = provenance(resumed_from, previous, notes)
    write_json_atomic(run_dir / PROVENANCE, data)
    return data
