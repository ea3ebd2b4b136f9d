"""What a finished grid is turned into: the report (results, tables, figures, the best model's curves and
calibration, provenance) and the bundle of the model chosen on validation (or of a named case)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from agf import __version__
from agf.config import Config, DatasetConfig, config_to_dict
from agf.device import resolve_device
from agf.errors import PipelineError
from agf.fileio import read_json, safe_name
from agf.grid import Case
from agf.pipeline.context import run_context
from agf.pipeline.choosing import Selection
from agf.pipeline.grid_run import GridRun, best_case, evaluation_metrics
from agf.pipeline.stages import Prepared
from agf.pipeline.times import StageTimes, recorded_stage_times
from agf.predict import MemberSource, bundle_from_transfer, bundle_from_transfers, save_bundle
from agf.report import Provenance, ReportImages, TrainingCurves, build_report
from agf.report.chosen import chosen_summary
from agf.report.results import SELECTION_RULE, selection_split
from agf.transfer import TransferResult, load_transfer
from agf.workdir import WorkDir, read_marker

def source_nets(transfer: Path) -> dict[str, Path]:
    """{label: net directory} of a transfer's source nets, in the MLP's input order, found in the work directory
    that holds the transfer (WORKDIR/transfer/<key>; the transfer records the directory names, and the work
    directory may have moved since)."""
    workdir = WorkDir(Path(transfer).parent.parent)
    return {s["label"]: workdir.nets / Path(s["path"]).name for s in read_json(transfer / "mlp.json")["sources"]}


def dataset_source(dataset: DatasetConfig) -> str:
    """Where the tracks come from and how they are split, in words."""
    source = {"fma": f"FMA {dataset.subset} (metadata {dataset.metadata_dir}, audio {dataset.audio_dir})",
              "manifest": f"the manifest {dataset.manifest}",
              "synth": "the synthetic corpus of the [synth] settings"}[dataset.kind]
    return f"{source}; split: {dataset.split}"


def report_provenance(config: Config, workdir: WorkDir, times: StageTimes, must_be_done: bool) -> Provenance:
    """What the report records of how the results were made: the dataset, the saved config.toml, the device and
    the stage times (this run's up to the report; for `agf report`, those stage-times.json records)."""
    if must_be_done:
        seconds, note = recorded_stage_times(workdir)
    else:
        seconds, note = dict(times.seconds), "this run, up to the report"
    config_toml = workdir.config.read_text() if workdir.config.is_file() else None
    return Provenance(dataset_source(config.dataset), config_toml, str(resolve_device(config.run.device)), seconds,
                      note)


def best_model_curves(transfer: TransferResult) -> dict[str, TrainingCurves]:
    """{label: curves and kept epoch} of a transfer's source nets and of its MLP."""
    nets = {label: TrainingCurves(pd.read_csv(net / "curves.csv"), (read_marker(net) or {}).get("best_epoch"))
            for label, net in source_nets(transfer.out_dir).items()}
    return nets | {"transfer MLP": TrainingCurves(transfer.curves, transfer.best_epoch)}


def stage_report(
    config: Config, prepared: Prepared, run: GridRun, results: pd.DataFrame, baselines: pd.DataFrame,
    provenance: Provenance, selection: dict | None = None,
) -> dict:
    """results.csv, tables, Figure 3, the chosen model (`selection`'s record), the best setup's confusion and
    per-genre F1, heatmaps, provenance, report.html."""
    with run_context(config, prepared.workdir):
        best = best_case(run, results)
        assert best is not None, "a grid run has at least one case"
        evaluation_dir = run.evaluations[best.seed]
        metrics = evaluation_metrics(evaluation_dir)
        transfer = load_transfer(run.transfers[best])
        name = transfer.name
        primary = metrics["primary_split"]
        per_genre = pd.DataFrame(metrics["models"][name]["scores"][primary]["given"]["per_class"])
        factors = run.factors
        heatmaps = {
            task: factors.directory / task / "heatmap.png"
            for task, result in factors.results.items()
            if result.available and factors.directory is not None
        }
        confusion = evaluation_dir / "confusion" / f"{safe_name(name)}.png"
        confusion_true = confusion.with_suffix(".true.png")
        images = ReportImages(confusion, heatmaps, confusion_true if confusion_true.exists() else None,
                              evaluation_dir / "reliability" / f"{safe_name(name)}.png")
        notes = [
            f"dataset: {config.dataset.kind}, split mode {config.dataset.split}; artist groups "
            + ("fitted on ALL tracks (the paper's leaky protocol)" if config.factors.leaky
               else "fitted on training tracks only"),
            f"source nets: {config.train.epochs} epochs (MTN: x number of tasks), seeds {list(config.grid.seeds)}; "
            f"transfer MLP {config.transfer.epochs} epochs; epochs kept: nets {config.train.select_epoch}, "
            f"MLP {config.transfer.select_epoch}; best model chosen by the {SELECTION_RULE} "
            f"(split {selection_split(results)})",
            f"best model: {best.label} (seed {best.seed})",
        ]
        return build_report(
            prepared.workdir.report, results, baselines if len(baselines) else None, prepared.tracks,
            prepared.store.index(), images, f"{best.label}", per_genre, title="agf report", notes=notes,
            curves=best_model_curves(transfer),
            calibration=(calibration_frame(run, name, primary), primary), provenance=provenance,
            selection=selection,
        )


def calibration_frame(run: GridRun, best_name: str, split: str) -> pd.DataFrame:
    """Per seed, for the best setup's transfer and every baseline: the temperature and the split's log loss and
    ECE (given labels) before and after temperature scaling."""
    rows = []
    for seed, evaluation_dir in run.evaluations.items():
        for name, model in evaluation_metrics(evaluation_dir)["models"].items():
            if model["kind"] == "transfer" and name != best_name or split not in model["scores"]:
                continue
            before, after = model["uncalibrated"][split]["given"], model["scores"][split]["given"]
            rows.append({"model": name, "seed": seed, "temperature": model["temperature"],
                         "log_loss_before": before["log_loss"], "log_loss_after": after["log_loss"],
                         "ece_before": before["ece"], "ece_after": after["ece"]})
    return pd.DataFrame(rows)


def case_metrics(results: pd.DataFrame, case: Case) -> dict:
    """{split: {labels: {metric: value}}} of one case (one seed) from the results table."""
    rows = results[(results["arch"] == case.arch) & (results["tasks"] == case.tasks)
                   & (results["n_tasks"] == case.n_tasks) & (results["seed"] == case.seed)]
    metrics: dict = {}
    for (split, labels, metric), value in rows.set_index(["split", "labels", "metric"])["value"].items():
        metrics.setdefault(split, {}).setdefault(labels, {})[metric] = round(float(value), 6)
    return metrics


def named_case(run: GridRun, label: str, seed: int | None) -> Case:
    """The grid case called `label` (e.g. 'STN gm', 'wSTN g (N=2)'; any case) of `seed` (default: the first)."""
    matches = [c for c in run.transfers if c.label.lower() == label.strip().lower()]
    if not matches:
        names = ", ".join(dict.fromkeys(f"'{c.label}'" for c in run.transfers))
        raise PipelineError(f"no trained case called {label!r}; the work directory has {names}")
    if seed is None:
        return matches[0]
    for case in matches:
        if case.seed == seed:
            return case
    raise PipelineError(f"{label!r} was trained with seeds {sorted(c.seed for c in matches)}, not {seed}")


def stage_export(
    config: Config, prepared: Prepared, run: GridRun, results: pd.DataFrame, selection: Selection, out: Path,
    label: str | None = None, seed: int | None = None,
) -> tuple[Path, str]:
    """Write the bundle of the chosen model (`selection`: the report's, every seed of it), or of the case called
    `label` (one seed), to `out`; return its path and what it holds, in words."""
    with run_context(config, prepared.workdir):
        splits = prepared.tracks["split"].value_counts()
        provenance = {"agf_version": __version__, "exported": datetime.now(UTC).isoformat(timespec="seconds"),
                      "workdir": str(prepared.workdir.root.resolve()), "dataset": config.dataset.kind,
                      "tracks_per_split": {str(k): int(v) for k, v in splits.items()},
                      "config": config_to_dict(config)}
        if label:
            case = named_case(run, label, seed)
            transfer = run.transfers[case]
            info = {"case": {"label": case.label, "arch": case.arch, "tasks": case.tasks, "n_tasks": case.n_tasks,
                             "seed": case.seed},
                    "selection": f"named by the user ({label!r})", "metrics": case_metrics(results, case),
                    "provenance": provenance}
            evaluated = evaluation_metrics(run.evaluations[case.seed])["models"][load_transfer(transfer).name]
            bundle = bundle_from_transfer(transfer, list(source_nets(transfer).values()), prepared.store.config,
                                          config.transfer.amp, info, evaluated["temperature"])
            return save_bundle(bundle, out), f"{case.label} (seed {case.seed})"
        record, choice = selection.record, selection.choice
        members = [MemberSource(m.transfer_dir, tuple(source_nets(m.transfer_dir).values()), m.output, m.head)
                   for m in selection.members]
        info = {"name": choice.name, "selection": chosen_summary(record),
                "metrics": {"test": record.get("test"), **({"crossval": record["crossval"]["estimate"]}
                                                           if "crossval" in record else {})},
                "provenance": provenance}
        bundle = bundle_from_transfers(members, prepared.store.config, config.transfer.amp, info, choice.temperature,
                                       choice.combination)
        seeds = [m.seed for m in selection.members]
        return save_bundle(bundle, out), (f"{choice.name} ({'the ensemble of seeds ' if len(seeds) > 1 else 'seed '}"
                                          f"{', '.join(map(str, seeds))})")
