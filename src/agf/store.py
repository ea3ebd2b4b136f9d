"""The on-disk feature store: every track's log-mel and MFCCs in a few large append-only packs, plus an index.

Layout under WORKDIR/features/<key>/ (the key hashes every FeatureConfig field, so a changed
setting gets a new store and is never mixed with old features):

    settings.json                 the FeatureConfig the arrays were made with, and the layout (LAYOUT)
    packs/<writer>.bin            one writing process's tracks, appended one after another: each track's
                                  (frames, n_mels) float16 log-mel dB then its (frames, n_mfcc) float32 MFCCs,
                                  each starting on a PACK_ALIGN-byte boundary
    packs/<writer>.jsonl          that process's journal: one line per finished track (its entry: facts and
                                  status, and where its arrays lie in <writer>.bin), written after the arrays:
                                  the completion marker of a track
    <kind>/<shard>/<id>.npy       other per-track arrays (e.g. essentia), one small file each
    index.parquet                 the latest journal line of every track in one table (rebuilt when stale)

Every process that writes (a prepare worker, a dask task's process) appends to packs of its own, named by host,
process id and a random token, so no two processes ever write one file, and a cluster file system sees a few
large files per worker instead of one small file per track and kind. A killed writer leaves at most a partial
record after its last journal line: never read, and its process never appends again. A track prepared again
gets a newer journal line; the latest line wins.

Readers map each pack once (mmap) and hand out (frames, n_mels) views, so a random 1-s crop is a slice of
memory in the page cache: no open, header or mmap per crop (benchmarks/bench_store_scale.py). Stores of the
first layout (one .npy per track and kind, one entry .json per track) are converted once when opened.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from agf.config import FeatureConfig, key_settings
from agf.errors import StoreError
from agf.features import delta_mfcc
from agf.fileio import (
    appending,
    read_json,
    stable_key,
    write_json_atomic,
    write_npy_atomic,
    write_parquet_atomic,
)

# Part of the store key: the feature values. The layout of the files is LAYOUT, recorded in settings.json.
STORE_FORMAT = 1
LAYOUT = "packs/1"
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
# Where a track's arrays lie: its writer's pack and the byte offsets of its log-mel and MFCCs (-1: none stored);
# written_ns orders lines of different journals (the latest wins).
LOCATION_COLUMNS: tuple[str, ...] = ("pack", "mel_offset", "mfcc_offset", "written_ns")
INDEX_COLUMNS: tuple[str, ...] = ENTRY_COLUMNS + LOCATION_COLUMNS
MEL_DTYPE = np.dtype(np.float16)
MFCC_DTYPE = np.dtype(np.float32)
# Each array in a pack starts on a multiple of this many bytes (aligned views, cache-line starts).
PACK_ALIGN = 64
PACK_DIR = "packs"

# Seconds assumed for a track whose duration is not declared: an FMA clip.
ASSUMED_TRACK_SECONDS = 30.0


def estimated_bytes(tracks: pd.DataFrame, config: FeatureConfig) -> int:
    """What the store's arrays of these tracks will take on disk: float16 log-mel and float32 MFCC frames of each
    track's declared duration (30 s where none is declared)."""
    seconds = tracks["declared_duration"] if "declared_duration" in tracks.columns else pd.Series(np.nan, tracks.index)
    total_seconds = float(seconds.fillna(ASSUMED_TRACK_SECONDS).sum())
    frames_per_second = config.sample_rate / config.hop_length
    return int(total_seconds * frames_per_second * (MEL_DTYPE.itemsize * config.n_mels
                                                    + MFCC_DTYPE.itemsize * config.n_mfcc))


def features_key(config: FeatureConfig) -> str:
    """The store key: a hash of every feature setting and the store format."""
    return stable_key("features", STORE_FORMAT, key_settings(config))


def _shard(track_id: str) -> str:
    """A two-hex-digit shard folder, so no folder holds more than ~1/256 of the tracks."""
    return hashlib.sha1(track_id.encode("utf-8")).hexdigest()[:2]


# This process's writer name per store root: host, process id and a random token (a reused pid never appends to
# a pack a killed process left).
_writers: dict[str, str] = {}


def _writer_name(root: Path) -> str:
    """The name of this process's packs in a store."""
    key = str(root.absolute())
    if key not in _writers:
        _writers[key] = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
    return _writers[key]


def _append_aligned(handle, array: np.ndarray) -> int:
    """Append an array's bytes at the next PACK_ALIGN boundary of an append-only file; return its offset."""
    position = handle.tell()
    padding = -position % PACK_ALIGN
    handle.write(b"\0" * padding)
    handle.write(np.ascontiguousarray(array).tobytes())
    return position + padding


def _read_journal(path: Path) -> list[dict]:
    """The complete lines of one journal (a last line cut by a kill is ignored)."""
    lines = []
    with open(path, "rb") as handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                break
            try:
                lines.append(json.loads(raw))
            except ValueError:
                continue
    return lines


class PackMaps:
    """Read-only maps of a store's packs, opened once per process and remapped when a pack has grown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._maps: dict[str, np.ndarray] = {}

    def array(self, pack: str, offset: int, dtype: np.dtype, shape: tuple[int, int]) -> np.ndarray:
        """The (frames, width) array stored at `offset` of `pack`, a view of the mapped file."""
        count = shape[0] * shape[1]
        end = offset + count * dtype.itemsize
        data = self._maps.get(pack)
        if data is None or len(data) < end:
            data = self._map(pack)
            if len(data) < end:
                raise StoreError(f"{self.root / PACK_DIR / pack}.bin is shorter than its journal says "
                                 f"({len(data)} < {end} bytes); delete this store and run `agf prepare` again")
        return data[offset:end].view(dtype).reshape(shape)

    def _map(self, pack: str) -> np.ndarray:
        """Map a pack file whole."""
        path = self.root / PACK_DIR / f"{pack}.bin"
        try:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                mapped = mmap.mmap(handle.fileno(), size, access=mmap.ACCESS_READ) if size else b""
        except FileNotFoundError:
            raise StoreError(f"{path} is missing; delete this store and run `agf prepare` again") from None
        self._maps[pack] = np.frombuffer(mapped, dtype=np.uint8)
        return self._maps[pack]


@dataclass
class TrackMels:
    """The log-mels of a list of tracks, picklable: a worker process maps the packs itself on first use."""

    root: str
    n_mels: int
    packs: list[str]
    offsets: np.ndarray  # (tracks,) int64 byte offset of each track's log-mel in its pack
    frames: np.ndarray  # (tracks,) int64
    _views: list[np.ndarray] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.packs)

    def __getitem__(self, row: int) -> np.ndarray:
        """(frames, n_mels) float16 log-mel of the row-th track (a view of the mapped pack)."""
        if self._views is None:
            maps = PackMaps(Path(self.root))
            self._views = [maps.array(pack, int(offset), MEL_DTYPE, (int(frames), self.n_mels))
                           for pack, offset, frames in zip(self.packs, self.offsets, self.frames)]
        return self._views[row]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_views": None}


class FeatureStore:
    """Per-track feature arrays and their index, for one FeatureConfig."""

    def __init__(self, root: str | Path, config: FeatureConfig, progress: bool = True):
        self.root = Path(root)
        self.config = config
        self._maps = PackMaps(self.root)
        self._latest: pd.DataFrame | None = None
        self._latest_stamp: tuple = ()
        self._locations: dict[str, tuple[str, int, int, int]] | None = None
        settings_path = self.root / "settings.json"
        wanted = {"format": STORE_FORMAT, "features": key_settings(config), "layout": LAYOUT}
        if settings_path.exists():
            found = read_json(settings_path)
            if {**found, "layout": LAYOUT} != wanted:
                raise StoreError(
                    f"{self.root}: made with other feature settings ({found}); "
                    "use a new work directory or delete this store"
                )
            if "layout" not in found:
                convert_legacy(self, progress)
                write_json_atomic(settings_path, wanted)
                remove_legacy(self.root)
        else:
            write_json_atomic(settings_path, wanted)

    @classmethod
    def open(cls, workdir: str | Path, config: FeatureConfig) -> FeatureStore:
        """The store for `config` under a work directory (created if absent)."""
        return cls(Path(workdir) / "features" / features_key(config), config)

    # -- tracks: log-mel, MFCCs and entry, in this process's pack ---------------------------
    def write_track(self, entry: dict, mel: np.ndarray | None = None, mfcc: np.ndarray | None = None) -> None:
        """Record a finished track: its arrays (if any) appended to this process's pack, then its journal line
        (the completion marker). Call again to replace a track: the latest line wins."""
        writer = _writer_name(self.root)
        location = {"pack": writer, "mel_offset": -1, "mfcc_offset": -1}
        if mel is not None:
            expected = (len(mel), self.config.n_mels, self.config.n_mfcc)
            if mfcc is None or mel.ndim != 2 or mfcc.shape != (len(mel), self.config.n_mfcc) \
                    or mel.shape[1] != self.config.n_mels:
                raise StoreError(f"track {entry['track_id']}: arrays of shapes {mel.shape} and "
                                 f"{None if mfcc is None else mfcc.shape} do not match {expected}")
            with appending(self.root / PACK_DIR / f"{writer}.bin") as handle:
                location["mel_offset"] = _append_aligned(handle, mel.astype(MEL_DTYPE, copy=False))
                location["mfcc_offset"] = _append_aligned(handle, mfcc.astype(MFCC_DTYPE, copy=False))
        line = {**entry, **location, "written_ns": time.time_ns()}
        with appending(self.root / PACK_DIR / f"{writer}.jsonl") as handle:
            handle.write((json.dumps(line, allow_nan=True) + "\n").encode("utf-8"))
        self._latest = self._locations = None

    def _latest_lines(self) -> pd.DataFrame:
        """The latest journal line of every track (index track_id), read again when a journal has changed."""
        journals = sorted((self.root / PACK_DIR).glob("*.jsonl"))
        stamp = tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in journals)
        if self._latest is None or stamp != self._latest_stamp:
            rows = [line for path in journals for line in _read_journal(path)]
            frame = pd.DataFrame(rows, columns=list(INDEX_COLUMNS))
            frame = frame.sort_values("written_ns", kind="stable").drop_duplicates("track_id", keep="last")
            self._latest = frame.set_index("track_id", drop=False).rename_axis(None)
            self._latest_stamp = stamp
            self._locations = None
        return self._latest

    def read_entry(self, track_id: str) -> dict | None:
        """A track's latest entry (with its location), or None when the track was never finished."""
        latest = self._latest_lines()
        return latest.loc[track_id].to_dict() if track_id in latest.index else None

    def entries(self) -> pd.DataFrame:
        """All finished tracks' latest entries and locations, read from the journals."""
        return self._latest_lines().reset_index(drop=True)

    def has_arrays(self, track_id: str) -> bool:
        """Whether the track's log-mel and MFCCs are stored."""
        entry = self.read_entry(track_id)
        return entry is not None and entry["mel_offset"] >= 0

    def _location(self, kind: str, track_id: str) -> tuple[str, int, int]:
        """(pack, byte offset, frames) of a track's array of `kind` ('mel' or 'mfcc'): from a table of every
        track's location, read again from the journals when the track is not in it."""
        if self._locations is None or track_id not in self._locations:
            latest = self._latest_lines()
            self._locations = dict(zip(latest.index, zip(latest["pack"], latest["mel_offset"].astype(int),
                                                         latest["mfcc_offset"].astype(int),
                                                         latest["frames"].astype(int))))
        pack, mel_offset, mfcc_offset, frames = self._locations.get(track_id, ("", -1, -1, 0))
        offset = mel_offset if kind == "mel" else mfcc_offset
        if offset < 0:
            raise StoreError(f"no {kind} features for track {track_id} in {self.root}; run `agf prepare`")
        return pack, offset, frames

    def mel(self, track_id: str) -> np.ndarray:
        """(frames, n_mels) float16 log-mel in dB, a read-only view of the mapped pack."""
        pack, offset, frames = self._location("mel", track_id)
        return self._maps.array(pack, offset, MEL_DTYPE, (frames, self.config.n_mels))

    def mfcc(self, track_id: str) -> np.ndarray:
        """(frames, n_mfcc) float32 MFCCs, a read-only view of the mapped pack."""
        pack, offset, frames = self._location("mfcc", track_id)
        return self._maps.array(pack, offset, MFCC_DTYPE, (frames, self.config.n_mfcc))

    def dmfcc(self, track_id: str) -> np.ndarray:
        """(frames - 1, n_mfcc) float32 first-order differences of consecutive MFCC frames."""
        return delta_mfcc(np.asarray(self.mfcc(track_id)))

    def track_mels(self, track_ids: Sequence[str]) -> TrackMels:
        """The log-mels of these tracks for a training data loader (picklable; mapped in each process)."""
        latest = self._latest_lines()
        missing = [t for t in track_ids if t not in latest.index or latest.at[t, "mel_offset"] < 0]
        if missing:
            raise StoreError(f"no mel features for track {missing[0]} in {self.root}; run `agf prepare`")
        rows = latest.loc[list(track_ids)]
        return TrackMels(str(self.root), self.config.n_mels, rows["pack"].tolist(),
                         rows["mel_offset"].to_numpy(np.int64), rows["frames"].to_numpy(np.int64))

    def arrays_key(self, track_ids: Sequence[str]) -> str:
        """A key of these tracks' stored arrays: another when a track is left out, added or written again."""
        latest = self._latest_lines()
        missing = [t for t in track_ids if t not in latest.index]
        if missing:
            raise StoreError(f"no features for track {missing[0]} in {self.root}; run `agf prepare`")
        rows = latest.loc[list(track_ids), ["track_id", "pack", "mel_offset", "written_ns"]]
        return stable_key(rows.astype(str).to_numpy().tolist(), length=16)

    # -- other per-track arrays (one small .npy each) -------------------------------------
    def array_path(self, kind: str, track_id: str) -> Path:
        """Where the array of another `kind` (e.g. 'essentia') for a track lives."""
        return self.root / kind / _shard(track_id) / f"{track_id}.npy"

    def has_array(self, kind: str, track_id: str) -> bool:
        """Whether a finished array of `kind` exists for the track."""
        return self.array_path(kind, track_id).exists()

    def write_array(self, kind: str, track_id: str, array: np.ndarray) -> None:
        """Store an array of another kind atomically (a killed write leaves no readable half-file)."""
        write_npy_atomic(self.array_path(kind, track_id), array, durable=False)

    def read_array(self, kind: str, track_id: str, mmap: bool = True) -> np.ndarray:
        """Load a stored array of another kind, memory-mapped by default."""
        path = self.array_path(kind, track_id)
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except FileNotFoundError:
            raise StoreError(f"no {kind} features for track {track_id} in {self.root}; run `agf prepare`") from None

    # -- the index ------------------------------------------------------------------------
    def write_index(self) -> pd.DataFrame:
        """Consolidate the journals into index.parquet (atomically) and return it."""
        index = self.entries().sort_values("track_id").reset_index(drop=True)
        write_parquet_atomic(self.root / "index.parquet", index)
        return index

    def index(self) -> pd.DataFrame:
        """The index of every finished track: technical facts, status and location."""
        path = self.root / "index.parquet"
        journals = list((self.root / PACK_DIR).glob("*.jsonl"))
        newest = max((p.stat().st_mtime_ns for p in journals), default=0)
        if path.exists() and path.stat().st_mtime_ns >= newest:
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
        """Delete leftovers of atomic writes killed midway; return how many were removed."""
        removed = 0
        for tmp in [*self.root.glob(".*.tmp"), *self.root.glob("*/*/.*.tmp")]:
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


# -- the first layout: one .npy per track and kind, one entry .json per track -----------------------
LEGACY_DIRS: tuple[str, ...] = ("entries", "mel", "mfcc")


def convert_legacy(store: FeatureStore, progress: bool) -> int:
    """Append every finished track of a first-layout store to packs (arrays bit for bit); return the count.

    Packs left by a conversion killed midway are discarded first; the caller then records the layout and removes
    the old files, so a killed conversion starts again and never loses a track.
    """
    shutil.rmtree(store.root / PACK_DIR, ignore_errors=True)
    entry_files = sorted((store.root / "entries").glob("*/*.json"))
    print(f"agf: converting the feature store {store.root} to packed files ({len(entry_files)} tracks; once)",
          file=sys.stderr, flush=True)
    for path in tqdm(entry_files, desc="convert store", unit="track", disable=not progress, leave=False):
        try:
            entry = read_json(path)
        except ValueError:
            continue  # an unreadable entry was never a finished track: prepare redoes it
        arrays = [store.root / kind / path.parent.name / f"{entry['track_id']}.npy" for kind in ("mel", "mfcc")]
        if all(array.exists() for array in arrays):
            mel, mfcc = (np.load(array, allow_pickle=False) for array in arrays)
            store.write_track(entry, mel, mfcc)
        elif entry["status"] in ("ok", "too_short", "silent"):
            continue  # arrays lost: prepare redoes the track
        else:
            store.write_track(entry)
    return len(entry_files)


def remove_legacy(root: Path) -> None:
    """Delete a converted first-layout store's per-track files and stale index."""
    for name in LEGACY_DIRS:
        shutil.rmtree(root / name, ignore_errors=True)
    (root / "index.parquet").unlink(missing_ok=True)
