"""The dataset section, like the paper's data exploration: who and what the tracks are, and what failed.

Tables: tracks, artists and albums per genre and split; tracks per artist; albums whose tracks carry
different genres; given vs true genre (synthetic corpus); files flagged by prepare; decoded audio facts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from agf.datasets.splits import split_problems
from agf.datasets.table import HELD_OUT_SPLITS, SPLITS, split_mask
from agf.errors import ReportError
from agf.report.markup import Table, number, to_markdown

TRACK_FACT_COLUMNS: tuple[str, ...] = ("track_id", "artist_id", "album_id", "genre", "split")
INDEX_COLUMNS: tuple[str, ...] = ("track_id", "status", "reason")
TRACKS_PER_ARTIST_EDGES = (1, 2, 5, 10, 20, 50)
MAX_LISTED_ALBUMS = 20
MAX_LISTED_FILES = 50
# Fewer artists of a genre in a split than this make its per-genre scores a statement about a few artists.
MIN_ARTISTS_PER_GENRE = 5


def _require(frame: pd.DataFrame, columns: tuple[str, ...], name: str, fix: str) -> None:
    """Raise ReportError when `frame` lacks any of `columns`."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ReportError(f"{name}: missing column(s) {', '.join(missing)}; {fix}")


def _known_albums(tracks: pd.DataFrame) -> pd.DataFrame:
    """Tracks with a known album id ('' means unknown)."""
    return tracks[tracks["album_id"].astype(str) != ""]


def _percent(part: int, whole: int) -> str:
    """A share as '12.3%' ('-' of nothing)."""
    return number(100.0 * part / whole, 1) + "%" if whole else "-"


def split_warnings(tracks: pd.DataFrame) -> list[str]:
    """One line per evaluated split (val, test) that lacks genres of the training split (split_problems' warnings)
    or has fewer than MIN_ARTISTS_PER_GENRE artists in one of its genres."""
    warnings = [f"warning: {warning}" for warning in split_problems(tracks, ())[1]]
    for split in HELD_OUT_SPLITS:
        part = tracks[split_mask(tracks, split)]
        artists = part.groupby("genre")["artist_id"].nunique()
        few = artists[artists < MIN_ARTISTS_PER_GENRE]
        if len(few):
            listed = ", ".join(f"{genre} {count}" for genre, count in few.items())
            warnings.append(f"warning: the {split} split has fewer than {MIN_ARTISTS_PER_GENRE} artists in "
                            f"{len(few)} genre(s) ({listed}): its per-genre scores describe a few artists")
    return warnings


def genre_split_table(tracks: pd.DataFrame) -> Table:
    """Tracks, artists and albums per genre (rows, plus 'all') and split (column groups, plus 'all')."""
    splits = [s for s in SPLITS if s in set(tracks["split"])] + ["all"]
    albums = _known_albums(tracks)

    def counts(rows: pd.DataFrame, album_rows: pd.DataFrame) -> list[str]:
        cells = []
        for split in splits:
            part = rows if split == "all" else rows[split_mask(rows, split)]
            album_part = album_rows if split == "all" else album_rows[split_mask(album_rows, split)]
            cells += [str(len(part)), str(part["artist_id"].nunique()), str(album_part["album_id"].nunique())]
        return cells

    rows = [
        (genre, *counts(tracks[tracks["genre"] == genre], albums[albums["genre"] == genre]))
        for genre in sorted(tracks["genre"].unique())
    ]
    rows.append(("all", *counts(tracks, albums)))
    return Table(
        title="Tracks, artists and albums per genre and split",
        columns=("genre", *(f"{s} {what}" for s in splits for what in ("tracks", "artists", "albums"))),
        rows=tuple(rows),
        notes=("An artist or album with tracks of several genres counts once in each of them; "
               "albums count only tracks with a known album id.",),
    )


def tracks_per_artist_table(tracks: pd.DataFrame) -> Table:
    """How many artists have 1, 2-4, 5-9, ... tracks, and the spread of tracks per artist."""
    per_artist = tracks.groupby("artist_id").size()
    edges = [*TRACKS_PER_ARTIST_EDGES, np.inf]
    names = [
        str(low) if high == low + 1 else (f"{low}+" if high == np.inf else f"{low}-{int(high) - 1}")
        for low, high in zip(edges[:-1], edges[1:])
    ]
    buckets = pd.cut(per_artist, bins=edges, right=False, labels=names)
    n_artists = len(per_artist)
    rows = tuple(
        (name, str(int((buckets == name).sum())), _percent(int((buckets == name).sum()), n_artists),
         str(int(per_artist[buckets == name].sum())))
        for name in names
    )
    spread = (
        f"{n_artists} artists; tracks per artist: min {per_artist.min()}, median {per_artist.median():g}, "
        f"mean {per_artist.mean():.1f}, max {per_artist.max()}."
        if n_artists else "No artists."
    )
    return Table(title="Tracks per artist", columns=("tracks per artist", "artists", "share", "tracks"),
                 rows=rows, notes=(spread,))


def mixed_album_table(tracks: pd.DataFrame) -> Table:
    """Albums whose tracks carry different genres (the paper found labels are mostly per album)."""
    albums = _known_albums(tracks)
    genres_per_album = albums.groupby("album_id")["genre"].nunique()
    mixed_ids = genres_per_album.index[genres_per_album > 1]
    listed = []
    for album_id in mixed_ids[:MAX_LISTED_ALBUMS]:
        album = albums[albums["album_id"] == album_id]
        genre_counts = album["genre"].value_counts()
        listed.append((
            str(album_id), ", ".join(sorted(album["artist_id"].astype(str).unique())), str(len(album)),
            ", ".join(f"{genre} ({count})" for genre, count in genre_counts.items()),
        ))
    n_albums = len(genres_per_album)
    notes = [
        f"{len(mixed_ids)} of {n_albums} albums ({_percent(len(mixed_ids), n_albums)}) have tracks of several "
        f"genres; {n_albums - len(mixed_ids)} carry one genre on every track.",
    ]
    if len(mixed_ids) > MAX_LISTED_ALBUMS:
        notes.append(f"Showing the first {MAX_LISTED_ALBUMS} of {len(mixed_ids)}.")
    return Table(title="Albums whose tracks carry different genres",
                 columns=("album", "artist", "tracks", "genres"), rows=tuple(listed), notes=tuple(notes))


def label_noise_table(tracks: pd.DataFrame) -> Table:
    """Per split: tracks whose given genre differs from the true genre (synthetic corpus only)."""
    rows = []
    for split in [s for s in SPLITS if s in set(tracks["split"])] + ["all"]:
        part = tracks if split == "all" else tracks[split_mask(tracks, split)]
        wrong = int((part["genre"] != part["true_genre"]).sum())
        rows.append((split, str(len(part)), str(wrong), _percent(wrong, len(part))))
    return Table(title="Given genre vs true genre", columns=("split", "tracks", "wrong label", "share"),
                 rows=tuple(rows), notes=("The synthetic corpus knows each track's true genre; "
                                          "its given labels carry album-level noise.",))


def flagged_files_table(store_index: pd.DataFrame) -> Table:
    """Files prepare flagged (status other than ok): counts per status in the notes, the files listed."""
    flagged = store_index[store_index["status"] != "ok"]
    status_counts = store_index["status"].value_counts()
    summary = ", ".join(f"{status} {count}" for status, count in status_counts.items()) or "no files"
    rows = tuple(
        (str(row.track_id), str(row.status), str(row.reason))
        for row in flagged.sort_values(["status", "track_id"]).head(MAX_LISTED_FILES).itertuples(index=False)
    )
    notes = [f"{len(store_index)} files: {summary}."]
    if len(flagged) > MAX_LISTED_FILES:
        notes.append(f"Showing the first {MAX_LISTED_FILES} of {len(flagged)} flagged files.")
    return Table(title="Files flagged by prepare", columns=("track", "status", "reason"), rows=rows,
                 notes=tuple(notes))


def audio_facts_table(store_index: pd.DataFrame) -> Table:
    """Decoded files per source sample rate and channel count, with their duration range."""
    facts = store_index.dropna(subset=["sample_rate", "channels"])
    rows = tuple(
        (str(int(rate)), str(int(channels)), str(len(group)), number(group["duration"].min(), 1),
         number(group["duration"].median(), 1), number(group["duration"].max(), 1))
        for (rate, channels), group in facts.groupby(["sample_rate", "channels"])
    )
    return Table(title="Audio files by sample rate and channels",
                 columns=("sample rate", "channels", "files", "min s", "median s", "max s"), rows=rows)


def dataset_counts(tracks: pd.DataFrame) -> str:
    """'480 tracks (train 380, val 50, test 50), 48 artists, 8 genres'."""
    per_split = tracks["split"].value_counts()
    splits = ", ".join(f"{split} {per_split[split]}" for split in SPLITS if split in per_split)
    return (f"{len(tracks)} tracks ({splits}), {tracks['artist_id'].nunique()} artists, "
            f"{tracks['genre'].nunique()} genres")


def dataset_tables(tracks: pd.DataFrame, store_index: pd.DataFrame | None = None) -> list[Table]:
    """Every table of the dataset section; the store tables only when an index is given."""
    _require(tracks, TRACK_FACT_COLUMNS, "tracks", "pass the track table (tracks.parquet)")
    tables = [genre_split_table(tracks), tracks_per_artist_table(tracks), mixed_album_table(tracks)]
    if "true_genre" in tracks.columns:
        tables.append(label_noise_table(tracks))
    if store_index is not None:
        _require(store_index, INDEX_COLUMNS, "store_index", "pass the feature store's index (index.parquet)")
        tables.append(flagged_files_table(store_index))
        if {"sample_rate", "channels", "duration"} <= set(store_index.columns):
            tables.append(audio_facts_table(store_index))
    return tables


def dataset_section(tracks: pd.DataFrame, store_index: pd.DataFrame | None = None) -> str:
    """The dataset section as Markdown: the tables of dataset_tables, one after another."""
    return "\n\n".join(to_markdown(table) for table in dataset_tables(tracks, store_index))
