"""The `agf` command line: one sub-command per pipeline stage, all reading one typed config.

Every command takes `--config` (a TOML file or a preset name) and a few overrides; the resolved
config is written to WORKDIR/config.toml so a run can always be reproduced.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from agf.config import Config, ConfigError, load_config
from agf.datasets.table import DatasetError
from agf.store import StoreError

USER_ERRORS: tuple[type[Exception], ...] = (ConfigError, DatasetError, StoreError)

EXIT_USAGE = 2


class CommandError(RuntimeError):
    """A user-facing error: printed without a traceback, exit status 1."""


def _replace(config: Config, section: str, **changes: object) -> Config:
    """A copy of `config` with fields of one section changed (None values are ignored)."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        return config
    return dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **changes)})


def _base_config(args: argparse.Namespace) -> Config:
    """The config named by --config (default: built-in defaults) with the common overrides applied."""
    config = load_config(args.config) if args.config else Config()
    config = _replace(config, "run", workdir=args.workdir, workers=args.workers)
    return config


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="TOML config file or preset name (demo, fma-medium, fma-medium-paper)")
    parser.add_argument("-w", "--workdir", help="work directory for all outputs (default: the config's, 'work')")
    parser.add_argument("-j", "--workers", type=int, help="worker processes (default: the config's, 2)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def _add_dataset_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("dataset (overrides the config's [dataset])")
    group.add_argument("--fma-metadata", metavar="DIR", help="FMA metadata folder holding tracks.csv and genres.csv")
    group.add_argument("--fma-audio", metavar="DIR", help="FMA audio folder in the 000/000002.mp3 layout")
    group.add_argument("--subset", choices=["small", "medium", "large", "full"], help="FMA subset (default medium)")
    group.add_argument("--manifest", metavar="CSV", help="CSV manifest with columns path, artist, genre (+ optional)")
    group.add_argument(
        "--split",
        choices=["official", "random", "artist"],
        help="official: the dataset's own split (FMA's artist-disjoint one); random: the paper's stratified "
        "random split; artist: a new artist-disjoint stratified split",
    )
    group.add_argument("--seed", type=int, help="seed for generated splits")
    group.add_argument("--strict", action="store_true", default=None, help="missing audio files are an error")


def _dataset_config(config: Config, args: argparse.Namespace) -> Config:
    """Apply dataset options; --fma-* or --manifest also set the dataset kind."""
    kind = None
    if args.manifest:
        kind = "manifest"
    elif args.fma_metadata or args.fma_audio:
        kind = "fma"
        if not (args.fma_metadata and args.fma_audio):
            raise CommandError("--fma-metadata and --fma-audio go together: give both folders")
    return _replace(
        config,
        "dataset",
        kind=kind,
        metadata_dir=args.fma_metadata,
        audio_dir=args.fma_audio,
        manifest=args.manifest,
        subset=args.subset,
        split=args.split,
        seed=args.seed,
        strict=args.strict,
    )


def cmd_prepare(args: argparse.Namespace) -> int:
    """Build the feature store of a dataset."""
    from agf.pipeline import WorkDir, save_config, stage_prepare, stage_tracks

    config = _dataset_config(_base_config(args), args)
    workdir = WorkDir(Path(config.run.workdir))
    save_config(config, workdir)
    loaded = stage_tracks(config, workdir, progress=not args.quiet)
    for warning in loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    store, summary = stage_prepare(config, workdir, loaded.tracks, retry_failed=args.retry_failed, progress=not args.quiet)
    print(summary.format())
    print(f"feature store: {store.root}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    """Render the synthetic demo corpus in FMA's layout."""
    from agf.datasets.synth import corpus_summary, synthesize_corpus

    config = load_config(args.config) if args.config else Config()
    config = _replace(
        config,
        "synth",
        n_genres=args.genres,
        artists_per_genre=args.artists_per_genre,
        albums_per_artist=args.albums_per_artist,
        tracks_per_album=args.tracks_per_album,
        clip_seconds=args.seconds,
        label_noise=args.label_noise,
        seed=args.seed,
    )
    out = synthesize_corpus(Path(args.out_dir), config.synth, workers=args.workers or 2, progress=not args.quiet)
    print(corpus_summary(out))
    return 0


def _workdir_inputs(config: Config):
    """The track table and feature store that `agf prepare` left in the config's work directory."""
    import pandas as pd

    from agf.pipeline import WorkDir
    from agf.prepare import usable_tracks
    from agf.store import FeatureStore

    workdir = WorkDir(Path(config.run.workdir))
    if not workdir.tracks.exists():
        raise CommandError(f"{workdir.tracks} not found: run `agf prepare` with this work directory first")
    store = FeatureStore.open(workdir.root, config.features)
    tracks = usable_tracks(pd.read_parquet(workdir.tracks), store)
    if tracks.empty:
        raise CommandError(f"no prepared tracks in {store.root}: run `agf prepare` with the same feature settings")
    return workdir, tracks, store


def _task_list(text: str | None) -> tuple[str, ...] | None:
    """'g,m,d' or 'gmd' -> ('g', 'm', 'd'); None stays None."""
    if text is None:
        return None
    from agf.training.command import parse_tasks

    try:
        return parse_tasks(text)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def cmd_factors(args: argparse.Namespace) -> int:
    """Build the artist group factors of the prepared dataset."""
    from agf.factors import format_summary
    from agf.pipeline import stage_factors

    config = _base_config(args)
    config = _replace(config, "factors", tasks=_task_list(args.tasks), leaky=args.leaky or None)
    workdir, tracks, store = _workdir_inputs(config)
    out_dir, results = stage_factors(config, workdir, tracks, store, config.factors.tasks, not args.quiet)
    print(format_summary(results))
    print(f"artist group factors: {out_dir}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train source nets (STN per task, one MTN, or a wSTN)."""
    from agf.factors import load_track_targets
    from agf.pipeline import stable_key, stage_factors, tracks_fingerprint
    from agf.store import features_key
    from agf.training.command import apply_train_arguments, train_command

    config = apply_train_arguments(_base_config(args), args)
    workdir, tracks, store = _workdir_inputs(config)
    tasks = _task_list(args.tasks) or ("g",)
    factors_dir, results = stage_factors(config, workdir, tracks, store, tasks, not args.quiet)
    targets = {t: load_track_targets(factors_dir, t) for t, r in results.items() if r.available}
    inputs_key = stable_key(features_key(config.features), str(factors_dir), tracks_fingerprint(tracks))
    for result in train_command(config, args, tracks, store, targets, workdir.root / "nets", inputs_key, not args.quiet):
        print(f"net: {result.out_dir}")
    return 0


def cmd_transfer(args: argparse.Namespace) -> int:
    """Fit the transfer MLP on the window features of trained nets."""
    from agf.transfer import fit_transfer, transfer_dir

    config = _base_config(args)
    config = _replace(config, "transfer", epochs=args.epochs, seed=args.seed)
    workdir, tracks, store = _workdir_inputs(config)
    sources = [Path(s) for s in args.nets]
    out_dir = transfer_dir(workdir.root, sources, config.transfer)
    result = fit_transfer(sources, store, tracks, config.transfer, out_dir, config.run.device, not args.quiet)
    print(f"{result.name}: best epoch {result.best_epoch}; predictions in {out_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score transfers and baselines; write metrics.json and plots."""
    from agf.transfer import evaluate

    config = _base_config(args)
    workdir, tracks, store = _workdir_inputs(config)
    out_dir = Path(args.out) if args.out else workdir.root / "evaluation" / "manual"
    run = evaluate([Path(d) for d in args.transfers], tracks, out_dir, store=store, seed=args.seed)
    print(run.table)
    print(f"metrics: {out_dir / 'metrics.json'}")
    return 0


def _grid_overrides(config: Config, args: argparse.Namespace) -> Config:
    seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else None
    archs = tuple(a.strip() for a in args.archs.split(",")) if args.archs else None
    subsets = tuple(s.strip() for s in args.subsets.split(",")) if args.subsets else None
    return _replace(config, "grid", tasks=_task_list(args.tasks), archs=archs, subsets=subsets, seeds=seeds)


def cmd_run(args: argparse.Namespace) -> int:
    """Every stage from the collection to the report; finished stages are reused."""
    from agf.pipeline import run_pipeline

    if args.config_file:
        if args.config:
            raise CommandError("give the config either as CONFIG or as --config, not both")
        args.config = args.config_file
    config = _grid_overrides(_dataset_config(_base_config(args), args), args)
    run = run_pipeline(config, progress=not args.quiet)
    print(f"report: {run.report['html']}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Rebuild the report of a finished run from its work directory."""
    from agf.pipeline import run_pipeline

    config_path = Path(args.workdir_arg) / "config.toml"
    if not config_path.exists():
        raise CommandError(f"{config_path} not found: is {args.workdir_arg} a work directory of `agf run`?")
    config = _replace(load_config(config_path), "run", workdir=args.workdir_arg)
    run = run_pipeline(config, progress=not args.quiet, require_done=True)
    print(f"report: {run.report['html']}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole system on the built-in synthetic corpus, then a short summary."""
    from agf.pipeline import demo_summary, run_pipeline

    config = _replace(load_config("demo"), "run", workdir=args.out, workers=args.workers)
    run = run_pipeline(config, progress=not args.quiet)
    print(demo_summary(run))
    return 0


def _add_grid_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("grid (overrides the config's [grid])")
    group.add_argument("--tasks", help="tasks of the grid, e.g. g,m,d,e,s")
    group.add_argument("--archs", help="architectures, e.g. stn,mtn,wstn")
    group.add_argument("--subsets", help="task subsets to run, e.g. g,gm,gmdes (default: all of --tasks)")
    group.add_argument("--seeds", help="seeds, e.g. 0,1,2")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="agf",
        description="Genre classifiers that learn from artist information (Artist Group Factors, Kim et al. 2018).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    prepare = commands.add_parser(
        "prepare",
        help="decode audio and build the log-mel/MFCC feature store (resumable)",
        description="Decode every track once (any rate/channels -> mono 22,050 Hz), store its 128-band log-mel "
        "(float16) and MFCCs, and record per-track facts and status (ok, failed, too_short, silent, known_bad). "
        "Re-running skips finished tracks; a killed run resumes; changed feature settings get a new store.",
    )
    _add_common(prepare)
    _add_dataset_options(prepare)
    prepare.add_argument("--retry-failed", action="store_true", help="decode tracks that failed before again")
    prepare.set_defaults(func=cmd_prepare)

    synth = commands.add_parser(
        "synth",
        help="render the synthetic demo corpus (FMA layout)",
        description="Render a seeded synthetic music collection (genres, sub-genres, artists, albums, noisy "
        "album-level genre labels) as 44.1 kHz stereo MP3s with FMA's tracks.csv/genres.csv.",
    )
    synth.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the corpus into")
    synth.add_argument("-c", "--config", help="TOML config or preset whose [synth] section to start from")
    synth.add_argument("--genres", type=int, help="number of genres (default 8)")
    synth.add_argument("--artists-per-genre", type=int, help="artists per genre (default 6)")
    synth.add_argument("--albums-per-artist", type=int, help="albums per artist (default 2)")
    synth.add_argument("--tracks-per-album", type=int, help="tracks per album (default 5)")
    synth.add_argument("--seconds", type=float, help="clip length in seconds, up to 30 (default 10)")
    synth.add_argument("--label-noise", type=float, help="share of albums with a wrong genre label (default 0.15)")
    synth.add_argument("--seed", type=int, help="random seed (default 0)")
    synth.add_argument("-j", "--workers", type=int, help="worker processes (default 2)")
    synth.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(func=cmd_synth)

    factors = commands.add_parser(
        "factors",
        help="build artist group factors (tasks m, d, e, s) of a prepared dataset",
        description="Per task: a dictionary (MFCC, delta-MFCC or Essentia words; sub-genres for s), artist "
        "bags of words, LDA topics = artist group factors; fitted on training tracks/artists only.",
    )
    _add_common(factors)
    factors.add_argument("--tasks", help="tasks to build, e.g. m,d,e,s (default: the config's)")
    factors.add_argument("--leaky", action="store_true", help="the paper's protocol: fit on ALL tracks (leaks)")
    factors.set_defaults(func=cmd_factors)

    from agf.training.command import add_train_arguments

    train = commands.add_parser(
        "train",
        help="train source nets on 1-s log-mel patches",
        description="Train single-task nets (one per task), a multi-task net sharing its first block, or a wide "
        "genre net as large as a multi-task setup. Resumes from the last checkpoint.",
    )
    _add_common(train)
    add_train_arguments(train)
    train.set_defaults(func=cmd_train)

    transfer = commands.add_parser(
        "transfer",
        help="fit the transfer MLP on the window features of trained nets",
        description="Window features (penultimate layer, every 1-s window, hop ~0.5 s) of the given nets, "
        "concatenated, -> MLP trained on training tracks only; track prediction = mean over windows.",
    )
    _add_common(transfer)
    transfer.add_argument("nets", nargs="+", metavar="NET_DIR", help="trained net directories (WORKDIR/nets/...)")
    transfer.add_argument("--epochs", type=int, help="MLP epochs (default: the config's, 50)")
    transfer.add_argument("--seed", type=int, help="MLP seed")
    transfer.set_defaults(func=cmd_transfer)

    evaluate = commands.add_parser(
        "evaluate",
        help="score transfers and baselines (log loss, macro-F1, accuracy)",
        description="Scores each transfer MLP, the source nets' own genre heads and a classical MFCC baseline on "
        "the validation and test splits, against the given and (synthetic corpus) the true genres.",
    )
    _add_common(evaluate)
    evaluate.add_argument("transfers", nargs="+", metavar="TRANSFER_DIR", help="directories made by agf transfer")
    evaluate.add_argument("--out", help="output folder (default WORKDIR/evaluation/manual)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the classical baseline")
    evaluate.set_defaults(func=cmd_evaluate)

    for name, help_text in (
        ("run", "run every stage of a config: prepare, factors, nets, transfer, evaluate, report"),
        ("grid", "run the paper's experiment grid (all task subsets x STN/MTN/wSTN x seeds)"),
    ):
        command = commands.add_parser(
            name,
            help=help_text,
            description=help_text + ". Each stage is cached under a key of its inputs and settings: a rerun "
            "redoes only what changed, and a killed run resumes.",
        )
        command.add_argument("config_file", nargs="?", metavar="CONFIG", help="TOML config file or preset name")
        _add_common(command)
        _add_dataset_options(command)
        _add_grid_options(command)
        command.set_defaults(func=cmd_run)

    report = commands.add_parser(
        "report",
        help="rebuild the report of a finished run",
        description="Rebuild results.csv, tables.md, figure3.png and report.html from a work directory whose "
        "stages are finished (nothing is trained).",
    )
    report.add_argument("workdir_arg", metavar="WORKDIR", help="work directory of an `agf run`")
    report.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    report.set_defaults(func=cmd_report)

    demo = commands.add_parser(
        "demo",
        help="render the synthetic corpus and run the whole system on it (< 10 min on 2 cores)",
        description="Renders the built-in synthetic corpus, runs the 'demo' preset end to end, writes the report "
        "and prints genre-only vs the best artist-group transfer against the noisy and the true labels.",
    )
    demo.add_argument("--out", default="demo", help="work directory (default ./demo)")
    demo.add_argument("-j", "--workers", type=int, help="worker processes (default 2)")
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=cmd_demo)
    return parser


def _stage_errors() -> tuple[type[Exception], ...]:
    """Typed errors of the stages: printed as messages, not tracebacks."""
    from agf.evaluation import EvaluationError
    from agf.factors import FactorError
    from agf.pipeline import PipelineError
    from agf.report import ReportError
    from agf.training.errors import TrainingError
    from agf.transfer import TransferError

    return (EvaluationError, FactorError, PipelineError, ReportError, TrainingError, TransferError)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `agf` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (CommandError, *USER_ERRORS, *_stage_errors()) as exc:
        print(f"agf {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"agf {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
