"""The ``plasticity`` command: ``run``, ``sweep``, ``report``, ``envs``, ``list``.

User mistakes (a ValueError subclass from any of our packages: ConfigError, EnvError,
AgentError, SpectralError) print one line, ``plasticity: error: <message>``, and exit
with code 2 before anything is written; a diverged run exits 1; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from experiments.errors import ConfigError, RunDiverged

DEFAULT_STUDY = Path(__file__).parent / "defaults" / "default.toml"
DEFAULT_OUT = "runs/default"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line and exit code 2 like every other mistake."""

    def error(self, message: str) -> NoReturn:
        print(f"plasticity: error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        raise SystemExit(2)


def _user_errors() -> tuple[type[BaseException], ...]:
    from agents.base import AgentError
    from envs.errors import EnvError
    from spectral.errors import SpectralError

    return (ConfigError, EnvError, AgentError, SpectralError)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="plasticity", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run one experiment (no CONFIG: the embedded default study)",
                         description="Run CONFIG.toml, or with no CONFIG the embedded default "
                         "study (PPO on the MiniGrid hidden-moving-goal stream, continual + "
                         "fresh reference in parallel) followed by its report.")
    run.add_argument("args", nargs="*", metavar="[CONFIG.toml] [table.key=value ...]",
                     help="a run config and/or overrides such as agent.learning_rate=3e-4")
    run.add_argument("--env", help="stream id (env.id); see `plasticity envs`")
    run.add_argument("--agent", choices=("dqn", "ppo"), help="agent.algo")
    run.add_argument("--steps", type=int, help="experiment.steps")
    run.add_argument("--seed", type=int, help="experiment.seed")
    run.add_argument("--seeds", metavar="SEEDS",
                     help="a population of seeds in one process, e.g. 0-7 or 0,3,5: seed s "
                     "runs in <out>/seed<s> (run the same command again, or --resume <out>, "
                     "to resume)")
    run.add_argument("--out", help="run directory (default: runs/<stream>-<agent>/<arm>-seed<seed>; "
                     "default study: its sweep directory, runs/default)")
    run.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key (repeatable)")
    run.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last "
                     "checkpoint (a population's directory: every unfinished member)")
    run.add_argument("--overwrite", action="store_true", help="replace a finished run directory")
    run.add_argument("--workers", type=int, default=2, help="default study: parallel runs (2)")

    sweep = sub.add_parser("sweep", help="run a grid of experiments (see experiments/sweep.py)")
    sweep.add_argument("file", metavar="SWEEP.toml")
    sweep.add_argument("--workers", type=int, default=1, help="parallel runs (default 1)")
    sweep.add_argument("--backend", choices=("local", "ray"), default="local")
    sweep.add_argument("--address", help="ray cluster address (default: a local ray instance)")
    sweep.add_argument("--out", help="sweep directory (default: the file's `out` or runs/sweeps/NAME)")
    sweep.add_argument("--smoke", action="store_true", help="apply the file's [smoke] overrides")
    sweep.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                       help="override a key of [base] (repeatable)")
    sweep.add_argument("--overwrite", action="store_true", help="run every member again")
    sweep.add_argument("--population", action=argparse.BooleanOptionalAction, default=None,
                       help="run each arm's seeds as one population (default: the file's "
                       "`population`, true)")
    sweep.add_argument("--no-report", action="store_true", help="do not write the report")

    report = sub.add_parser("report", help="write the report of run or sweep directories",
                            description="Write the report of run or sweep directories, or "
                            "rebuild it from a tables directory a report wrote (OUT/tables/...).")
    report.add_argument("paths", nargs="+", metavar="DIR",
                        help="run or sweep directories, or a report's tables directory")
    report.add_argument("--out", help="report directory (default: the one DIR given, or report/ "
                        "in the deepest directory holding all DIRs; with --study: docs)")
    report.add_argument("--study", action="store_true",
                        help="DIRs are the study's sweep directories (or their tables, "
                             "OUT/tables/<study>): write OUT/results.md, OUT/figures/, "
                             "OUT/tables/, OUT/configs/ (see README, 'Reproducing the study')")
    report.add_argument("--allow-mixed-commits", action="store_true",
                        help="build from runs made by different code commits (listed in the "
                             "report); without it such input is refused")

    _add_power_parser(sub)
    sub.add_parser("envs", help="list the registered non-stationary streams")
    lister = sub.add_parser("list", help="list agents, mitigations, probe metrics or streams")
    lister.add_argument("what", choices=("agents", "mitigations", "metrics", "envs"))
    return parser


# ----------------------------------------------------------------------------- commands
def _split_run_args(args: Sequence[str]) -> tuple[str | None, list[str]]:
    config = [a for a in args if "=" not in a]
    if len(config) > 1:
        raise ConfigError(f"more than one config file given: {config!r}; give one CONFIG.toml "
                          "and overrides as table.key=value")
    return (config[0] if config else None), [a for a in args if "=" in a]


def _flag_overrides(ns: argparse.Namespace) -> dict[str, Any]:
    from experiments.config import parse_overrides

    out: dict[str, Any] = {}
    if ns.agent is not None:
        out["agent.algo"] = ns.agent  # first, so a changed algo drops the old agent's keys
    for key, value in (("env.id", ns.env), ("experiment.steps", ns.steps),
                       ("experiment.seed", ns.seed)):
        if value is not None:
            out[key] = value
    return out | parse_overrides(ns.sets)


def run_data(ns: argparse.Namespace) -> dict[str, Any] | None:
    """The run config (nested dicts, not yet validated) that ``plasticity run`` would run
    for the parsed arguments ``ns``; None for the default study."""
    from experiments import rundir
    from experiments.config import apply_overrides, parse_overrides
    from experiments.tomlio import load_toml

    config_path, positional = _split_run_args(ns.args)
    overrides = _flag_overrides(ns) | parse_overrides(positional)
    if ns.resume:
        if config_path is not None:
            raise ConfigError("--resume DIR takes the config saved in DIR; do not also give CONFIG")
        saved = Path(ns.resume) / rundir.CONFIG
        if not saved.is_file():
            hint = (" (it is a sweep directory: run `plasticity sweep` on its sweep.toml again "
                    "to resume its runs)") if (Path(ns.resume) / rundir.SWEEP_FILE).is_file() else ""
            raise ConfigError(f"--resume {ns.resume!r}: no config.toml there, so it is not a run "
                              f"directory{hint}")
        return apply_overrides(load_toml(saved), overrides | {"experiment.out": ns.resume})
    if config_path is None and ns.env is None and ns.agent is None:
        return None
    # A stream or an agent named by flag runs on that stream's and agent's own defaults
    # (the stream's period, exploration scaled to the run), not on the default study's.
    base = load_toml(config_path) if config_path is not None else {}
    data = apply_overrides(base, overrides)
    if ns.out:
        data = apply_overrides(data, {"experiment.out": ns.out})
    return data


def cmd_run(ns: argparse.Namespace) -> int:
    from experiments import rundir
    from experiments.config import from_dict, parse_overrides
    from experiments.resolve import resolve
    from experiments.runner import run

    if ns.resume and (members := population_members(Path(ns.resume))):
        return _resume_population(ns, members)
    data = run_data(ns)
    if data is None:
        return _run_default_study(ns, _flag_overrides(ns) | parse_overrides(ns.args))
    if ns.seeds is not None:
        return _run_population(ns, data)
    config = resolve(from_dict(data))
    if ns.resume and not ns.overwrite and rundir.run_status(config.run_dir) == "done":
        print(f"run {ns.resume} is already finished (DONE); nothing to resume")
        return 0
    print(f"run directory: {config.run_dir}", flush=True)  # stdout: errors stay one line
    result = run(config, overwrite=ns.overwrite)
    print(f"run finished: {result.run_dir} ({result.steps} steps, {result.wall_time:.1f}s, "
          f"probes {result.probe_fraction:.1%} of the time)")
    print(f"report: plasticity report {result.run_dir}")
    return 0


def parse_seeds(text: str) -> list[int]:
    """``"0-7"`` -> 0..7, ``"0,3,5"`` -> [0, 3, 5] (ranges and lists combine: ``"0-3,9"``)."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            seeds.extend(range(int(low), int(high) + 1) if high else [int(low)])
    except ValueError:
        seeds = []
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text!r} is not a list of distinct seeds >= 0; valid: e.g. "
                          "0-7, 0,3,5 or 0-3,9")
    return seeds


def _run_population(ns: argparse.Namespace, data: dict[str, Any]) -> int:
    from experiments.config import ExperimentConfig, apply_overrides, from_dict
    from experiments.runner import run_population

    if ns.seed is not None or ns.resume:
        raise ConfigError("--seeds runs a population: do not also give --seed or --resume "
                          "(run the same command again to resume it)")
    seeds = parse_seeds(ns.seeds)
    out = str(data.get("experiment", {}).get("out") or ExperimentConfig.out)
    # A run directory with a {seed} field names each member's; otherwise <out>/seed<s>.
    template = out if "{seed}" in out else str(Path(out) / "seed{seed}")
    configs = [from_dict(apply_overrides(data, {"experiment.seed": s,
                                                "experiment.out": template}))
               for s in seeds]
    print(f"population of {len(configs)} in {configs[0].run_dir.parent}: "
          + ", ".join(c.run_dir.name for c in configs), flush=True)
    # a member finished on its own (--resume P/seed0) is kept; the others run or resume
    return _population_done(run_population(configs, overwrite=ns.overwrite, skip_finished=True))


def population_members(directory: Path) -> list[Path]:
    """The member run directories of a population directory (``--seeds S --out P`` writes
    ``P/seed<s>``); empty when ``directory`` is itself a run or a sweep directory."""
    from experiments import rundir

    if not directory.is_dir() or (directory / rundir.CONFIG).is_file() or \
            (directory / rundir.SWEEP_FILE).is_file():
        return []
    return sorted(p for p in directory.iterdir() if (p / rundir.CONFIG).is_file())


def _resume_population(ns: argparse.Namespace, members: list[Path]) -> int:
    """``--resume P`` on a population directory: every unfinished member resumes, as one
    population, from its saved config (the same as rerunning the ``--seeds`` command)."""
    from experiments import rundir
    from experiments.config import apply_overrides, from_dict, parse_overrides
    from experiments.runner import run_population
    from experiments.tomlio import load_toml

    config_path, positional = _split_run_args(ns.args)
    if config_path is not None or ns.seeds is not None or ns.seed is not None:
        raise ConfigError(f"--resume {ns.resume!r} is a population directory: it takes the "
                          "configs its members saved; do not also give CONFIG, --seed or --seeds")
    overrides = _flag_overrides(ns) | parse_overrides(positional)
    configs = [from_dict(apply_overrides(load_toml(m / rundir.CONFIG),
                                         overrides | {"experiment.out": str(m)}))
               for m in members]
    left = [m for m in members if rundir.run_status(m) != "done"]
    if not left and not ns.overwrite:
        print(f"population {ns.resume} is already finished ({len(members)} members, all DONE); "
              "nothing to resume")
        return 0
    print(f"resuming the population in {ns.resume}: {', '.join(m.name for m in left)} "
          f"({len(members) - len(left)} already finished)", flush=True)
    return _population_done(run_population(configs, overwrite=ns.overwrite, skip_finished=True))


def _population_done(results: list[Any]) -> int:
    for r in results:
        extra = f"diverged at env step {r.diverged['step']}" if r.status == "diverged" else \
            f"{r.steps} steps, probes {r.probe_fraction:.1%} of the time"
        print(f"run finished: {r.run_dir} ({extra})")
    print(f"population of {len(results)} in {max(r.wall_time for r in results):.1f}s; "
          f"report: plasticity report {results[0].run_dir.parent}")
    return 1 if any(r.status == "diverged" for r in results) else 0


def _run_default_study(ns: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from experiments.sweep import load_sweep, run_sweep, summary

    seed = overrides.pop("experiment.seed", None)
    sweep = load_sweep(DEFAULT_STUDY, out=ns.out or DEFAULT_OUT, overrides=overrides,
                       seeds=None if seed is None else [seed])
    print(f"plasticity: default study: {len(sweep.runs)} runs "
          f"({', '.join(r.name for r in sweep.runs)}) -> {sweep.directory}", file=sys.stderr)
    result = run_sweep(sweep, workers=ns.workers, overwrite=ns.overwrite)
    print(summary(result))
    if result.failed:
        return 1
    report = write_report([sweep.directory], None)
    print(f"report: {report}")
    return 0


def cmd_sweep(ns: argparse.Namespace) -> int:
    from experiments.config import parse_overrides
    from experiments.sweep import load_sweep, run_sweep, summary

    sweep = load_sweep(ns.file, out=ns.out, smoke=ns.smoke, overrides=parse_overrides(ns.sets))
    result = run_sweep(sweep, workers=ns.workers, backend=ns.backend, address=ns.address,
                       overwrite=ns.overwrite, population=ns.population)
    print(summary(result))
    print(f"sweep directory: {sweep.directory}")
    if result.failed:
        print(f"plasticity: {len(result.failed)} of {len(sweep.runs)} runs did not finish: "
              + ", ".join(result.failed), file=sys.stderr)
        return 1
    if not ns.no_report:
        print(f"report: {write_report([sweep.directory], None)}")
    return 0


def write_report(paths: list[Path], out: Path | None, allow_mixed_commits: bool = False) -> Path:
    """The generic report of the report engine (experiments/reporting/build.py)."""
    from experiments.reporting.build import write_report as _write

    return _write(paths, out, allow_mixed_commits=allow_mixed_commits)


def cmd_report(ns: argparse.Namespace) -> int:
    from experiments.analysis import find_run_dirs, is_tables_dir

    if ns.out is not None and Path(ns.out).exists() and not Path(ns.out).is_dir():
        raise ConfigError(f"report --out {ns.out!r} is a file; give a directory (it is created "
                          "if missing)")
    paths = [Path(p) for p in ns.paths]
    for path in paths:
        if not path.is_dir():
            raise ConfigError(f"report: {str(path)!r} is not a directory; give run or sweep "
                              "directories, or a tables directory a report wrote")
        if not is_tables_dir(path):
            find_run_dirs([path])  # a directory without runs is refused before anything is written
    if ns.study:
        from experiments.reporting.build import write_study_report

        results = write_study_report(paths, ns.out or "docs",
                                     allow_mixed_commits=ns.allow_mixed_commits)
        print(f"results: {results}")
        return 0
    out = Path(ns.out) if ns.out else None
    print(f"report: {write_report(paths, out, ns.allow_mixed_commits)}")
    return 0


def cmd_envs(ns: argparse.Namespace) -> int:
    import envs

    print(envs.format_streams())
    return 0


def cmd_list(ns: argparse.Namespace) -> int:
    if ns.what == "envs":
        return cmd_envs(ns)
    if ns.what == "agents":
        from experiments.config import AGENTS

        print("\n".join(AGENTS))
    elif ns.what == "mitigations":
        from agents.mitigations import available_mitigations

        mitigations = available_mitigations()
        width = max(map(len, mitigations))
        print("\n".join(f"{name:<{width}}  {about}" for name, about in mitigations.items()))
    else:
        from experiments.probing import PROBE_KEYS, list_probe_groups
        from experiments.resolve import DEFAULT_PROBE_METRICS, probe_metric_names

        descriptions = list_probe_groups()
        for name in probe_metric_names():
            mark = "*" if name in DEFAULT_PROBE_METRICS else " "
            print(f"{mark} {name:<20} {descriptions[name]}")
            for key in PROBE_KEYS.get(name, ()):
                print(f"{'':25}{key}")
        print("(* = in the default probe set)")
    return 0


def _add_power_parser(sub: Any) -> None:
    power = sub.add_parser("power", help="the effect each declared hypothesis can detect",
                           description="Simulate each [[hypotheses]] test of STUDY.toml from "
                           "a pilot's (or a previous edition's) tables and print, for the "
                           "file's seeds and shifts, the effect detectable at 80% power and "
                           "P(equivalent | true zero) (experiments/reporting/power.py).")
    power.add_argument("file", metavar="STUDY.toml")
    power.add_argument("--from", dest="tables", required=True, metavar="TABLES_DIR",
                       help="a tables directory, e.g. docs/tables/e2_ppo_hidden_goal")
    power.add_argument("--sims", type=int, default=400,
                       help="simulated studies per test (default 400)")


def cmd_power(ns: argparse.Namespace) -> int:
    from experiments.reporting.power import power_report

    if ns.sims < 20:
        raise ConfigError(f"power: --sims = {ns.sims}; expected at least 20")
    print(power_report(ns.file, ns.tables, n_sims=ns.sims))
    return 0


COMMANDS = {"run": cmd_run, "sweep": cmd_sweep, "report": cmd_report, "envs": cmd_envs,
            "list": cmd_list, "power": cmd_power}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The parsed command line; ``run``'s overrides may come anywhere on the line (argparse
    alone takes positionals in one run, so ``run CONFIG --seed 3 table.key=value`` would
    leave the override unparsed)."""
    parser = build_parser()
    ns, extra = parser.parse_known_args(argv)
    if ns.command == "run" and all("=" in a and not a.startswith("-") for a in extra):
        ns.args = [*ns.args, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return ns


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``plasticity`` console script; returns the exit code."""
    ns = parse_args(argv)
    try:
        return COMMANDS[ns.command](ns)
    except RunDiverged as exc:
        print(f"plasticity: {exc}", file=sys.stderr)
        return 1
    except _user_errors() as exc:
        print(f"plasticity: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("plasticity: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
