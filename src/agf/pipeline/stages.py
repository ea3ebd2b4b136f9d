"""The stages over one work directory, each reused when its output is finished for the same inputs: the track
table, the feature store, the artist group factors, the nets, the transfers, the evaluations.

Every stage_* function works in the run context (agf.pipeline.context): called from Python, it holds the work
directory's lock as the `agf` command that calls it does.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from agf.config import Config, TrainConfig, TransferConfig, key_settings
from agf.datasets import LoadedDataset, load_dataset
from agf.datasets.fma import KNOWN_BAD_IDS
from agf.datasets.noise import inject_label_noise
from agf.datasets.table import HELD_OUT_SPLITS, split_fingerprint
from agf.errors import PipelineError
from agf.evaluation import evaluate, evaluation_key
from agf.factors import FactorResult, build_factors, load_track_targets
from agf.factors.sizing import fitting_artists, sized_factors
from agf.fileio import stable_key, write_parquet_atomic
from agf.parallel import map_unordered
from agf.pipeline.checks import space_problem
from agf.pipeline.context import run_context
from agf.prepare import PrepareSummary, prepare_features
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
from agf.transfer import TransferResult, fit_transfer, transfer_dir
from agf.workdir import WorkDir, is_done, require_done

Log = Callable[[str], None]


def stage_tracks(config: Config, workdir: WorkDir, progress: bool = True) -> LoadedDataset:
    """Load (and for 'synth', first render) the dataset, inject the configured label noise; save the track table."""
    with run_context(config, workdir):
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
    with run_context(config, workdir):
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
    with run_context(config, prepared.workdir):
        wanted = tuple(t for t in FACTOR_TASKS if t in tasks)
        if not wanted:
            return Factors(None, None)
        artists = fitting_artists(prepared.tracks, config.factors)
        settings, _ = sized_factors(replace(config.factors, tasks=wanted), artists)
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
    must_be_done: bool = False, train: TrainConfig | None = None,
) -> Path:
    """Train one net (or reuse it when finished) with `train` (default: net_train_config of config.train); return
    its directory."""
    with run_context(config, inputs.prepared.workdir):
        train = train or net_train_config(spec, config.train)
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
    config: Config, inputs: NetInputs, nets: Sequence[tuple[NetSpec, int]], progress: bool, log: Log,
    training: Mapping[tuple[NetSpec, int], TrainConfig | None] | None = None,
) -> None:
    """Train the unfinished nets among (spec, seed) `nets` as tasks of run.scheduler's cluster, each with one GPU
    where its workers declare GPU resources, with its settings in `training` when given there (as stage_net);
    stage_net then finds them finished."""
    prepared = inputs.prepared
    store = FeatureStore(prepared.store.root.absolute(), prepared.store.config)
    jobs = []
    for spec, seed in nets:
        train = (training or {}).get((spec, seed)) or net_train_config(spec, config.train)
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
    with run_context(config, prepared.workdir):
        with distributed.main_first():
            factors = stage_factors(config, prepared, tasks, progress, must_be_done=not distributed.is_main())
        if factors.unavailable:
            unavailable = sorted(factors.unavailable)
            raise PipelineError(f"task(s) {', '.join(unavailable)} unavailable here: "
                                + "; ".join(factors.results[t].summary["status"] for t in unavailable))
        inputs = net_inputs(config, prepared, factors)
        wanted = ((GENRE_TASK,) if arch == "wstn" else ()) + tuple(tasks)
        outputs = {task: inputs.task_outputs[task] for task in dict.fromkeys(wanted)}
        specs = net_specs(arch, outputs, prepared.store.config.n_mels, match)  # type: ignore[arg-type]
        return [stage_net(config, inputs, spec, seed, progress, log) for spec in specs]


def stage_transfer(
    config: Config, prepared: Prepared, sources: Sequence[Path], seed: int, progress: bool,
    transfer: TransferConfig | None = None,
) -> TransferResult:
    """The transfer MLP over `sources` for one seed with `transfer` (default config.transfer), in transfer/<key>
    (reused when finished)."""
    transfer = transfer or config.transfer
    with run_context(config, prepared.workdir):
        out_dir = transfer_dir(prepared.workdir.transfer, sources, transfer, seed)
        return fit_transfer(sources, prepared.store, prepared.tracks, transfer, seed, out_dir, config.run.device,
                            progress)


def stage_evaluate(
    config: Config, prepared: Prepared, transfer_dirs: Sequence[Path], seed: int,
    temperatures: Mapping[str, float] | None = None,
) -> Path:
    """Score every transfer of one seed and the baselines into evaluation/seed<N>-<key> (reused when finished),
    each model with its temperature in `temperatures` when given there (agf.evaluation.evaluate)."""
    with run_context(config, prepared.workdir):
        key = evaluation_key(transfer_dirs, prepared.tracks, prepared.store, HELD_OUT_SPLITS, seed, temperatures)
        out_dir = prepared.workdir.evaluation / f"seed{seed}-{key}"
        evaluate(transfer_dirs, prepared.tracks, out_dir, store=prepared.store, seed=seed, temperatures=temperatures)
        return out_dir

