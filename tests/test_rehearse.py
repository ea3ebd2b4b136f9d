"""scripts/rehearse_scale.py: the collections it builds have FMA's layout and the counts of the shape asked for."""

from __future__ import annotations

from pathlib import Path

import pytest
from script_modules import script_module

from agf.datasets.fma import load_fma


@pytest.fixture(scope="module")
def rehearse():
    """scripts/rehearse_scale.py as a module."""
    with script_module("rehearse_scale") as module:
        yield module


def test_60_tracks_of_medium_load_through_the_fma_loader(rehearse, tmp_path: Path) -> None:
    layout = rehearse.scale(rehearse.MEDIUM, 60)
    clip = tmp_path / "clip.mp3"
    clip.touch()
    metadata_dir, audio_dir = rehearse.write_collection(layout, tmp_path / "collection", [[[clip]]] * 16)
    assert (audio_dir / "000" / "000002.mp3").stat().st_ino == clip.stat().st_ino  # a hard link
    lines = (metadata_dir / "tracks.csv").read_text().splitlines()
    assert lines[0].startswith(",album,album,") and lines[2].startswith("track_id,")
    loaded = load_fma(metadata_dir, audio_dir, subset="medium", split="official")
    tracks = loaded.tracks
    assert len(tracks) == 60 and loaded.missing.empty
    assert tracks["genre"].nunique() == 16
    assert tracks["artist_id"].nunique() == layout.artists
    assert tracks["album_id"].nunique() == layout.albums
    counts = tracks["split"].value_counts()
    assert (counts["train"], counts["val"], counts["test"]) == layout.splits
    for split, official in zip(("train", "val", "test"), rehearse.MEDIUM.splits):
        assert abs(counts[split] - 60 * official / 25_000) <= 1
    assert (tracks.groupby("artist_id")["split"].nunique() == 1).all()  # artist-disjoint
    assert set(tracks.loc[tracks["split"] == "train", "genre"]) == set(tracks["genre"])
    assert tracks["subgenres"].map(len).min() >= 1


@pytest.mark.parametrize(("shape", "artists", "albums", "splits"), [
    ("medium", 3_833, 5_152, (19_922, 2_505, 2_573)),
    ("large", 16_341, 14_854, (85_259, 10_657, 10_658)),
])
def test_full_shapes_have_fma_counts(rehearse, shape: str, artists: int, albums: int, splits: tuple) -> None:
    layout = rehearse.scale(rehearse.SHAPES[shape], rehearse.SHAPES[shape].tracks)
    tracks, genres = rehearse.collection_frames(layout)
    assert len(tracks) == rehearse.SHAPES[shape].tracks and len(genres) == 161
    assert tracks["artist_id"].nunique() == artists
    assert tracks.loc[tracks["album_id"] != -1, "album_id"].nunique() == albums
    assert tuple(tracks["split"].value_counts()[list(rehearse.SPLIT_NAMES)]) == splits
    if shape == "medium":
        assert tuple(tracks["genre_top"].value_counts()[list(rehearse.MEDIUM_GENRE_TRACKS)]) == \
            tuple(rehearse.MEDIUM_GENRE_TRACKS.values())
