"""What is checked before a run's first expensive step, writing nothing: the settings (grid, device, scheduler),
the work directory, the dataset and its splits, the free space for the feature store (`agf check`), and the
plan of `agf run` (`--dry-run`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from agf.config import Config, config_problems
from agf.datasets import load_dataset
from agf.datasets.splits import split_problems
from agf.datasets.synth import corpus_is_complete
from agf.datasets.table import HELD_OUT_SPLITS, split_mask, training_genres
from agf.device import resolve_device
from agf.errors import AgfError, ConfigError, PipelineError
from agf.grid import grid_cases, grid_subsets
from agf.parallel import check_scheduler
from agf.plan import Plan, Throughput, make_plan, measure_throughput, store_bytes, unrendered_synth_tracks
from agf.prepare import is_finished
from agf.selection import crossval_problems
from agf.store import FeatureStore, features_key
from agf.workdir import WorkDir, check_creatable, free_bytes

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
    train = training_genres(tracks)
    problems = []
    if not train:
        problems.append("no usable track in the training split")
    untrained = sorted(set(tracks["genre"]) - train)
    if train and untrained:
        problems.append(f"genre(s) {', '.join(untrained)} have usable tracks but none in the training split "
                        "(their training tracks failed or are missing: see the prepare summary)")
    if not split_mask(tracks, *HELD_OUT_SPLITS).any():
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
    problems += split_errors + crossval_problems(config, tracks)
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

