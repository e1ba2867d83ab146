"""The two configurations of the one report engine, and their output directories.

* :func:`write_report` -- ``plasticity report DIR...``: run or sweep directories (or one
  tables directory) -> ``OUT/report.md``, ``OUT/figures/``, ``OUT/tables/`` (the Parquet
  tables every number is computed from; ``plasticity report OUT/tables`` rebuilds the same
  report from them alone). One stream per sweep among the inputs.
* :func:`write_study_report` -- ``plasticity report --study DIR...``: one sweep directory
  (or the tables written from one) per study -> ``OUT/results.md``, ``OUT/figures/``,
  ``OUT/tables/<study>/`` and ``OUT/configs/<study>/<run>.toml`` (each run's resolved
  config, which reproduces it).

Both load :class:`~experiments.analysis.RunData`, refuse runs of several code commits
unless ``allow_mixed_commits`` (naming them), read each stream's declarations from its study
file (the sweep's ``sweep.toml``, kept in the ``sweeps`` table), summarise
(:mod:`.summary`), draw (:mod:`.figures`) and render (:mod:`.render`). The document depends
on the tables, the arguments and the analysis stack's versions (printed in it; the rebuild
pins them with ``docs/report-constraints.txt``) only, so rebuilding it from the written
tables gives the same bytes.

The study configuration also reads ``OUT/previous_verdicts.json`` when it is there (a
previous edition's verdicts; the report lists the verdicts that changed) and rewrites the
marked study-summary block of the ``README.md`` beside ``OUT`` when that file has one
(:func:`experiments.reporting.answer.readme_block`).
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

from experiments.analysis.adaptation import AdaptationSpec, adaptation_frame, spec_for
from experiments.analysis.load import load_data
from experiments.analysis.rundata import (
    RunData,
    check_commits,
    commits,
    is_tables_dir,
    write_tables,
)
from experiments.errors import ConfigError
from experiments.reporting.answer import readme_block, replace_block
from experiments.reporting.declarations import Declarations, parse_declarations
from experiments.reporting.figures import write_figures
from experiments.reporting.orientation import document
from experiments.reporting.render import render
from experiments.reporting.summary import Report, StreamInput, pool_across, summarize
from experiments.tomlio import dumps_toml

__all__ = ["default_report_dir", "write_report", "write_study_report", "load_streams",
           "analysis_versions", "STUDY_TITLE", "STUDIES_DIR", "ANALYSIS_STACK"]

STUDY_TITLE = "Results: spectral collapse and loss of plasticity in RL"
REPORT_TITLE = "Plasticity report"
STUDIES_DIR = Path(__file__).resolve().parents[1] / "studies"
#: The packages every number of a report goes through (their versions are printed in it).
ANALYSIS_STACK = ("numpy", "scipy", "pandas", "pyarrow")


def analysis_versions() -> tuple[str, ...]:
    """``("numpy 2.4.6", ...)`` of :data:`ANALYSIS_STACK` as installed."""
    out = []
    for name in ANALYSIS_STACK:
        try:
            out.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(f"{name} not installed")
    return tuple(out)


def _report(title: str, streams: Sequence[StreamInput]) -> Report:
    summaries = tuple(summarize(s) for s in streams)
    return Report(title, summaries, pool_across(summaries), analysis_versions())


def _declarations(source: str, where: str) -> Declarations:
    if not source:
        return Declarations()
    try:
        return parse_declarations(tomllib.loads(source))
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _stream(data: RunData, name: str, source: str, run_ids: list[str]) -> StreamInput:
    part = data.select(run_ids)
    decl = _declarations(source, f"study {name!r}")
    env_ids = [e for e in part.runs["env_id"].dropna().unique()]
    if decl.threshold is not None:
        spec = AdaptationSpec(threshold=decl.threshold, max_return=decl.max_return)
        part.adaptation = adaptation_frame(part, spec)
    else:
        spec = spec_for(str(env_ids[0]) if env_ids else None)
    versions: dict[str, int] = {}
    for text in part.runs["provenance"].dropna():
        recorded = json.loads(text).get("versions") or {}
        line = ", ".join(f"{k} {v}" for k, v in recorded.items()) or "not recorded"
        versions[line] = versions.get(line, 0) + 1
    return StreamInput(name, part, decl, source, tuple(commits(part)),
                       tuple(f"{v} ({n} runs)" for v, n in versions.items()), spec.describe())


def load_streams(data: RunData) -> list[StreamInput]:
    """One stream per sweep of ``data`` (in the order of the ``sweeps`` table), plus one for
    the runs outside any sweep (named after the data's root)."""
    streams = []
    for sweep in data.sweeps.itertuples():
        run_ids = data.runs.loc[data.runs["sweep_id"] == sweep.sweep_id, "run_id"].tolist()
        if run_ids:
            streams.append(_stream(data, str(sweep.name), str(sweep.source or ""), run_ids))
    loose = data.runs.loc[data.runs["sweep_id"].isna(), "run_id"].tolist()
    if loose:
        streams.append(_stream(data, Path(data.root).name or "runs", "", loose))
    return streams


def _figures(report: Report, fig_dir: Path, doc_dir: Path) -> dict[str, dict[str, str]]:
    out = {}
    for s in report.streams:
        paths = write_figures(s, fig_dir)
        out[s.name] = {kind: p.resolve().relative_to(doc_dir.resolve()).as_posix()
                       for kind, p in paths.items()}
    return out


def default_report_dir(paths: Sequence[Path]) -> Path:
    """Where ``plasticity report`` writes without ``--out``: next to what it reports -- the
    single directory given (the directory holding it when it is a tables directory), else
    ``report/`` in the deepest directory holding all of them. Never the working directory
    itself or one above it (a report there would land where nobody looks): then --out is
    asked for."""
    if len(paths) == 1:
        return paths[0].parent if is_tables_dir(paths[0]) else paths[0]
    common = Path(os.path.commonpath([str(p.resolve()) for p in paths]))
    here = Path.cwd().resolve()
    if common == here or common in here.parents:
        raise ConfigError(f"report: {', '.join(map(str, paths))} share no directory below the "
                          "working directory to write the report next to; give --out DIR")
    try:
        return (common / "report").relative_to(here)
    except ValueError:
        return common / "report"


def write_report(paths: Sequence[str | Path], out: str | Path | None = None, *,
                 allow_mixed_commits: bool = False) -> Path:
    """``plasticity report``: the generic configuration (module docstring); returns the
    ``report.md`` path. ``out`` defaults to :func:`default_report_dir`."""
    paths = [Path(p) for p in paths]
    out = Path(out) if out is not None else default_report_dir(paths)
    data = load_data(paths)
    check_commits(data, allow_mixed_commits=allow_mixed_commits)
    out.mkdir(parents=True, exist_ok=True)
    report = _report(REPORT_TITLE, load_streams(data))
    figures = _figures(report, out / "figures", out)
    write_tables(data, out / "tables")
    path = out / "report.md"
    path.write_text(document(report, figures), encoding="utf-8")
    return path


def _study_commands(streams: Sequence[StreamInput], out: Path) -> tuple[dict[str, str], str]:
    """Per stream the command that makes its runs (the study file in experiments/studies/,
    or a sweep.toml next to the document, when its text is the sweep's), and the commands
    that make this document (from the study files' text, so they are the same whether the
    runs or the tables are read)."""
    lines, sweep_dirs = {}, []
    for s in streams:
        file = "SWEEP_DIR/sweep.toml"  # the copy every sweep directory keeps
        for candidate, shown in ((STUDIES_DIR / f"{s.name}.toml",
                                  f"experiments/studies/{s.name}.toml"),
                                 (out / "sweep.toml", f"{out.as_posix()}/sweep.toml")):
            if candidate.is_file() and candidate.read_text(encoding="utf-8") == s.source:
                file = shown
                break
        declared_out = tomllib.loads(s.source).get("out") if s.source else None
        sweep_dirs.append(str(declared_out or "runs/sweeps/{name}").format(name=s.name))
        lines[s.name] = f"plasticity sweep {file} --workers 2 --no-report"
    tables = " ".join(f"{out.as_posix()}/tables/{s.name}" for s in streams)
    return lines, (f"plasticity report --study {' '.join(sweep_dirs)} --out {out.as_posix()}\n"
                   f"plasticity report --study {tables} --out {out.as_posix()}")


def write_study_report(paths: Sequence[str | Path], out: str | Path = "docs", *,
                       allow_mixed_commits: bool = False) -> Path:
    """``plasticity report --study``: one stream per path (module docstring); returns the
    ``results.md`` path."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ConfigError("report --study: no sweep directory given; give one per study")
    for p in paths:
        if not p.is_dir():
            raise ConfigError(f"report --study: {str(p)!r} is not a directory; give one sweep "
                              "directory (or its tables directory) per study, e.g. "
                              "runs/studies/e2_ppo_hidden_goal")
    datas = [load_data([p]) for p in paths]
    streams = []
    for p, data in zip(paths, datas, strict=True):
        check_commits(data, allow_mixed_commits=allow_mixed_commits)
        found = load_streams(data)
        if len(found) != 1:
            raise ConfigError(f"report --study: {str(p)!r} holds {len(found)} sweeps; give "
                              "one sweep directory per study")
        streams.append(found[0])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = _report(STUDY_TITLE, streams)
    figures = _figures(report, out / "figures", out)
    configs: dict[str, dict[str, str]] = {}
    for s, data in zip(streams, datas, strict=True):
        write_tables(data, out / "tables" / s.name)
        copies = out / "configs" / s.name
        copies.mkdir(parents=True, exist_ok=True)
        for stale in copies.glob("*.toml"):
            stale.unlink()  # no config of a removed run
        links = {}
        for run in s.data.runs.itertuples():
            name = Path(run.run_id).name
            # the loader already made experiment.out relative to the working directory
            (copies / f"{name}.toml").write_text(dumps_toml(json.loads(run.config)),
                                                 encoding="utf-8")
            links[run.run_id] = f"configs/{s.name}/{name}.toml"
        configs[s.name] = links
    path = out / "results.md"
    commands, regenerate = _study_commands(streams, out)
    previous_file = out / "previous_verdicts.json"
    previous = (json.loads(previous_file.read_text(encoding="utf-8"))
                if previous_file.is_file() else None)
    path.write_text(render(report, figures, commands, configs, regenerate, previous),
                    encoding="utf-8")
    _update_readme(out.resolve().parent / "README.md", readme_block(report.streams))
    return path


def _update_readme(readme: Path, block: str) -> None:
    """Rewrite the README's marked study-summary block (nothing without one)."""
    if not readme.is_file():
        return
    text = readme.read_text(encoding="utf-8")
    updated = replace_block(text, block)
    if updated is not None and updated != text:
        readme.write_text(updated, encoding="utf-8")
