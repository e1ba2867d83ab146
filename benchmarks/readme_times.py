"""The README's example commands against the times the README prints beside them.

Every ``plasticity`` command of README.md's bash blocks carries its measured cost as
``CPU ≈ N s`` / ``N min`` (process time of the command and every process it starts: the
default study's and a sweep's workers included; on 2 free cores the wall time of a
two-worker command is about half its CPU time). This script runs each command at full
size, in README order, in a fresh directory holding a copy of docs/examples (so the
resume and report commands find what the earlier ones wrote), measures its CPU time with
``os.wait4`` and prints measured / printed. It exits 1 when a command is off by more than
2x either way, or carries no figure. Commands that cannot run here are listed with the
reason (a Ray cluster, the multi-hour study sweeps; ``tests/test_readme.py`` names them).

    python benchmarks/readme_times.py                # every command (about 30 min CPU)
    python benchmarks/readme_times.py --only sweep   # the commands containing "sweep"
    python benchmarks/readme_times.py --only cartpole-pop --only Windy   # either text
    python benchmarks/readme_times.py --json out.jsonl   # also one JSON row per command

CPU time, not wall time, so a loaded machine changes the figures little (caches and
frequency aside); the wall time is printed too.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: ``CPU ≈ 4.5 min`` in a command's comment.
FIGURE = re.compile(r"CPU ≈ ([0-9.]+) (s|min|h)\b")
UNIT = {"s": 1.0, "min": 60.0, "h": 3600.0}
#: Not run here, with the reason (as tests/test_readme.py's SKIPPED).
NOT_RUN = {
    "--backend ray": "needs a running Ray cluster",
    "experiments/studies/": "a study sweep takes 20 min to 2 h (times in the README's "
                            "'Reproducing the study')",
    "report --study": "needs the study sweeps' runs (or rewrites the committed docs/ from "
                      "docs/tables)",
}


def readme_commands(text: str) -> list[tuple[str, float | None]]:
    """``(command, printed CPU seconds or None)`` for every ``plasticity`` line of the bash
    blocks (continuations joined)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0] == "plasticity":
                found = FIGURE.search(line)
                out.append((shlex.join(words),
                            float(found.group(1)) * UNIT[found.group(2)] if found else None))
    return out


def skip_reason(command: str) -> str | None:
    return next((why for key, why in NOT_RUN.items() if key in command), None)


def run_timed(command: str, cwd: Path) -> tuple[int, float, float]:
    """Exit code, CPU seconds (the command and its reaped children), wall seconds."""
    argv = [sys.executable, "-m", "experiments.cli", *shlex.split(command)[1:]]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    return proc.returncode, usage.ru_utime + usage.ru_stime, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[],
                        help="run only the commands containing this text (repeatable: any)")
    parser.add_argument("--json", help="append one JSON row per command to this file")
    parser.add_argument("--keep", help="work in this directory (kept) instead of a temporary one")
    args = parser.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="readme_times_"))
    work.mkdir(parents=True, exist_ok=True)
    if not (work / "docs" / "examples").exists():
        shutil.copytree(ROOT / "docs" / "examples", work / "docs" / "examples")
    bad = 0
    print(f"{'printed':>9} {'measured':>9} {'ratio':>6} {'wall':>8}  command")
    for command, printed in readme_commands(README.read_text(encoding="utf-8")):
        if args.only and not any(text in command for text in args.only):
            continue
        why = skip_reason(command)
        if why:
            print(f"{'-':>9} {'-':>9} {'-':>6} {'-':>8}  {command}  (not run: {why})")
            continue
        code, cpu, wall = run_timed(command, work)
        ratio = cpu / printed if printed else float("nan")
        ok = code == 0 and printed is not None and 0.5 <= ratio <= 2.0
        bad += not ok
        note = "" if ok else ("  <- no printed figure" if printed is None else
                              f"  <- exit {code}" if code else "  <- off by more than 2x")
        shown = f"{printed:9.0f}" if printed else f"{'-':>9}"
        print(f"{shown} {cpu:9.1f} {ratio:6.2f} {wall:8.1f}  {command}{note}", flush=True)
        if args.json:
            with open(args.json, "a", encoding="utf-8") as f:
                f.write(json.dumps({"command": command, "printed_cpu_s": printed, "cpu_s": cpu,
                                    "wall_s": wall, "exit": code}) + "\n")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
