"""The track table: one tidy row per track, the same for every dataset source.

Columns (in this order, extra source-specific columns may follow):
    track_id   str     unique, filesystem-safe ([A-Za-z0-9_.-]); FMA ids as decimal strings
    audio_path str     absolute path of the audio file
    artist_id  str
    album_id   str     "" when unknown
    genre      str     the (top-level) genre label used for training and evaluation
    subgenres  object  list[str] of finer genre labels (may be empty)
    split      str     "train" | "val" | "test"
Optional well-known extras: true_genre (synthetic corpus: the genre before label noise); declared_duration
(seconds the metadata says the audio file lasts, NaN when unknown: prepare flags a file much shorter as
truncated).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd

from agf.errors import DatasetError
from agf.fileio import stable_key

TRACK_COLUMNS: tuple[str, ...] = (
    "track_id",
    "audio_path",
    "artist_id",
    "album_id",
    "genre",
    "subgenres",
    "split",
)
# The split names, declared here only: a track table's split column and results.csv's hold these values.
TRAIN, VAL, TEST = "train", "val", "test"
SPLITS: tuple[str, ...] = (TRAIN, VAL, TEST)
HELD_OUT_SPLITS: tuple[str, ...] = (VAL, TEST)  # the splits every model is evaluated on
_SAFE_ID = re.compile(r"^[A-Za-z0-9_.\-]+$")
# What the stages after prepare read of a track table (true_genre when present): its fingerprint hashes these.
FINGERPRINT_COLUMNS: tuple[str, ...] = ("track_id", "artist_id", "genre", "split")


def validate_track_table(tracks: pd.DataFrame, source: str = "track table") -> pd.DataFrame:
    """Check the schema and invariants of a track table; return it with canonical column order and dtypes."""
    missing = [c for c in TRACK_COLUMNS if c not in tracks.columns]
    if missing:
        raise DatasetError(f"{source}: missing column(s) {', '.join(missing)}")
    tracks = tracks.copy()
    for column in ("track_id", "audio_path", "artist_id", "album_id", "genre", "split"):
        tracks[column] = tracks[column].astype(str)
    tracks["subgenres"] = tracks["subgenres"].map(lambda v: list(v) if v is not None else [])
    duplicated = tracks["track_id"][tracks["track_id"].duplicated()].unique()
    if len(duplicated):
        raise DatasetError(f"{source}: duplicate track id(s): {', '.join(map(str, duplicated[:10]))}")
    unsafe = [t for t in tracks["track_id"] if not _SAFE_ID.match(t)]
    if unsafe:
        raise DatasetError(
            f"{source}: track id(s) with characters other than letters, digits, '_', '.', '-': "
            f"{', '.join(map(repr, unsafe[:10]))}"
        )
    bad_split = sorted(set(tracks["split"]) - set(SPLITS))
    if bad_split:
        raise DatasetError(f"{source}: unknown split value(s) {bad_split}; use train, val or test")
    empty_genre = tracks["track_id"][tracks["genre"].str.len() == 0]
    if len(empty_genre):
        raise DatasetError(f"{source}: {len(empty_genre)} track(s) without a genre, e.g. {empty_genre.iloc[0]}")
    train_genres = training_genres(tracks)
    untrained = sorted(set(tracks["genre"]) - train_genres)
    if untrained:
        raise DatasetError(
            f"{source}: genre(s) with no training tracks: {', '.join(untrained)}; "
            "add training tracks for them or drop them from the collection"
        )
    extras = [c for c in tracks.columns if c not in TRACK_COLUMNS]
    return tracks[list(TRACK_COLUMNS) + extras].reset_index(drop=True)


def split_mask(table: pd.DataFrame, *splits: str) -> pd.Series:
    """Whether each row of a table with a split column (tracks, predictions, results) lies in one of `splits`."""
    return table["split"].isin(splits)


def fit_splits(leaky: bool) -> tuple[str, ...]:
    """The splits that artist groups are fitted on: training, plus validation when `leaky` (the authors'
    protocol); never the test split."""
    return (TRAIN, VAL) if leaky else (TRAIN,)


def training_genres(tracks: pd.DataFrame) -> set[str]:
    """The genres of the training split's tracks."""
    return set(tracks.loc[split_mask(tracks, TRAIN), "genre"])


def genre_list(tracks: pd.DataFrame) -> list[str]:
    """The sorted genre vocabulary of a table: class index i is genre_list(...)[i] everywhere."""
    return sorted(tracks["genre"].unique())


def read_csv_file(path: Path, fix: str, **options: Any) -> pd.DataFrame:
    """pd.read_csv(path, **options); a file that is not UTF-8 CSV text (another encoding, binary bytes, an empty
    file, an unterminated quote, a broken header) is a DatasetError naming the file, the problem and `fix`."""
    try:
        return pd.read_csv(path, encoding="utf-8", **options)
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text (byte {exc.start}: {exc.object[exc.start:exc.start + 1]!r}); save it as UTF-8"
    except pd.errors.EmptyDataError:
        problem = "empty: no header line"
    except (pd.errors.ParserError, ValueError, IndexError, TypeError) as exc:
        problem = f"not a readable CSV table ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    raise DatasetError(f"{path}: {problem}; {fix}")


def split_fingerprint(tracks: pd.DataFrame) -> str:
    """A key of which tracks sit in which split (no labels): what a net reads of a track table besides its
    targets, so nets learning label-free targets are shared by runs whose labels differ (label noise)."""
    return stable_key("splits", tracks["track_id"].astype(str).tolist(), tracks["split"].astype(str).tolist())


def tracks_fingerprint(tracks: pd.DataFrame) -> str:
    """A key of what the stages after prepare read from a track table: ids, artists, labels, sub-genres, splits."""
    columns = [*FINGERPRINT_COLUMNS, *(["true_genre"] if "true_genre" in tracks.columns else [])]
    table = tracks[columns].astype(str)
    subgenres = tracks["subgenres"].map(lambda labels: ";".join(labels))
    return stable_key("tracks", columns, table.to_numpy().tolist(), subgenres.tolist())
