"""The pipeline: every stage over one work directory (see agf.workdir), each computed once and passed down.

tracks -> prepare -> factors -> nets -> transfers -> evaluations -> report. Each stage is reused when its
output directory is finished for the same inputs; `agf run` and the single-stage commands (`agf factors`,
`train`, `transfer`, `evaluate`) call the same stage functions, each in the one run context (the work
directory's lock, the saved config, the threads: `run_context`).

One concern per module: `context` (run_context), `checks` (what is checked before any compute, the plan of a
run), `stages` (stage_* of one work directory), `grid_run` (the grid walked once: run_grid, the results),
`reporting` (the report and the exported bundle), `times` (stage wall times), `run` (run_pipeline), `demo`
(what `agf demo` prints). Every public name is importable from agf.pipeline.
"""

from agf.pipeline.checks import (
    check_dataset,
    check_run,
    check_settings,
    dataset_problems,
    plan_run,
    settings_problems,
    size_text,
    space_problem,
    stored_tracks,
    unprepared,
)
from agf.pipeline.choosing import Chosen, Selection, open_chosen, run_and_choose
from agf.pipeline.context import run_context
from agf.pipeline.demo import DEMO_PREDICTIONS, demo_predictions, demo_summary
from agf.pipeline.grid_run import GridRun, best_case, collect_results, evaluation_metrics, run_grid
from agf.pipeline.reporting import (
    best_model_curves,
    calibration_frame,
    case_metrics,
    dataset_source,
    named_case,
    report_provenance,
    source_nets,
    stage_export,
    stage_report,
)
from agf.pipeline.run import PipelineRun, run_pipeline
from agf.pipeline.stages import (
    Factors,
    Log,
    NetInputs,
    NetJob,
    Prepared,
    known_bad_ids,
    net_inputs,
    open_prepared,
    stage_evaluate,
    stage_factors,
    stage_net,
    stage_prepare,
    stage_tracks,
    stage_train,
    stage_transfer,
    train_net_job,
    train_nets_on_cluster,
)
from agf.pipeline.times import STAGE_TIMES_FILE, StageTimes, recorded_stage_times

__all__ = [
    "DEMO_PREDICTIONS", "STAGE_TIMES_FILE", "Chosen", "Factors", "GridRun", "Log", "NetInputs", "NetJob", "PipelineRun",
    "Prepared", "Selection", "StageTimes", "best_case", "best_model_curves", "calibration_frame", "case_metrics", "check_dataset",
    "check_run", "check_settings", "collect_results", "dataset_problems", "dataset_source", "demo_predictions",
    "demo_summary", "evaluation_metrics", "known_bad_ids", "named_case", "net_inputs", "open_chosen", "open_prepared",
    "plan_run", "recorded_stage_times", "report_provenance", "run_and_choose", "run_context", "run_grid", "run_pipeline",
    "settings_problems", "size_text", "source_nets", "space_problem", "stage_evaluate", "stage_export",
    "stage_factors", "stage_net", "stage_prepare", "stage_report", "stage_tracks", "stage_train", "stage_transfer",
    "stored_tracks", "train_net_job", "train_nets_on_cluster", "unprepared",
]
