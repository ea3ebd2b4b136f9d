"""Train / val / test splits of a track table.

Two ways to make one: the paper's stratified random split (scikit-learn's train_test_split, not
artist-disjoint) and a new artist-disjoint split stratified by genre. Both are seeded and deterministic,
and both leave every genre with at least one training track. Artist-grouped folds for cross-validation are
dealt the way the artist-disjoint split is.
"""

from __future__ import annotations

import math
from collections.abc import Collection

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from agf.datasets.table import SPLITS, TEST, TRAIN, VAL, split_mask, training_genres
from agf.errors import DatasetError

SPLIT_MODES: tuple[str, ...] = ("official", "random", "artist")
# What a run does with each evaluated split, and how to give an empty one tracks.
_EVALUATED = {
    VAL: ("nothing selects the epochs and models or fits their calibration", "raise dataset.val_fraction"),
    TEST: ("nothing is reported on held-out data",
             "raise dataset.test_fraction (or set it to 0 to report on validation)"),
}


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Raise DatasetError unless both fractions are >= 0 and leave a training share."""
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise DatasetError(
            f"dataset.val_fraction = {val_fraction} and dataset.test_fraction = {test_fraction}: "
            "each must be >= 0 and together below 1"
        )


def planned_splits(tracks: pd.DataFrame, mode: str, val_fraction: float, test_fraction: float) -> tuple[str, ...]:
    """The splits `mode` means to fill: for 'official', those the table lists; else train and each split whose
    fraction is positive."""
    if mode == "official":
        return tuple(split for split in SPLITS if split in set(tracks["split"]))
    return (TRAIN, *(split for split, share in ((VAL, val_fraction), (TEST, test_fraction)) if share > 0))


def split_problems(tracks: pd.DataFrame, planned: Collection[str]) -> tuple[list[str], list[str]]:
    """(problems, warnings) of a track table's splits, found before any compute: a planned evaluated split (val,
    test; LoadedDataset.splits) without tracks is a problem (a generated split may leave one empty: it moves
    whole artists); a genre of the training split absent from an evaluated split is a warning (not scored there)."""
    problems, warnings = [], []
    genres = training_genres(tracks)
    for split, (purpose, fix) in _EVALUATED.items():
        part = tracks[split_mask(tracks, split)]
        if part.empty and split in planned:
            problems.append(f"the {split} split has no track, so {purpose}: {len(tracks)} tracks by "
                            f"{tracks['artist_id'].nunique()} artists leave none for it; add tracks by more artists "
                            f"or {fix}")
        absent = sorted(genres - set(part["genre"]))
        if absent and not part.empty:
            warnings.append(f"the {split} split has no track of {len(absent)} of {len(genres)} genres "
                            f"({', '.join(absent)}): they are not scored there")
    return problems, warnings


def assign_split(tracks: pd.DataFrame, mode: str, val_fraction: float, test_fraction: float, seed: int) -> pd.Series:
    """The split column for `mode`: 'official' keeps tracks['split'], 'random' and 'artist' make a new one."""
    if mode == "official":
        return tracks["split"]
    if mode == "random":
        return stratified_random_split(tracks, val_fraction, test_fraction, seed)
    if mode == "artist":
        return artist_disjoint_split(tracks, val_fraction, test_fraction, seed)
    raise DatasetError(f"dataset.split = {mode!r} is not a split mode; use one of {', '.join(SPLIT_MODES)}")


def stratified_random_split(tracks: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int) -> pd.Series:
    """The paper's split: 'train'/'val'/'test' per track, stratified by genre, NOT artist-disjoint.

    The held-out share (val + test) is drawn with scikit-learn's train_test_split(stratify=genre), then
    divided into val and test the same way. A genre with a single track keeps it in train; when the table
    is too small to stratify, the draw is plain random and each genre is then given back one training track.
    """
    check_fractions(val_fraction, test_fraction)
    genres = tracks["genre"].to_numpy()
    held = _draw_holdout(np.arange(len(tracks)), genres, val_fraction + test_fraction, seed)
    if not test_fraction:
        test = held[:0]
    elif not val_fraction:
        test = held
    else:
        test = _draw_holdout(held, genres, test_fraction / (val_fraction + test_fraction), seed)
    labels = np.full(len(tracks), TRAIN, dtype=object)
    labels[held] = VAL
    labels[test] = TEST
    return pd.Series(labels, index=tracks.index, name="split")


def _draw_holdout(positions: np.ndarray, genres: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted positions drawn out of `positions` for a share `fraction`; each genre keeps one undrawn."""
    labels = genres[positions]
    names, counts = np.unique(labels, return_counts=True)
    candidates = positions[np.isin(labels, names[counts >= 2])]
    n_held = min(math.ceil(fraction * len(candidates)), len(candidates) - 1)
    if n_held < 1:
        return positions[:0]
    candidate_labels = genres[candidates]
    n_classes = len(np.unique(candidate_labels))
    stratify = candidate_labels if min(n_held, len(candidates) - n_held) >= n_classes else None
    _, held = train_test_split(candidates, test_size=n_held, stratify=stratify, random_state=seed)
    held_labels = genres[held]
    kept_labels = set(genres[np.setdiff1d(positions, held)])
    _, first_of_genre = np.unique(held_labels, return_index=True)
    give_back = [held[i] for i in first_of_genre if held_labels[i] not in kept_labels]
    return np.setdiff1d(held, give_back)


def artist_disjoint_split(tracks: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int) -> pd.Series:
    """A new split ('train'/'val'/'test' per track) in which every artist is in exactly one split.

    Stratified by genre (`_deal_artists`). Finally a genre left without training tracks gets its largest artist
    in it moved to train (moving to train never takes training tracks from another genre).
    """
    check_fractions(val_fraction, test_fraction)
    shares = {TRAIN: 1 - val_fraction - test_fraction, VAL: val_fraction, TEST: test_fraction}
    split = _deal_artists(tracks, {name: share for name, share in shares.items() if share > 0}, seed).astype(object)
    for genre in sorted(set(tracks["genre"])):
        in_genre = tracks["genre"] == genre
        if not (split[in_genre] == TRAIN).any():
            split[tracks["artist_id"] == _largest_artist(tracks.loc[in_genre, "artist_id"])] = TRAIN
    return split.rename("split")


def artist_folds(tracks: pd.DataFrame, n_folds: int, seed: int) -> pd.Series:
    """A fold number (0 .. n_folds - 1) per track for artist-grouped cross-validation: every artist in exactly one
    fold, the folds stratified by genre as the artist-disjoint split is (`_deal_artists`, equal shares)."""
    n_artists = tracks["artist_id"].nunique()
    if not 2 <= n_folds <= n_artists:
        raise DatasetError(f"{n_folds} folds need between 2 and {n_artists} artists (the tracks have {n_artists})")
    folds = _deal_artists(tracks, dict.fromkeys(range(n_folds), 1 / n_folds), seed, balance_ties=True)
    return folds.astype(int).rename("fold")


def _deal_artists(tracks: pd.DataFrame, shares: dict, seed: int, balance_ties: bool = False) -> pd.Series:
    """Each track's part (a key of `shares`), whole artists at a time, stratified by genre: each artist is filed
    under its most frequent genre; within a genre the artists (shuffled with `seed`, then largest first) go one by
    one to the part furthest below its share of that genre's tracks. With `balance_ties` (equal shares, as folds
    have: every genre starts with its parts tied), a tie goes to the part furthest below its share of all the
    tracks dealt so far, not to the first part."""
    sizes = tracks["artist_id"].value_counts()
    rng = np.random.default_rng(seed)
    assignment: dict[str, object] = {}
    primary = _primary_genres(tracks)
    dealt = dict.fromkeys(shares, 0)
    for _, artists in primary.groupby(primary, sort=True):
        order = sorted(rng.permutation(np.sort(artists.index.to_numpy())), key=lambda a: -sizes[a])
        total = sizes[order].sum()
        filled = dict.fromkeys(shares, 0)
        for artist in order:
            overall = sum(dealt.values()) + sizes[artist]
            target = max(shares, key=lambda name: (shares[name] * total - filled[name],
                                                   shares[name] * overall - dealt[name] if balance_ties else 0))
            assignment[artist] = target
            filled[target] += sizes[artist]
            dealt[target] += sizes[artist]
    return tracks["artist_id"].map(assignment)


def _primary_genres(tracks: pd.DataFrame) -> pd.Series:
    """Each artist's most frequent genre (ties: the alphabetically first), indexed by artist_id."""
    counts = tracks.groupby(["artist_id", "genre"]).size().rename("n").reset_index()
    counts = counts.sort_values(["artist_id", "n", "genre"], ascending=[True, False, True], kind="stable")
    return counts.drop_duplicates("artist_id").set_index("artist_id")["genre"]


def _largest_artist(artist_ids: pd.Series) -> str:
    """The artist with the most entries in `artist_ids` (ties: the smallest id)."""
    counts = artist_ids.value_counts()
    return min(counts.index[counts == counts.max()])
