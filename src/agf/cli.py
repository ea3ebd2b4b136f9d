"""The `agf` command line: one sub-command per pipeline stage, all reading one typed config.

This module only parses arguments into a typed Config and calls the stage functions of agf.pipeline, each command
that works in a work directory inside agf.pipeline.run_context (its lock, the saved config, the threads). The stage
commands take `--config` (a TOML file or a preset name) and a few overrides; `agf run` and `agf prepare` write
the resolved config to WORKDIR/config.toml. One grammar: the work directory is `-w/--workdir` wherever a command
has one, `agf evaluate`'s output folder `-o/--output` as `agf predict`'s output file (the old spellings
`agf demo --out DIR`, `agf report WORKDIR`, `agf export WORKDIR OUT` and `agf evaluate --out DIR` still work, with
a note on stderr); `-j/--workers`, `--threads` and `--device` wherever they mean something. Errors a user can
cause (agf.errors.AgfError) print as one line, naming the flag that set a value rather than its setting;
`--debug` shows the traceback.

Seeds: `--seed` of train, transfer and evaluate is the run seed (default: the first of the config's grid.seeds);
`--seeds` of run/grid lists the run seeds; `--split-seed` seeds generated splits (dataset.seed); `agf synth
--seed` seeds the corpus (synth.seed).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from agf import __version__
from agf.config import SEED, Config, lenient, load_config
from agf.errors import AgfError, ConfigError, PredictError
from agf.predict.output import FORMATS
from agf.tasks import ARCHS, parse_tasks
from agf.workdir import WorkDir

EXIT_ERROR = 1
# The settings of [run] that flags of the stage commands and `agf demo` set: {setting: argument dest}.
RUN_FLAGS = {"workdir": "workdir", "workers": "workers", "device": "device", "threads": "threads",
             "scheduler": "scheduler"}
# What `agf run --manifest CSV` uses without a config.
SMALL_COLLECTION_PRESET = "small-collection"


def _replace(config: Config, section: str, **changes: object) -> Config:
    """A copy of `config` with fields of one section changed (None values are ignored)."""
    changes = {k: v for k, v in changes.items() if v is not None}
    if not changes:
        return config
    return dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **changes)})


def _flag_settings(args: argparse.Namespace) -> dict[str, str]:
    """{setting: flag} of the settings this command line set (filled by _with_flags), e.g. {'grid.seeds':
    '--seeds'}."""
    return vars(args).setdefault("flag_settings", {})


def _with_flags(config: Config, args: argparse.Namespace, section: str, flags: dict[str, str],
                **parsed: object) -> Config:
    """`config` with the settings of `section` that flags set: `flags` maps a setting to the argument (its dest)
    that sets it, `parsed` gives a setting's value parsed from that argument's text. Each setting set is recorded
    (_flag_settings), so that a problem with it names the flag."""
    changes = {}
    for setting, dest in flags.items():
        if getattr(args, dest, None) is not None:
            _flag_settings(args)[f"{section}.{setting}"] = "--" + dest.replace("_", "-")
            changes[setting] = parsed.get(setting, getattr(args, dest))
    return _replace(config, section, **changes)


def _naming_flags(message: str, args: argparse.Namespace) -> str:
    """`message` with each setting that a flag set named by its flag where a problem starts with it:
    'grid.seeds: -1 must be ...' -> '--seeds: -1 must be ...', 'dataset.seed = -1: must ...' -> '--split-seed -1:
    must ...'."""
    for setting, flag in _flag_settings(args).items():
        message = re.sub(rf"(^|; ){re.escape(setting)}(?: =)?(?![\w.])", rf"\g<1>{flag}", message)
    return message


@dataclass(frozen=True)
class OldSpelling:
    """A deprecated spelling of an argument, still accepted: its value goes where the new spelling's does."""

    spelling: str  # as written before: '--out', '`agf report WORKDIR`'
    instead: str  # what to write now: '-w/--workdir'
    dest: str  # the new spelling's dest

    @property
    def old_dest(self) -> str:
        return f"old_{self.dest}"


def _add_old_spelling(parser: argparse.ArgumentParser, old: OldSpelling) -> None:
    """Accept `old` (an option, or an optional positional argument when it is not an option) without showing it
    in --help; _take_old_spellings moves its value."""
    if old.spelling.startswith("-"):
        parser.add_argument(old.spelling, dest=old.old_dest, help=argparse.SUPPRESS)
    else:
        parser.add_argument(old.old_dest, nargs="?", help=argparse.SUPPRESS)
    parser.set_defaults(old_spellings=(*(parser.get_default("old_spellings") or ()), old))


def _take_old_spellings(args: argparse.Namespace) -> None:
    """Move the values given in an old spelling to the new one, with one note each on stderr; ConfigError when
    both spellings are given."""
    for old in getattr(args, "old_spellings", ()):
        value = getattr(args, old.old_dest)
        if value is None:
            continue
        if getattr(args, old.dest) is not None:
            raise ConfigError(f"{old.spelling} is the old spelling of {old.instead}: give only {old.instead}")
        setattr(args, old.dest, value)
        print(f"agf {args.command}: note: {old.spelling} is deprecated; use {old.instead}", file=sys.stderr)


def _base_config(args: argparse.Namespace) -> Config:
    """The config named by --config with the common overrides applied. Without --config: `agf prepare` and
    `agf run` need a dataset option (a config would otherwise silently mean the synthetic demo corpus); the stage
    commands read the work directory's saved config.toml, the one `agf prepare` or `agf run` wrote."""
    if args.config:
        config = load_config(args.config)
    elif args.command in ("prepare", "run", "grid", "check", "study"):
        if not (args.manifest or args.fma_metadata or args.fma_audio):
            raise ConfigError("no dataset: give a config (-c FILE, or a preset: -c demo for the synthetic corpus, "
                              "-c fma-medium), --manifest CSV, or --fma-metadata DIR --fma-audio DIR")
        # A collection in a manifest gets the small-collection preset; FMA the paper's settings.
        config = load_config(SMALL_COLLECTION_PRESET) if args.manifest else Config()
    else:
        workdir = WorkDir(Path(args.workdir or Config().run.workdir))
        if not workdir.config.is_file():
            raise ConfigError(f"{workdir.config} not found: give the config with -c, or run `agf prepare` or "
                              "`agf run` on this work directory first")
        config = load_config(workdir.config)
    return _with_flags(config, args, "run", RUN_FLAGS)


def _run_seed(config: Config, args: argparse.Namespace) -> int:
    """--seed, or the first of the config's grid.seeds."""
    if args.seed is None:
        return config.grid.seeds[0]
    if not SEED.allows(args.seed):
        raise ConfigError(f"--seed {args.seed}: a run seed must be {SEED.describe()}")
    return args.seed


def _add_run_seed(parser: argparse.ArgumentParser, seeds_what: str) -> None:
    parser.add_argument("--seed", type=int, help=f"run seed, which seeds {seeds_what}; 0 to 2**32 - 1 (default: the "
                        "first of the config's grid.seeds)")


def _task_list(text: str | None) -> tuple[str, ...] | None:
    """'g,m,d' or 'gmd' -> ('g', 'm', 'd'); None stays None."""
    return None if text is None else parse_tasks(text)


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")


def _add_workdir_option(parser: argparse.ArgumentParser, default: str = "the config's run.workdir, 'work'",
                        what: str = "work directory of every output") -> None:
    parser.add_argument("-w", "--workdir", metavar="DIR", help=f"{what} (default: {default})")


def _add_run_options(parser: argparse.ArgumentParser, config_default: str = "the config's") -> None:
    """-j/--workers, --threads and --device: the settings of [run] a command may take from its flags."""
    parser.add_argument("-j", "--workers", type=int, help=f"worker processes, at least 1 (default: {config_default} "
                        "run.workers, 2)")
    parser.add_argument("--threads", type=int, help="torch/BLAS threads of the main process (default: "
                        f"{config_default} run.threads; 0 = torch's default: OMP_NUM_THREADS or the cores); 1 when "
                        "other busy processes share the cores")
    _add_device_option(parser, f"{config_default} run.device")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="TOML config file or preset name (demo, small-collection: the default "
                        "with --manifest, paper, fma-medium, fma-medium-paper, study-quick, study)")
    _add_workdir_option(parser)
    _add_run_options(parser)
    parser.add_argument("--scheduler", metavar="ADDRESS", help="run per-track work, nets and study corpora on a dask "
                        "cluster: 'local' (a LocalCluster of --workers processes) or a scheduler's address, e.g. "
                        "tcp://host:8786 (default: the config's run.scheduler; '' = local processes; docs/dask.md)")
    _add_output_options(parser)


def _add_device_option(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument("--device", help=f"auto, cpu, cuda or cuda:N (default: {default})")


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
    group.add_argument("--split-seed", type=int, help="seed of generated splits (dataset.seed), 0 to 2**32 - 1")
    group.add_argument("--strict", action="store_true", default=None, help="missing audio files are an error")


def _dataset_config(config: Config, args: argparse.Namespace) -> Config:
    """Apply dataset options; --fma-* or --manifest also set the dataset kind."""
    kind = None
    if args.manifest:
        kind = "manifest"
    elif args.fma_metadata or args.fma_audio:
        kind = "fma"
        if not (args.fma_metadata and args.fma_audio):
            raise ConfigError("--fma-metadata and --fma-audio go together: give both folders")
    flags = {"metadata_dir": "fma_metadata", "audio_dir": "fma_audio", "manifest": "manifest", "subset": "subset",
             "split": "split", "seed": "split_seed", "strict": "strict"}
    return _with_flags(_replace(config, "dataset", kind=kind), args, "dataset", flags)


def _add_grid_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("grid (overrides the config's [grid])")
    group.add_argument("--tasks", help="tasks of the grid, e.g. g,m,d,e,s")
    group.add_argument("--archs", help="architectures, e.g. stn,mtn,wstn")
    group.add_argument("--subsets", help="task subsets to run, e.g. g,gm,gmdes (default: all of --tasks)")
    group.add_argument("--seeds", help="run seeds, e.g. 0,1,2, each 0 to 2**32 - 1: each trains every net and MLP "
                       "once")


def _grid_config(config: Config, args: argparse.Namespace) -> Config:
    try:
        seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else None
    except ValueError:
        raise ConfigError(f"--seeds {args.seeds!r}: give integers separated by commas, e.g. 0,1,2") from None
    archs = tuple(a.strip() for a in args.archs.split(",")) if args.archs else None
    subsets = tuple(s.strip() for s in args.subsets.split(",")) if args.subsets else None
    return _with_flags(config, args, "grid", {name: name for name in ("tasks", "archs", "subsets", "seeds")},
                       tasks=_task_list(args.tasks), archs=archs, subsets=subsets, seeds=seeds)


# -- the commands ---------------------------------------------------------------------------------


def cmd_prepare(args: argparse.Namespace) -> int:
    """Build the feature store of a dataset."""
    from agf.parallel import check_scheduler
    from agf.pipeline import run_context, stage_prepare, stage_tracks

    config = _dataset_config(_base_config(args), args)
    check_scheduler(config.run.scheduler, config.run.workers)
    with run_context(config, save=True) as workdir:
        loaded = stage_tracks(config, workdir, progress=not args.quiet)
        for warning in loaded.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        store, summary = stage_prepare(
            config, workdir, loaded.tracks, retry_failed=args.retry_failed, progress=not args.quiet
        )
        print(summary.format())
        print(f"feature store: {store.root}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    """Render the synthetic demo corpus in FMA's layout."""
    from agf.datasets.synth import corpus_summary, synthesize_corpus

    config = load_config(args.config) if args.config else Config()
    flags = {"n_genres": "genres", "artists_per_genre": "artists_per_genre", "albums_per_artist": "albums_per_artist",
             "tracks_per_album": "tracks_per_album", "clip_seconds": "seconds", "label_noise": "label_noise",
             "seed": "seed"}
    config = _with_flags(_with_flags(config, args, "synth", flags), args, "run", {"workers": "workers"})
    out = synthesize_corpus(Path(args.out_dir), config.synth, workers=config.run.workers, progress=not args.quiet)
    print(corpus_summary(out))
    return 0


def cmd_factors(args: argparse.Namespace) -> int:
    """Build the artist group factors of the prepared dataset."""
    from agf.factors import format_summary
    from agf.pipeline import open_prepared, run_context, stage_factors

    config = _with_flags(_base_config(args), args, "factors", {"tasks": "tasks", "leaky": "leaky"},
                         tasks=_task_list(args.tasks))
    with run_context(config):
        factors = stage_factors(config, open_prepared(config), config.factors.tasks, not args.quiet)
        print(format_summary(factors.results))
        print(f"artist group factors: {factors.directory}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train source nets (STN per task, one MTN, or a wSTN); under torchrun each net data-parallel, with rank 0
    alone holding the work directory's lock (agf.pipeline.run_context), writing and printing."""
    from agf.device import resolve_device
    from agf.pipeline import open_prepared, run_context, stage_train
    from agf.training import distributed

    config = _with_flags(_base_config(args), args, "train", {"epochs": "epochs", "schedule": "schedule"})
    seed = _run_seed(config, args)
    with distributed.session(resolve_device(config.run.device)):
        main = distributed.is_main()
        with run_context(config):
            with distributed.main_first():  # the feature store's settings file, when new
                prepared = open_prepared(config)
            net_dirs = stage_train(config, prepared, args.arch, parse_tasks(args.tasks), args.match, seed,
                                   main and not args.quiet, print if main else _silent)
            for net_dir in net_dirs if main else ():
                print(f"net: {net_dir}")
    return 0


def _silent(_: str) -> None:
    """A log that drops its lines (the data-parallel processes besides rank 0)."""


def cmd_transfer(args: argparse.Namespace) -> int:
    """Fit the transfer MLP on the window features of trained nets."""
    from agf.pipeline import open_prepared, run_context, stage_transfer

    config = _with_flags(_base_config(args), args, "transfer", {"epochs": "epochs"})
    with run_context(config):
        result = stage_transfer(
            config, open_prepared(config), [Path(s) for s in args.nets], _run_seed(config, args), not args.quiet
        )
        print(f"{result.name}: best epoch {result.best_epoch}; predictions in {result.out_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score transfers and baselines; write metrics.json and plots."""
    from agf.evaluation import evaluate
    from agf.pipeline import open_prepared, run_context

    config = _base_config(args)
    with run_context(config):
        prepared = open_prepared(config)
        out_dir = Path(args.output) if args.output else prepared.workdir.evaluation / "manual"
        run = evaluate([Path(d) for d in args.transfers], prepared.tracks, out_dir, store=prepared.store,
                       seed=_run_seed(config, args))
        print(run.table)
        print(f"metrics: {out_dir / 'metrics.json'}")
    return 0


def _run_config(args: argparse.Namespace) -> Config:
    """The config of `agf run`, `grid` and `check`: CONFIG or --config, then the dataset and grid options."""
    if args.config_file:
        if args.config:
            raise ConfigError("give the config either as CONFIG or as --config, not both")
        args.config = args.config_file
    return _grid_config(_dataset_config(_base_config(args), args), args)


def cmd_run(args: argparse.Namespace) -> int:
    """Every stage from the collection to the report; finished stages are reused. With --dry-run, the checks of
    `agf check` and the plan, nothing else."""
    from agf.device import use_threads
    from agf.pipeline import plan_run, run_pipeline

    if args.dry_run:
        config = _check(args)
        if config is None:
            return EXIT_ERROR
        use_threads(config.run.threads)  # the speeds are measured as the run would run; nothing is locked or written
        plan, speed = plan_run(config)
        print("\n".join(plan.lines(speed, config.run.workers)))
        return 0
    run = run_pipeline(_run_config(args), progress=not args.quiet)
    print(f"report: {run.report['html']}")
    return 0


def cmd_study(args: argparse.Namespace) -> int:
    """The label-noise study: every cell (reused when finished), the paired statistics, the report."""
    from agf.pipeline import check_settings
    from agf.study import run_study, summary_lines

    config = _run_config(args)
    check_settings(config)
    print(summary_lines(run_study(config, progress=not args.quiet)))
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Check a run before any compute: settings, grid, device, work directory, dataset; every problem at once."""
    return 0 if _check(args) is not None else EXIT_ERROR


def _check(args: argparse.Namespace) -> Config | None:
    """Print what `agf check` finds in the config of `agf run`'s arguments, every problem of every section at once
    (config.lenient); the config when there is none."""
    from agf.pipeline import check_run

    with lenient() as load_problems:
        config = _run_config(args)
    problems, facts = check_run(config, load_problems)
    for line in facts:
        print(line)
    for problem in problems:
        print(f"agf {args.command}: problem: {_naming_flags(problem, args)}", file=sys.stderr)
    print(f"{len(problems)} problem(s) found" if problems else "ok: no problem found")
    return None if problems else config


def cmd_report(args: argparse.Namespace) -> int:
    """Rebuild the report of a finished run from its work directory."""
    from agf.pipeline import run_pipeline

    config = _workdir_config(args)
    run = run_pipeline(config, progress=not args.quiet, must_be_done=True)
    print(f"report: {run.report['html']}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The whole system on the built-in synthetic corpus, a short summary, then the selected model exported
    and applied to a few test files."""
    from agf.pipeline import demo_predictions, demo_summary, run_context, run_pipeline

    config = _with_flags(load_config("demo"), args, "run", RUN_FLAGS)
    with run_context(config):  # one lock over the run, the export and the stage times
        run = run_pipeline(config, progress=not args.quiet)
        print(demo_summary(run))
        with run.times.timed("export + predictions"):
            print(demo_predictions(config, run))
        run.times.write(run.prepared.workdir)  # the stage times printed by run_pipeline, with this last stage
    return 0


def _workdir_config(args: argparse.Namespace) -> Config:
    """The config a finished run saved in its work directory (-w, default 'work'), pointed at that directory, with
    this machine's CPU and no scheduler: reading a finished run computes nothing, so a run made on a GPU or a
    cluster is reported and exported anywhere."""
    workdir = WorkDir(Path(args.workdir or Config().run.workdir))
    if not workdir.config.exists():
        raise ConfigError(f"{workdir.config} not found: give the work directory of a finished `agf run` with "
                          "-w/--workdir")
    return _replace(load_config(workdir.config), "run", workdir=str(workdir.root), device="cpu", scheduler="")


def cmd_export(args: argparse.Namespace) -> int:
    """Write the chosen model (every seed of it; or one seed of a named case) of a finished run as a bundle."""
    from agf.pipeline import open_chosen, run_context, stage_export

    config = _workdir_config(args)
    with run_context(config):
        prepared, chosen = open_chosen(config)
        path, what = stage_export(config, prepared, chosen.grid, chosen.results, chosen.selection, Path(args.out),
                                  args.case, args.seed)
    print(f"exported {what} to {path}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Genre probabilities of audio files with a bundle; failures are listed at the end."""
    import torch

    from agf.device import use_threads
    from agf.fileio import atomic_path
    from agf.parallel import available_cores
    from agf.predict import GenreClassifier
    from agf.predict.classifier import default_decode_workers
    from agf.predict.inputs import STDIN, expand_inputs
    from agf.predict.output import PredictionWriter, check_output_path, failure_summary, file_id_warning, format_for

    check_output_path(args.output)
    if args.max_duration is not None and not 0 < args.max_duration < math.inf:
        raise PredictError(f"--max-duration must be positive seconds, got {args.max_duration}")
    for flag, value, least in (("--top-k", args.top_k, 1), ("--workers", args.workers, 0),
                               ("--threads", args.threads, 1), ("--batch-windows", args.batch_windows, 1)):
        if value is not None and value < least:
            raise PredictError(f"{flag} {value}: must be at least {least}")
    paths = expand_inputs(args.inputs, sys.stdin if STDIN in args.inputs else ())
    if not paths:
        raise PredictError("no input files: give audio files, directories, glob patterns, or - to read paths from "
                           "stdin")
    fmt = format_for(args.output, args.format)
    clash = file_id_warning(paths, fmt)
    if clash:
        print(f"warning: {clash}", file=sys.stderr)
    classifier = GenreClassifier.load(args.bundle, device=args.device, batch_windows=args.batch_windows)
    workers = args.workers if args.workers is not None else default_decode_workers() if len(paths) > 2 else 0
    if args.threads is not None:
        use_threads(args.threads)
    elif classifier.device.type == "cpu":  # the nets' threads share the cores with the decoding processes
        torch.set_num_threads(max(1, available_cores() - workers))
    failures, noted, predicted = [], [], 0
    with contextlib.ExitStack() as stack:
        if args.output:
            stream = stack.enter_context(open(stack.enter_context(atomic_path(args.output)), "w", encoding="utf-8"))
        else:
            stream = sys.stdout
        writer = PredictionWriter(stream, fmt, classifier.genres, args.top_k)
        predictions = classifier.predict_many(paths, args.max_duration, workers, not args.quiet, len(paths))
        for prediction in predictions:
            writer.write(prediction)
            if prediction.ok:
                predicted += 1
                if prediction.notes:
                    noted.append(prediction)
            else:
                failures.append(prediction)
    print(failure_summary(failures, predicted, noted), file=sys.stderr)
    if args.output:
        print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_ERROR if predicted == 0 or (args.strict and failures) else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(
        prog="agf",
        description="Genre classifiers that learn from artist information (Artist Group Factors, Kim et al. 2018).",
    )
    parser.add_argument("--version", action="version", version=f"agf {__version__}")
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
    synth.add_argument("--seconds", type=float, help="clip length in seconds, up to 600 (default 10)")
    synth.add_argument("--label-noise", type=float, help="share of albums with a wrong genre label (default 0.15)")
    synth.add_argument("--seed", type=int, help="seed of the corpus, 0 to 2**32 - 1 (default 0)")
    synth.add_argument("-j", "--workers", type=int, help="worker processes, at least 1 (default: the config's "
                       "run.workers, 2)")
    _add_output_options(synth)
    synth.set_defaults(func=cmd_synth)

    factors = commands.add_parser(
        "factors",
        help="build artist group factors (tasks m, d, e, s) of a prepared dataset",
        description="Per task: a dictionary (MFCC, delta-MFCC or Essentia words; sub-genres for s), artist "
        "bags of words, LDA topics = artist group factors; fitted on training tracks/artists only.",
    )
    _add_common(factors)
    factors.add_argument("--tasks", help="tasks to build, e.g. m,d,e,s (default: the config's)")
    factors.add_argument("--leaky", action="store_true", default=None,
                         help="the paper's protocol: fit on ALL tracks (leaks)")
    factors.set_defaults(func=cmd_factors)

    train = commands.add_parser(
        "train",
        help="train source nets on 1-s log-mel patches",
        description="Train single-task nets (one per task), a multi-task net sharing its first block, or a wide "
        "genre net as large as a multi-task setup. Resumes from the last checkpoint.",
    )
    _add_common(train)
    train.add_argument("--tasks", default="g", help="tasks to train, e.g. g or g,m,d,e,s (default g)")
    train.add_argument(
        "--arch",
        choices=ARCHS,
        default="stn",
        help="stn: one net per task; mtn: one net sharing the first block; wstn: a genre net as large as --match",
    )
    train.add_argument(
        "--match", choices=["mtn", "stn"], default="mtn", help="wstn: match the MTN or the STN set of --tasks"
    )
    train.add_argument("--epochs", type=int, help="epochs (default: the config's train.epochs; an MTN trains "
                       "epochs x its number of tasks)")
    _add_run_seed(train, "training: initialisation, crops, dropout")
    train.add_argument("--schedule", choices=["epoch", "batch"], help="MTN task schedule (default: the config's)")
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
    _add_run_seed(transfer, "the MLP: initialisation, shuffling, dropout")
    transfer.set_defaults(func=cmd_transfer)

    evaluate = commands.add_parser(
        "evaluate",
        help="score transfers and baselines (log loss, macro-F1, accuracy)",
        description="Scores each transfer MLP, the source nets' own genre heads and a classical MFCC baseline on "
        "the validation and test splits, against the given and (synthetic corpus) the true genres.",
    )
    _add_common(evaluate)
    evaluate.add_argument("transfers", nargs="+", metavar="TRANSFER_DIR", help="directories made by agf transfer")
    evaluate.add_argument("-o", "--output", metavar="DIR", help="output folder (default WORKDIR/evaluation/manual)")
    _add_old_spelling(evaluate, OldSpelling("--out", "-o/--output", "output"))
    _add_run_seed(evaluate, "the classical baseline")
    evaluate.set_defaults(func=cmd_evaluate)

    cached = ". Each stage is cached under a key of its inputs and settings: a rerun redoes only what changed, " \
        "and a killed run resumes."
    for name, help_text, description, func in (
        ("run", "run every stage of a config: prepare, factors, nets, transfer, evaluate, report", cached, cmd_run),
        ("grid", "run the paper's experiment grid (all task subsets x STN/MTN/wSTN x seeds)", cached, cmd_run),
        ("check", "check a run before any compute: settings, grid, device, scheduler, work directory, dataset",
         ": load the config and the dataset as `agf run` would and list every problem of every section at once "
         "(settings out of range, an unknown architecture, a missing GPU, an address where no dask scheduler "
         "answers, a work directory that is a file, unreadable metadata, no audio files, too little disk space, "
         "genres without training tracks, no validation or test split), without decoding, training or writing "
         "anything. Exit status 1 when there is a problem.", cmd_check),
    ):
        command = commands.add_parser(name, help=help_text, description=help_text + description)
        command.add_argument("config_file", nargs="?", metavar="CONFIG", help="TOML config file or preset name")
        _add_common(command)
        _add_dataset_options(command)
        _add_grid_options(command)
        if func is cmd_run:
            command.add_argument("--dry-run", action="store_true", help="check and print the plan (stages, nets, "
                                 "epochs, windows, an estimated time from speeds measured here); run nothing")
        command.set_defaults(func=func)

    study = commands.add_parser(
        "study",
        help="test the paper's claim: artist groups against label noise (noise sweep, controls, paired statistics)",
        description="For each corpus seed and noise cell (symmetric or structured album-level label noise at each "
        "rate), train genre-only, genre + artist-group STN and MTN, the same with control targets, and "
        "the matched wSTN over the run seeds; score them against the true genres; write paired gains over "
        "genre-only with 95 % CIs, permutation/Wilcoxon tests with Holm's correction, the gain's slope on the "
        "noise rate, a figure and WORKDIR/study/report.html. Finished cells are reused; a killed study resumes. "
        "Presets: study-quick (about the size the docs report), study (the full profile).",
    )
    study.add_argument("config_file", nargs="?", metavar="CONFIG", help="TOML config file or preset name")
    _add_common(study)
    _add_dataset_options(study)
    study.add_argument("--seeds", help="run seeds, e.g. 0,1,2 (default: the config's grid.seeds)")
    study.set_defaults(func=cmd_study, tasks=None, archs=None, subsets=None)

    report = commands.add_parser(
        "report",
        help="rebuild the report of a finished run",
        description="Rebuild results.csv, tables.md, figure3.png and report.html from a work directory whose "
        "stages are finished (nothing is trained).",
    )
    _add_workdir_option(report, "work", "work directory of a finished `agf run`")
    _add_old_spelling(report, OldSpelling("`agf report WORKDIR`", "`agf report -w WORKDIR`", "workdir"))
    _add_output_options(report)
    report.set_defaults(func=cmd_report)

    export = commands.add_parser(
        "export",
        help="write the selected model of a finished run as a self-contained bundle for `agf predict`",
        description="Write the source nets and the transfer MLP (safetensors) with a manifest (preprocessing, "
        "genres, band statistics, tasks, provenance, validation/test metrics, weight hashes) to OUT. By default "
        "the model chosen on validation (the report's best model); --case names any trained case.",
    )
    _add_workdir_option(export, "work", "work directory of a finished `agf run`")
    _add_old_spelling(export, OldSpelling("`agf export WORKDIR OUT`", "`agf export -w WORKDIR OUT`", "workdir"))
    export.add_argument("out", metavar="OUT", help="bundle directory to write (replaced when it exists)")
    export.add_argument("--case", help="a trained case by its label, e.g. 'STN gm', 'MTN gms', 'wSTN g (N=2)'")
    export.add_argument("--seed", type=int, help="with --case: the run seed of the model (default: the first)")
    _add_output_options(export)
    export.set_defaults(func=cmd_export)

    predict = commands.add_parser(
        "predict",
        help="genre probabilities of audio files with an exported bundle",
        description="Classify audio files of any format, rate, length and channel count: the mean of the genre "
        "probabilities of every 1-s window covering each file. Inputs: files, directories (searched recursively "
        "for audio files), glob patterns, or - to read paths from stdin. A file that fails is listed with its "
        "reason at the end; the exit status is 1 only when nothing could be classified (or with --strict). "
        "Audio shorter than one window (about 1 s) is reported as a failure.",
    )
    predict.add_argument("bundle", metavar="BUNDLE", help="bundle directory made by `agf export`")
    predict.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, directories, globs, or -")
    predict.add_argument("--format", choices=FORMATS, help="table (default), csv (the WWW 2018 challenge format: "
                         "file_id + one probability column per genre) or jsonl (default from --output's suffix)")
    predict.add_argument("-o", "--output", metavar="FILE", help="write to FILE (atomically) instead of stdout")
    predict.add_argument("-k", "--top-k", type=int, default=3, help="genres shown per file, at least 1 (table, "
                         "jsonl; default 3)")
    predict.add_argument("--max-duration", type=float, metavar="SECONDS",
                         help="classify only the first SECONDS of each file (default: the whole file)")
    predict.add_argument("--strict", action="store_true", help="exit status 1 when any file fails")
    predict.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    predict.add_argument("-j", "--workers", type=int,
                         help="decoding processes beside the nets, at least 0 (default: cores - 1, at most 8; "
                         "0 decodes in the main process)")
    predict.add_argument("--threads", type=int, help="torch/BLAS threads of the nets, at least 1 (default: on a CPU, "
                         "the cores less --workers)")
    predict.add_argument("--batch-windows", type=int, default=512, help="windows per forward pass, at least 1 "
                         "(default 512)")
    _add_output_options(predict)
    predict.set_defaults(func=cmd_predict)

    demo = commands.add_parser(
        "demo",
        help="render the synthetic corpus and run the whole system on it (about 8 min on 2 cores)",
        description="Renders the built-in synthetic corpus, runs the 'demo' preset end to end, writes the report "
        "and prints genre-only vs the best artist-group transfer against the noisy and the true labels.",
    )
    _add_workdir_option(demo, "./demo")
    _add_old_spelling(demo, OldSpelling("--out", "-w/--workdir", "workdir"))
    _add_run_options(demo, "the demo preset's")
    _add_output_options(demo)
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `agf` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from agf.parallel import keep_freed_memory  # not for `agf --help`

    keep_freed_memory()  # window features, training and prediction reuse freed memory here (agf.parallel)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        _take_old_spellings(args)
        return func(args)
    except AgfError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"agf {args.command}: error: {_naming_flags(str(exc), args)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"agf {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of our output went away (e.g. `agf predict ... | head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
