"""The on-disk feature store: per-track arrays plus an index of technical facts and status.

Layout under WORKDIR/features/<key>/ (the key hashes every FeatureConfig field, so a changed
setting gets a new store and is never mixed with old features):

    settings.json                 the FeatureConfig the arrays were made with
    mel/<shard>/<id>.npy          (frames, n_mels) float16 log-mel dB, time-major
    mfcc/<shard>/<id>.npy         (frames, n_mfcc) float32
    <kind>/<shard>/<id>.npy       other per-track arrays (e.g. essentia)
    entries/<shard>/<id>.json     per-track facts and status, written LAST: the completion marker
    index.parquet                 all entries in one table (rebuilt from entries when missing or stale)

Arrays are .npy files read with memory mapping, so a random 1-s crop reads ~11 KB, not the track.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from agf.config import FeatureConfig, key_settings
from agf.errors import StoreError
from agf.features import delta_mfcc
from agf.fileio import (
    read_json,
    stable_key,
    write_json_atomic,
    write_npy_atomic,
    write_parquet_atomic,
)

STORE_FORMAT = 1
STATUSES: tuple[str, ...] = ("ok", "failed", "truncated", "too_short", "silent", "known_bad")
ENTRY_COLUMNS: tuple[str, ...] = (
    "track_id",
    "status",
    "reason",
    "audio_path",
    "file_size",
    "file_mtime_ns",
    "sample_rate",
    "channels",
    "duration",
    "frames",
    "peak_db",
    "rms_db",
    "decoder",
)


# Seconds assumed for a track whose duration is not declared: an FMA clip.
ASSUMED_TRACK_SECONDS = 30.0


def estimated_bytes(tracks: pd.DataFrame, config: FeatureConfig) -> int:
    """What the store's arrays of these tracks will take on disk: float16 log-mel and float32 MFCC frames of each
    track's declared duration (30 s where none is declared)."""
    seconds = tracks["declared_duration"] if "declared_duration" in tracks.columns else pd.Series(np.nan, tracks.index)
    total_seconds = float(seconds.fillna(ASSUMED_TRACK_SECONDS).sum())
    frames_per_second = config.sample_rate / config.hop_length
    return int(total_seconds * frames_per_second * (2 * config.n_mels + 4 * config.n_mfcc))


def features_key(config: FeatureConfig) -> str:
    """The store key: a hash of every feature setting and the store format."""
    return stable_key("features", STORE_FORMAT, key_settings(config))


def _shard(track_id: str) -> str:
    """A two-hex-digit shard folder, so no folder holds more than ~1/256 of the tracks."""
    return hashlib.sha1(track_id.encode("utf-8")).hexdigest()[:2]


class FeatureStore:
    """Per-track feature arrays and their index, for one FeatureConfig."""

    def __init__(self, root: str | Path, config: FeatureConfig):
        self.root = Path(root)
        self.config = config
        settings_path = self.root / "settings.json"
        wanted = {"format": STORE_FORMAT, "features": key_settings(config)}
        if settings_path.exists():
            found = read_json(settings_path)
            if found != wanted:
                raise StoreError(
                    f"{self.root}: made with other feature settings ({found}); "
                    "use a new work directory or delete this store"
                )
        else:
            write_json_atomic(settings_path, wanted)

    @classmethod
    def open(cls, workdir: str | Path, config: FeatureConfig) -> FeatureStore:
        """The store for `config` under a work directory (created if absent)."""
        return cls(Path(workdir) / "features" / features_key(config), config)

    # -- per-track arrays ---------------------------------------------------------------
    def array_path(self, kind: str, track_id: str) -> Path:
        """Where the array of `kind` ('mel', 'mfcc', 'essentia', ...) for a track lives."""
        return self.root / kind / _shard(track_id) / f"{track_id}.npy"

    def has_array(self, kind: str, track_id: str) -> bool:
        """Whether a finished array of `kind` exists for the track."""
        return self.array_path(kind, track_id).exists()

    def write_array(self, kind: str, track_id: str, array: np.ndarray) -> None:
        """Store an array atomically (a killed write leaves no readable half-file)."""
        write_npy_atomic(self.array_path(kind, track_id), array, durable=False)

    def read_array(self, kind: str, track_id: str, mmap: bool = True) -> np.ndarray:
        """Load a stored array, memory-mapped by default."""
        path = self.array_path(kind, track_id)
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except FileNotFoundError:
            raise StoreError(f"no {kind} features for track {track_id} in {self.root}; run `agf prepare`") from None

    def mel(self, track_id: str) -> np.ndarray:
        """(frames, n_mels) float16 log-mel in dB, memory-mapped."""
        return self.read_array("mel", track_id)

    def mfcc(self, track_id: str) -> np.ndarray:
        """(frames, n_mfcc) float32 MFCCs, memory-mapped."""
        return self.read_array("mfcc", track_id)

    def dmfcc(self, track_id: str) -> np.ndarray:
        """(frames - 1, n_mfcc) float32 first-order differences of consecutive MFCC frames."""
        return delta_mfcc(np.asarray(self.mfcc(track_id)))

    # -- entries and the index ----------------------------------------------------------
    def entry_path(self, track_id: str) -> Path:
        """The per-track entry (facts + status), the completion marker of a track."""
        return self.root / "entries" / _shard(track_id) / f"{track_id}.json"

    def write_entry(self, entry: dict) -> None:
        """Record a finished track; call only after its arrays are written."""
        write_json_atomic(self.entry_path(entry["track_id"]), entry, durable=False)

    def read_entry(self, track_id: str) -> dict | None:
        """A track's entry, or None when the track was never finished (or its entry is unreadable)."""
        return _load_entry(self.entry_path(track_id))

    def entries(self) -> pd.DataFrame:
        """All finished entries, read from the per-track files."""
        loaded = (_load_entry(p) for p in sorted((self.root / "entries").glob("*/*.json")))
        rows = [entry for entry in loaded if entry is not None]
        return pd.DataFrame(rows, columns=list(ENTRY_COLUMNS))

    def write_index(self) -> pd.DataFrame:
        """Consolidate the entries into index.parquet (atomically) and return it."""
        index = self.entries().sort_values("track_id").reset_index(drop=True)
        write_parquet_atomic(self.root / "index.parquet", index)
        return index

    def index(self) -> pd.DataFrame:
        """The index of every finished track: technical facts and status."""
        path = self.root / "index.parquet"
        entries_dir = self.root / "entries"
        if path.exists() and (not entries_dir.exists() or path.stat().st_mtime_ns >= _newest_mtime(entries_dir)):
            return pd.read_parquet(path)
        return self.write_index()

    def ok_ids(self) -> list[str]:
        """Ids of the tracks whose features are usable for training and evaluation."""
        index = self.index()
        return index.loc[index["status"] == "ok", "track_id"].tolist()

    def usable(self, tracks: pd.DataFrame) -> pd.DataFrame:
        """The rows of a track table whose features are stored with status ok: what every later stage reads."""
        return tracks[tracks["track_id"].isin(set(self.ok_ids()))].reset_index(drop=True)

    def remove_temporaries(self) -> int:
        """Delete leftovers of writes killed midway; return how many were removed."""
        removed = 0
        for tmp in self.root.glob("*/*/.*.tmp"):
            tmp.unlink(missing_ok=True)
            removed += 1
        return removed

    def describe(self) -> dict:
        """Settings and status counts, for summaries."""
        index = self.index()
        return {
            "root": str(self.root),
            "settings": asdict(self.config),
            "tracks": len(index),
            "status": index["status"].value_counts().to_dict(),
        }


def _load_entry(path: Path) -> dict | None:
    """An entry file's content; None when it is absent or unreadable (then the track is redone)."""
    try:
        return read_json(path)
    except (FileNotFoundError, ValueError):
        return None


def _newest_mtime(directory: Path) -> int:
    """Newest modification time among the shard folders of a directory (entries add files there)."""
    newest = directory.stat().st_mtime_ns
    with os.scandir(directory) as shards:
        for shard in shards:
            newest = max(newest, shard.stat().st_mtime_ns)
    return newest
