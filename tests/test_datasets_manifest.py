"""The CSV manifest loader, on manifests and placeholder audio files written to a temporary folder."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agf.config import DatasetConfig
from agf.datasets import load_dataset
from agf.datasets.manifest import load_manifest
from agf.errors import DatasetError


def write_manifest(folder: Path, rows: list[dict[str, str]], touch: bool = True) -> Path:
    """Write manifest.csv in `folder` and (optionally) an empty file for every relative path."""
    folder.mkdir(parents=True, exist_ok=True)
    if touch:
        for row in rows:
            audio = folder / row["path"]
            audio.parent.mkdir(parents=True, exist_ok=True)
            audio.touch()
    path = folder / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def rows_for(artist_genres: list[str], tracks_per_artist: int = 3) -> list[dict[str, str]]:
    """Rows for artists a0, a1, ... each with `tracks_per_artist` tracks of the given genre."""
    return [
        {"path": f"audio/a{artist}_{n}.wav", "artist": f"a{artist}", "genre": genre}
        for artist, genre in enumerate(artist_genres)
        for n in range(tracks_per_artist)
    ]


def test_relative_paths_resolve_against_the_csv_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere.flac"
    rows = [*rows_for(["rock", "jazz"], 1), {"path": str(elsewhere), "artist": "a9", "genre": "rock"}]
    write_manifest(tmp_path / "collection", rows)
    monkeypatch.chdir(tmp_path)
    tracks = load_manifest(Path("collection") / "manifest.csv", split="official").tracks.set_index("track_id")
    assert tracks.loc["t000001", "audio_path"] == str((tmp_path / "collection" / "audio" / "a0_0.wav").resolve())
    assert tracks.loc["t000003", "audio_path"] == str(elsewhere.resolve())


def test_optional_columns_ids_albums_and_subgenres(tmp_path: Path) -> None:
    rows = [
        {"path": "x.wav", "artist": "a1", "genre": "rock", "track_id": "song-1", "album": "LP",
         "subgenres": "Punk; Garage ;", "split": "train", "year": "1977"},
        {"path": "y.wav", "artist": "a2", "genre": "rock", "track_id": "song-2", "album": "",
         "subgenres": "", "split": "val", "year": "1980"},
    ]
    tracks = load_manifest(write_manifest(tmp_path, rows)).tracks
    assert list(tracks["track_id"]) == ["song-1", "song-2"]
    assert list(tracks["album_id"]) == ["LP", ""]
    assert list(tracks["subgenres"]) == [["Punk", "Garage"], []]
    assert list(tracks["split"]) == ["train", "val"]
    assert list(tracks["year"]) == ["1977", "1980"]


def test_missing_column_is_named_with_the_columns_found(tmp_path: Path) -> None:
    rows = [{"path": "x.wav", "genre": "rock", "album": "LP"}]
    with pytest.raises(DatasetError, match=r"missing column\(s\) artist; columns found: path, genre, album"):
        load_manifest(write_manifest(tmp_path, rows))


def test_empty_required_value_names_the_line(tmp_path: Path) -> None:
    rows = rows_for(["rock", "jazz"], 2)
    rows[2]["genre"] = ""
    with pytest.raises(DatasetError, match=r"line 4: empty genre"):
        load_manifest(write_manifest(tmp_path, rows))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"split": "holdout"}, r"unknown split value\(s\) \['holdout'\]"),
        ({"track_id": "t1"}, r"duplicate track id\(s\): t1"),
        ({"genre": "blues", "split": "val"}, r"genre\(s\) with no training tracks: blues"),
    ],
)
def test_invalid_tables_are_rejected(tmp_path: Path, change: dict[str, str], message: str) -> None:
    rows = [{**row, "track_id": f"t{i}", "split": "train"} for i, row in enumerate(rows_for(["rock", "jazz"], 2))]
    rows[-1].update(change)
    with pytest.raises(DatasetError, match=message):
        load_manifest(write_manifest(tmp_path, rows))


@pytest.mark.parametrize("second", [{"genre": "jazz"}, {"split": "val"}], ids=["two-genres", "train-and-val"])
def test_a_file_listed_twice_is_refused_naming_it_and_its_lines(tmp_path: Path, second: dict[str, str]) -> None:
    rows = [{**row, "split": "train"} for row in rows_for(["rock", "jazz"], 2)]
    rows.append({**rows[1], "path": "./audio/../audio/a0_1.wav", **second})  # the same file, spelled otherwise
    with pytest.raises(DatasetError) as caught:
        load_manifest(write_manifest(tmp_path, rows))
    audio = (tmp_path / "audio" / "a0_1.wav").resolve()
    assert str(caught.value) == (f"{tmp_path / 'manifest.csv'}: lines 3, 6 list the same audio file {audio}; "
                                 "list each file once, with one genre and one split")


def test_missing_audio_is_listed_or_fatal_when_strict(tmp_path: Path) -> None:
    csv_path = write_manifest(tmp_path, rows_for(["rock", "jazz", "rock", "jazz"], 2))
    (tmp_path / "audio" / "a1_0.wav").unlink()
    loaded = load_manifest(csv_path)
    assert list(loaded.missing["track_id"]) == ["t000003"]
    assert "t000003" not in set(loaded.tracks["track_id"])
    assert loaded.warnings == [f"1 of 8 audio files are missing, e.g. {(tmp_path / 'audio' / 'a1_0.wav').resolve()}"]
    with pytest.raises(DatasetError, match=r"1 of 8 audio files are missing: .*a1_0\.wav"):
        load_manifest(csv_path, strict=True)


def test_generated_split_is_artist_disjoint_and_stratified(tmp_path: Path) -> None:
    genres = ["rock", "jazz", "folk", "pop"]
    csv_path = write_manifest(tmp_path, rows_for([genres[i % 4] for i in range(80)], 3))
    tracks = load_manifest(csv_path, val_fraction=0.2, test_fraction=0.1, seed=5).tracks
    assert (tracks.groupby("artist_id")["split"].nunique() == 1).all()
    counts = pd.crosstab(tracks["genre"], tracks["split"])
    assert (counts["val"] == 12).all() and (counts["test"] == 6).all()  # 20 artists x 3 tracks per genre
    random = load_manifest(csv_path, split="random", val_fraction=0.2, seed=5).tracks
    assert (pd.crosstab(random["genre"], random["split"])["val"] == 12).all()


@settings(max_examples=25, deadline=None)
@given(
    artist_genres=st.lists(st.lists(st.sampled_from(["rock", "jazz", "folk"]), min_size=1, max_size=4), min_size=1,
                           max_size=12),
    val_fraction=st.sampled_from([0.1, 0.15, 0.3]),
    seed=st.integers(0, 1000),
)
def test_generated_split_property(artist_genres: list[list[str]], val_fraction: float, seed: int) -> None:
    rows = [
        {"path": f"a{artist}_{n}.wav", "artist": f"a{artist}", "genre": genre}
        for artist, genres in enumerate(artist_genres)
        for n, genre in enumerate(genres)
    ]
    with tempfile.TemporaryDirectory() as folder:
        tracks = load_manifest(write_manifest(Path(folder), rows), val_fraction=val_fraction, seed=seed).tracks
    assert len(tracks) == len(rows)
    assert (tracks.groupby("artist_id")["split"].nunique() == 1).all()
    assert set(tracks["genre"]) == set(tracks.loc[tracks["split"] == "train", "genre"])


def test_load_dataset_dispatches_manifest(tmp_path: Path) -> None:
    csv_path = write_manifest(tmp_path, rows_for(["rock", "jazz"] * 5, 2))
    loaded = load_dataset(DatasetConfig(kind="manifest", manifest=str(csv_path), split="artist", val_fraction=0.2))
    assert len(loaded.tracks) == 20 and set(loaded.tracks["split"]) == {"train", "val"}
    with pytest.raises(DatasetError, match=r"dataset.manifest is empty: give the CSV with --manifest"):
        load_dataset(DatasetConfig(kind="manifest"))
    with pytest.raises(DatasetError, match=r"missing.csv: not found; give the manifest CSV with --manifest"):
        load_dataset(DatasetConfig(kind="manifest", manifest=str(tmp_path / "missing.csv")))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("path,artist,genre\ncafé.mp3,Ané,Pop\n".encode("latin-1"), "not UTF-8 text"),
        (b"", "empty: no header line"),
        (bytes(range(256)) * 4, "not a readable CSV table"),
        (b'path,artist,genre\n"a.mp3,x,Pop\n', "not a readable CSV table"),
        (b"path,artist,genre\n", "lists no tracks"),
    ],
    ids=["latin-1", "empty", "binary", "unterminated-quote", "header-only"],
)
def test_unreadable_manifests_are_one_dataset_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "manifest.csv"
    path.write_bytes(content)
    with pytest.raises(DatasetError, match=message):
        load_manifest(path)


@settings(max_examples=60, deadline=None)
@given(content=st.one_of(
    st.binary(max_size=300),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=200).map(lambda t: ("path,artist,genre\n" + t).encode()),
))
def test_any_file_is_a_manifest_or_one_dataset_error(content: bytes) -> None:
    """Property: whatever bytes a manifest holds, loading gives a valid track table or a DatasetError."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "manifest.csv"
        path.write_bytes(content)
        try:
            loaded = load_manifest(path)
        except DatasetError:
            return
    assert list(loaded.tracks.columns[:7]) == ["track_id", "audio_path", "artist_id", "album_id", "genre",
                                               "subgenres", "split"]
