"""Choosing the model a run ends with (docs/selection.md).

The candidates are every transfer MLP, every source net's own genre head and every blend of a transfer with its
sources' genre head (the mean of the two track probabilities). A candidate is the ensemble of its run seeds: their
track probabilities combined as their mean ('probs') or their renormalised geometric mean ('log_probs'). Each
candidate, in each combination, is scored on the selection tracks (the validation split, or the out-of-fold
predictions of artist-grouped cross-validation over train + validation: agf.pipeline.crossval) after temperature
scaling fitted on the same tracks, and the selection rule (agf.metrics.SELECTION_METRICS) ranks them. Only the
selection tracks' given labels are read here: test labels never choose.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from agf.aggregation import combine_members
from agf.config import Config
from agf.datasets.table import TRAIN, VAL, split_mask
from agf.calibration import apply_temperature, fit_temperature
from agf.errors import EvaluationError
from agf.metrics import METRICS, accuracy, log_loss, score_against, sort_by_selection

# How the seeds' track probabilities become one (agf.aggregation.combine_members): their mean, or the renormalised
# geometric mean. With one seed both are the seed's own probabilities: only the first is listed.
COMBINATIONS: tuple[str, ...] = ("probs", "log_probs")
BLEND_PREFIX = "blend: "


def selection_mode(config: Config, tracks: pd.DataFrame) -> tuple[str, str]:
    """'validation' or 'crossval' for this run, and why: select.mode, or for 'auto' whether some training genre has
    fewer than select.min_val_artists artists in the validation split."""
    mode, least = config.select.mode, config.select.min_val_artists
    if mode != "auto":
        return mode, f"select.mode = '{mode}'"
    genres = sorted(set(tracks.loc[split_mask(tracks, TRAIN), "genre"]))
    val = tracks[split_mask(tracks, VAL)]
    artists = val.groupby("genre")["artist_id"].nunique().reindex(genres, fill_value=0)
    short = artists[artists < least]
    if short.empty:
        return "validation", f"the validation split has at least {least} artists in every genre"
    shown = ", ".join(f"{genre} {n}" for genre, n in short.head(3).items())
    return "crossval", (f"the validation split has fewer than {least} artists in {len(short)} of {len(genres)} "
                        f"genres ({shown}{', ...' if len(short) > 3 else ''}): small for choosing a model")


def crossval_problems(config: Config, tracks: pd.DataFrame) -> list[str]:
    """The problems of cross-validating these tracks (none when the run chooses on validation): more folds than
    train + validation has artists, more seeds per fold than the run has."""
    if selection_mode(config, tracks)[0] != "crossval":
        return []
    found = []
    artists = int(tracks.loc[split_mask(tracks, TRAIN, VAL), "artist_id"].nunique())
    if artists < config.select.folds:
        found.append(f"select.folds = {config.select.folds}: cross-validation deals whole artists into folds, and "
                     f"train + validation have {artists}; set select.folds lower, or select.mode = 'validation'")
    if config.select.fold_seeds > len(config.grid.seeds):
        found.append(f"select.fold_seeds = {config.select.fold_seeds}: more than the {len(config.grid.seeds)} run "
                     "seeds of grid.seeds")
    return found


def crossval_cost(config: Config, tracks: pd.DataFrame) -> float:
    """The training cross-validation takes, in units of the validation protocol's (every seed on the training
    tracks): the folds' select.fold_seeds seeds each on (k - 1) / k of the labelled (train + validation) tracks,
    then the final fit's every seed on all of them."""
    seeds, folds = len(config.grid.seeds), config.select.folds
    labelled_per_train = split_mask(tracks, TRAIN, VAL).sum() / max(1, split_mask(tracks, TRAIN).sum())
    return float(labelled_per_train * ((folds - 1) * config.select.fold_seeds + seeds) / seeds)


@dataclass(frozen=True)
class Choice:
    """The chosen candidate: its name and kind, how its seeds combine, the temperature fitted on the selection
    tracks, and every candidate x combination's scores there, best first (columns name, kind, combination,
    accuracy, log_loss (after temperature scaling when calibrating), log_loss_uncalibrated, temperature)."""

    name: str
    kind: str
    combination: str
    temperature: float
    ranking: pd.DataFrame


def combine(frames: Sequence[pd.DataFrame], how: str) -> pd.DataFrame:
    """The seeds' track probabilities (each indexed by track_id, one column per genre) as one, over the tracks of
    the first frame (every frame must predict them)."""
    if not frames:
        raise EvaluationError("combine: no seed's probabilities given")
    index, columns = frames[0].index, frames[0].columns
    missing = [len(index.difference(frame.index)) for frame in frames]
    if any(missing):
        raise EvaluationError(f"combine: a seed lacks {max(missing)} of the {len(index)} tracks of the first")
    values = combine_members([frame.loc[index, columns].to_numpy(dtype=np.float64) for frame in frames], how)
    return pd.DataFrame(values, index=index, columns=columns)


def blend(transfer: pd.DataFrame, head: pd.DataFrame) -> pd.DataFrame:
    """A transfer's and a genre head's track probabilities averaged, over the tracks both predict."""
    index = transfer.index.intersection(head.index, sort=False)
    return (transfer.loc[index] + head.loc[index, transfer.columns]) / 2


def blend_name(transfer_name: str) -> str:
    """The name of the blend of a transfer (named `transfer_name`) with its sources' genre head."""
    return f"{BLEND_PREFIX}{transfer_name} + genre head"


def class_indices(labels: pd.Series, genres: Sequence[str]) -> np.ndarray:
    """Genre names as class indices in `genres`' order."""
    return labels.map({genre: i for i, genre in enumerate(genres)}).to_numpy(dtype=np.int64)


def selection_scores(probs: np.ndarray, labels: np.ndarray, calibrate: bool) -> dict[str, float]:
    """Accuracy, log loss before and (with `calibrate`) after the temperature fitted on these tracks, and that
    temperature (1 without `calibrate`)."""
    temperature = fit_temperature(probs, labels) if calibrate else 1.0
    raw = log_loss(labels, probs)
    return {"accuracy": accuracy(labels, probs.argmax(axis=1)),
            "log_loss": log_loss(labels, apply_temperature(probs, temperature)) if calibrate else raw,
            "log_loss_uncalibrated": raw, "temperature": temperature}


def choose(
    candidates: Mapping[str, Sequence[pd.DataFrame]], kinds: Mapping[str, str], labels: pd.Series,
    genres: Sequence[str], calibrate: bool = True,
) -> Choice:
    """The candidate (name -> its seeds' probabilities on at least the selection tracks) and combination ranked
    first by the selection rule on the selection tracks, whose given genres are `labels` (index track_id)."""
    if not candidates:
        raise EvaluationError("choose: no candidate model")
    truth = class_indices(labels, genres)
    rows = []
    for name, frames in candidates.items():
        for how in COMBINATIONS[: 2 if len(frames) > 1 else 1]:
            probs = combine([frame.loc[labels.index] for frame in frames], how)[list(genres)].to_numpy()
            rows.append({"name": name, "kind": kinds[name], "combination": how,
                         **selection_scores(probs, truth, calibrate)})
    ranking = sort_by_selection(pd.DataFrame(rows)).reset_index(drop=True)
    best = ranking.iloc[0]
    return Choice(str(best["name"]), str(best["kind"]), str(best["combination"]), float(best["temperature"]),
                  ranking)


def apply_choice(frames: Sequence[pd.DataFrame], combination: str, temperature: float) -> pd.DataFrame:
    """The chosen model's track probabilities: its seeds combined, then temperature-scaled."""
    combined = combine(frames, combination)
    return pd.DataFrame(apply_temperature(combined.to_numpy(), temperature), index=combined.index,
                        columns=combined.columns)


def fold_scores(probs: pd.DataFrame, tracks: pd.DataFrame, folds: pd.Series, genres: Sequence[str]) -> pd.DataFrame:
    """Per fold (folds: track_id -> fold number) of the out-of-fold probabilities `probs`: its tracks, its artists
    and the scores against the given (and, when known, true) genres; one row per fold and label kind, columns
    fold, labels, n_tracks, n_artists and every metric."""
    artists = tracks.set_index(tracks["track_id"].astype(str))["artist_id"]
    rows = []
    for fold, ids in folds.groupby(folds).groups.items():
        held = probs.loc[probs.index.intersection(ids, sort=False)]
        for kind, found in score_against(tracks, held, genres).items():
            rows.append({"fold": int(fold), "labels": kind, "n_tracks": len(held),
                         "n_artists": int(artists.loc[held.index].nunique()),
                         **{metric: found[metric] for metric in METRICS}})
    return pd.DataFrame(rows)
