"""Artist-grouped cross-validation over train + validation, and the final fit on both (select.mode 'crossval').

The labelled tracks (train and validation) are dealt into select.folds folds by artist, stratified by genre
(agf.datasets.splits.artist_folds). Fold k's run holds out fold k's artists as its validation split and trains on
the others: its factors, nets and transfers (MLP epoch and aggregation chosen on the held-out artists) never see
them, and it trains select.fold_seeds run seeds (grid.seeds in turn). Each held-out track so gets one out-of-fold
prediction per model, from parts fitted without its artist; every choice is made on those: each MLP's epoch count
(the median of the folds' best epochs), each transfer's aggregation (the lowest mean calibrated log loss over
folds), each model's temperature, and the model (agf.selection). The nets' epochs are not chosen: in the folds and
the final fit alike every net trains its whole budget and keeps its last epoch (budget_training), so the final
nets are trained as the scored ones were. The final run then fits every net and transfer on all of train +
validation, for every run seed, and is scored on test. Test tracks take no part in the folds.

WORKDIR/crossval/fold<k>/ holds fold k's factors, nets, transfers and evaluation; WORKDIR/crossval/final/ the final
fit's. The cost, against the validation protocol's run: the folds train select.fold_seeds seeds each on
(folds - 1) / folds of the labelled tracks, the final fit every seed on all of them (agf.selection.crossval_cost).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from agf.config import Config, TrainConfig, TransferConfig
from agf.datasets.splits import artist_folds
from agf.datasets.table import TEST, TRAIN, VAL, genre_list, split_mask, tracks_fingerprint
from agf.errors import PipelineError
from agf.evaluation import classical_model
from agf.fileio import read_json, stable_key, write_parquet_atomic
from agf.grid import Case
from agf.pipeline.grid_run import GridRun, NetTraining, run_grid
from agf.pipeline.stages import Log, Prepared
from agf.pipeline.times import StageTimes
from agf.training import NetSpec, net_train_config
from agf.workdir import WorkDir, clear_done, is_done, mark_done, read_marker, require_done

CROSSVAL_DIR = "crossval"
FINAL_DIR = "final"
SETUP = tuple[str, str, int]  # a case without its seed: arch, tasks, n_tasks


def labelled_folds(tracks: pd.DataFrame, config: Config) -> pd.Series:
    """The fold of every train and validation track (index track_id), dealt by artist (dataset.seed)."""
    labelled = tracks[split_mask(tracks, TRAIN, VAL)]
    folds = artist_folds(labelled.reset_index(drop=True), config.select.folds, config.dataset.seed)
    return pd.Series(folds.to_numpy(), index=pd.Index(labelled["track_id"].astype(str), name="track_id"),
                     name="fold")


def fold_tracks(tracks: pd.DataFrame, folds: pd.Series, fold: int) -> pd.DataFrame:
    """Fold `fold`'s table: the labelled tracks, its artists as validation, the others' as training."""
    labelled = tracks[tracks["track_id"].astype(str).isin(folds.index)]
    held = folds.loc[labelled["track_id"].astype(str)].to_numpy() == fold
    return labelled.assign(split=np.where(held, VAL, TRAIN))


def final_tracks(tracks: pd.DataFrame) -> pd.DataFrame:
    """The final fit's table: validation tracks become training tracks; test stays test."""
    return tracks.assign(split=tracks["split"].where(~split_mask(tracks, VAL), TRAIN))


def fold_seeds(config: Config, fold: int) -> tuple[int, ...]:
    """The select.fold_seeds run seeds fold `fold` trains: grid.seeds in turn."""
    seeds, count = config.grid.seeds, config.select.fold_seeds
    return tuple(seeds[(fold * count + i) % len(seeds)] for i in range(count))


@dataclass(frozen=True)
class Folds:
    """The folds' runs: each track's fold, each fold's run and table, the classical baseline's out-of-fold
    probabilities."""

    of_track: pd.Series  # track_id -> fold
    runs: tuple[GridRun, ...]
    tables: tuple[pd.DataFrame, ...]
    classical: pd.DataFrame


@dataclass(frozen=True)
class FinalFit:
    """The final fit on train + validation: its run and prepared tracks, and the choices it was made with."""

    run: GridRun
    prepared: Prepared
    net_epochs: tuple[int, ...]  # per net position (walk order)
    transfers: dict[SETUP, TransferConfig]


def setup_of(case: Case) -> SETUP:
    """A case without its seed."""
    return case.arch, case.tasks, case.n_tasks


def net_positions(run: GridRun) -> dict[int, list[Path]]:
    """A run's net directories by position among their seed's nets (walk order)."""
    found: dict[int, list[Path]] = {}
    seen: dict[int, int] = {}
    for (_, seed), path in run.nets.items():
        position = seen.get(seed, 0)
        seen[seed] = position + 1
        found.setdefault(position, []).append(path)
    return found


def trained_epochs(run: GridRun) -> tuple[int, ...]:
    """Per net position (walk order), the epochs its nets trained (the first seed's)."""
    return tuple(int((read_marker(paths[0]) or {})["epochs"]) for _, paths in sorted(net_positions(run).items()))


def chosen_transfers(runs: Sequence[GridRun], transfer: TransferConfig) -> dict[SETUP, TransferConfig]:
    """Per setup, the final fit's transfer settings: the aggregation of the lowest mean validation log loss over
    the folds (calibrated when transfer.calibrate), trained for the median of that aggregation's best epochs (rounded
    up), with no selection."""
    scored = "val_log_loss_calibrated" if transfer.calibrate else "val_log_loss"
    candidates: dict[SETUP, list[dict]] = {}
    for run in runs:
        for case, directory in run.transfers.items():
            candidates.setdefault(setup_of(case), []).append(read_json(Path(directory) / "mlp.json")["candidates"])
    chosen = {}
    for setup, folds in candidates.items():
        aggregation = min(transfer.aggregations, key=lambda a: float(np.mean([fold[a][scored] for fold in folds])))
        epochs = int(np.ceil(np.median([fold[aggregation]["best_epoch"] for fold in folds])))
        chosen[setup] = replace(transfer, epochs=max(1, epochs), select_epoch="last", aggregations=(aggregation,))
    return chosen


def budget_training(config: Config) -> NetTraining:
    """Cross-validation's net settings, in the folds and the final fit alike: each net trains its whole budget
    (net_train_config's epochs), no early stopping, and keeps its last epoch. On a few held-out artists a net's
    own validation loss is lowest within its first epochs while its validation accuracy still rises to the end of
    the budget (docs/selection.md), and a fold's best epoch cannot be reproduced by a final net trained on more
    tracks: the epoch is not chosen, and the temperature and the MLPs fitted on the folds' nets fit the final
    ones."""

    def training(position: int, spec: NetSpec) -> TrainConfig:
        return replace(net_train_config(spec, config.train), patience=0, select_epoch="last")

    return training


def classical_out_of_fold(config: Config, prepared: Prepared, tables: Sequence[pd.DataFrame],
                          must_be_done: bool) -> pd.DataFrame:
    """The classical baseline's out-of-fold probabilities: fitted on each fold's training tracks, predicting its
    held-out ones (seeded by the first run seed, as the evaluation's); kept in WORKDIR/crossval/classical/ and
    reused (with must_be_done, only read)."""
    out_dir = crossval_root(prepared) / "classical"
    key = stable_key("classical out of fold", [tracks_fingerprint(table) for table in tables],
                     prepared.store.root.name, config.grid.seeds[0])
    if not is_done(out_dir, key):
        if must_be_done:
            require_done(out_dir, "the classical baseline's out-of-fold predictions")
        clear_done(out_dir)
        genres = genre_list(prepared.tracks)
        probs = pd.concat([classical_model(prepared.store, table, genres, [VAL], config.grid.seeds[0]).probs
                           for table in tables])
        write_parquet_atomic(out_dir / "probs.parquet", probs.rename_axis("track_id").reset_index())
        mark_done(out_dir, key)
    return pd.read_parquet(out_dir / "probs.parquet").set_index("track_id")


def run_folds(config: Config, prepared: Prepared, progress: bool, log: Log, must_be_done: bool,
              times: StageTimes) -> Folds:
    """Every fold's run (each reused when finished) and the classical baseline's out-of-fold probabilities."""
    of_track = labelled_folds(prepared.tracks, config)
    runs, tables = [], []
    for fold in range(config.select.folds):
        table = fold_tracks(prepared.tracks, of_track, fold)
        held = table[split_mask(table, VAL)]
        log(f"cross-validation fold {fold + 1}/{config.select.folds}: {len(held)} held-out tracks of "
            f"{held['artist_id'].nunique()} artists, seeds {', '.join(map(str, fold_seeds(config, fold)))}")
        fold_config = replace(config, grid=replace(config.grid, seeds=fold_seeds(config, fold)))
        fold_prepared = Prepared(WorkDir(crossval_root(prepared) / f"fold{fold}"), table, prepared.store)
        runs.append(run_grid(fold_config, fold_prepared, progress, log, must_be_done, times,
                             net_training=budget_training(config)))
        tables.append(table)
    if len({frozenset(setup_of(case) for case in run.transfers) for run in runs}) != 1:
        raise PipelineError("the cross-validation folds trained different models (a task unavailable in some "
                            "fold); set select.mode = 'validation'")
    return Folds(of_track, tuple(runs), tuple(tables), classical_out_of_fold(config, prepared, tables, must_be_done))


def run_final(
    config: Config, prepared: Prepared, folds: Folds, temperatures: Mapping[str, float], progress: bool, log: Log,
    must_be_done: bool, times: StageTimes,
) -> FinalFit:
    """The final fit on train + validation with the nets' budget and the MLP epochs and aggregations chosen on the
    folds, every run seed, its evaluation scaling each model by its temperature in `temperatures` (chosen on
    out-of-fold predictions)."""
    transfers = chosen_transfers(folds.runs, config.transfer)
    final_prepared = Prepared(WorkDir(crossval_root(prepared) / FINAL_DIR), final_tracks(prepared.tracks),
                              prepared.store)
    tracks = final_prepared.tracks
    log(f"final fit on train + validation ({int(split_mask(tracks, TRAIN).sum())} tracks), scored on "
        f"{int(split_mask(tracks, TEST).sum())} test tracks: each net its budget, last epoch kept; MLP epochs, "
        "aggregation: "
        + "; ".join(f"{' '.join(map(str, setup))}: {t.epochs}, {t.aggregations[0]}" for setup, t in transfers.items()))
    run = run_grid(config, final_prepared, progress, log, must_be_done, times,
                   net_training=budget_training(config),
                   case_transfer=lambda case: transfers[setup_of(case)], temperatures=temperatures)
    return FinalFit(run, final_prepared, trained_epochs(run), transfers)


def crossval_root(prepared: Prepared) -> Path:
    """WORKDIR/crossval."""
    return prepared.workdir.root / CROSSVAL_DIR
