"""Instructions per env step of a single run (K = 1), this tree against another, by section.

    python benchmarks/instructions.py --against DIR [--algo dqn ppo]

``DIR`` is another checkout of the project (e.g. ``git worktree add /tmp/before 92e7542``,
the code before populations). Each tree runs in its own process under ``valgrind
--tool=callgrind --dump-before=time_sleep`` (the two trees in parallel); ``time.sleep(0)``
markers in the child make callgrind dump its counts between sections.

Instruction counts do not depend on the machine's load, unlike CPU time on a shared machine
(where a tree's rate moves 10-30% from minute to minute). With string hashing fixed
(``PYTHONHASHSEED=0``) and the garbage collector's state set before the measured sections
(``gc.collect(); gc.freeze()``), which otherwise move a count by up to ~0.2% between
processes, one measurement per tree settles "no slower" to a fraction of a percent.
Callgrind counts each iteration of a ``rep movsb`` copy as an instruction, so a change
between ``memcpy`` and a vectorised copy loop moves the count more than the time.

* **DQN** at S2's settings (``DQN_S2`` of ``benchmarks/population.py``: MiniGrid hidden
  goal, 20-128-128-3 ReLU, batch 128, 3-step Huber, one update per env step), seed 0:
  1,000 env steps after a warm-up to 1,200 (past ``learning_starts``).
* **PPO** at S1's (``PPO_S1``: 4 envs x 128 steps, 64-64 tanh, 4 minibatches), seed 0: a
  run with 4 update epochs and one with 8 each train 4,096 env steps after a warm-up of
  2,048. The 8-epoch run's count minus the 4-epoch run's is 4 epochs of updates (128
  minibatches); the 4-epoch count minus that is the rollouts.

It prints, per tree and section, instructions per env step, and the ratio this / other.
valgrind must be installed (``apt-get install valgrind``); DQN takes ~15 minutes, PPO ~8.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HERE / "benchmarks"))

from population import DQN_S2, PERIOD, PPO_S1, STREAM  # noqa: E402  (this tree's, both trees)

#: Run under callgrind with the tree to measure first on ``sys.path`` (argv: tree, algo,
#: settings as JSON); each ``time.sleep(0)`` ends a dumped section.
CHILD = """
import gc, json, sys, time
sys.path.insert(0, sys.argv[1])
import torch
import envs
from agents import DQN, PPO, DQNConfig, PPOConfig
torch.set_num_threads(1)
stream, period, settings = json.loads(sys.argv[3])
settings["widths"] = tuple(settings["widths"])
if sys.argv[2] == "dqn":
    env = envs.make(stream, seed=0, period=period)
    agent = DQN(env.observation_space, env.action_space, DQNConfig(**settings, seed=0))
    agent.learn(env, 1200)
    gc.collect()
    gc.freeze()
    time.sleep(0)
    agent.learn(env, 2200)
    time.sleep(0)
else:
    runs = []
    for epochs in (4, 8):
        vec = envs.make_vector(stream, settings["num_envs"], seed=0, period=period)
        config = PPOConfig(**{**settings, "update_epochs": epochs}, seed=0)
        agent = PPO(vec.single_observation_space, vec.single_action_space, config)
        agent.learn(vec, 2048)
        runs.append((agent, vec))
    gc.collect()
    gc.freeze()
    for agent, vec in runs:
        time.sleep(0)
        agent.learn(vec, 2048 + 4096)
    time.sleep(0)
"""

#: Env steps of the dumped sections.
STEPS = {"dqn": 1000, "ppo": 4096}


def launch(tree: Path, algo: str, out: Path) -> subprocess.Popen:
    settings = DQN_S2 if algo == "dqn" else PPO_S1
    spec = json.dumps([STREAM, PERIOD, settings])
    return subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--dump-before=time_sleep",
         f"--callgrind-out-file={out}", sys.executable, "-c", CHILD, str(tree), algo, spec],
        cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONHASHSEED": "0"})


def dump_total(path: Path) -> int:
    """The instruction count of one callgrind dump (its ``totals:`` line)."""
    match = re.search(r"^totals:\s+(\d+)", path.read_text(), re.MULTILINE)
    if match is None:
        raise SystemExit(f"{path}: no totals line; is it a callgrind dump?")
    return int(match.group(1))


def sections(algo: str, out: Path) -> dict[str, float]:
    """Instructions per env step of each section, from the dumps ``out.1``, ``out.2``...
    (dump 1 is everything up to the first marker: imports and warm-up)."""
    n = STEPS[algo]
    if algo == "dqn":
        return {"total": dump_total(out.with_name(out.name + ".2")) / n}
    four, eight = (dump_total(out.with_name(f"{out.name}.{i}")) for i in (2, 3))
    updates = eight - four
    return {"rollouts": (four - updates) / n, "updates": updates / n, "total": four / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, required=True,
                        help="another checkout of the project (the baseline)")
    parser.add_argument("--algo", nargs="+", choices=("dqn", "ppo"), default=["dqn", "ppo"])
    args = parser.parse_args()
    if not (args.against / "agents" / "ppo.py").is_file():
        parser.error(f"--against {str(args.against)!r}: not a checkout of this project "
                     "(no agents/ppo.py); e.g. git worktree add /tmp/before 92e7542")
    if shutil.which("valgrind") is None:
        parser.error("valgrind not found; valid: a machine with valgrind on PATH")
    trees = {"here": HERE, "there": args.against.resolve()}
    with tempfile.TemporaryDirectory() as tmp:
        for algo in args.algo:
            outs = {name: Path(tmp) / f"{algo}.{name}" for name in trees}
            procs = {name: launch(tree, algo, outs[name]) for name, tree in trees.items()}
            for name, proc in procs.items():
                _, err = proc.communicate()
                if proc.returncode != 0:
                    raise SystemExit(f"{algo} under callgrind in {trees[name]} failed:\n{err}")
            here, there = (sections(algo, outs[name]) for name in trees)
            for section in here:
                print(f"{algo} {section:9s} {there[section] / 1e3:8.1f}k there, "
                      f"{here[section] / 1e3:8.1f}k here instructions per env step "
                      f"({here[section] / there[section]:.3f}x)", flush=True)


if __name__ == "__main__":
    main()
