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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `agf` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (ConfigError, CommandError, DatasetError, StoreError) as exc:
        print(f"agf {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"agf {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
