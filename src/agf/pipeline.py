"""The pipeline: every stage over one work directory (see agf.workdir), each computed once and passed down.

tracks -> prepare -> factors -> nets -> transfers -> evaluations -> report. Each stage is reused when its
output directory is finished for the same inputs; `agf run` and the single-stage commands (`agf factors`,
`train`, `transfer`, `evaluate`) call the same stage functions.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from agf import __version__
from agf.config import Config, DatasetConfig, TrainConfig, config_problems, config_to_dict, key_settings
from agf.datasets import LoadedDataset, load_dataset
from agf.datasets.fma import KNOWN_BAD_IDS
from agf.datasets.noise import inject_label_noise
from agf.datasets.splits import split_problems
from agf.datasets.synth import corpus_is_complete
from agf.datasets.table import split_fingerprint
from agf.device import resolve_device, use_threads
from agf.errors import AgfError, ConfigError, PipelineError
from agf.evaluation import evaluate, evaluation_key
from agf.factors import FactorResult, build_factors, format_summary, load_track_targets
from agf.factors.sizing import fitting_artists, sized_factors
from agf.fileio import read_json, safe_name, stable_key, write_json_atomic, write_parquet_atomic
from agf.grid import Case, case_specs, grid_cases, grid_subsets
from agf.metrics import METRICS
from agf.parallel import check_scheduler, map_unordered
from agf.predict import bundle_from_transfer, save_bundle
from agf.plan import Plan, Throughput, make_plan, measure_throughput, store_bytes, unrendered_synth_tracks
from agf.prepare import PrepareSummary, is_finished, prepare_features
from agf.report import Provenance, ReportImages, TrainingCurves, build_report, headline
from agf.report.markup import duration_text
from agf.report.results import (
    SELECTION_RULE,
    SETUP_KEYS,
    rank_by_selection,
    selection_split,
)
from agf.store import FeatureStore, features_key
from agf.tasks import FACTOR_TASKS, GENRE_TASK
from agf.training import (
    NetSpec,
    distributed,
    net_dir,
    net_specs,
    net_train_config,
    task_targets,
    train_net,
)
from agf.transfer import TransferResult, fit_transfer, load_transfer, transfer_dir
from agf.workdir import (
    WorkDir,
    check_creatable,
    free_bytes,
    is_done,
    locked,
    read_marker,
    require_done,
    save_config,
)

Log = Callable[[str], None]


def stage_tracks(config: Config, workdir: WorkDir, progress: bool = True) -> LoadedDataset:
    """Load (and for 'synth', first render) the dataset, inject the configured label noise; save the track table."""
    synth_dir = None
    if config.dataset.kind == "synth":
        from agf.datasets.synth import synthesize_corpus

        synth_dir = synthesize_corpus(workdir.corpus, config.synth, workers=config.run.workers, progress=progress)
    loaded = load_dataset(config.dataset, synth_dir=synth_dir)
    if config.noise.active:
        noisy, summary = inject_label_noise(loaded.tracks, config.noise)
        loaded = replace(loaded, tracks=noisy, warnings=[*loaded.warnings, summary.format()])
    write_parquet_atomic(workdir.tracks, loaded.tracks)
    write_parquet_atomic(workdir.missing, loaded.missing)
    return loaded


def known_bad_ids(config: Config) -> frozenset[str]:
    """FMA's known bad files apply to FMA only."""
    return KNOWN_BAD_IDS if config.dataset.kind == "fma" else frozenset()


def stage_prepare(
    config: Config, workdir: WorkDir, tracks: pd.DataFrame, retry_failed: bool = False, progress: bool = True
) -> tuple[FeatureStore, PrepareSummary]:
    """Build (or complete) the feature store for the track table; a PipelineError before any decoding when what is
    left to store would not fit on the disk."""
    problem = space_problem(config, workdir, tracks, retry_failed)
    if problem:
        raise PipelineError(problem)
    store = FeatureStore.open(workdir.root, config.features)
    summary = prepare_features(
        tracks,
        store,
        workers=config.run.workers,
        known_bad=known_bad_ids(config),
        retry_failed=retry_failed,
        progress=progress,
        scheduler=config.run.scheduler,
    )
    return store, summary


@dataclass(frozen=True)
class Prepared:
    """What every stage after prepare reads: the work directory, the usable tracks and their feature store."""

    workdir: WorkDir
    tracks: pd.DataFrame  # the rows of the track table with features stored as ok (FeatureStore.usable)
    store: FeatureStore


def settings_problems(config: Config, grid: bool = True) -> list[str]:
    """What can be checked before any compute beyond the config's own ranges, each on its own: the grid (unless
    not `grid`), the device and the scheduler."""
    checks = [lambda: grid_cases(config.grid, grid_subsets(config.grid))] if grid else []
    checks += [lambda: resolve_device(config.run.device),
               lambda: check_scheduler(config.run.scheduler, config.run.workers)]
    problems = []
    for check in checks:
        try:
            check()
        except AgfError as exc:
            problems.append(str(exc))
    return problems


def check_settings(config: Config) -> None:
    """A ConfigError naming every problem of settings_problems."""
    problems = settings_problems(config)
    if problems:
        raise ConfigError("; ".join(problems))


def stored_tracks(config: Config, workdir: WorkDir) -> tuple[FeatureStore | None, pd.DataFrame]:
    """The work directory's feature store of these feature settings and its finished tracks (their journal lines),
    read without writing anything; (None, no rows) when there is no such store yet."""
    root = workdir.root / "features" / features_key(config.features)
    if not (root / "settings.json").is_file():
        return None, pd.DataFrame(columns=["track_id"])
    store = FeatureStore(root, config.features)
    return store, store.entries()


def unprepared(tracks: pd.DataFrame, entries: pd.DataFrame, retry_failed: bool = False) -> pd.DataFrame:
    """The rows of a track table that prepare would decode, given the store's finished `entries`."""
    if entries.empty:
        return tracks
    finished = entries.set_index("track_id").to_dict("index")
    todo = [not is_finished(finished.get(track_id), path, retry_failed)
            for track_id, path in zip(tracks["track_id"], tracks["audio_path"])]
    return tracks[todo]


def size_text(n_bytes: float) -> str:
    """A size in the unit that fits: '512 bytes', '3.4 KB', '12.4 MB', '1.2 GB'."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes:.0f} bytes"


def space_problem(config: Config, workdir: WorkDir, tracks: pd.DataFrame, retry_failed: bool = False) -> str | None:
    """A problem when the features of the tracks not yet stored would not fit in the work directory's free space."""
    pending = unprepared(tracks, stored_tracks(config, workdir)[1], retry_failed)
    needed = store_bytes(pending, config)[0]
    free = free_bytes(workdir)
    if needed > free:
        return (f"the feature store needs about {size_text(needed)} more for {len(pending)} tracks not yet prepared "
                f"but {workdir.root} has {size_text(free)} free; free space or choose another --workdir")
    return None


def dataset_problems(tracks: pd.DataFrame) -> list[str]:
    """What makes a prepared dataset unable to give a result: no training tracks, a genre that is evaluated but
    has no usable training track (all of them failed to decode, say), nothing to select or report on."""
    train = set(tracks.loc[tracks["split"] == "train", "genre"])
    problems = []
    if not train:
        problems.append("no usable track in the training split")
    untrained = sorted(set(tracks["genre"]) - train)
    if train and untrained:
        problems.append(f"genre(s) {', '.join(untrained)} have usable tracks but none in the training split "
                        "(their training tracks failed or are missing: see the prepare summary)")
    if not tracks["split"].isin(("val", "test")).any():
        problems.append("no usable track in the validation or test split: nothing to select or report on")
    return problems


def check_dataset(tracks: pd.DataFrame) -> None:
    """PipelineError naming every problem of dataset_problems at once."""
    problems = dataset_problems(tracks)
    if problems:
        raise PipelineError("the prepared dataset cannot be used: " + "; ".join(problems))


def check_run(config: Config, load_problems: dict[str, list[str]] | None = None) -> tuple[list[str], list[str]]:
    """`agf check`: every problem a run of `config` would meet before its first expensive step, and what was
    found (counts per split), without decoding, training or writing anything. `config` may have been built
    under config.lenient: the problems of its sections and `load_problems` ({section: problems} found while
    loading it) come first, and the checks that read a section with problems are left out. Returns
    (problems, facts)."""
    by_section = {name: list(found) for name, found in (load_problems or {}).items()}
    for name, found in config_problems(config).items():
        by_section.setdefault(name, []).extend(found)
    problems = [problem for found in by_section.values() for problem in found]
    facts: list[str] = []
    problems += settings_problems(config, grid="grid" not in by_section)
    workdir = WorkDir(Path(config.run.workdir))
    try:
        check_creatable(workdir)
    except AgfError as exc:
        problems.append(str(exc))
    # The sections the dataset check reads: with a problem in one of them, the dataset is not checked.
    read = ("dataset", "features", *(["synth"] if config.dataset.kind == "synth" else []))
    unchecked = [name for name in read if name in by_section]
    if unchecked:
        facts.append(f"dataset: not checked until the settings of [{'], ['.join(unchecked)}] are fixed")
        return problems, facts
    synth_dir = None
    if config.dataset.kind == "synth":
        if not corpus_is_complete(workdir.corpus, config.synth):
            facts.append("dataset: the synthetic corpus, to be rendered into the work directory by `agf run`")
            return problems, facts
        synth_dir = workdir.corpus
    try:
        loaded = load_dataset(config.dataset, synth_dir=synth_dir)
        store, entries = stored_tracks(config, workdir)
    except AgfError as exc:
        return [*problems, str(exc)], facts
    tracks = loaded.tracks
    counts = tracks.groupby("split")["track_id"].count()
    facts.append(f"dataset: {len(tracks)} tracks with audio files, {tracks['genre'].nunique()} genres, "
                 f"{tracks['artist_id'].nunique()} artists; " + ", ".join(f"{s} {n}" for s, n in counts.items()))
    facts += [f"warning: {warning}" for warning in loaded.warnings]
    split_errors, split_notes = split_problems(tracks, loaded.splits)
    problems += split_errors
    facts += [f"warning: {note}" for note in split_notes]
    pending = unprepared(tracks, entries)
    total, lengths = store_bytes(tracks, config, store)
    facts.append(f"feature store: about {size_text(total)}, {size_text(store_bytes(pending, config)[0])} of it for "
                 f"the {len(pending)} tracks not yet prepared (track lengths: {lengths})")
    problems += [problem for problem in [space_problem(config, workdir, tracks)] if problem]
    if store is not None:
        ok = set(entries.loc[entries["status"] == "ok", "track_id"])  # FeatureStore.usable, without the index
        usable = tracks[tracks["track_id"].isin(ok)]
        facts.append(f"prepared: {len(usable)} of {len(tracks)} tracks usable in {store.root}")
        problems += dataset_problems(usable) if pending.empty else []
    else:
        problems += dataset_problems(tracks)
    return problems, facts


def open_prepared(config: Config) -> Prepared:
    """The usable tracks and the feature store that `agf prepare` (or `agf run`) left in the work directory."""
    workdir = WorkDir(Path(config.run.workdir))
    if not workdir.tracks.exists():
        raise PipelineError(f"{workdir.tracks} not found: run `agf prepare` (or `agf run`) on this work directory")
    store = FeatureStore.open(workdir.root, config.features)
    tracks = store.usable(pd.read_parquet(workdir.tracks))
    if tracks.empty:
        raise PipelineError(f"no prepared tracks in {store.root}: run `agf prepare` with the same feature settings")
    return Prepared(workdir, tracks, store)


# -- artist group factors and targets ----------------------------------------------------------------


@dataclass(frozen=True)
class Factors:
    """The artist group factors a run uses: their key (a hash of settings and inputs), folder and results."""

    key: str | None
    directory: Path | None
    results: dict[str, FactorResult] = field(default_factory=dict)

    @property
    def unavailable(self) -> set[str]:
        """Tasks that could not be built here (e.g. e without Essentia)."""
        return {task for task, result in self.results.items() if not result.available}


def stage_factors(
    config: Config, prepared: Prepared, tasks: Sequence[str], progress: bool, must_be_done: bool = False
) -> Factors:
    """Build the artist-group tasks among `tasks` (m, d, e, s); no factors when none is asked for. With
    must_be_done, only load them (an unfinished task is an error)."""
    wanted = tuple(t for t in FACTOR_TASKS if t in tasks)
    if not wanted:
        return Factors(None, None)
    settings, _ = sized_factors(replace(config.factors, tasks=wanted), fitting_artists(prepared.tracks, config.factors))
    key = stable_key("factors", key_settings(settings), features_key(config.features))
    out_dir = prepared.workdir.factors / key
    results = build_factors(
        prepared.tracks, prepared.store, settings, out_dir, config.run.workers, progress, load_only=must_be_done,
        scheduler=config.run.scheduler,
    )
    return Factors(key, out_dir, results)


@dataclass(frozen=True)
class NetInputs:
    """What every net of a run trains on: the prepared tracks, each available task's targets, and their key."""

    prepared: Prepared
    targets: dict[str, pd.DataFrame]
    task_keys: dict[str, str]  # per task: a hash of the features, the splits and that task's targets

    @property
    def task_outputs(self) -> dict[str, int]:
        """Outputs of each available task."""
        return {task: targets.shape[1] for task, targets in self.targets.items()}

    def key(self, tasks: Sequence[str]) -> str:
        """The inputs part of a net directory's key: only the tasks the net learns count, so a genre net is
        shared by runs whose artist groups differ (other factor settings, the factor controls)."""
        return stable_key([self.task_keys[task] for task in sorted(tasks)])


def net_inputs(config: Config, prepared: Prepared, factors: Factors) -> NetInputs:
    """The genre targets and those of every available artist-group task, keyed by content, never by a path."""
    tracks = prepared.tracks
    targets = {GENRE_TASK: task_targets(tracks, GENRE_TASK, None)}
    for task in factors.results:
        if task not in factors.unavailable:
            targets[task] = task_targets(tracks, task, load_track_targets(factors.directory, task))
    base = stable_key(features_key(config.features), split_fingerprint(tracks))
    task_keys = {task: stable_key(base, task, hashlib.sha256(pd.util.hash_pandas_object(frame).to_numpy()).hexdigest())
                 for task, frame in targets.items()}
    return NetInputs(prepared, targets, task_keys)


def stage_net(
    config: Config, inputs: NetInputs, spec: NetSpec, seed: int, progress: bool, log: Log, prefix: str = "",
    must_be_done: bool = False,
) -> Path:
    """Train one net (or reuse it when finished); return its directory."""
    train = net_train_config(spec, config.train)
    out_dir = net_dir(inputs.prepared.workdir.nets, spec, train, seed, inputs.key(spec.tasks))
    what = f"net {spec.name} seed {seed}"
    if must_be_done:
        require_done(out_dir, what)
    log(f"{prefix}{what}: {'reused' if is_done(out_dir) else 'training'}")
    targets = {task: inputs.targets[task] for task in spec.tasks}
    prepared = inputs.prepared
    train_net(spec, prepared.store, prepared.tracks, targets, train, seed, out_dir, config.run.device, progress)
    return out_dir


@dataclass(frozen=True)
class NetJob:
    """One net to train in a cluster task: what train_net reads, with absolute paths."""

    spec: NetSpec
    store: FeatureStore
    tracks: pd.DataFrame
    targets: dict[str, pd.DataFrame]
    train: TrainConfig
    seed: int
    out_dir: Path
    device: str


def train_net_job(job: NetJob) -> Path:
    """Train one net of a NetJob (no progress bar: it runs on a cluster worker); return its directory."""
    train_net(job.spec, job.store, job.tracks, job.targets, job.train, job.seed, job.out_dir, job.device, False)
    return job.out_dir


def train_nets_on_cluster(
    config: Config, inputs: NetInputs, nets: Sequence[tuple[NetSpec, int]], progress: bool, log: Log
) -> None:
    """Train the unfinished nets among (spec, seed) `nets` as tasks of run.scheduler's cluster, each with one GPU
    where its workers declare GPU resources; stage_net then finds them finished."""
    prepared = inputs.prepared
    store = FeatureStore(prepared.store.root.absolute(), prepared.store.config)
    jobs = []
    for spec, seed in nets:
        train = net_train_config(spec, config.train)
        out_dir = net_dir(prepared.workdir.nets.absolute(), spec, train, seed, inputs.key(spec.tasks))
        if not is_done(out_dir):
            targets = {task: inputs.targets[task] for task in spec.tasks}
            jobs.append(NetJob(spec, store, prepared.tracks, targets, train, seed, out_dir, config.run.device))
    if not jobs:
        return
    log(f"nets: training {len(jobs)} of {len(nets)} on the dask cluster {config.run.scheduler}")
    for out_dir in map_unordered(train_net_job, jobs, config.run.workers, desc="nets", progress=progress, unit="net",
                                 scheduler=config.run.scheduler, resource="GPU"):
        log(f"  trained {out_dir.name}")


def stage_train(
    config: Config, prepared: Prepared, arch: str, tasks: Sequence[str], match: str, seed: int, progress: bool,
    log: Log = print,
) -> list[Path]:
    """`agf train`: the nets of one architecture over `tasks` (a wSTN matched to the `match` setup over them).
    Under torchrun, rank 0 builds the factors and the other processes then load them."""
    with distributed.main_first():
        factors = stage_factors(config, prepared, tasks, progress, must_be_done=not distributed.is_main())
    if factors.unavailable:
        raise PipelineError(f"task(s) {', '.join(sorted(factors.unavailable))} unavailable here: "
                            + "; ".join(factors.results[t].summary["status"] for t in sorted(factors.unavailable)))
    inputs = net_inputs(config, prepared, factors)
    wanted = ((GENRE_TASK,) if arch == "wstn" else ()) + tuple(tasks)
    outputs = {task: inputs.task_outputs[task] for task in dict.fromkeys(wanted)}
    specs = net_specs(arch, outputs, prepared.store.config.n_mels, match)  # type: ignore[arg-type]
    return [stage_net(config, inputs, spec, seed, progress, log) for spec in specs]


def stage_transfer(
    config: Config, prepared: Prepared, sources: Sequence[Path], seed: int, progress: bool
) -> TransferResult:
    """The transfer MLP over `sources` for one seed, in transfer/<key> (reused when finished)."""
    out_dir = transfer_dir(prepared.workdir.transfer, sources, config.transfer, seed)
    return fit_transfer(
        sources, prepared.store, prepared.tracks, config.transfer, seed, out_dir, config.run.device, progress
    )


def stage_evaluate(prepared: Prepared, transfer_dirs: Sequence[Path], seed: int) -> Path:
    """Score every transfer of one seed and the baselines into evaluation/seed<N>-<key> (reused when finished)."""
    key = evaluation_key(transfer_dirs, prepared.tracks, prepared.store, ("val", "test"), seed)
    out_dir = prepared.workdir.evaluation / f"seed{seed}-{key}"
    evaluate(transfer_dirs, prepared.tracks, out_dir, store=prepared.store, seed=seed)
    return out_dir


# -- stage times --------------------------------------------------------------------------------------

STAGE_TIMES_FILE = "stage-times.json"


@dataclass
class StageTimes:
    """Wall seconds per stage of one run, summed over the stage's parts (nets and transfers alternate in the
    grid): what `agf run` and `agf demo` write to WORKDIR/stage-times.json and print at the end."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the wall time of the block to `stage`."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - started

    def line(self) -> str:
        """'stage times: prepare 22 s, nets 3 min 57 s, ... (total 9 min 41 s)'."""
        parts = [f"{stage} {duration_text(seconds)}" for stage, seconds in self.seconds.items()]
        return f"stage times: {', '.join(parts)} (total {duration_text(sum(self.seconds.values()))})"

    def write(self, workdir: WorkDir) -> Path:
        """WORKDIR/stage-times.json: the seconds per stage, the total and when it was measured."""
        path = workdir.root / STAGE_TIMES_FILE
        write_json_atomic(path, {"stages": [{"stage": k, "seconds": round(v, 2)} for k, v in self.seconds.items()],
                                 "total": round(sum(self.seconds.values()), 2),
                                 "measured": datetime.now(UTC).isoformat(timespec="seconds")})
        return path


def recorded_stage_times(workdir: WorkDir) -> tuple[dict[str, float], str]:
    """The seconds per stage WORKDIR/stage-times.json records and when they were measured; nothing when absent."""
    try:
        recorded = read_json(workdir.root / STAGE_TIMES_FILE)
        return ({row["stage"]: float(row["seconds"]) for row in recorded["stages"]},
                f"measured {recorded['measured']} by the run that wrote {STAGE_TIMES_FILE}")
    except (OSError, ValueError, KeyError, TypeError):
        return {}, ""


# -- the grid ---------------------------------------------------------------------------------------


@dataclass
class GridRun:
    """What run_grid produced: per case its transfer directory, and per seed its evaluation folder."""

    transfers: dict[Case, Path]
    evaluations: dict[int, Path]
    factors: Factors


def run_grid(
    config: Config, prepared: Prepared, progress: bool = True, log: Log = print, must_be_done: bool = False,
    times: StageTimes | None = None,
) -> GridRun:
    """Factors, source nets (each trained once, reused by every case), transfers and evaluations (their wall
    times added to `times`)."""
    times = times or StageTimes()
    subsets = grid_subsets(config.grid)
    with times.timed("factors"):
        factors = stage_factors(config, prepared, "".join(subsets), progress, must_be_done)
    if factors.results:
        log(format_summary(factors.results))
    if factors.unavailable:
        log(f"warning: task(s) {', '.join(sorted(factors.unavailable))} unavailable; "
            "dropping the subsets that use them")
        subsets = [s for s in subsets if not set(s) & factors.unavailable]
    grid_tasks = [t for t in config.grid.tasks if t not in factors.unavailable]
    cases = grid_cases(config.grid, subsets)
    inputs = net_inputs(config, prepared, factors)
    n_mels = prepared.store.config.n_mels
    if config.run.scheduler and not must_be_done:
        nets = {(spec, case.seed): None for case in cases
                for spec in case_specs(case, inputs.task_outputs, grid_tasks, n_mels)}
        with times.timed("nets"):
            train_nets_on_cluster(config, inputs, list(nets), progress, log)
    trained: dict[tuple[NetSpec, int], Path] = {}
    transfers: dict[Case, Path] = {}
    for number, case in enumerate(cases, 1):
        prefix = f"[{number}/{len(cases)}] "
        sources = []
        for spec in case_specs(case, inputs.task_outputs, grid_tasks, n_mels):
            if (spec, case.seed) not in trained:
                with times.timed("nets"):
                    trained[spec, case.seed] = stage_net(
                        config, inputs, spec, case.seed, progress, log, prefix, must_be_done
                    )
            sources.append(trained[spec, case.seed])
        out_dir = transfer_dir(prepared.workdir.transfer, sources, config.transfer, case.seed)
        what = f"transfer {case.label} seed {case.seed}"
        if must_be_done:
            require_done(out_dir, what)
        log(f"{prefix}{what}: {'reused' if is_done(out_dir) else 'fitting'}")
        with times.timed("transfers"):
            transfers[case] = stage_transfer(config, prepared, sources, case.seed, progress).out_dir
    with times.timed("evaluation"):
        evaluations = {
            seed: stage_evaluate(prepared, [d for c, d in transfers.items() if c.seed == seed], seed)
            for seed in config.grid.seeds
        }
    return GridRun(transfers, evaluations, factors)


# -- results and the report -----------------------------------------------------------------------


def _metrics(evaluation_dir: Path) -> dict:
    return read_json(evaluation_dir / "metrics.json")


def collect_results(run: GridRun, scored: str = "scores") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The tidy results table (one row per case, seed, split, labels, metric) and the baselines table, from the
    evaluation's calibrated scores ('scores') or its 'uncalibrated' ones (agf.evaluation)."""
    rows, baseline_rows = [], []
    names = {case: load_transfer(path).name for case, path in run.transfers.items()}
    for seed, evaluation_dir in run.evaluations.items():
        models = _metrics(evaluation_dir)["models"]
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


def source_nets(workdir: WorkDir, transfer: Path) -> dict[str, Path]:
    """{label: net directory} of a transfer's source nets, in the MLP's input order, found in this work directory
    (the transfer records the directory names; the work directory may have moved since)."""
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


def best_model_curves(workdir: WorkDir, transfer: TransferResult) -> dict[str, TrainingCurves]:
    """{label: curves and kept epoch} of a transfer's source nets and of its MLP."""
    nets = {label: TrainingCurves(pd.read_csv(net / "curves.csv"), (read_marker(net) or {}).get("best_epoch"))
            for label, net in source_nets(workdir, transfer.out_dir).items()}
    return nets | {"transfer MLP": TrainingCurves(transfer.curves, transfer.best_epoch)}


def stage_report(
    config: Config, prepared: Prepared, run: GridRun, results: pd.DataFrame, baselines: pd.DataFrame,
    provenance: Provenance,
) -> dict:
    """results.csv, tables, Figure 3, the best model's confusion and per-genre F1, heatmaps, provenance,
    report.html."""
    best = best_case(run, results)
    assert best is not None, "a grid run has at least one case"
    evaluation_dir = run.evaluations[best.seed]
    metrics = _metrics(evaluation_dir)
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
        + ("fitted on ALL tracks (the paper's leaky protocol)" if config.factors.leaky else "fitted on training tracks only"),
        f"source nets: {config.train.epochs} epochs (MTN: x number of tasks), seeds {list(config.grid.seeds)}; "
        f"transfer MLP {config.transfer.epochs} epochs; epochs kept: nets {config.train.select_epoch}, "
        f"MLP {config.transfer.select_epoch}; best model chosen by the {SELECTION_RULE} "
        f"(split {selection_split(results)})",
        f"best model: {best.label} (seed {best.seed})",
    ]
    return build_report(
        prepared.workdir.report, results, baselines if len(baselines) else None, prepared.tracks,
        prepared.store.index(), images, f"{best.label}", per_genre, title="agf report", notes=notes,
        curves=best_model_curves(prepared.workdir, transfer),
        calibration=(calibration_frame(run, name, primary), primary), provenance=provenance,
    )


def calibration_frame(run: GridRun, best_name: str, split: str) -> pd.DataFrame:
    """Per seed, for the best setup's transfer and every baseline: the temperature and the split's log loss and
    ECE (given labels) before and after temperature scaling."""
    rows = []
    for seed, evaluation_dir in run.evaluations.items():
        for name, model in _metrics(evaluation_dir)["models"].items():
            if model["kind"] == "transfer" and name != best_name or split not in model["scores"]:
                continue
            before, after = model["uncalibrated"][split]["given"], model["scores"][split]["given"]
            rows.append({"model": name, "seed": seed, "temperature": model["temperature"],
                         "log_loss_before": before["log_loss"], "log_loss_after": after["log_loss"],
                         "ece_before": before["ece"], "ece_after": after["ece"]})
    return pd.DataFrame(rows)


# -- export: the selected model as a bundle ----------------------------------------------------------------


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
    config: Config, prepared: Prepared, run: GridRun, results: pd.DataFrame, out: Path,
    label: str | None = None, seed: int | None = None,
) -> tuple[Path, Case]:
    """Write the bundle of the model chosen by the selection rule (the report's best model), or of the case
    called `label`, to `out`; return its path and case."""
    case = named_case(run, label, seed) if label else best_case(run, results)
    assert case is not None, "a grid run has at least one case"
    transfer = run.transfers[case]
    net_dirs = list(source_nets(prepared.workdir, transfer).values())
    splits = prepared.tracks["split"].value_counts()
    info = {
        "case": {"label": case.label, "arch": case.arch, "tasks": case.tasks, "n_tasks": case.n_tasks,
                 "seed": case.seed},
        "selection": f"named by the user ({label!r})" if label else
        f"the {SELECTION_RULE}; of that setup, the model of seed {case.seed} (the report's best model)",
        "metrics": case_metrics(results, case),
        "provenance": {"agf_version": __version__, "exported": datetime.now(UTC).isoformat(timespec="seconds"),
                       "workdir": str(prepared.workdir.root.resolve()), "dataset": config.dataset.kind,
                       "tracks_per_split": {str(k): int(v) for k, v in splits.items()},
                       "config": config_to_dict(config)},
    }
    evaluated = _metrics(run.evaluations[case.seed])["models"][load_transfer(transfer).name]
    bundle = bundle_from_transfer(transfer, net_dirs, prepared.store.config, config.transfer.amp, info,
                                  evaluated["temperature"])
    return save_bundle(bundle, out), case


def open_run(config: Config) -> tuple[Prepared, GridRun, pd.DataFrame]:
    """The prepared tracks, grid and results of a finished run (nothing is computed; unfinished stages are errors)."""
    prepared = open_prepared(config)
    grid = run_grid(config, prepared, progress=False, log=lambda _: None, must_be_done=True)
    return prepared, grid, collect_results(grid)[0]


def plan_run(config: Config, measure: bool = True) -> tuple[Plan, Throughput | None]:
    """The plan of `agf run` (agf.plan) without decoding or training anything (an unrendered synthetic corpus is
    planned from its generative model), with throughputs measured here when `measure`."""
    workdir = WorkDir(Path(config.run.workdir))
    synth = config.dataset.kind == "synth"
    if synth and not corpus_is_complete(workdir.corpus, config.synth):
        return make_plan(config, unrendered_synth_tracks(config), None), measure_throughput(config) if measure else None
    tracks = load_dataset(config.dataset, synth_dir=workdir.corpus if synth else None).tracks
    store, entries = stored_tracks(config, workdir)  # the journals: a stale index is not rewritten
    prepared = set(entries["track_id"].astype(str))
    if store is not None:
        unusable = entries.loc[entries["status"] != "ok", "track_id"].astype(str)
        tracks = tracks[~tracks["track_id"].astype(str).isin(unusable)]
    plan = make_plan(config, tracks, store, prepared)
    audio = next((path for path in tracks["audio_path"] if Path(path).is_file()), None)
    return plan, measure_throughput(config, audio) if measure else None


@dataclass
class PipelineRun:
    """Everything `agf run` made."""

    prepared: Prepared
    grid: GridRun
    results: pd.DataFrame
    baselines: pd.DataFrame
    report: dict
    times: StageTimes = field(default_factory=StageTimes)


def run_pipeline(config: Config, progress: bool = True, log: Log = print, must_be_done: bool = False) -> PipelineRun:
    """Every stage, each reused when done with the same inputs: tracks, prepare, factors, nets, transfer,
    evaluate, report, with the work directory locked. With must_be_done (`agf report`), an unfinished stage is
    an error, not work."""
    check_settings(config)
    use_threads(config.run.threads)
    times = StageTimes()
    with locked(WorkDir(Path(config.run.workdir))):
        if not must_be_done:
            with times.timed("plan"):
                plan, speed = plan_run(config)
            log("\n".join(plan.lines(speed, config.run.workers)))
        run = _run_stages(config, progress, log, must_be_done, times)
        if not must_be_done:
            times.write(run.prepared.workdir)
            log(times.line())
        log(headline(run.results).text())
        return run


def _run_stages(config: Config, progress: bool, log: Log, must_be_done: bool, times: StageTimes) -> PipelineRun:
    """run_pipeline's stages, in order, each one's wall time added to `times`."""
    if must_be_done:
        prepared = open_prepared(config)
    else:
        workdir = WorkDir(Path(config.run.workdir))
        save_config(config, workdir)
        with times.timed("tracks" + (" (renders the corpus)" if config.dataset.kind == "synth" else "")):
            loaded = stage_tracks(config, workdir, progress=progress)
        split_errors, split_notes = split_problems(loaded.tracks, loaded.splits)
        for warning in [*loaded.warnings, *split_notes]:
            log(f"warning: {warning}")
        if split_errors:
            raise PipelineError("; ".join(split_errors))
        with times.timed("prepare"):
            store, summary = stage_prepare(config, workdir, loaded.tracks, progress=progress)
        log(summary.format())
        prepared = Prepared(workdir, store.usable(loaded.tracks), store)
    check_dataset(prepared.tracks)
    grid = run_grid(config, prepared, progress=progress, log=log, must_be_done=must_be_done, times=times)
    with times.timed("report"):
        results, baselines = collect_results(grid)
        provenance = report_provenance(config, prepared.workdir, times, must_be_done)
        report = stage_report(config, prepared, grid, results, baselines, provenance)
    return PipelineRun(prepared, grid, results, baselines, report, times)


def demo_summary(run: PipelineRun) -> str:
    """What `agf demo` prints after run_pipeline's last lines (its headline: the best model beside genre-only
    training, chosen on validation, with the verdict on the spread over seeds): where the report is."""
    return f"report (the headline above is its first section): {run.report['html']}"


DEMO_PREDICTIONS = 6


def demo_predictions(config: Config, run: PipelineRun) -> str:
    """Export the selected model to WORKDIR/model and classify a few test files with it, as `agf predict` would."""
    from agf.predict import GenreClassifier

    prepared = run.prepared
    path, case = stage_export(config, prepared, run.grid, run.results, prepared.workdir.model)
    split = "test" if (prepared.tracks["split"] == "test").any() else selection_split(run.results)
    tracks = prepared.tracks[prepared.tracks["split"] == split].head(DEMO_PREDICTIONS)
    classifier = GenreClassifier.load(path, device=config.run.device)
    lines = [f"exported {case.label} (seed {case.seed}) to {path}; its predictions for {len(tracks)} {split} files:"]
    for (_, track), prediction in zip(tracks.iterrows(), classifier.predict_many(tracks["audio_path"])):
        top = ", ".join(f"{g} {p:.2f}" for g, p in prediction.top(2)) if prediction.ok else prediction.error
        truth = f" (true {track['true_genre']})" if track.get("true_genre", track["genre"]) != track["genre"] else ""
        lines.append(f"  {Path(prediction.source).name}  given {track['genre']}{truth}: {top}")
    lines.append(f"classify your own files: agf predict {path} FILES_OR_DIRS (see docs/predict.md)")
    return "\n".join(lines)
