"""`agf prepare` throughput against decode-only throughput of the same files, with 1 and 2 workers.

    .venv/bin/python benchmarks/bench_prepare.py [--files 240] [--reps 3]

Writes N copies of music-like 30-s 44.1 kHz stereo 320 kbit/s MP3s (FMA's usual format) and measures, as
audio-seconds per wall-second ("x real time"):
  decode-only   agf.audio.decode of every file (agf.parallel.map_unordered, as prepare distributes work)
  prepare       agf.prepare.prepare_features: decode + log-mel + MFCC + atomic writes + entries + index
Throughput is the rate of the extra files between a run of N/5 files and a run of N (measure.marginal_rate),
so worker start-up and the index written at the end, reported in rows of their own, do not dilute it.
Targets (issue 2): prepare >= 85 % of decode-only per worker; 2 workers >= 1.7x one worker.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from concurrent.futures import wait
from importlib import import_module
from pathlib import Path
from typing import Any

from measure import Measurement, marginal_rate, wall

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from agf.audio import decode, write_audio  # noqa: E402
from agf.config import FeatureConfig  # noqa: E402
from agf.parallel import LOCAL_SCHEDULER, dask_client, map_unordered, worker_pool  # noqa: E402
from agf.prepare import prepare_features  # noqa: E402
from agf.store import FeatureStore  # noqa: E402

SR = 44100
CLIP_SECONDS = 30.0


def music_clip(seconds: float, seed: int) -> np.ndarray:
    """A stereo clip of decaying harmonic notes over noise bursts: MP3-encodes like music."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    left = np.zeros_like(t)
    note_length = 0.25
    for start in np.arange(0.0, seconds, note_length):
        f0 = 110.0 * 2 ** (rng.integers(0, 24) / 12)
        seg = (t >= start) & (t < start + note_length)
        local = t[seg] - start
        env = np.exp(-local * 8.0)
        left[seg] += sum(np.sin(2 * np.pi * f0 * k * local) / k for k in range(1, 6)) * env * 0.2
    left += rng.normal(0, 0.02, t.size) * (np.sin(2 * np.pi * 2 * t) > 0.6)
    right = np.roll(left, 200) * 0.9
    return np.stack([left, right]).astype(np.float32)


def write_clips(folder: Path, n: int, seconds: float = CLIP_SECONDS) -> list[str]:
    """n MP3s in folder (000000.mp3, ...): copies of 8 encodes, distinct files with the same decode cost."""
    base = [folder / f"src{i}.mp3" for i in range(8)]
    for i, path in enumerate(base):
        write_audio(path, music_clip(seconds, i), SR, bitrate=320000)
    paths = []
    for i in range(n):
        target = folder / f"{i:06d}.mp3"
        target.write_bytes(base[i % len(base)].read_bytes())
        paths.append(str(target))
    for path in base:
        path.unlink()
    return paths


def track_table(paths: list[str]) -> pd.DataFrame:
    """The track table prepare takes: one track per file."""
    return pd.DataFrame({"track_id": [Path(p).stem for p in paths], "audio_path": paths})


def decode_seconds(path: str) -> float:
    """Decode one file at 22,050 Hz; return the audio seconds decoded."""
    samples, _ = decode(path, 22050)
    return samples.size / 22050


def decode_run(paths: list[str], workers: int) -> float:
    """Seconds to decode every file over `workers` processes (1: in this process, as prepare does)."""
    return wall(lambda: sum(map_unordered(decode_seconds, paths, workers, progress=False)))


def prepare_run(paths: list[str], root: Path, workers: int, **prepare_options: Any) -> float:
    """Seconds of prepare_features over the files into a new store under `root` (removed afterwards).
    `prepare_options` go to prepare_features as they are (e.g. the scheduler of another executor)."""
    workdir = Path(tempfile.mkdtemp(dir=root))
    try:
        store = FeatureStore.open(workdir, FeatureConfig())
        start = time.perf_counter()
        summary = prepare_features(track_table(paths), store, workers=workers, progress=False, **prepare_options)
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(workdir)
    if summary.status["ok"] != len(paths):
        raise RuntimeError(summary.format())
    return seconds


def imported(module: str) -> float:
    """Import a module (in a worker process); return the time it was done (perf_counter is system-wide)."""
    import_module(module)
    return time.perf_counter()


def pool_times(workers: int, module: str = "agf.prepare") -> tuple[float, float]:
    """(start-up, shut-down) seconds of agf.parallel's pool: from its creation until every spawned worker has
    imported `module`, and from the last result until the pool is closed (its processes joined)."""
    start = time.perf_counter()
    with worker_pool(workers) as pool:
        futures = [pool.submit(imported, module) for _ in range(workers)]
        wait(futures)
        ready = max(f.result() for f in futures)
        closing = time.perf_counter()
    return ready - start, time.perf_counter() - closing


def dask_start() -> float | None:
    """Seconds to start the LocalCluster of 2 workers that `--scheduler local -j 2` uses (kept for the
    measurements that follow); None without dask installed."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        return None
    return wall(lambda: dask_client(LOCAL_SCHEDULER, 2))


def prepare_measurements(paths: list[str], root: Path, reps: int, **prepare_options: Any) -> list[Measurement]:
    """The suite's prepare rows: per-worker ratio to decode-only, 2-vs-1-worker scaling of each, start-up and the
    whole-run scaling (start-up included), from `reps` repetitions over `paths` (and their first fifth)."""
    audio = CLIP_SECONDS
    large, small = len(paths), max(2, len(paths) // 5)
    rates: dict[tuple[str, int], list[float]] = {}
    whole: dict[int, list[float]] = {1: [], 2: []}
    fixed: list[float] = []
    pool: list[tuple[float, float]] = []
    cluster_start = dask_start()
    for _ in range(reps):
        if cluster_start is not None:
            dask_rate, _ = marginal_rate(
                lambda n: prepare_run(paths[:n], root, 2, scheduler=LOCAL_SCHEDULER, **prepare_options), small, large)
            rates.setdefault(("dask", 2), []).append(dask_rate * audio)
        for workers in (1, 2):
            decode_rate, _ = marginal_rate(lambda n: decode_run(paths[:n], workers), small, large)
            prepare_rate, prepare_fixed = marginal_rate(
                lambda n: prepare_run(paths[:n], root, workers, **prepare_options), small, large)
            rates.setdefault(("decode", workers), []).append(decode_rate * audio)
            rates.setdefault(("prepare", workers), []).append(prepare_rate * audio)
            whole[workers].append(large * audio / (large / prepare_rate + prepare_fixed))
            if workers == 2:
                fixed.append(prepare_fixed)
        pool.append(pool_times(2))
    return [
        Measurement("prepare per worker: prepare vs decode-only, 1 worker, warm", "x real time",
                    rates["prepare", 1], "decode-only, 1 worker", rates["decode", 1], "target ratio >= 0.85"),
        Measurement("prepare scaling: 2 workers vs 1, warm", "x real time", rates["prepare", 2],
                    "prepare, 1 worker", rates["prepare", 1], "target ratio >= 1.7"),
        Measurement("decode-only scaling: 2 workers vs 1, warm", "x real time", rates["decode", 2],
                    "decode-only, 1 worker", rates["decode", 1]),
        *([] if cluster_start is None else [
            Measurement("prepare scaling on dask: a LocalCluster of 2 workers vs 1 local worker, warm",
                        "x real time", rates["dask", 2], "prepare, 1 worker", rates["prepare", 1],
                        "target ratio >= 1.7"),
            Measurement("dask LocalCluster start-up: 2 worker processes", "s", [cluster_start]),
        ]),
        Measurement(f"prepare scaling: 2 workers vs 1, whole run of {large} files", "x real time", whole[2],
                    "prepare, 1 worker, whole run", whole[1], "start-up and index included"),
        Measurement("prepare fixed cost per run, 2 workers (start-up, index)", "s", fixed),
        Measurement("worker pool start-up: 2 spawned workers importing agf.prepare", "s", [p[0] for p in pool]),
        Measurement("worker pool shut-down: 2 workers joined", "s", [p[1] for p in pool]),
    ]


def main() -> None:
    """Print the prepare rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=240)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    from suite import print_rows

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "audio").mkdir()
        print_rows(prepare_measurements(write_clips(root / "audio", args.files), root, args.reps))


if __name__ == "__main__":
    main()
