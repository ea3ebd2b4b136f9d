"""A collection described by a CSV manifest: one row per audio file.

Required columns: path, artist, genre. Optional: track_id, album, subgenres (';'-separated), split
(train/val/test), duration (seconds the file lasts: a file decoding to much less is flagged truncated).
Relative paths are relative to the CSV's folder; each audio file is listed once. Other columns are kept as
extras.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from agf.datasets import LoadedDataset, assemble_dataset
from agf.datasets.table import TRACK_COLUMNS, read_csv_file
from agf.errors import DatasetError

REQUIRED_COLUMNS: tuple[str, ...] = ("path", "artist", "genre")
OPTIONAL_COLUMNS: tuple[str, ...] = ("track_id", "album", "subgenres", "split", "duration")


def load_manifest(
    csv_path: str | Path,
    split: str = "official",
    val_fraction: float = 0.15,
    test_fraction: float = 0.0,
    seed: int = 0,
    strict: bool = False,
) -> LoadedDataset:
    """Load a CSV manifest as a track table.

    split: 'official' uses the manifest's split column when it has one; without it, or with 'artist',
    an artist-disjoint stratified split is made; 'random' makes the paper's stratified random split.
    Tracks whose audio file is missing are listed in `missing` (an error when strict).
    """
    csv_path = Path(csv_path)
    rows = _read_manifest(csv_path)
    base = csv_path.resolve().parent
    audio_paths = pd.Series([str((base / path).resolve()) for path in rows["path"]])
    _refuse_repeated_files(csv_path, audio_paths)
    table = pd.DataFrame(
        {
            "track_id": rows["track_id"] if "track_id" in rows else [f"t{i:06d}" for i in range(1, len(rows) + 1)],
            "audio_path": audio_paths,
            "artist_id": rows["artist"],
            "album_id": rows["album"] if "album" in rows else "",
            "genre": rows["genre"],
            "subgenres": rows["subgenres"].map(_split_subgenres) if "subgenres" in rows else [[] for _ in range(len(rows))],
            "split": rows["split"] if "split" in rows else "",
            "declared_duration": pd.to_numeric(rows["duration"], errors="coerce") if "duration" in rows else np.nan,
        }
    )
    extras = [c for c in rows.columns if c not in TRACK_COLUMNS and c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    table[extras] = rows[extras]
    mode = "artist" if split == "official" and "split" not in rows else split
    return assemble_dataset(
        table, split=mode, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
        strict=strict, source=str(csv_path), warnings=[],
    )


def _read_manifest(csv_path: Path) -> pd.DataFrame:
    """The manifest as stripped strings; DatasetError for a missing file, column or required value."""
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path}: not found; give the manifest CSV with --manifest (in a config: "
                           "dataset.manifest)")
    rows = read_csv_file(csv_path, f"a manifest is a CSV with columns {', '.join(REQUIRED_COLUMNS)}", dtype=str,
                         keep_default_na=False)
    rows.columns = [str(c).strip() for c in rows.columns]
    rows = rows.apply(lambda column: column.str.strip())
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.columns]
    if missing:
        raise DatasetError(
            f"{csv_path}: missing column(s) {', '.join(missing)}; columns found: "
            f"{', '.join(rows.columns) or 'none'}. A manifest needs {', '.join(REQUIRED_COLUMNS)} "
            f"(optional: {', '.join(OPTIONAL_COLUMNS)})"
        )
    for column in REQUIRED_COLUMNS:
        empty = rows.index[rows[column] == ""]
        if len(empty):
            # Data row i is line i + 2 of the file (line 1 is the header).
            raise DatasetError(f"{csv_path}: line {empty[0] + 2}: empty {column}; every row needs one")
    return rows


def _refuse_repeated_files(csv_path: Path, audio_paths: pd.Series) -> None:
    """DatasetError naming the first audio file that two or more rows list (by any spelling of its path): it
    would count twice, under two genres or in two splits (training on a file that is scored)."""
    repeated = audio_paths[audio_paths.duplicated(keep=False)]
    if len(repeated):
        path = repeated.iloc[0]
        lines = ", ".join(str(row + 2) for row in repeated.index[repeated == path])  # line 1 is the header
        raise DatasetError(f"{csv_path}: lines {lines} list the same audio file {path}; list each file once, "
                           "with one genre and one split")


def _split_subgenres(value: str) -> list[str]:
    """'Punk; Garage' -> ['Punk', 'Garage']; '' -> []."""
    return [name.strip() for name in value.split(";") if name.strip()]
