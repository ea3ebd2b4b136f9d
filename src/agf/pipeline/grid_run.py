"""The experiment grid over one prepared dataset: factors, nets, transfers and evaluations as agf.grid.walk_grid
lists them, and the results table read back from the evaluations."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from agf.config import Config, TrainConfig, TransferConfig
from agf.factors import format_summary
from agf.fileio import read_json
from agf.grid import Case, grid_nets, grid_subsets, walk_grid
from agf.metrics import METRICS
from agf.pipeline.context import run_context
from agf.pipeline.stages import (
    Factors,
    Log,
    Prepared,
    net_inputs,
    stage_evaluate,
    stage_factors,
    stage_net,
    stage_transfer,
    train_nets_on_cluster,
)
from agf.pipeline.times import StageTimes
from agf.report.results import SETUP_KEYS, rank_by_selection
from agf.tasks import GENRE_TASK
from agf.training import NetSpec
from agf.transfer import load_transfer, transfer_dir
from agf.workdir import is_done, require_done

@dataclass
class GridRun:
    """What run_grid produced: per case its transfer directory, and per seed its evaluation folder."""

    transfers: dict[Case, Path]
    evaluations: dict[int, Path]
    factors: Factors
    # Per (spec, seed) the net's directory, in the order the walk first needed them (the same order every seed).
    nets: dict[tuple[NetSpec, int], Path] = field(default_factory=dict)


# Overrides of one run's settings (cross-validation's final fit, agf.pipeline.crossval): a net's training settings
# from its position among its seed's nets (in walk order) and its spec; a case's transfer settings.
NetTraining = Callable[[int, NetSpec], TrainConfig]
CaseTransfer = Callable[[Case], TransferConfig]


def run_grid(
    config: Config, prepared: Prepared, progress: bool = True, log: Log = print, must_be_done: bool = False,
    times: StageTimes | None = None, net_training: NetTraining | None = None,
    case_transfer: CaseTransfer | None = None, temperatures: Mapping[str, float] | None = None,
) -> GridRun:
    """Factors, source nets (each trained once, reused by every case), transfers and evaluations, as walk_grid
    lists them without the tasks whose factors are unavailable (their wall times added to `times`). Nets train
    with `net_training`'s settings and transfers with `case_transfer`'s when given (else the config's); the
    evaluations scale each model named in `temperatures` by its temperature there."""
    times = times or StageTimes()
    with run_context(config, prepared.workdir):
        with times.timed("factors"):
            factors = stage_factors(config, prepared, "".join(grid_subsets(config.grid)), progress, must_be_done)
        if factors.results:
            log(format_summary(factors.results))
        if factors.unavailable:
            log(f"warning: task(s) {', '.join(sorted(factors.unavailable))} unavailable; "
                "dropping the subsets that use them")
        inputs = net_inputs(config, prepared, factors)
        steps = walk_grid(config.grid, inputs.task_outputs, prepared.store.config.n_mels, factors.unavailable)
        nets = grid_nets(steps)
        position = {net: sum(seed == net[1] for _, seed in nets[:i]) for i, net in enumerate(nets)}
        training = {net: net_training(position[net], net[0]) if net_training else None for net in nets}
        if config.run.scheduler and not must_be_done:
            with times.timed("nets"):
                train_nets_on_cluster(config, inputs, nets, progress, log, training)
        trained: dict[tuple[NetSpec, int], Path] = {}
        transfers: dict[Case, Path] = {}
        for number, step in enumerate(steps, 1):
            case, prefix = step.case, f"[{number}/{len(steps)}] "
            sources = []
            for spec in step.specs:
                if (spec, case.seed) not in trained:
                    with times.timed("nets"):
                        trained[spec, case.seed] = stage_net(
                            config, inputs, spec, case.seed, progress, log, prefix, must_be_done,
                            training[spec, case.seed],
                        )
                sources.append(trained[spec, case.seed])
            transfer = case_transfer(case) if case_transfer else config.transfer
            out_dir = transfer_dir(prepared.workdir.transfer, sources, transfer, case.seed)
            what = f"transfer {case.label} seed {case.seed}"
            if must_be_done:
                require_done(out_dir, what)
            log(f"{prefix}{what}: {'reused' if is_done(out_dir) else 'fitting'}")
            with times.timed("transfers"):
                transfers[case] = stage_transfer(config, prepared, sources, case.seed, progress, transfer).out_dir
        with times.timed("evaluation"):
            evaluations = {
                seed: stage_evaluate(config, prepared, [d for c, d in transfers.items() if c.seed == seed], seed,
                                     temperatures)
                for seed in config.grid.seeds
            }
    return GridRun(transfers, evaluations, factors, trained)


def evaluation_metrics(evaluation_dir: Path) -> dict:
    """An evaluation folder's metrics.json."""
    return read_json(evaluation_dir / "metrics.json")


def collect_results(run: GridRun, scored: str = "scores") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tidy results table (one row per case, seed, split, labels, metric) and the baselines table, from the
    evaluation's calibrated scores ('scores') or its 'uncalibrated' ones (agf.evaluation)."""
    rows, baseline_rows = [], []
    names = {case: load_transfer(path).name for case, path in run.transfers.items()}
    for seed, evaluation_dir in run.evaluations.items():
        models = evaluation_metrics(evaluation_dir)["models"]
        for case, name in names.items():
            if case.seed != seed:
                continue
            for split, by_labels in models[name][scored].items():
                for labels, scores in by_labels.items():
                    rows += [
                        {"tasks": case.tasks, "arch": case.arch, "n_tasks": case.n_tasks,
                         "includes_genre": GENRE_TASK in case.tasks, "seed": seed, "split": split,
                         "labels": labels, "metric": metric, "value": float(scores[metric])}
                        for metric in METRICS
                    ]
        for name, model in models.items():
            if model["kind"] == "transfer":
                continue
            for split, by_labels in model[scored].items():
                for labels, scores in by_labels.items():
                    baseline_rows += [
                        {"model": name, "seed": seed, "split": split, "labels": labels, "metric": metric,
                         "value": float(scores[metric])}
                        for metric in METRICS
                    ]
    return pd.DataFrame(rows), pd.DataFrame(baseline_rows)


def best_case(run: GridRun, results: pd.DataFrame, where: Callable[[Case], bool] = lambda c: True) -> Case | None:
    """The case chosen by the selection rule (on validation, given labels, over seeds) among those `where`
    accepts; of that setup, the case of the first seed."""
    cases = {(c.arch, c.tasks, c.n_tasks): c for c in reversed(list(run.transfers)) if where(c)}
    rows = results[pd.Series(list(zip(*(results[k] for k in SETUP_KEYS))), index=results.index).isin(set(cases))]
    ranked = rank_by_selection(rows, SETUP_KEYS) if len(rows) else []
    return cases[ranked[0]] if ranked else None
