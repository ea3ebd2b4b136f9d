"""The FMA dataset as users have it on disk: fma_metadata/{tracks,genres}.csv + an audio folder.

Works with pandas 2.2 and 3: tracks.csv is read with its three header lines
(`read_csv(path, index_col=0, header=[0, 1])`) and list columns are parsed explicitly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from agf.datasets import LoadedDataset, assemble_dataset
from agf.datasets.fma_layout import fma_audio_path
from agf.datasets.table import TEST, TRAIN, VAL, read_csv_file
from agf.errors import DatasetError

# FMA clips with no audio at all, then clips far shorter than 30 s (FMA-FORMAT.md).
KNOWN_BAD_IDS: frozenset[str] = frozenset(
    {
        "1486", "5574", "65753", "80391", "98558", "98559", "98560", "98571", "99134", "105247",
        "108925", "126981", "127336", "133297", "143992",
        "98565", "98566", "98567", "98568", "98569", "108924",
    }
)
SUBSET_ORDER: tuple[str, ...] = ("small", "medium", "large")
OFFICIAL_SPLITS: dict[str, str] = {"training": TRAIN, "validation": VAL, "test": TEST}
REQUIRED_TRACK_COLUMNS: tuple[tuple[str, str], ...] = (
    ("album", "id"),
    ("artist", "id"),
    ("artist", "name"),
    ("set", "split"),
    ("set", "subset"),
    ("track", "genre_top"),
    ("track", "genres"),
    ("track", "title"),
)
_BAD_LISTED = 10


def load_fma(
    metadata_dir: str | Path,
    audio_dir: str | Path,
    subset: str = "medium",
    split: str = "official",
    val_fraction: float = 0.15,
    seed: int = 0,
    strict: bool = False,
    test_fraction: float = 0.0,
    real_fma: bool = True,
) -> LoadedDataset:
    """Load an FMA subset as a track table (real_fma=False for a collection in FMA's layout whose track ids are
    not FMA's, e.g. the synthetic corpus: FMA's known bad ids mean nothing there).

    subset: 'small' | 'medium' (small + medium) | 'large' | 'full' (all tracks). split: 'official' (FMA's
    training/validation/test), 'random' (the paper's stratified random split) or 'artist' (a new
    artist-disjoint stratified split), the last two with val_fraction / test_fraction and seed.
    Tracks without a top genre are dropped; tracks whose audio file is missing are listed in `missing`.
    """
    metadata_dir = Path(metadata_dir)
    tracks_path = metadata_dir / "tracks.csv"
    raw = _read_tracks_csv(tracks_path)
    subgenre_titles = _read_genre_titles(metadata_dir / "genres.csv")
    raw = _select_subset(raw, subset, tracks_path)
    warnings: list[str] = []
    has_genre = _text(raw[("track", "genre_top")]) != ""
    if not has_genre.all():
        warnings.append(
            f"{int((~has_genre).sum())} of {len(raw)} tracks in subset {subset!r} have no top genre "
            "((track, genre_top) is empty: their genres have several roots) and were dropped"
        )
    raw = raw[has_genre]
    table = _track_table(raw, Path(audio_dir).resolve(), subgenre_titles, tracks_path)
    table["declared_duration"] = _declared_duration(raw, full_tracks=subset == "full")
    bad = sorted(set(table["track_id"]) & KNOWN_BAD_IDS, key=int) if real_fma else []
    if bad:
        warnings.append(
            f"{len(bad)} track(s) are known to have no or far too short audio in FMA: "
            f"{', '.join(bad[:_BAD_LISTED])}; expect them to fail decoding or be flagged too short"
        )
    return assemble_dataset(
        table, split=split, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
        strict=strict, source=str(tracks_path), warnings=warnings,
    )


def _read_tracks_csv(path: Path) -> pd.DataFrame:
    """tracks.csv as FMA's two-level frame indexed by track id; DatasetError if absent or incomplete."""
    if not path.is_file():
        raise DatasetError(f"{path}: not found; give the unpacked fma_metadata folder with --fma-metadata (in a "
                           "config: dataset.metadata_dir)")
    raw = read_csv_file(path, "use FMA's tracks.csv (three header lines: groups, names, track_id)", index_col=0,
                        header=[0, 1], low_memory=False)
    missing = [column for column in REQUIRED_TRACK_COLUMNS if column not in raw.columns]
    if missing:
        found = ", ".join(f"({a}, {b})" for a, b in raw.columns[:60])
        raise DatasetError(
            f"{path}: missing column(s) {', '.join(f'({a}, {b})' for a, b in missing)}; columns found: {found}. "
            "tracks.csv needs FMA's three header lines (groups, names, track_id)"
        )
    return raw


def _read_genre_titles(path: Path) -> dict[int, str]:
    """genre_id -> title from genres.csv; DatasetError if the file or its title column is absent."""
    if not path.is_file():
        raise DatasetError(f"{path}: not found; it ships with tracks.csv in the fma_metadata folder")
    genres = read_csv_file(path, "use FMA's genres.csv", index_col=0)
    if "title" not in genres.columns:
        raise DatasetError(
            f"{path}: missing column title; columns found: {', '.join(map(str, genres.columns))}"
        )
    return {int(genre_id): str(title) for genre_id, title in genres["title"].items()}


def _select_subset(raw: pd.DataFrame, subset: str, path: Path) -> pd.DataFrame:
    """Rows of `subset` (nested: medium = small + medium); 'large' and 'full' keep every row."""
    if subset in ("large", "full"):
        return raw
    if subset not in SUBSET_ORDER:
        raise DatasetError(f"dataset.subset = {subset!r} is unknown; use small, medium, large or full")
    rank = raw[("set", "subset")].map({name: i for i, name in enumerate(SUBSET_ORDER)})
    unknown = sorted(set(raw.loc[rank.isna(), ("set", "subset")].astype(str)))
    if unknown:
        raise DatasetError(f"{path}: unknown (set, subset) value(s) {unknown}; expected small, medium or large")
    return raw[rank <= SUBSET_ORDER.index(subset)]


# fma_small, fma_medium and fma_large hold clips of (at most) this many seconds of each track.
CLIP_SECONDS = 30.0


def _declared_duration(raw: pd.DataFrame, full_tracks: bool) -> np.ndarray:
    """Seconds each audio file should last: the track's (track, duration), at most a clip's 30 s unless the
    audio folder holds full tracks; NaN where tracks.csv has no usable duration."""
    if ("track", "duration") not in raw.columns:
        return np.full(len(raw), np.nan)
    duration = pd.to_numeric(raw[("track", "duration")], errors="coerce").to_numpy(dtype=float, copy=True)
    duration[duration <= 0] = np.nan
    return duration if full_tracks else np.minimum(duration, CLIP_SECONDS)


def _track_table(raw: pd.DataFrame, audio_dir: Path, subgenre_titles: dict[int, str], path: Path) -> pd.DataFrame:
    """The flat track table (split still official) from FMA's two-level frame."""
    track_ids = _int_ids(pd.Series(raw.index, index=raw.index), "track_id", path)
    table = pd.DataFrame(
        {
            "track_id": track_ids.astype(str),
            "audio_path": [str(fma_audio_path(audio_dir, track_id)) for track_id in track_ids],
            "artist_id": _int_ids(raw[("artist", "id")], "(artist, id)", path).astype(str),
            "album_id": [_album_id(album_id) for album_id in _int_ids(raw[("album", "id")], "(album, id)", path)],
            "genre": _text(raw[("track", "genre_top")]),
            "subgenres": [
                _subgenres(value, track_id, subgenre_titles, path)
                for value, track_id in zip(raw[("track", "genres")], track_ids)
            ],
            "split": [OFFICIAL_SPLITS.get(value, str(value)) for value in raw[("set", "split")]],
            "artist_name": _text(raw[("artist", "name")]),
            "title": _text(raw[("track", "title")]),
        }
    )
    if ("track", "true_genre") in raw.columns:
        table["true_genre"] = _text(raw[("track", "true_genre")])
    return table


def _text(values: pd.Series) -> np.ndarray:
    """A text column as Python strings, blank cells as '' (whatever dtype read_csv gave it)."""
    return values.astype("string").fillna("").to_numpy(dtype=object)


def _int_ids(values: pd.Series, column: str, path: Path) -> np.ndarray:
    """An integer id column (indexed by track id); DatasetError naming the first blank or non-integer cell."""
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() | (numbers % 1 != 0)
    if bad.any():
        raise DatasetError(
            f"{path}: track {values.index[bad.to_numpy()][0]}: {column} is {values[bad].iloc[0]!r}, "
            "not an integer id"
        )
    return numbers.astype("int64").to_numpy()


def _album_id(album_id: int) -> str:
    """FMA's album id as a string; -1 (no album) becomes ''."""
    return "" if album_id == -1 else str(album_id)


def _subgenres(value: object, track_id: int, titles: dict[int, str], path: Path) -> list[str]:
    """Titles of the genre ids in a (track, genres) cell such as '[21, 811]'."""
    if not isinstance(value, str) or not value.strip():
        return []
    try:
        genre_ids = json.loads(value)
    except json.JSONDecodeError:
        genre_ids = None
    if not isinstance(genre_ids, list):
        raise DatasetError(f"{path}: track {track_id}: (track, genres) = {value!r} is not a list of genre ids")
    unknown = [genre_id for genre_id in genre_ids if genre_id not in titles]
    if unknown:
        raise DatasetError(
            f"{path}: track {track_id} lists genre id {unknown[0]} in (track, genres), which "
            f"{path.with_name('genres.csv')} does not define; use the genres.csv of the same fma_metadata release"
        )
    return [titles[genre_id] for genre_id in genre_ids]
