"""Where `agf prepare`'s time goes with 1 and 2 workers (issue 16 item 4): why 2 workers gain less than decoding.

    .venv/bin/python benchmarks/profile_prepare.py [--files 240] [--seconds-per-kind 6]

Prints, for decode-only and for prepare, with 1 and 2 workers over the same files:
  per track    the time inside prepare_track of each part (timers wrapped around agf.prepare's own calls, in
               each worker: opening the store, decoding, features, the array writes, the entry), its wall and
               CPU time
  per worker   start-up (pool created -> first track begins), busy share once started, the tail
  main         the job list with is_finished checks, and write_index at the end (in the main process)
then how each part scales alone, outside prepare: every process of a warm pool loops over one kind of work for
a fixed time and reports its own rate, 1 process alone vs 2 at once (decode, log-mel + MFCC, array writes,
a memory copy, a cache-resident matrix product (SIMD units), a pure-Python loop).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import wait
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any

from measure import wall

import numpy as np  # noqa: E402
from bench_prepare import decode_seconds, imported, pool_times, track_table, write_clips  # noqa: E402

import agf.prepare as prepare_module  # noqa: E402
from agf.audio import decode  # noqa: E402
from agf.config import FeatureConfig  # noqa: E402
from agf.features import extractor_for  # noqa: E402
from agf.fileio import write_npy_atomic  # noqa: E402
from agf.parallel import map_unordered, worker_pool  # noqa: E402
from agf.prepare import TrackJob, is_finished, prepare_track  # noqa: E402
from agf.store import FeatureStore  # noqa: E402

# Seconds per part of the track being prepared in this process (filled by the timers).
PARTS: dict[str, float] = defaultdict(float)


def timed(part: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """func, adding its wall time to PARTS[part]."""
    @wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            PARTS[part] += time.perf_counter() - start
    return run


def install_timers() -> None:
    """Wrap the calls prepare_track makes (once per process): store, decode, features, writes."""
    if getattr(prepare_module, "_timers_installed", False):
        return
    prepare_module.FeatureStore = timed("open store", FeatureStore)
    prepare_module.decode_segment = timed("decode", prepare_module.decode_segment)
    prepare_module.extractor_for = lambda config: timed("features", extractor_for(config))
    FeatureStore.write_track = timed("write track", FeatureStore.write_track)
    prepare_module._timers_installed = True


def minor_faults() -> int:
    """Minor page faults of this process so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


@dataclass
class TrackTimes:
    """One track in one process: when it ran (perf_counter is system-wide on Linux), its CPU time and parts."""

    pid: int
    start: float
    end: float
    cpu: float
    page_faults: int  # minor: pages the kernel had to map (fresh allocations)
    parts: dict[str, float] = field(default_factory=dict)


def profiled_track(job: TrackJob) -> TrackTimes:
    """prepare_track with its parts timed (run in a worker)."""
    install_timers()
    PARTS.clear()
    start, cpu, faults = time.perf_counter(), time.process_time(), minor_faults()
    prepare_track(job)
    return TrackTimes(os.getpid(), start, time.perf_counter(), time.process_time() - cpu, minor_faults() - faults,
                      dict(PARTS))


def decoded_track(job: TrackJob) -> TrackTimes:
    """Decode-only of one track, timed as profiled_track times prepare (run in a worker)."""
    start, cpu, faults = time.perf_counter(), time.process_time(), minor_faults()
    decode_seconds(job.audio_path)
    end = time.perf_counter()
    return TrackTimes(os.getpid(), start, end, time.process_time() - cpu, minor_faults() - faults,
                      {"decode": end - start})


def profile_run(paths: list[str], root: Path, workers: int, work: Callable[[TrackJob], TrackTimes]) -> None:
    """Run `work` (profiled_track or decoded_track) over the files in `workers` processes; print per-track parts
    and per-worker use."""
    store = FeatureStore.open(tempfile.mkdtemp(dir=root), FeatureConfig())
    started = time.perf_counter()
    jobs = [TrackJob(t, p, str(store.root), store.config) for t, p in zip(track_table(paths)["track_id"], paths)]
    tracks = list(map_unordered(work, jobs, workers, progress=False))
    ended = time.perf_counter()
    firsts = {min((t for t in tracks if t.pid == pid), key=lambda t: t.start).start for pid in {t.pid for t in tracks}}
    tracks = [t for t in tracks if t.start not in firsts]  # a worker's first track carries its warm-up
    parts = sorted({p for t in tracks for p in t.parts})
    print(f"\n{work.__name__}, {workers} worker(s), {len(paths)} files: {ended - started:.2f} s; per track, mean ms "
          "(first track of each worker left out):")
    for part in parts:
        print(f"  {part:14s} {1000 * statistics.mean(t.parts.get(part, 0.0) for t in tracks):7.2f}")
    inside = statistics.mean(t.end - t.start - sum(t.parts.values()) for t in tracks)
    print(f"  {'rest':14s} {1000 * inside:7.2f}  (prepare_track's own code: levels, entry dict)")
    print(f"  {'track wall':14s} {1000 * statistics.mean(t.end - t.start for t in tracks):7.2f}   "
          f"CPU {1000 * statistics.mean(t.cpu for t in tracks):7.2f}   minor page faults "
          f"{statistics.mean(t.page_faults for t in tracks):,.0f}")
    for pid in sorted({t.pid for t in tracks}):
        mine = [t for t in tracks if t.pid == pid]
        first, last = min(t.start for t in mine), max(t.end for t in mine)
        busy = sum(t.end - t.start for t in mine) / (last - first)
        print(f"  worker {pid}: {len(mine)} tracks, second track at {first - started:.2f} s, busy {busy:.1%} of "
              f"{last - first:.2f} s, done {ended - last:.2f} s before the end")


def main_share(paths: list[str], root: Path) -> None:
    """The main process's own work: the job list (is_finished per track) before, write_index after."""
    store = FeatureStore.open(tempfile.mkdtemp(dir=root), FeatureConfig())
    table = track_table(paths)
    checks = wall(lambda: [is_finished(store.read_entry(t), p, False) for t, p in zip(table["track_id"], paths)])
    prepare_module.prepare_features(table, store, workers=1, progress=False)
    index = wall(store.write_index)
    done = wall(lambda: [is_finished(store.read_entry(t), p, False) for t, p in zip(table["track_id"], paths)])
    print(f"\nmain process, {len(paths)} tracks: is_finished on an empty store {checks:.3f} s, on a finished one "
          f"{done:.3f} s; write_index {index:.3f} s")


def work_loop(kind: str, path: str, seconds: float) -> tuple[int, float]:
    """(pid, items/s) of one kind of work repeated for about `seconds` in this process, after one warm-up item."""
    config = FeatureConfig()
    samples = decode(path, config.sample_rate)[0]
    features = extractor_for(config)(samples)
    folder = Path(tempfile.mkdtemp())
    big = np.ones(16 << 20, dtype=np.float32)  # 64 MB
    copy = np.empty_like(big)
    small = np.ones((256, 256), dtype=np.float32)  # 256 KB: stays in the core's cache
    items: dict[str, Callable[[], object]] = {
        "decode": lambda: decode(path, config.sample_rate),
        "log-mel + MFCC": lambda: extractor_for(config)(samples),
        "array writes": lambda: (write_npy_atomic(folder / "m.npy", features.mel, durable=False),
                                 write_npy_atomic(folder / "c.npy", features.mfcc, durable=False)),
        "copy 64 MB": lambda: np.copyto(copy, big),
        "matmul in cache": lambda: [small @ small for _ in range(50)],
        "Python loop": lambda: sum(i * i for i in range(200_000)),
    }
    item = items[kind]
    item()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        item()
        count += 1
    return os.getpid(), count / (time.perf_counter() - start)


def scaling_alone(path: str, seconds: float) -> None:
    """Each kind of work: one process alone vs two at once, in a warm pool; per-process rates and the scaling."""
    print(f"\nscaling of each part alone (per-process items/s over {seconds:g} s, warm pool):")
    print(f"  {'work':16s} {'1 process':>10s} {'2 at once':>18s} {'2 vs 1':>7s}")
    with worker_pool(2) as pool:
        wait([pool.submit(imported, "agf.prepare") for _ in range(2)])
        for kind in ("decode", "log-mel + MFCC", "array writes", "copy 64 MB", "matmul in cache", "Python loop"):
            alone = pool.submit(work_loop, kind, path, seconds).result()[1]
            both = [f.result() for f in [pool.submit(work_loop, kind, path, seconds) for _ in range(2)]]
            rates = [rate for _, rate in both]
            pids = len({pid for pid, _ in both})
            print(f"  {kind:16s} {alone:10.1f} {rates[0]:8.1f} {rates[1]:8.1f} {sum(rates) / alone:6.2f}x"
                  + ("" if pids == 2 else "  (both ran in one process: ignore)"))


def main() -> None:
    """Profile prepare over generated MP3s."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=240)
    parser.add_argument("--seconds-per-kind", type=float, default=6.0)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; cores {len(os.sched_getaffinity(0))}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "audio").mkdir()
        paths = write_clips(root / "audio", args.files)
        startup, shutdown = pool_times(2)
        print(f"pool of 2 workers: start-up (importing agf.prepare) {startup:.2f} s, shut-down {shutdown:.2f} s; "
              f"first decode in this process {wall(lambda: decode_seconds(paths[0])):.3f} s")
        for work in (decoded_track, profiled_track):
            for workers in (1, 2):
                profile_run(paths, root, workers, work)
        main_share(paths, root)
        scaling_alone(paths[0], args.seconds_per_kind)
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
