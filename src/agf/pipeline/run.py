"""`agf run`: every stage in order over one work directory, in one run context, each reused when finished."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from agf.config import Config
from agf.datasets.splits import split_problems
from agf.errors import PipelineError
from agf.pipeline.checks import check_dataset, check_settings, plan_run
from agf.pipeline.context import run_context
from agf.pipeline.choosing import Selection, run_and_choose
from agf.pipeline.grid_run import GridRun
from agf.pipeline.reporting import report_provenance, stage_report
from agf.pipeline.stages import Log, Prepared, open_prepared, stage_prepare, stage_tracks
from agf.pipeline.times import StageTimes
from agf.report import headline
from agf.report.chosen import chosen_summary
from agf.selection import crossval_problems
from agf.workdir import WorkDir

@dataclass
class PipelineRun:
    """Everything `agf run` made."""

    prepared: Prepared
    grid: GridRun
    results: pd.DataFrame
    baselines: pd.DataFrame
    report: dict
    times: StageTimes = field(default_factory=StageTimes)
    selection: Selection | None = None  # the model the run ends with (agf.pipeline.choosing)


def run_pipeline(config: Config, progress: bool = True, log: Log = print, must_be_done: bool = False) -> PipelineRun:
    """Every stage, each reused when done with the same inputs: tracks, prepare, factors, nets, transfer,
    evaluate, report, in the run context (the work directory locked; the config saved in it unless
    must_be_done). With must_be_done (`agf report`), an unfinished stage is an error, not work."""
    check_settings(config)
    times = StageTimes()
    with run_context(config, save=not must_be_done):
        if not must_be_done:
            with times.timed("plan"):
                plan, speed = plan_run(config)
            log("\n".join(plan.lines(speed, config.run.workers)))
        run = _run_stages(config, progress, log, must_be_done, times)
        if not must_be_done:
            times.write(run.prepared.workdir)
            log(times.line())
        if run.selection is not None:
            log(chosen_summary(run.selection.record))
        log(headline(run.results).text())
        return run


def _run_stages(config: Config, progress: bool, log: Log, must_be_done: bool, times: StageTimes) -> PipelineRun:
    """run_pipeline's stages, in order, each one's wall time added to `times`."""
    if must_be_done:
        prepared = open_prepared(config)
    else:
        workdir = WorkDir(Path(config.run.workdir))
        with times.timed("tracks" + (" (renders the corpus)" if config.dataset.kind == "synth" else "")):
            loaded = stage_tracks(config, workdir, progress=progress)
        split_errors, split_notes = split_problems(loaded.tracks, loaded.splits)
        split_errors += crossval_problems(config, loaded.tracks)
        for warning in [*loaded.warnings, *split_notes]:
            log(f"warning: {warning}")
        if split_errors:
            raise PipelineError("; ".join(split_errors))
        with times.timed("prepare"):
            store, summary = stage_prepare(config, workdir, loaded.tracks, progress=progress)
        log(summary.format())
        prepared = Prepared(workdir, store.usable(loaded.tracks), store)
    check_dataset(prepared.tracks)
    chosen = run_and_choose(config, prepared, progress, log, must_be_done, times)
    with times.timed("report"):
        provenance = report_provenance(config, prepared.workdir, times, must_be_done)
        report = stage_report(config, prepared, chosen.grid, chosen.results, chosen.baselines, provenance,
                              chosen.selection.record)
    return PipelineRun(prepared, chosen.grid, chosen.results, chosen.baselines, report, times, chosen.selection)

