"""Random 1-s crop reads from the feature store at FMA file counts, as a training loader process reads them.

Training reads one random 43-frame crop of a random track per patch. The store keeps every track's log-mel in a
few append-only packs mapped once per process (agf.store), so a crop is a slice of mapped memory. This writes
stores of increasing track counts with the real FeatureStore (short log-mels: the track count is what is
measured, not the bytes), then times batches of random crops through the training loader's own
`CropDataset` (float32 batches of 256 crops), warm (after one pass, as the page cache holds them during
training) and, where the machine allows dropping the page cache (root), cold. Beside it, in the same run:
    memory   the same batches from arrays in memory (the ceiling);
    files    the first store layout (one .npy per track, memory-mapped on open, 4,096 kept open per process),
             written and read as agf did before the packs.

    python benchmarks/bench_store_scale.py --tracks 1000,32000,107000 --out /tmp/store-scale --json rows.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import statistics
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from measure import Measurement, wall

from agf.config import PATCH_FRAMES, FeatureConfig
from agf.store import FeatureStore
from agf.training.data import Batch, CropDataset

FRAMES = 2 * PATCH_FRAMES  # short log-mels by default: a crop still has 44 start positions (--frames: 1292 = 30 s)
BATCH = 256
READS = 51_200  # crops per timing: 200 batches
REPEATS = 3
CONFIG = FeatureConfig()


def write_store(root: Path, tracks: int, frames: int) -> tuple[FeatureStore, list[str], float]:
    """A store of `tracks` tracks (log-mel, MFCCs, journal line) as prepare writes them; return it, its ids and
    tracks written per second."""
    store = FeatureStore(root, CONFIG)
    rng = np.random.default_rng(0)
    mel = rng.standard_normal((frames, CONFIG.n_mels)).astype(np.float16)
    mfcc = rng.standard_normal((frames, CONFIG.n_mfcc)).astype(np.float32)
    ids = [f"{i:06d}" for i in range(tracks)]
    started = time.perf_counter()
    for track_id in ids:
        store.write_track({"track_id": track_id, "status": "ok", "frames": frames}, mel, mfcc)
    return store, ids, tracks / (time.perf_counter() - started)


def write_files(root: Path, tracks: int, frames: int) -> tuple[list[str], float]:
    """The first layout's log-mels: one .npy per track in 256 shard folders; return the paths and files/s."""
    mel = np.random.default_rng(0).standard_normal((frames, CONFIG.n_mels)).astype(np.float16)
    paths = [str(root / f"{i % 256:02x}" / f"{i:06d}.npy") for i in range(tracks)]
    started = time.perf_counter()
    for path in paths:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.save(path, mel)
    return paths, tracks / (time.perf_counter() - started)


class FileMels:
    """The first layout's reader: a track's .npy opened and memory-mapped on use, 4,096 kept open."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, row: int) -> np.ndarray:
        return _open_npy(self.paths[row])


@functools.lru_cache(maxsize=4096)
def _open_npy(path: str) -> np.ndarray:
    return np.load(path, mmap_mode="r", allow_pickle=False)


def crop_rate(mels: Sequence[np.ndarray], rng: np.random.Generator) -> float:
    """Random crops per second through the training loader's CropDataset, in batches of BATCH."""
    dataset = CropDataset(mels, {"g": np.zeros((len(mels), 1), dtype=np.float32)}, PATCH_FRAMES)
    frames = len(mels[0])
    batches = [Batch("g", rng.integers(0, len(mels), BATCH), rng.integers(0, frames - PATCH_FRAMES + 1, BATCH))
               for _ in range(READS // BATCH)]
    started = time.perf_counter()
    for batch in batches:
        dataset[batch]
    return READS / (time.perf_counter() - started)


def memory_mels(tracks: int, frames: int) -> list[np.ndarray]:
    """The ceiling: log-mels in memory (at most 4,096 distinct arrays, repeated: slicing does not depend on it)."""
    rng = np.random.default_rng(2)
    distinct = [rng.standard_normal((frames, CONFIG.n_mels)).astype(np.float16) for _ in range(min(tracks, 4096))]
    return [distinct[i % len(distinct)] for i in range(tracks)]


def drop_page_cache() -> bool:
    """Drop the page cache (root on Linux only); whether it was dropped."""
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def warm_and_cold(mels: Sequence[np.ndarray], rng: np.random.Generator, cold_first: bool) -> tuple[float, float | None]:
    """(median warm crops/s after one pass over every track, cold crops/s or None)."""
    cold = crop_rate(mels, rng) if cold_first and drop_page_cache() else None
    for row in range(len(mels)):  # one pass over every track: in the page cache and mapped, as in later epochs
        np.array(mels[row])
    return statistics.median(crop_rate(mels, rng) for _ in range(REPEATS)), cold


def measure(root: Path, tracks: int, files: bool = True, frames: int = FRAMES) -> dict:
    """Write a store of `tracks` tracks of `frames` frames (and the first layout's files) and time crop reads
    from each; also the store's size, and the seconds to index it and to list its finished tracks afresh."""
    shutil.rmtree(root, ignore_errors=True)
    store, ids, tracks_s = write_store(root / "packs", tracks, frames)
    index_s = wall(FeatureStore(store.root, CONFIG).write_index)
    finished_s = wall(lambda: FeatureStore(store.root, CONFIG).entries())
    rng = np.random.default_rng(1)
    packed_cold = crop_rate(FeatureStore(store.root, CONFIG).track_mels(ids), rng) if drop_page_cache() else None
    warm, _ = warm_and_cold(FeatureStore(store.root, CONFIG).track_mels(ids), rng, cold_first=False)
    memory = statistics.median(crop_rate(memory_mels(tracks, frames), rng) for _ in range(REPEATS))
    row = {"tracks": tracks, "frames": frames, "store_files": len(list(store.root.rglob("*"))),
           "store_gb": sum(p.stat().st_size for p in store.root.rglob("*") if p.is_file()) / 1e9,
           "write_tracks_s": tracks_s, "index_s": index_s, "list_finished_s": finished_s,
           "warm_crops_s": warm, "cold_crops_s": packed_cold, "memory_crops_s": memory,
           "warm_vs_memory": warm / memory, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
           "anon_rss_gb": anon_rss_gb()}
    if files:
        paths, files_s = write_files(root / "files", tracks, frames)
        _open_npy.cache_clear()
        files_warm, files_cold = warm_and_cold(FileMels(paths), rng, cold_first=True)
        row.update(files_write_s=files_s, files_warm_crops_s=files_warm, files_cold_crops_s=files_cold,
                   warm_vs_files=warm / files_warm)
    shutil.rmtree(root, ignore_errors=True)
    return row


def store_measurements(scratch: Path, tracks: int, reps: int) -> list[Measurement]:
    """The suite's rows: packed-store crops beside in-memory crops and beside the first layout, `reps` stores of
    `tracks` tracks each written and read in turn."""
    rows = [measure(scratch / f"store{rep}", tracks) for rep in range(reps)]

    def column(name: str) -> list[float]:
        return [row[name] for row in rows]

    cold = [row["cold_crops_s"] for row in rows if row["cold_crops_s"]]
    files_cold = [row["files_cold_crops_s"] for row in rows if row["files_cold_crops_s"]]
    cold_note = (f"cold (page cache dropped) packs {statistics.median(cold):,.0f}/s, first layout "
                 f"{statistics.median(files_cold):,.0f}/s" if cold and files_cold else "cold not measured (not root)")
    return [
        Measurement(f"store: random 1-s crops from packs, {tracks:,} tracks, one loader process, warm", "crops/s",
                    column("warm_crops_s"), "the same crops from memory", column("memory_crops_s"),
                    f"targets >= 100,000 crops/s and ratio >= 0.5; {cold_note}"),
        Measurement(f"store: packs vs the first layout (one .npy per track), {tracks:,} tracks, warm", "crops/s",
                    column("warm_crops_s"), "one file per track", column("files_warm_crops_s"),
                    "through the training loader's CropDataset, batches of 256"),
    ]


def anon_rss_gb() -> float:
    """This process's resident anonymous memory now (Linux; 0 elsewhere): RSS without mapped file pages."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1e6 for line in status.splitlines() if line.startswith("RssAnon:")), 0.0)


def describe(row: dict) -> str:
    """One line of a row."""
    def rate(value: float | None) -> str:
        return f"{value:,.0f}" if value else "n/a"
    line = (f"{row['tracks']:>7,d} tracks of {row['frames']} frames ({row['store_files']} files, "
            f"{row['store_gb']:.2f} GB; written {row['write_tracks_s']:,.0f} tracks/s, indexed in "
            f"{row['index_s']:.1f} s, listed in {row['list_finished_s']:.1f} s; peak RSS of this process "
            f"{row['peak_rss_gb']:.2f} GB with mapped store pages, anonymous {row['anon_rss_gb']:.2f} GB): random crops warm {rate(row['warm_crops_s'])}/s, "
            f"cold {rate(row['cold_crops_s'])}/s; in memory {rate(row['memory_crops_s'])}/s "
            f"(warm/memory {row['warm_vs_memory']:.2f})")
    if "files_warm_crops_s" in row:
        line += (f"; first layout (one file per track) warm {rate(row['files_warm_crops_s'])}/s, cold "
                 f"{rate(row['files_cold_crops_s'])}/s (packs/files {row['warm_vs_files']:.1f}x)")
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", default="1000,32000,107000", help="track counts, comma-separated")
    parser.add_argument("--out", default="/tmp/agf-store-scale", help="scratch directory (deleted after)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--no-files", action="store_true", help="skip the first layout's one-file-per-track baseline")
    parser.add_argument("--frames", type=int, default=FRAMES, help=f"log-mel frames per track (default {FRAMES}; "
                        "1292 = a 30-s clip: 460 KB a track)")
    args = parser.parse_args()
    rows = []
    for tracks in (int(t) for t in args.tracks.split(",")):
        rows.append(measure(Path(args.out) / str(tracks), tracks, files=not args.no_files, frames=args.frames))
        print(describe(rows[-1]) + f"; cores {os.cpu_count()}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
