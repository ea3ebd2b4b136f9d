"""FMA's on-disk layout: audio file paths and the metadata writer (tracks.csv, genres.csv).

The writer produces files a real FMA user has: tracks.csv with its three header lines (column groups
album / artist / set / track, their 52 real column names, then `track_id`) and genres.csv. It is used by
the synthetic corpus generator and by tests; reading is `agf.datasets.fma`'s job.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from agf.errors import DatasetError
from agf.fileio import write_text_atomic

# The 52 columns of FMA's tracks.csv, in the file's order (level 0, level 1).
FMA_TRACK_COLUMNS: tuple[tuple[str, str], ...] = tuple(
    [("album", name) for name in (
        "comments", "date_created", "date_released", "engineer", "favorites", "id", "information",
        "listens", "producer", "tags", "title", "tracks", "type",
    )]
    + [("artist", name) for name in (
        "active_year_begin", "active_year_end", "associated_labels", "bio", "comments", "date_created",
        "favorites", "id", "latitude", "location", "longitude", "members", "name", "related_projects",
        "tags", "website", "wikipedia_page",
    )]
    + [("set", name) for name in ("split", "subset")]
    + [("track", name) for name in (
        "bit_rate", "comments", "composer", "date_created", "date_recorded", "duration", "favorites",
        "genre_top", "genres", "genres_all", "information", "interest", "language_code", "license",
        "listens", "lyricist", "number", "publisher", "tags", "title",
    )]
)
# Flat writer input column -> its tracks.csv column.
FLAT_TO_FMA: dict[str, tuple[str, str]] = {
    "artist_id": ("artist", "id"),
    "artist_name": ("artist", "name"),
    "album_id": ("album", "id"),
    "album_title": ("album", "title"),
    "title": ("track", "title"),
    "genre_top": ("track", "genre_top"),
    "genres": ("track", "genres"),
    "genres_all": ("track", "genres_all"),
    "split": ("set", "split"),
    "subset": ("set", "subset"),
    "duration": ("track", "duration"),
}
GENRE_COLUMNS: tuple[str, ...] = ("#tracks", "parent", "title", "top_level")
_LIST_COLUMNS = ("genres", "genres_all")


def fma_audio_path(audio_dir: str | Path, track_id: int) -> Path:
    """The audio file of an FMA track: AUDIO_DIR/000/000002.mp3 for track 2."""
    name = f"{int(track_id):06d}"
    return Path(audio_dir) / name[:3] / f"{name}.mp3"


def write_fma_metadata(metadata_dir: str | Path, tracks: pd.DataFrame, genres: pd.DataFrame) -> None:
    """Write tracks.csv and genres.csv into `metadata_dir` in FMA's exact format.

    tracks: one row per track with columns track_id, artist_id, artist_name, album_id (-1 = none),
    album_title, title, genre_top ('' if none), genres (list[int]), genres_all (list[int]),
    split ('training'|'validation'|'test'), subset ('small'|'medium'|'large'), duration; any extra
    column is written in the 'track' group under its own name. genres: index genre_id, columns
    '#tracks', 'parent' (0 = root), 'title', 'top_level'.
    """
    metadata_dir = Path(metadata_dir)
    write_text_atomic(metadata_dir / "tracks.csv", fma_tracks_frame(tracks).to_csv())
    missing = [c for c in GENRE_COLUMNS if c not in genres.columns]
    if missing:
        raise DatasetError(
            f"genres frame for {metadata_dir / 'genres.csv'}: missing column(s) {', '.join(missing)}; "
            f"it needs {', '.join(GENRE_COLUMNS)} with index genre_id"
        )
    genre_table = genres[list(GENRE_COLUMNS)].sort_index()
    genre_table.index = genre_table.index.astype(int).rename("genre_id")
    write_text_atomic(metadata_dir / "genres.csv", genre_table.to_csv())


def fma_tracks_frame(tracks: pd.DataFrame) -> pd.DataFrame:
    """The flat track frame as FMA's two-level tracks.csv frame (unset real columns left blank)."""
    required = ["track_id", *FLAT_TO_FMA]
    missing = [c for c in required if c not in tracks.columns]
    if missing:
        raise DatasetError(
            f"FMA metadata writer: missing column(s) {', '.join(missing)}; columns given: "
            f"{', '.join(map(str, tracks.columns))}"
        )
    extras = [c for c in tracks.columns if c not in required]
    columns = list(FMA_TRACK_COLUMNS) + [("track", name) for name in extras]
    ordered = tracks.sort_values("track_id")
    frame = pd.DataFrame(index=range(len(ordered)), columns=pd.MultiIndex.from_tuples(columns), dtype=object)
    for flat, fma_column in FLAT_TO_FMA.items():
        values = ordered[flat]
        if flat in _LIST_COLUMNS:
            values = values.map(lambda ids: str([int(i) for i in ids]))
        frame[fma_column] = values.to_numpy()
    for name in extras:
        frame[("track", name)] = ordered[name].to_numpy()
    frame.index = pd.Index(ordered["track_id"].astype(int).to_numpy(), name="track_id")
    return frame
