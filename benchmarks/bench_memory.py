"""glibc malloc keeping freed memory (agf.parallel.keep_freed_memory, which cli.main applies) against glibc's
default: window features, prediction and training steps, each side in a fresh process.

    .venv/bin/python benchmarks/bench_memory.py [--reps 3] [--tracks 40]

Writes N random log-mel "tracks" of 30 s (1,291 frames x 128 bands) as a feature store, then runs every workload
in child processes of one torch thread, the two sides alternating: 'kept' calls keep_freed_memory first, as the
`agf` command does before any work; 'default' does not and has no MALLOC_* variables (what `agf` did before, in
its own process). Each child warms up on the first 20 tracks (more than a batch), then makes two passes over all
N (the first still finds new memory; the second is the steady state of a long run, the figures) and reports its
rate per CPU second (user + system: what one core does, whatever the load of other jobs) and per second of wall
time, its system CPU time and minor page faults (resource.getrusage), its peak RSS and a SHA-256 of what it
computed, which must be the same on both sides:
  window features  agf.transfer.net_window_features of the paper's genre STN (random weights, genre-head
                   probabilities, the default transfer config: hop 21, bf16 autocast), batches of 1,024 windows
  predict          GenreClassifier's two nets + MLP over every window of the same clips, batches of 512 (model
                   only: no decoding)
  training         agf.training.loop.train_step on batches of 64 random crops (the default training config),
                   a step per two tracks
Targets (issue 23): window features >= 1.4x the windows per CPU second of the default, system time < 10 % of
user time, the same features.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from measure import Measurement

import numpy as np  # noqa: E402
import torch  # noqa: E402

from agf.config import PATCH_FRAMES, FeatureConfig, TrainConfig, TransferConfig  # noqa: E402
from agf.models import STN  # noqa: E402
from agf.predict import GenreClassifier, untrained_bundle  # noqa: E402
from agf.predict.classifier import Decoded  # noqa: E402
from agf.store import FeatureStore  # noqa: E402
from agf.training.loop import make_optimizer, to_device, train_step  # noqa: E402
from agf.transfer import net_window_features  # noqa: E402

HERE = Path(__file__).resolve().parent
FRAMES = 1291  # a 30-s clip at 22,050 Hz, hop 512
N_MELS = 128
GENRES = tuple(f"genre {i}" for i in range(16))
WARM_UP_TRACKS = 20  # 1,220 windows: one full batch of 1,024 and a partial one
WORKLOADS = ("window features", "predict", "training")
# A child: the setting first (before torch loads, as in `agf`), then the workload; prints its report as JSON.
CHILD = """import sys
from agf.parallel import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "kept" else False
sys.path.insert(0, sys.argv[2])
import bench_memory
bench_memory.child(sys.argv[3], sys.argv[4], int(sys.argv[5]), applied)
"""

Work = Callable[[list[str]], tuple[int, bytes]]


def window_features_work(store: FeatureStore) -> Work:
    """(windows, features + genre probabilities) of the paper's STN over the tracks."""
    torch.manual_seed(0)
    net = STN(len(GENRES), 1.0, N_MELS)
    net.band_norm.set_stats(torch.full((N_MELS,), -40.0), torch.full((N_MELS,), 10.0))
    config = TransferConfig()

    def work(track_ids: list[str]) -> tuple[int, bytes]:
        result = net_window_features(net, store, track_ids, PATCH_FRAMES, config.window_hop, "cpu",
                                     head_genres=GENRES, amp=config.amp)
        return len(result.features), np.asarray(result.features).tobytes() + np.asarray(result.genre_probs).tobytes()

    return work


def predict_work(store: FeatureStore) -> Work:
    """(windows, track probabilities) of a bundle of two random-weight genre STNs + MLP, model only."""
    classifier = GenreClassifier(untrained_bundle(GENRES, n_nets=2), device="cpu")

    def work(track_ids: list[str]) -> tuple[int, bytes]:
        decoded = [Decoded(t, np.asarray(store.mel(t)), FRAMES * 512 / 22050) for t in track_ids]
        predictions = list(classifier._score(decoded))
        return sum(p.n_windows for p in predictions), np.stack([p.probabilities for p in predictions]).tobytes()

    return work


def training_work(store: FeatureStore) -> Work:
    """(patches, weights after the steps) of train_step on batches of random crops of the tracks, a step per two
    tracks."""
    config = TrainConfig()
    torch.manual_seed(0)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    net = STN(len(GENRES), 1.0, N_MELS).to(memory_format=memory_format).train()
    optimizer = make_optimizer(list(net.parameters()), config)
    rng = np.random.default_rng(0)

    def work(track_ids: list[str]) -> tuple[int, bytes]:
        steps = len(track_ids) // 2
        mels = [np.asarray(store.mel(t), dtype=np.float32) for t in track_ids]
        for _ in range(steps):
            picks = rng.integers(len(mels), size=config.batch_size)
            starts = rng.integers(FRAMES - config.patch_frames, size=config.batch_size)
            crops = np.stack([mels[i][s: s + config.patch_frames] for i, s in zip(picks, starts)])
            targets = torch.eye(len(GENRES))[torch.from_numpy(picks % len(GENRES))]
            x, y = to_device(torch.from_numpy(crops).unsqueeze(1), targets, torch.device("cpu"), config.channels_last)
            train_step(net, optimizer, "g", x, y, config.amp)
        weights = b"".join(p.detach().numpy().tobytes() for p in net.parameters())
        return steps * config.batch_size, weights

    return work


def child(workload: str, store_root: str, n_tracks: int, applied: bool) -> None:
    """Run one workload in this (fresh) process, one torch thread: a warm-up on the first tracks, then two passes
    over all of them (the first still finds new memory; the second is the steady state of a long run); print
    their reports as one JSON line."""
    torch.set_num_threads(1)
    store = FeatureStore(Path(store_root), FeatureConfig(n_mels=N_MELS))
    track_ids = [f"{i:06d}" for i in range(n_tracks)]
    make = {"window features": window_features_work, "predict": predict_work, "training": training_work}[workload]
    work = make(store)
    work(track_ids[:WARM_UP_TRACKS])
    passes = []
    for _ in range(2):
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        units, output = work(track_ids)
        seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
        passes.append({
            "applied": applied, "units": units, "rate": units / seconds,
            "user": after.ru_utime - before.ru_utime, "system": after.ru_stime - before.ru_stime,
            "faults": after.ru_minflt - before.ru_minflt, "peak_rss_mb": after.ru_maxrss / 1024,
            "sha256": hashlib.sha256(output).hexdigest(),
        })
    print(json.dumps(passes))


def run_child(side: str, workload: str, store_root: Path, n_tracks: int) -> list[dict]:
    """One child's reports of its two passes; its environment has no MALLOC_* variables (glibc's default unless
    `side` is 'kept')."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    command = [sys.executable, "-c", CHILD, side, str(HERE), workload, str(store_root), str(n_tracks)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    passes = json.loads(done.stdout.strip().splitlines()[-1])
    if passes[0]["applied"] != (side == "kept"):
        raise RuntimeError(f"keep_freed_memory was {'not ' if side == 'kept' else ''}applied on the {side} side")
    return passes


def write_store(root: Path, n_tracks: int) -> Path:
    """A feature store of random 30-s log-mels under root."""
    from bench_train import random_collection

    return random_collection(root, n_tracks, FRAMES)[1].root


def per_cpu_second(report: dict) -> float:
    """Units per CPU second (user + system): what one core does, whatever the load of other jobs."""
    return report["units"] / (report["user"] + report["system"])


def system_share(report: dict) -> float:
    """System CPU time in % of user CPU time."""
    return 100 * report["system"] / report["user"]


def rows_of(workload: str, unit: str, kept: list[list[dict]], default: list[list[dict]]) -> list[Measurement]:
    """A workload's steady-state rate per CPU second, its note the two sides' wall rate, system share, faults and
    peak RSS (and the first pass's); for window features also the wall rate, system share and faults as rows.
    `kept` and `default` hold each child's two passes."""
    if any(len({p[which]["sha256"] for p in kept + default}) > 1 for which in (0, 1)):
        raise RuntimeError(f"{workload}: the two sides computed different outputs")
    item = "patch" if unit == "patches" else unit.rstrip("s")

    def faults(report: dict) -> float:
        return report["faults"] / report["units"]

    def versus(key: Callable[[dict], float], which: int = 1) -> str:
        return " vs ".join(f"{statistics.median(key(p[which]) for p in side):,.0f}" for side in (kept, default))

    note = (f"each side a fresh process, 1 torch thread, two passes over {kept[0][0]['units']:,} {unit} after a "
            f"warm-up, the second's figures; kept vs default: {versus(lambda r: r['rate'])} {unit}/s of wall time, "
            f"system CPU {versus(system_share)} % of user, minor faults per {item} {versus(faults)} (first pass: "
            f"{versus(system_share, 0)} % and {versus(faults, 0)}), peak RSS {versus(lambda r: r['peak_rss_mb'])} "
            "MB; identical outputs")
    steady = {"kept": [p[1] for p in kept], "default": [p[1] for p in default]}

    def row(name: str, row_unit: str, key: Callable[[dict], float], row_note: str) -> Measurement:
        return Measurement(name, row_unit, [key(r) for r in steady["kept"]], "glibc's default",
                           [key(r) for r in steady["default"]], row_note)

    name = f"memory: {workload}, freed memory kept vs glibc's default"
    if workload != "window features":
        return [row(name, f"{unit}/CPU-s", per_cpu_second, note)]
    return [
        row(name, f"{unit}/CPU-s", per_cpu_second, f"{note}; target ratio >= 1.4"),
        row(f"{name}, wall time", f"{unit}/s", lambda r: r["rate"], "on a machine shared with other jobs"),
        row("memory: window features, system CPU time", "% of user", system_share, "target < 10 %"),
        row("memory: window features, minor page faults", f"per {item}", faults, ""),
    ]


def memory_measurements(scratch: Path, reps: int, n_tracks: int = 40) -> list[Measurement]:
    """Every workload with freed memory kept vs glibc's default, `reps` fresh processes per side (alternating)."""
    store_root = write_store(scratch / "memory", n_tracks)
    rows = []
    for workload, unit in zip(WORKLOADS, ("windows", "windows", "patches")):
        reports: dict[str, list[list[dict]]] = {"kept": [], "default": []}
        for rep in range(reps):
            for side in ("kept", "default") if rep % 2 == 0 else ("default", "kept"):
                reports[side].append(run_child(side, workload, store_root, n_tracks))
        rows += rows_of(workload, unit, reports["kept"], reports["default"])
    return rows


def main() -> None:
    """Print the memory rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tracks", type=int, default=40, help="30-s tracks (61 windows each)")
    args = parser.parse_args()
    from suite import print_rows

    with tempfile.TemporaryDirectory() as tmp:
        rows = memory_measurements(Path(tmp), args.reps, args.tracks)
    print_rows(rows)
    for row in rows:
        if row.note:
            print(f"  {row.name}: {row.note}")


if __name__ == "__main__":
    main()
