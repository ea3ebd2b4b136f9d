"""Pipeline stages over one work directory: each stage reads its config section and its inputs.

WORKDIR/
  config.toml          the resolved config of the last run
  corpus/              the synthetic corpus (dataset kind 'synth')
  tracks.parquet       the track table
  missing.parquet      listed tracks whose audio file does not exist
  features/<key>/      the feature store (see agf.store)
  factors/<key>/<task>/  artist group factors (see agf.factors)
  nets/<arch>-<tasks>-<key>/  trained source nets (see agf.training)
  transfer/<key>/      transfer MLPs and their predictions; transfer/windows/: cached window features
  evaluation/seed<N>-<key>/  metrics.json, confusion matrices, per-genre F1 of every model of a seed
  report/              results.csv, tables.md, figure3.png, report.html
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from agf.config import Config, ConfigError, GridConfig, TrainConfig, config_to_dict
from agf.datasets import LoadedDataset, load_dataset
from agf.datasets.fma import KNOWN_BAD_IDS
from agf.datasets.table import genre_list
from agf.factors import TASKS as FACTOR_TASKS
from agf.factors import FactorResult, build_factors, format_summary, load_track_targets
from agf.fileio import read_json, stable_key, write_json_atomic, write_parquet_atomic, write_text_atomic
from agf.prepare import PrepareSummary, prepare_features, usable_tracks
from agf.report import ReportImages, build_report
from agf.report.results import task_subsets
from agf.store import FeatureStore, features_key
from agf.training.command import net_dir, net_specs, wstn_spec
from agf.training.loop import NetSpec, train_net
from agf.training.targets import task_targets
from agf.transfer import evaluate, fit_transfer, load_transfer, transfer_dir
from agf.transfer.mlp import model_slug

ALL_TASKS: tuple[str, ...] = ("g", "m", "d", "e", "s")


class PipelineError(RuntimeError):
    """A stage cannot run as asked (e.g. the report of a run whose stages are not finished)."""


@dataclass(frozen=True)
class WorkDir:
    """Paths of one work directory."""

    root: Path

    @property
    def corpus(self) -> Path:
        return self.root / "corpus"

    @property
    def tracks(self) -> Path:
        return self.root / "tracks.parquet"

    @property
    def missing(self) -> Path:
        return self.root / "missing.parquet"

    @property
    def config(self) -> Path:
        return self.root / "config.toml"


def save_config(config: Config, workdir: WorkDir) -> None:
    """Record the resolved config of this run in the work directory."""
    write_text_atomic(workdir.config, dumps_toml(config_to_dict(config)))


def dumps_toml(data: dict) -> str:
    """Serialise nested dicts of scalars and lists as TOML (tables for nested dicts)."""

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {type(v).__name__} to TOML")

    lines = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for name, section in data.items():
        if isinstance(section, dict):
            lines.append(f"\n[{name}]")
            lines += [f"{k} = {value(v)}" for k, v in section.items()]
    text = "\n".join(lines) + "\n"
    tomllib.loads(text)  # what we write must read back
    return text


def stage_tracks(config: Config, workdir: WorkDir, progress: bool = True) -> LoadedDataset:
    """Load (and for 'synth', first render) the dataset; save the track table."""
    synth_dir = None
    if config.dataset.kind == "synth":
        from agf.datasets.synth import synthesize_corpus

        synth_dir = synthesize_corpus(workdir.corpus, config.synth, workers=config.run.workers, progress=progress)
    loaded = load_dataset(config.dataset, synth_dir=synth_dir)
    write_parquet_atomic(workdir.tracks, loaded.tracks)
    write_parquet_atomic(workdir.missing, loaded.missing)
    return loaded


def known_bad_ids(config: Config) -> frozenset[str]:
    """FMA's known bad files apply to FMA only."""
    return KNOWN_BAD_IDS if config.dataset.kind == "fma" else frozenset()


def stage_prepare(
    config: Config, workdir: WorkDir, tracks: pd.DataFrame, retry_failed: bool = False, progress: bool = True
) -> tuple[FeatureStore, PrepareSummary]:
    """Build (or complete) the feature store for the track table."""
    store = FeatureStore.open(workdir.root, config.features)
    summary = prepare_features(
        tracks,
        store,
        workers=config.run.workers,
        known_bad=known_bad_ids(config),
        retry_failed=retry_failed,
        progress=progress,
    )
    return store, summary


# -- artist group factors -----------------------------------------------------------------------


def tracks_fingerprint(tracks: pd.DataFrame) -> str:
    """A key of what the later stages read from the track table (ids, artists, labels, splits)."""
    columns = ["track_id", "artist_id", "genre", "split"]
    table = tracks[columns].astype(str)
    subgenres = tracks["subgenres"].map(lambda v: ";".join(v))
    return stable_key("tracks", table.to_numpy().tolist(), subgenres.tolist())


def stage_factors(
    config: Config, workdir: WorkDir, tracks: pd.DataFrame, store: FeatureStore, tasks: Sequence[str], progress: bool
) -> tuple[Path | None, dict[str, FactorResult]]:
    """Build the artist-group tasks among `tasks` (m, d, e, s); None when no such task is asked for."""
    wanted = tuple(t for t in FACTOR_TASKS if t in tasks)
    if not wanted:
        return None, {}
    factors = replace(config.factors, tasks=wanted)
    out_dir = workdir.root / "factors" / stable_key("factors", config_to_dict(factors), features_key(config.features))
    results = build_factors(tracks, store, factors, out_dir, workers=config.run.workers, progress=progress)
    return out_dir, results


# -- the grid: cases, nets, transfers --------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One row of the paper's tables: an architecture over a task subset, for one seed."""

    arch: str  # 'stn', 'mtn' or 'wstn'
    tasks: str  # task letters in the order g, m, d, e, s; a wSTN has 'g'
    n_tasks: int  # for a wSTN: the number of tasks of the setups it is matched to
    seed: int

    @property
    def label(self) -> str:
        return f"{self.arch.upper()} {self.tasks}" + (f" (N={self.n_tasks})" if self.arch == "wstn" else "")


def canonical_tasks(letters: Iterable[str]) -> str:
    """Task letters in the canonical order g, m, d, e, s."""
    letters = set(letters)
    return "".join(t for t in ALL_TASKS if t in letters)


def grid_subsets(grid: GridConfig) -> list[str]:
    """The task subsets to run: the config's list, or every non-empty subset of grid.tasks (paper order)."""
    allowed = set(grid.tasks)
    if grid.subsets:
        subsets = [canonical_tasks(s) for s in grid.subsets]
        bad = [s for s, c in zip(grid.subsets, subsets) if set(s) - allowed or len(c) != len(s) or not c]
        if bad:
            raise ConfigError(f"grid.subsets: {bad[0]!r} is not a subset of grid.tasks {''.join(grid.tasks)}")
        return list(dict.fromkeys(subsets))
    return [s for s in task_subsets() if set(s) <= allowed]


def grid_cases(grid: GridConfig, subsets: Sequence[str]) -> list[Case]:
    """Every case of the grid: STN for each subset, MTN for each subset of two or more tasks, a wSTN per N >= 2."""
    unknown = sorted(set(grid.archs) - {"stn", "mtn", "wstn"})
    if unknown:
        raise ConfigError(f"grid.archs: unknown architecture(s) {', '.join(unknown)}; use stn, mtn, wstn")
    cases = []
    for seed in grid.seeds:
        for subset in subsets:
            if "stn" in grid.archs or len(subset) == 1:
                cases.append(Case("stn", subset, len(subset), seed))
            if "mtn" in grid.archs and len(subset) > 1:
                cases.append(Case("mtn", subset, len(subset), seed))
        if "wstn" in grid.archs:
            for n in sorted({len(s) for s in subsets if len(s) > 1}):
                cases.append(Case("wstn", "g", n, seed))
    return cases


def net_train_config(spec: NetSpec, train: TrainConfig, seed: int) -> TrainConfig:
    """Training settings of one net: the seed, and (as in the paper) MTN epochs = STN epochs x tasks."""
    epochs = train.epochs * len(spec.tasks) if spec.arch == "mtn" else train.epochs
    return replace(train, seed=seed, epochs=epochs)


def case_specs(case: Case, task_outputs: dict[str, int], grid_tasks: Sequence[str], n_mels: int) -> list[NetSpec]:
    """The nets a case needs. A wSTN for N is matched to the MTN over the first N grid tasks (g first)."""
    if case.arch == "wstn":
        matched = canonical_tasks(grid_tasks)[: case.n_tasks]
        return [wstn_spec("mtn", {t: task_outputs[t] for t in matched}, n_mels, report=lambda _: None)]
    return net_specs(case.arch, {t: task_outputs[t] for t in case.tasks}, n_mels)  # type: ignore[arg-type]


@dataclass
class GridRun:
    """What run_grid produced: per case its transfer directory, and per seed its evaluation folder."""

    transfers: dict[Case, Path]
    evaluations: dict[int, Path]
    factors_dir: Path | None
    factor_results: dict[str, FactorResult]


def _require_done(directory: Path, what: str) -> None:
    """With require_done, an unfinished stage is an error instead of work."""
    if not (directory / "done.json").exists():
        raise PipelineError(f"{what} is not finished ({directory}); run `agf run` on this work directory first")


def run_grid(
    config: Config, workdir: WorkDir, tracks: pd.DataFrame, store: FeatureStore, progress: bool = True,
    log: Callable[[str], None] = print, require_done: bool = False,
) -> GridRun:
    """Factors, source nets (each trained once, reused by every case), transfers and evaluations."""
    subsets = grid_subsets(config.grid)
    factors_dir, factor_results = stage_factors(config, workdir, tracks, store, "".join(subsets), progress)
    if factor_results:
        log(format_summary(factor_results))
    unavailable = {t for t, r in factor_results.items() if not r.available}
    if unavailable:
        log(f"warning: task(s) {', '.join(sorted(unavailable))} unavailable; dropping the subsets that use them")
        subsets = [s for s in subsets if not set(s) & unavailable]
    grid_tasks = [t for t in config.grid.tasks if t not in unavailable]
    cases = grid_cases(config.grid, subsets)
    genres = genre_list(tracks)
    task_outputs = {"g": len(genres)}
    targets = {"g": task_targets(tracks, "g", None)}
    for task in factor_results:
        if task not in unavailable:
            targets[task] = task_targets(tracks, task, load_track_targets(factors_dir, task))
            task_outputs[task] = targets[task].shape[1]
    inputs_key = stable_key(features_key(config.features), str(factors_dir), tracks_fingerprint(tracks))
    nets_root = workdir.root / "nets"
    trained: dict[Path, None] = {}
    transfers: dict[Case, Path] = {}
    for number, case in enumerate(cases, 1):
        sources = []
        for spec in case_specs(case, task_outputs, grid_tasks, store.config.n_mels):
            train = net_train_config(spec, config.train, case.seed)
            out_dir = net_dir(nets_root, spec, train, inputs_key)
            if out_dir not in trained:
                if require_done:
                    _require_done(out_dir, f"net {spec.arch} {''.join(spec.tasks)} seed {case.seed}")
                state = "reused" if (out_dir / "done.json").exists() else "training"
                log(f"[{number}/{len(cases)}] net {spec.arch} {''.join(spec.tasks)} seed {case.seed}: {state}")
                spec_targets = {t: targets[t] for t in spec.tasks}
                train_net(spec, store, tracks, spec_targets, train, out_dir, config.run.device, progress)
                trained[out_dir] = None
            sources.append(out_dir)
        transfer = replace(config.transfer, seed=case.seed)
        out_dir = transfer_dir(workdir.root, sources, transfer)
        if require_done:
            _require_done(out_dir, f"transfer {case.label} seed {case.seed}")
        state = "reused" if (out_dir / "done.json").exists() else "fitting"
        log(f"[{number}/{len(cases)}] transfer {case.label} seed {case.seed}: {state}")
        fit_transfer(sources, store, tracks, transfer, out_dir, device=config.run.device, progress=progress)
        transfers[case] = out_dir
    evaluations = {}
    for seed in config.grid.seeds:
        dirs = [d for c, d in transfers.items() if c.seed == seed]
        evaluations[seed] = stage_evaluate(workdir, dirs, tracks, store, seed)
    return GridRun(transfers, evaluations, factors_dir, factor_results)


def stage_evaluate(workdir: WorkDir, transfer_dirs: Sequence[Path], tracks: pd.DataFrame, store: FeatureStore,
                   seed: int) -> Path:
    """Score every transfer of one seed and the baselines; reused when its inputs are unchanged."""
    key = stable_key("evaluate", [d.name for d in transfer_dirs], tracks_fingerprint(tracks), store.root.name, seed)
    out_dir = workdir.root / "evaluation" / f"seed{seed}-{key}"
    if not (out_dir / "done.json").exists():
        evaluate(transfer_dirs, tracks, out_dir, store=store, seed=seed)
        write_json_atomic(out_dir / "done.json", {"key": key})
    return out_dir


# -- results and the report -----------------------------------------------------------------------

METRICS: tuple[str, ...] = ("log_loss", "macro_f1", "accuracy")


def _metrics(evaluation_dir: Path) -> dict:
    return read_json(evaluation_dir / "metrics.json")


def collect_results(run: GridRun) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tidy results table (one row per case, seed, split, labels, metric) and the baselines table."""
    rows, baseline_rows = [], []
    names = {case: load_transfer(path).name for case, path in run.transfers.items()}
    for seed, evaluation_dir in run.evaluations.items():
        models = _metrics(evaluation_dir)["models"]
        for case, name in names.items():
            if case.seed != seed:
                continue
            for split, by_labels in models[name]["scores"].items():
                for labels, scores in by_labels.items():
                    rows += [
                        {"tasks": case.tasks, "arch": case.arch, "n_tasks": case.n_tasks,
                         "includes_genre": "g" in case.tasks, "seed": seed, "split": split, "labels": labels,
                         "metric": metric, "value": float(scores[metric])}
                        for metric in METRICS
                    ]
        for name, model in models.items():
            if model["kind"] == "transfer":
                continue
            for split, by_labels in model["scores"].items():
                for labels, scores in by_labels.items():
                    baseline_rows += [
                        {"model": name, "seed": seed, "split": split, "labels": labels, "metric": metric,
                         "value": float(scores[metric])}
                        for metric in METRICS
                    ]
    return pd.DataFrame(rows), pd.DataFrame(baseline_rows)


def selection_split(results: pd.DataFrame) -> str:
    """Models are chosen on validation scores when there are any (never on test)."""
    return "val" if (results["split"] == "val").any() else str(results["split"].iloc[0])


def best_case(run: GridRun, results: pd.DataFrame, where: Callable[[Case], bool] = lambda c: True) -> Case | None:
    """The case with the lowest mean validation log loss (given labels) over seeds, among cases `where` accepts."""
    split = selection_split(results)
    chosen = results[(results["split"] == split) & (results["labels"] == "given") & (results["metric"] == "log_loss")]
    means = chosen.groupby(["arch", "tasks", "n_tasks"])["value"].mean()
    candidates = [
        (means[(case.arch, case.tasks, case.n_tasks)], case)
        for case in run.transfers
        if where(case) and (case.arch, case.tasks, case.n_tasks) in means.index
    ]
    return min(candidates, key=lambda item: item[0])[1] if candidates else None


def stage_report(
    config: Config, workdir: WorkDir, run: GridRun, results: pd.DataFrame, baselines: pd.DataFrame,
    tracks: pd.DataFrame, store: FeatureStore,
) -> dict:
    """results.csv, tables, Figure 3, the best model's confusion and per-genre F1, heatmaps, report.html."""
    best = best_case(run, results)
    assert best is not None, "a grid run has at least one case"
    evaluation_dir = run.evaluations[best.seed]
    metrics = _metrics(evaluation_dir)
    name = load_transfer(run.transfers[best]).name
    primary = metrics["primary_split"]
    per_genre = pd.DataFrame(metrics["models"][name]["scores"][primary]["given"]["per_class"])
    heatmaps = {
        task: run.factors_dir / task / "heatmap.png"
        for task, result in run.factor_results.items()
        if result.available and run.factors_dir is not None
    }
    images = ReportImages(confusion=evaluation_dir / "confusion" / f"{model_slug(name)}.png", heatmaps=heatmaps)
    notes = [
        f"dataset: {config.dataset.kind}, split mode {config.dataset.split}; artist groups "
        + ("fitted on ALL tracks (the paper's leaky protocol)" if config.factors.leaky else "fitted on training tracks only"),
        f"source nets: {config.train.epochs} epochs (MTN: x number of tasks), seeds {list(config.grid.seeds)}; "
        f"transfer MLP {config.transfer.epochs} epochs; best model chosen on {selection_split(results)} log loss",
        f"best model: {best.label} (seed {best.seed})",
    ]
    return build_report(
        workdir.root / "report", results, baselines if len(baselines) else None, tracks, store.index(), images,
        f"{best.label}", per_genre, title="agf report", notes=notes,
    )


@dataclass
class PipelineRun:
    """Everything `agf run` made."""

    grid: GridRun
    results: pd.DataFrame
    baselines: pd.DataFrame
    report: dict


def run_pipeline(
    config: Config, progress: bool = True, log: Callable[[str], None] = print, require_done: bool = False
) -> PipelineRun:
    """Every stage, each reused when done with the same inputs: tracks, prepare, factors, nets, transfer,
    evaluate, report."""
    workdir = WorkDir(Path(config.run.workdir))
    if require_done:
        if not workdir.tracks.exists():
            raise PipelineError(f"{workdir.tracks} not found; run `agf run` on this work directory first")
        store = FeatureStore.open(workdir.root, config.features)
        tracks = usable_tracks(pd.read_parquet(workdir.tracks), store)
    else:
        save_config(config, workdir)
        loaded = stage_tracks(config, workdir, progress=progress)
        for warning in loaded.warnings:
            log(f"warning: {warning}")
        store, summary = stage_prepare(config, workdir, loaded.tracks, progress=progress)
        log(summary.format())
        tracks = usable_tracks(loaded.tracks, store)
    grid = run_grid(config, workdir, tracks, store, progress=progress, log=log, require_done=require_done)
    results, baselines = collect_results(grid)
    report = stage_report(config, workdir, grid, results, baselines, tracks, store)
    return PipelineRun(grid, results, baselines, report)


def demo_summary(run: PipelineRun) -> str:
    """Genre-only transfer vs the best artist-group transfer, against the noisy and the true labels."""
    results = run.results
    genre_only = next((c for c in run.grid.transfers if c.arch == "stn" and c.tasks == "g"), None)
    best_agf = best_case(run.grid, results, lambda c: bool(set(c.tasks) - {"g"}))
    split = "test" if (results["split"] == "test").any() else selection_split(results)
    lines = [f"Demo results on the {split} split (mean over seeds; best artist-group model chosen on validation):"]
    header = f"{'model':34s} {'labels':7s} {'log loss':>9s} {'macro-F1':>9s} {'accuracy':>9s}"
    lines += [header, "-" * len(header)]
    for title, case in (("genre only (STN g)", genre_only), ("best with artist groups", best_agf)):
        if case is None:
            continue
        rows = results[(results["arch"] == case.arch) & (results["tasks"] == case.tasks)
                       & (results["n_tasks"] == case.n_tasks) & (results["split"] == split)]
        for labels in ("given", "true"):
            values = rows[rows["labels"] == labels].groupby("metric")["value"].mean()
            if values.empty:
                continue
            name = f"{title}: {case.label}" if case.tasks != "g" or case.arch != "stn" else title
            lines.append(f"{name:34s} {labels:7s} {values['log_loss']:9.3f} {values['macro_f1']:9.3f} "
                         f"{values['accuracy']:9.3f}")
    lines.append("labels: 'given' = the corpus's album-level genre labels (some albums mislabelled on purpose); "
                 "'true' = the genre each track was rendered from")
    lines.append(f"report: {run.report['html']}")
    return "\n".join(lines)
