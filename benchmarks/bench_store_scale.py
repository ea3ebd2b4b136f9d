"""Random 1-s crop reads from the feature store at FMA-full file counts (not part of `make bench`: writing
the files takes minutes and GBs).

FMA full prepared is about 320,000 small files (log-mel, MFCC, entry per track). Training reads one random
43-frame crop of a random track's memory-mapped log-mel per patch, so the cost per file (open, mmap, header)
is paid per patch. This writes stores of increasing track counts with the real FeatureStore (short log-mels:
the file count is what is measured, not the bytes), then times random crop reads from each, warm (after one
pass over the files, as the page cache holds them during training) and, where the machine allows dropping the
page cache (root), cold. The baseline: the same crops sliced from one in-memory array.

    python benchmarks/bench_store_scale.py --tracks 1000,32000,107000 --out /tmp/store-scale
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np

from agf.config import PATCH_FRAMES, FeatureConfig
from agf.store import FeatureStore
from agf.training.data import open_mel

FRAMES = 2 * PATCH_FRAMES  # short log-mels: a crop still has 44 start positions
READS = 20_000
REPEATS = 3


def write_store(root: Path, tracks: int) -> tuple[FeatureStore, list[str], float]:
    """A store of `tracks` log-mels + MFCC + entries as prepare writes them; return it, its ids, files/s."""
    store = FeatureStore(root, FeatureConfig())
    rng = np.random.default_rng(0)
    mel = rng.standard_normal((FRAMES, 128)).astype(np.float16)
    mfcc = rng.standard_normal((FRAMES, 25)).astype(np.float32)
    ids = [f"{i:06d}" for i in range(tracks)]
    started = time.perf_counter()
    for track_id in ids:
        store.write_array("mel", track_id, mel)
        store.write_array("mfcc", track_id, mfcc)
        store.write_entry({"track_id": track_id, "status": "ok", "frames": FRAMES})
    return store, ids, 3 * tracks / (time.perf_counter() - started)


def crop_rate(paths: list[str], rng: np.random.Generator) -> float:
    """Random crops per second, each from a random file opened as training opens it."""
    chosen = rng.integers(0, len(paths), READS)
    starts = rng.integers(0, FRAMES - PATCH_FRAMES + 1, READS)
    started = time.perf_counter()
    for index, start in zip(chosen, starts):
        np.array(open_mel(paths[index])[start:start + PATCH_FRAMES])
    return READS / (time.perf_counter() - started)


def memory_rate(tracks: int, rng: np.random.Generator) -> float:
    """The baseline: the same crops sliced from one in-memory (tracks, FRAMES, 128) array (at most 4,096
    distinct tracks: the slicing cost does not depend on the count)."""
    data = rng.standard_normal((min(tracks, 4096), FRAMES, 128)).astype(np.float16)
    chosen = rng.integers(0, len(data), READS)
    starts = rng.integers(0, FRAMES - PATCH_FRAMES + 1, READS)
    started = time.perf_counter()
    for index, start in zip(chosen, starts):
        np.array(data[index, start:start + PATCH_FRAMES])
    return READS / (time.perf_counter() - started)


def drop_page_cache() -> bool:
    """Drop the page cache (root on Linux only); whether it was dropped."""
    try:
        subprocess.run(["sync"], check=True)
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def measure(root: Path, tracks: int) -> dict:
    """Write a store of `tracks` tracks and time crop reads from it, warm and cold."""
    shutil.rmtree(root, ignore_errors=True)
    store, ids, files_s = write_store(root, tracks)
    paths = [str(store.array_path("mel", track_id)) for track_id in ids]
    rng = np.random.default_rng(1)
    for path in paths:  # one pass: the files in the page cache, as after the first epoch
        open_mel(path)
    warm = statistics.median(crop_rate(paths, rng) for _ in range(REPEATS))
    cold = crop_rate(paths, rng) if drop_page_cache() else None
    memory = statistics.median(memory_rate(tracks, rng) for _ in range(REPEATS))
    shutil.rmtree(root, ignore_errors=True)
    return {"tracks": tracks, "files": 3 * tracks, "write_files_s": files_s, "warm_crops_s": warm,
            "cold_crops_s": cold, "memory_crops_s": memory, "warm_vs_memory": warm / memory}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", default="1000,32000,107000", help="track counts (3 files each)")
    parser.add_argument("--out", default="/tmp/agf-store-scale", help="scratch directory (deleted after)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args()
    rows = []
    for tracks in (int(t) for t in args.tracks.split(",")):
        row = measure(Path(args.out) / str(tracks), tracks)
        rows.append(row)
        cold = f"{row['cold_crops_s']:.0f}" if row["cold_crops_s"] else "n/a"
        print(f"{row['files']:>8d} files: write {row['write_files_s']:.0f} files/s; random crops warm "
              f"{row['warm_crops_s']:.0f}/s, cold {cold}/s; in memory {row['memory_crops_s']:.0f}/s "
              f"(warm/memory {row['warm_vs_memory']:.3f}); cores {os.cpu_count()}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
