"""Split makers: the paper's stratified random split and the artist-disjoint stratified split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.model_selection import train_test_split

from agf.datasets.splits import (
    artist_disjoint_split,
    artist_folds,
    assign_split,
    split_problems,
    stratified_random_split,
)
from agf.errors import DatasetError


def table(artist_genres: list[list[int]]) -> pd.DataFrame:
    """A track table: artist i has one track per entry of artist_genres[i] (the entry is its genre index)."""
    rows = []
    for artist, genres in enumerate(artist_genres):
        for genre in genres:
            rows.append({"track_id": f"t{len(rows)}", "artist_id": f"a{artist}", "genre": f"g{genre}"})
    return pd.DataFrame(rows)


def collection(n_genres: int, artists_per_genre: int, seed: int) -> pd.DataFrame:
    """A larger table: artists of 1..30 tracks, mostly of one genre, some straddling a second one."""
    rng = np.random.default_rng(seed)
    artist_genres = []
    for artist in range(n_genres * artists_per_genre):
        genre = artist % n_genres
        other = (genre + 1) % n_genres if rng.random() < 0.2 else genre
        artist_genres.append([genre if rng.random() < 0.8 else other for _ in range(rng.integers(1, 31))])
    return table(artist_genres)


artist_tables = st.lists(
    st.lists(st.integers(0, 4), min_size=1, max_size=6), min_size=1, max_size=25
).map(table)
fractions = st.sampled_from([(0.15, 0.0), (0.1, 0.1), (0.0, 0.2), (0.3, 0.3), (0.5, 0.0)])


@settings(max_examples=120, deadline=None)
@given(tracks=artist_tables, shares=fractions, seed=st.integers(0, 2**16))
def test_artist_split_properties(tracks: pd.DataFrame, shares: tuple[float, float], seed: int) -> None:
    split = artist_disjoint_split(tracks, *shares, seed=seed)
    assert split.index.equals(tracks.index)
    assert (split.groupby(tracks["artist_id"]).nunique() == 1).all()
    assert set(tracks["genre"]) == set(tracks.loc[split == "train", "genre"])
    allowed = {"train"} | {name for name, share in zip(("val", "test"), shares) if share > 0}
    assert set(split) <= allowed
    assert split.equals(artist_disjoint_split(tracks, *shares, seed=seed))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_artist_split_is_stratified_close_to_the_fractions(seed: int) -> None:
    tracks = collection(n_genres=8, artists_per_genre=25, seed=seed)
    split = artist_disjoint_split(tracks, 0.15, 0.15, seed=seed)
    shares = pd.crosstab(tracks["genre"], split, normalize="index")
    assert (shares["val"] - 0.15).abs().max() < 0.06
    assert (shares["test"] - 0.15).abs().max() < 0.06
    assert not split.equals(artist_disjoint_split(tracks, 0.15, 0.15, seed=seed + 10))


@settings(max_examples=80, deadline=None)
@given(tracks=artist_tables, n_folds=st.integers(2, 5), seed=st.integers(0, 2**16))
def test_artist_folds_are_artist_disjoint_and_seeded(tracks: pd.DataFrame, n_folds: int, seed: int) -> None:
    if tracks["artist_id"].nunique() < n_folds:
        with pytest.raises(DatasetError, match=f"{n_folds} folds need between 2 and"):
            artist_folds(tracks, n_folds, seed)
        return
    folds = artist_folds(tracks, n_folds, seed)
    assert folds.index.equals(tracks.index) and set(folds) <= set(range(n_folds))
    assert (folds.groupby(tracks["artist_id"]).nunique() == 1).all()
    assert folds.equals(artist_folds(tracks, n_folds, seed))


@pytest.mark.parametrize("seed", [0, 1])
def test_artist_folds_are_stratified_by_genre(seed: int) -> None:
    tracks = collection(n_genres=8, artists_per_genre=10, seed=seed)
    folds = artist_folds(tracks, 5, seed)
    shares = pd.crosstab(tracks["genre"], folds, normalize="index")
    assert shares.shape == (8, 5) and (shares - 0.2).abs().max().max() < 0.1
    assert not folds.equals(artist_folds(tracks, 5, seed + 1))


def test_random_split_is_sklearns_stratified_split() -> None:
    tracks = collection(n_genres=6, artists_per_genre=10, seed=0)
    split = stratified_random_split(tracks, 0.15, 0.0, seed=7)
    _, expected_val = train_test_split(
        np.arange(len(tracks)), test_size=0.15, stratify=tracks["genre"], random_state=7
    )
    assert sorted(np.flatnonzero(split == "val")) == sorted(expected_val)
    assert set(split) == {"train", "val"}


def test_random_split_three_ways_and_single_track_genre_stays_in_train() -> None:
    tracks = pd.concat(
        [collection(n_genres=4, artists_per_genre=10, seed=1), table([[9]]).assign(track_id="solo")],
        ignore_index=True,
    )
    split = stratified_random_split(tracks, 0.1, 0.2, seed=0)
    assert split.iloc[-1] == "train"
    shares = pd.crosstab(tracks["genre"], split, normalize="index").drop(index="g9")
    assert (shares["val"] - 0.1).abs().max() < 0.03
    assert (shares["test"] - 0.2).abs().max() < 0.03
    assert not (split.groupby(tracks["artist_id"]).nunique() == 1).all()  # not artist-disjoint


@settings(max_examples=120, deadline=None)
@given(tracks=artist_tables, shares=fractions, seed=st.integers(0, 2**16))
def test_random_split_keeps_every_genre_in_train(tracks: pd.DataFrame, shares: tuple[float, float], seed: int) -> None:
    split = stratified_random_split(tracks, *shares, seed=seed)
    assert set(tracks["genre"]) == set(tracks.loc[split == "train", "genre"])
    allowed = {"train"} | {name for name, share in zip(("val", "test"), shares) if share > 0}
    assert set(split) <= allowed
    assert split.equals(stratified_random_split(tracks, *shares, seed=seed))


@pytest.mark.parametrize("shares", [(-0.1, 0.0), (0.5, 0.5), (0.0, 1.2)])
def test_bad_fractions_are_rejected(shares: tuple[float, float]) -> None:
    with pytest.raises(DatasetError, match="val_fraction"):
        artist_disjoint_split(table([[0, 0]]), *shares, seed=0)


def test_assign_split_modes() -> None:
    tracks = collection(n_genres=3, artists_per_genre=6, seed=0).assign(split="train")
    assert assign_split(tracks, "official", 0.15, 0.0, 0).equals(tracks["split"])
    assert assign_split(tracks, "artist", 0.15, 0.0, 0).equals(artist_disjoint_split(tracks, 0.15, 0.0, 0))
    assert assign_split(tracks, "random", 0.15, 0.0, 0).equals(stratified_random_split(tracks, 0.15, 0.0, 0))
    with pytest.raises(DatasetError, match="'shuffled' is not a split mode"):
        assign_split(tracks, "shuffled", 0.15, 0.0, 0)


def test_a_split_that_cannot_be_scored_is_a_problem_and_a_missing_genre_a_warning(tmp_path: Path) -> None:
    """Three artists per genre and val = test = 0.15: the artist-disjoint split leaves test empty; a genre of one
    artist has training tracks only."""
    from agf.datasets.manifest import load_manifest

    artists = [("rock", 3), ("jazz", 3), ("folk", 1)]
    rows = [{"path": f"{genre}{a}_{n}.wav", "artist": f"{genre}{a}", "genre": genre}
            for genre, count in artists for a in range(count) for n in range(2)]
    for row in rows:
        (tmp_path / row["path"]).touch()
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    loaded = load_manifest(tmp_path / "m.csv", val_fraction=0.15, test_fraction=0.15)
    assert loaded.splits == ("train", "val", "test") and not (loaded.tracks["split"] == "test").any()
    problems, warnings = split_problems(loaded.tracks, loaded.splits)
    assert problems == ["the test split has no track, so nothing is reported on held-out data: 14 tracks by 7 "
                        "artists leave none for it; add tracks by more artists or raise dataset.test_fraction "
                        "(or set it to 0 to report on validation)"]
    assert warnings == ["the val split has no track of 1 of 3 genres (folk): they are not scored there"]
    # Without a planned test split (test_fraction = 0) an empty one is no problem; an empty validation split is.
    assert load_manifest(tmp_path / "m.csv", val_fraction=0.15, test_fraction=0.0).splits == ("train", "val")
    assert split_problems(loaded.tracks, ("train", "val")) == ([], warnings)
    assert split_problems(loaded.tracks.assign(split="train"), ("train", "val")) == ([
        "the val split has no track, so nothing selects the epochs and models or fits their calibration: 14 tracks "
        "by 7 artists leave none for it; add tracks by more artists or raise dataset.val_fraction"], [])


@pytest.mark.parametrize("artists_per_genre", [2, 3, 4])
def test_artist_folds_stay_balanced_when_each_genre_has_few_artists(artists_per_genre: int) -> None:
    """With a few artists per genre every genre's dealing starts with folds tied: the ties go to the folds with the
    fewest tracks so far, so the folds hold about equal numbers of tracks (the ties once all went to fold 0: with 2
    artists per genre and 3 folds, fold 2 got no artist)."""
    tracks = collection(n_genres=8, artists_per_genre=artists_per_genre, seed=0)
    folds = artist_folds(tracks, 3, seed=0)
    artists = tracks.groupby(folds)["artist_id"].nunique()
    sizes = folds.value_counts()
    assert len(artists) == 3 and artists.min() >= artists.max() / 2
    assert sizes.max() <= 1.3 * sizes.min()
