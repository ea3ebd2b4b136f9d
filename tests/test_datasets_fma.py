"""The FMA-layout writer and the FMA loader, on small FMA-shaped metadata written to a temporary folder."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agf.config import DatasetConfig
from agf.datasets import load_dataset
from agf.datasets.fma import KNOWN_BAD_IDS, load_fma
from agf.datasets.fma_layout import fma_audio_path, write_fma_metadata
from agf.errors import DatasetError

# FMA's tracks.csv level-1 names per group, in the file's order (typed out from FMA-FORMAT / the real file).
REAL_FMA_NAMES = {
    "album": "comments date_created date_released engineer favorites id information listens producer tags "
    "title tracks type".split(),
    "artist": "active_year_begin active_year_end associated_labels bio comments date_created favorites id "
    "latitude location longitude members name related_projects tags website wikipedia_page".split(),
    "set": ["split", "subset"],
    "track": "bit_rate comments composer date_created date_recorded duration favorites genre_top genres "
    "genres_all information interest language_code license listens lyricist number publisher tags title".split(),
}
GENRES = pd.DataFrame(
    {
        "#tracks": [16, 16, 16, 16, 8, 8],
        "parent": [0, 0, 0, 0, 12, 15],
        "title": ["Rock", "Electronic", "Jazz", "Folk", "Punk", "Techno"],
        "top_level": [12, 15, 4, 17, 12, 15],
    },
    index=pd.Index([12, 15, 4, 17, 25, 181], name="genre_id"),
)
ROOT_IDS = {"Rock": 12, "Electronic": 15, "Jazz": 4, "Folk": 17}
SUB_IDS = {"Rock": [25], "Electronic": [181], "Jazz": [], "Folk": []}
SUBSET_BY_POSITION = ("small", "small", "medium", "large")
SPLIT_BY_ARTIST_RANK = ("training", "training", "validation", "test")
NO_GENRE_ID = 9999


def fma_tracks() -> pd.DataFrame:
    """64 tracks: 4 genres x 4 artists x 4 tracks (ids 2, 1486, then 3000...), plus one without a top genre."""
    track_ids = iter([2, 1486, *range(3000, 3062)])
    rows = []
    for artist in range(16):
        genre = list(ROOT_IDS)[artist % 4]
        for position in range(4):
            rows.append(
                {
                    "track_id": next(track_ids),
                    "artist_id": 100 + artist,
                    "artist_name": f"Artist {artist}",
                    "album_id": -1 if artist == 0 else 500 + artist,
                    "album_title": f"Album {artist}",
                    "title": f"Song {artist}.{position}",
                    "genre_top": genre,
                    "genres": [ROOT_IDS[genre], *SUB_IDS[genre]],
                    "genres_all": [ROOT_IDS[genre], *SUB_IDS[genre]],
                    "split": SPLIT_BY_ARTIST_RANK[artist // 4],
                    "subset": SUBSET_BY_POSITION[position],
                    "duration": 30,
                    "true_genre": genre,
                }
            )
    rows.append({**rows[0], "track_id": NO_GENRE_ID, "genre_top": "", "genres": [12, 15], "subset": "large"})
    return pd.DataFrame(rows)


def write_fixture(root: Path, tracks: pd.DataFrame) -> tuple[Path, Path]:
    """Write FMA metadata and empty placeholder audio files; return (metadata_dir, audio_dir)."""
    metadata_dir, audio_dir = root / "fma_metadata", root / "fma_large"
    write_fma_metadata(metadata_dir, tracks, GENRES)
    for track_id in tracks["track_id"]:
        path = fma_audio_path(audio_dir, track_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    return metadata_dir, audio_dir


@pytest.fixture
def fma_dirs(tmp_path: Path) -> tuple[Path, Path]:
    return write_fixture(tmp_path, fma_tracks())


def test_tracks_csv_header_is_byte_for_byte_fma(tmp_path: Path) -> None:
    metadata_dir, _ = write_fixture(tmp_path, fma_tracks().drop(columns="true_genre"))
    lines = (metadata_dir / "tracks.csv").read_bytes().split(b"\n")[:3]
    groups = [group for group, names in REAL_FMA_NAMES.items() for _ in names]
    names = [name for names in REAL_FMA_NAMES.values() for name in names]
    assert len(names) == 52
    assert lines[0] == ("," + ",".join(groups)).encode()
    assert lines[0].startswith(b",album,album,")
    assert lines[1] == ("," + ",".join(names)).encode()
    assert lines[1].startswith(b",comments,date_created,")
    assert lines[2] == b"track_id" + b"," * 52
    raw = pd.read_csv(metadata_dir / "tracks.csv", index_col=0, header=[0, 1])
    assert raw.shape == (65, 52) and raw.index.name == "track_id"
    assert raw.loc[2, ("track", "genres")] == "[12, 25]"
    assert raw.loc[2, ("album", "id")] == -1
    assert raw.loc[1486, ("set", "subset")] == "small"
    assert (metadata_dir / "genres.csv").read_text().splitlines()[0] == "genre_id,#tracks,parent,title,top_level"


def test_extra_columns_are_written_in_the_track_group(fma_dirs: tuple[Path, Path]) -> None:
    raw = pd.read_csv(fma_dirs[0] / "tracks.csv", index_col=0, header=[0, 1])
    assert raw.columns[-1] == ("track", "true_genre")
    assert raw.loc[3000, ("track", "true_genre")] == "Rock"


def test_fma_audio_path_layout(tmp_path: Path) -> None:
    assert fma_audio_path(tmp_path, 2) == tmp_path / "000" / "000002.mp3"
    assert fma_audio_path(str(tmp_path), 123456) == tmp_path / "123" / "123456.mp3"


@pytest.mark.parametrize(
    ("subset", "kept_subsets"),
    [("small", {"small"}), ("medium", {"small", "medium"}), ("large", {"small", "medium", "large"}),
     ("full", {"small", "medium", "large"})],
)
def test_subset_filter_is_nested(fma_dirs: tuple[Path, Path], subset: str, kept_subsets: set[str]) -> None:
    written = fma_tracks()
    expected = written[written["subset"].isin(kept_subsets) & (written["genre_top"] != "")]
    loaded = load_fma(*fma_dirs, subset=subset)
    assert sorted(loaded.tracks["track_id"], key=int) == [str(t) for t in sorted(expected["track_id"])]


def test_tracks_without_top_genre_are_dropped_and_counted(fma_dirs: tuple[Path, Path]) -> None:
    loaded = load_fma(*fma_dirs, subset="large")
    assert str(NO_GENRE_ID) not in set(loaded.tracks["track_id"])
    assert any(w.startswith("1 of 65 tracks") and "no top genre" in w for w in loaded.warnings)
    assert not any("no top genre" in w for w in load_fma(*fma_dirs, subset="medium").warnings)


def test_track_table_columns_and_values(fma_dirs: tuple[Path, Path]) -> None:
    tracks = load_fma(*fma_dirs, subset="large").tracks.set_index("track_id")
    first, other = tracks.loc["2"], tracks.loc["3005"]
    assert first["audio_path"] == str((fma_dirs[1] / "000" / "000002.mp3").resolve())
    assert Path(first["audio_path"]).is_absolute()
    assert (first["artist_id"], first["album_id"], first["genre"]) == ("100", "", "Rock")
    assert first["subgenres"] == ["Rock", "Punk"]
    assert (first["artist_name"], first["title"], first["true_genre"]) == ("Artist 0", "Song 0.0", "Rock")
    assert (other["artist_id"], other["album_id"], other["subgenres"]) == ("101", "501", ["Electronic", "Techno"])
    assert list(tracks.columns[:6]) == ["audio_path", "artist_id", "album_id", "genre", "subgenres", "split"]


def test_official_split_maps_fma_names(fma_dirs: tuple[Path, Path]) -> None:
    written = fma_tracks().set_index("track_id")
    tracks = load_fma(*fma_dirs, subset="large").tracks
    names = {"training": "train", "validation": "val", "test": "test"}
    expected = [names[written.loc[int(t), "split"]] for t in tracks["track_id"]]
    assert list(tracks["split"]) == expected


def test_random_split_is_stratified_seeded_and_not_official(fma_dirs: tuple[Path, Path]) -> None:
    first = load_fma(*fma_dirs, subset="large", split="random", seed=3).tracks
    again = load_fma(*fma_dirs, subset="large", split="random", seed=3).tracks
    other = load_fma(*fma_dirs, subset="large", split="random", seed=4).tracks
    assert list(first["split"]) == list(again["split"])
    assert list(first["split"]) != list(other["split"])
    assert set(first["split"]) == {"train", "val"}
    per_genre_val = first.groupby("genre")["split"].apply(lambda s: (s == "val").sum())
    assert set(per_genre_val) <= {2, 3}  # 15 % of 16 tracks per genre
    assert (first["split"] == "val").sum() == 10  # ceil(0.15 * 64)


def test_artist_split_is_artist_disjoint(fma_dirs: tuple[Path, Path]) -> None:
    tracks = load_fma(*fma_dirs, subset="large", split="artist", val_fraction=0.25, test_fraction=0.25).tracks
    assert (tracks.groupby("artist_id")["split"].nunique() == 1).all()
    for genre, splits in tracks.groupby("genre")["split"]:
        assert sorted(splits.value_counts().tolist()) == [4, 4, 8], genre


def test_known_bad_ids_are_listed_and_reported(fma_dirs: tuple[Path, Path]) -> None:
    no_audio = {1486, 5574, 65753, 80391, 98558, 98559, 98560, 98571, 99134, 105247, 108925, 126981,
                127336, 133297, 143992}
    too_short = {98565, 98566, 98567, 98568, 98569, 108924}
    assert KNOWN_BAD_IDS == frozenset(str(i) for i in no_audio | too_short)
    loaded = load_fma(*fma_dirs, subset="small")
    assert "1486" in set(loaded.tracks["track_id"])
    assert any("1486" in w and "known" in w for w in loaded.warnings)
    # A collection in FMA's layout with its own ids (the synthetic corpus) is not warned about FMA's bad files.
    assert not any("known" in w for w in load_fma(*fma_dirs, subset="small", real_fma=False).warnings)


def test_missing_audio_is_listed_or_fatal_when_strict(fma_dirs: tuple[Path, Path]) -> None:
    for track_id in (3000, 3001):
        fma_audio_path(fma_dirs[1], track_id).unlink()
    loaded = load_fma(*fma_dirs, subset="large")
    assert sorted(loaded.missing["track_id"]) == ["3000", "3001"]
    assert loaded.missing["audio_path"].iloc[0].endswith("003000.mp3")
    assert not {"3000", "3001"} & set(loaded.tracks["track_id"])
    assert any(w.startswith("2 of 64 audio files are missing, e.g. ") for w in loaded.warnings)
    with pytest.raises(DatasetError, match=r"2 of 64 audio files are missing: .*003000\.mp3"):
        load_fma(*fma_dirs, subset="large", strict=True)


def test_unknown_genre_id_names_track_and_id(tmp_path: Path) -> None:
    tracks = fma_tracks()
    tracks.at[5, "genres"] = [12, 777]
    dirs = write_fixture(tmp_path, tracks)
    with pytest.raises(DatasetError, match=r"track 3003 lists genre id 777"):
        load_fma(*dirs, subset="large")


def test_duplicate_track_id_is_rejected(tmp_path: Path) -> None:
    tracks = fma_tracks()
    tracks.at[3, "track_id"] = 3000
    dirs = write_fixture(tmp_path, tracks)
    with pytest.raises(DatasetError, match=r"duplicate track id\(s\): 3000"):
        load_fma(*dirs, subset="large")


def test_missing_column_is_named(fma_dirs: tuple[Path, Path]) -> None:
    path = fma_dirs[0] / "tracks.csv"
    raw = pd.read_csv(path, index_col=0, header=[0, 1])
    raw.drop(columns=[("track", "genre_top")]).to_csv(path)
    with pytest.raises(DatasetError, match=r"missing column\(s\) \(track, genre_top\); columns found: \(album"):
        load_fma(*fma_dirs)


def test_missing_metadata_file_names_the_fix(tmp_path: Path) -> None:
    fix = r"tracks\.csv: not found; give the unpacked fma_metadata folder with --fma-metadata \(in a config: dataset"
    with pytest.raises(DatasetError, match=fix):
        load_fma(tmp_path, tmp_path)


def test_load_dataset_dispatches_fma_and_synth(fma_dirs: tuple[Path, Path], tmp_path: Path) -> None:
    config = DatasetConfig(kind="fma", metadata_dir=str(fma_dirs[0]), audio_dir=str(fma_dirs[1]), subset="small")
    assert len(load_dataset(config).tracks) == 32
    synth_dir = tmp_path / "corpus"
    write_fma_metadata(synth_dir / "fma_metadata", fma_tracks(), GENRES)
    (synth_dir / "audio").mkdir()
    # An audio folder with none of the listed files is an error, not an empty dataset (which exited 0 before).
    with pytest.raises(DatasetError, match="none of the 64 listed audio files exists"):
        load_dataset(DatasetConfig(kind="synth", subset="small"), synth_dir=synth_dir)
    with pytest.raises(DatasetError, match="dataset.metadata_dir is empty"):
        load_dataset(DatasetConfig(kind="fma"))


@pytest.mark.filterwarnings("error")
def test_blank_text_columns_read_as_empty_strings(tmp_path: Path) -> None:
    dirs = write_fixture(tmp_path, fma_tracks().assign(title="", artist_name=""))
    tracks = load_fma(*dirs, subset="small").tracks
    assert set(tracks["title"]) == {""} and set(tracks["artist_name"]) == {""}


def test_truncated_tracks_csv_with_garbage_is_one_dataset_error(tmp_path: Path) -> None:
    metadata, audio = write_fixture(tmp_path, fma_tracks())
    tracks_csv = metadata / "tracks.csv"
    text = tracks_csv.read_bytes()
    tracks_csv.write_bytes(text[: len(text) // 3] + b'\x00\xff"garbage,,,\n\x9c')
    with pytest.raises(DatasetError, match="tracks.csv"):
        load_fma(metadata, audio, subset="small")


def test_declared_duration_is_a_clip_at_most_or_the_full_track(tmp_path: Path) -> None:
    tracks = fma_tracks()
    tracks["duration"] = [12 if i == 0 else 240 for i in range(len(tracks))]
    metadata, audio = write_fixture(tmp_path, tracks)
    table = load_fma(metadata, audio, subset="large").tracks.set_index("track_id")["declared_duration"]
    assert table.iloc[0] == 12.0 and (table.iloc[1:] == 30.0).all()  # clips of 30 s at most
    full = load_fma(metadata, audio, subset="full").tracks.set_index("track_id")["declared_duration"]
    assert (full.iloc[1:] == 240.0).all()


@settings(max_examples=40, deadline=None)
@given(garbage=st.binary(max_size=400), keep=st.floats(0.0, 1.0))
def test_any_damage_to_tracks_csv_is_one_dataset_error(garbage: bytes, keep: float) -> None:
    """Property: tracks.csv cut anywhere and followed by any bytes loads or gives a DatasetError, nothing else."""
    with tempfile.TemporaryDirectory() as folder:
        metadata, audio = write_fixture(Path(folder), fma_tracks())
        path = metadata / "tracks.csv"
        text = path.read_bytes()
        path.write_bytes(text[: int(keep * len(text))] + garbage)
        try:
            load_fma(metadata, audio, subset="small")
        except DatasetError:
            pass
