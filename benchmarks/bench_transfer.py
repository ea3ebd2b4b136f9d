"""The transfer MLP with its window features out of core (read a batch at a time from the nets' memory-mapped
caches) against the in-memory concatenation of every net's features (fit_transfer before issue 23, item 3).

    .venv/bin/python benchmarks/bench_transfer.py [--windows 200000] [--nets 3] [--dim 256] [--reps 3]
    .venv/bin/python benchmarks/bench_transfer.py --windows 6500000 --nets 5 --dim 256 --out DIR   # FMA-large

Writes random float16 window caches (features.npy, windows.parquet: 61 windows per track, a 30-s clip at hop 21;
16 genres; 80/10/10 % of the tracks for training, validation and test), then, each side in a process of its own:
  training  windows/s of the MLP's training epochs (hidden 1024, batch 256; at most 8 windows per track and
            epoch, to keep an epoch short; the first epoch is a warm-up): batches read from the memory-mapped
            caches and standardised one at a time (agf.transfer.mlp.train_mlp) against batches indexed from the
            nets' features concatenated in memory and standardised at once (the code before, as the reference)
  memory    peak RSS of each process: anonymous memory (RssAnon, sampled every 10 ms: the kernel keeps no peak
            of it) and every resident page (VmHWM, the caches' mapped pages included). The out-of-core process
            also runs the whole fit once (agf.transfer.mlp.fit_candidates: statistics, 1 epoch, every
            aggregation, predictions of every window); the reference only concatenates, standardises and trains,
            a lower bound of the code before (which also held a Python string per window and net).
With --out DIR, only the out-of-core fit (1 epoch over every training window, or --cap windows per track; every
aggregation), in a process of its own, after writing the caches under DIR: FMA-large (--windows 6500000 --nets 5
--dim 256) writes 16.6 GB, refused unless the disk has 10 % more free. Prints the wall time and the peaks.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from measure import Measurement

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from numpy.lib.format import open_memmap  # noqa: E402

from agf.config import AGGREGATIONS, TransferConfig  # noqa: E402
from agf.transfer.mlp import (  # noqa: E402
    STD_FLOOR,
    Rows,
    WindowSet,
    batch_slices,
    build_mlp,
    capped_positions,
    fit_candidates,
    shared_windows,
    standardization,
    train_mlp,
    window_rows,
)
from agf.transfer.windows import read_window_cache  # noqa: E402

WINDOWS_PER_TRACK = 61  # a 30-s clip at the default hop of 21 frames
HOP = 21
GENRES = tuple(f"genre {i}" for i in range(16))
SEED = 0
CAP = 8  # training windows per track and epoch in the suite's rows


def write_caches(root: Path, n_windows: int, n_nets: int, dim: int) -> None:
    """Random float16 window caches of n_nets nets under root/net<i>/ (features.npy written a chunk at a time,
    windows.parquet) and root/tracks.parquet (track_id, genre, split)."""
    n_tracks = -(-n_windows // WINDOWS_PER_TRACK)
    ids = np.array([f"{i:07d}" for i in range(n_tracks)], dtype=object)
    position = np.arange(n_windows)
    windows = pd.DataFrame({"track_id": ids[position // WINDOWS_PER_TRACK],
                            "start": HOP * (position % WINDOWS_PER_TRACK)})
    rng = np.random.default_rng(SEED)
    for net in range(n_nets):
        cache = root / f"net{net}"
        cache.mkdir(parents=True, exist_ok=True)
        features = open_memmap(cache / "features.npy", mode="w+", dtype=np.float16, shape=(n_windows, dim))
        offsets, scales = rng.normal(0.2, 0.4, dim), rng.uniform(0.25, 0.9, dim)  # per feature, as the nets' are
        for rows in batch_slices(n_windows, 1 << 16):
            features[rows] = rng.standard_normal((rows.stop - rows.start, dim)) * scales + offsets
        features.flush()
        windows.to_parquet(cache / "windows.parquet", index=False)
    tracks = pd.DataFrame({"track_id": ids.astype(str), "genre": rng.choice(GENRES, n_tracks),
                           "split": rng.choice(["train", "val", "test"], n_tracks, p=[0.8, 0.1, 0.1])})
    tracks.to_parquet(root / "tracks.parquet", index=False)


def _status_kb(field: str) -> int:
    """A field of /proc/self/status, in kB."""
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(f"{field}:"))


class PeakMemory:
    """Peak resident memory of this process, in MB, over the block: `anon` (RssAnon, sampled every 10 ms by a
    thread) and `total` (VmHWM: every resident page, file-backed ones included, since the process started)."""

    def __enter__(self) -> PeakMemory:
        self.anon = self.total = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while True:
            self.anon = max(self.anon, _status_kb("RssAnon") / 1024)
            if self._stop.wait(0.01):
                return

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.anon = max(self.anon, _status_kb("RssAnon") / 1024)
        self.total = _status_kb("VmHWM") / 1024


def cached_rows(root: Path) -> tuple[Rows, pd.DataFrame]:
    """The MLP's rows over the caches under root, read as the transfer stage reads them, and the track table."""
    windows = shared_windows(read_window_cache(path, None) for path in sorted(root.glob("net*")))
    tracks = pd.read_parquet(root / "tracks.parquet")
    return window_rows(windows, tracks, GENRES, torch.device("cpu")), tracks


def training_rates(rows: Rows, epochs: int) -> list[float]:
    """Windows/s of each training epoch after the first (train_mlp: batches read from the caches, standardised)."""
    train_rows = np.flatnonzero((rows.split == "train")[rows.track_of_row])
    mean, std = standardization(rows.features, train_rows)
    track_of_row = rows.track_of_row[train_rows]
    train = WindowSet(rows.features.standardized(mean, std), train_rows, track_of_row, rows.labels[track_of_row],
                      rows.track_ids)
    config = TransferConfig(epochs=epochs, max_windows_per_track=CAP, select_epoch="last")
    torch.manual_seed(SEED)
    model = build_mlp(rows.features.dim, len(GENRES), config.hidden, config.dropout)
    curves = train_mlp(model, train, None, config, SEED, progress=False)[1]
    windows = np.minimum(np.unique(track_of_row, return_counts=True)[1], CAP).sum()
    return (windows / curves["seconds"].iloc[1:]).tolist()


def out_of_core_side(root: Path, epochs: int, cap: int, threads: int) -> dict:
    """In a process of its own: the training epochs' windows/s (none when epochs is 0), then the whole out-of-core
    fit once (1 epoch, at most `cap` windows per track and epoch, 0: all; every aggregation); its seconds and the
    process's peak memory."""
    torch.set_num_threads(threads)
    with PeakMemory() as peak:
        rows, tracks = cached_rows(root)
        rates = training_rates(rows, epochs) if epochs else []
        config = TransferConfig(epochs=1, max_windows_per_track=cap, aggregations=AGGREGATIONS)
        started = time.perf_counter()
        fit_candidates(rows, tracks, GENRES, config, SEED, progress=False)
        seconds = time.perf_counter() - started
    return {"rates": rates, "fit_seconds": seconds, "windows": rows.features.n_rows, "dim": rows.features.dim,
            "anon_mb": peak.anon, "total_mb": peak.total}


def in_memory_side(root: Path, epochs: int, threads: int) -> dict:
    """In a process of its own, the reference: the nets' features concatenated in memory and standardised at once by
    torch's float64 statistics (a float16 copy), batches indexed from it; windows/s of each epoch after the first
    and the process's peak memory."""
    torch.set_num_threads(threads)
    with PeakMemory() as peak:
        rows, _ = cached_rows(root)
        train_rows = np.flatnonzero((rows.split == "train")[rows.track_of_row])
        features = torch.from_numpy(np.concatenate(rows.features.parts, axis=1))
        stats = features[torch.from_numpy(train_rows)].double()
        mean, std = stats.mean(0).float(), stats.std(0, unbiased=False)
        std = torch.where(std < STD_FLOOR, torch.ones_like(std), std).float()
        del stats
        inputs = ((features.float() - mean) / std).to(features.dtype)
        labels = torch.from_numpy(rows.labels[rows.track_of_row])
        config = TransferConfig()
        torch.manual_seed(SEED)
        model = build_mlp(features.shape[1], len(GENRES), config.hidden, config.dropout).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, foreach=True)
        rates = []
        for epoch in range(epochs):
            chosen = capped_positions(rows.track_of_row[train_rows], CAP, np.random.default_rng([SEED, epoch]))
            positions = torch.from_numpy(train_rows[chosen])
            started = time.perf_counter()
            for batch in positions[torch.randperm(len(positions))].split(config.batch_size):
                loss = F.cross_entropy(model(inputs[batch].float()), labels[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            rates.append(len(positions) / (time.perf_counter() - started))
    return {"rates": rates[1:], "anon_mb": peak.anon, "total_mb": peak.total}


def in_own_process(func, *args: object) -> dict:
    """func(*args) in a spawned process (its peak memory its own)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(func, args)


def transfer_measurements(scratch: Path, reps: int, threads: int = 1, n_windows: int = 200_000, n_nets: int = 3,
                          dim: int = 256) -> list[Measurement]:
    """Out of core vs in memory: training windows/s (reps epochs after a warm-up each) and peak RSS, anonymous and
    total, on random caches of n_windows windows x n_nets nets x dim features written under scratch/transfer."""
    root = scratch / "transfer"
    write_caches(root, n_windows, n_nets, dim)
    out_of_core = in_own_process(out_of_core_side, root, reps + 1, CAP, threads)
    in_memory = in_own_process(in_memory_side, root, reps + 1, threads)
    shape = f"{n_windows:,} windows, {n_nets} nets x {dim} float16"
    return [
        Measurement(f"transfer MLP training, {shape}: read by batch from memory-mapped caches vs in memory",
                    "windows/s", out_of_core["rates"], "concatenated in memory (before)", in_memory["rates"],
                    f"at most {CAP} windows per track and epoch, {threads} thread(s)"),
        Measurement(f"transfer peak RSS anon, {shape}: out-of-core fit vs in-memory training", "MB",
                    [out_of_core["anon_mb"]], "in-memory concatenation, standardisation, epochs",
                    [in_memory["anon_mb"]], "out of core: fit_candidates with every aggregation"),
        Measurement(f"transfer peak RSS total (mapped cache pages included), {shape}", "MB",
                    [out_of_core["total_mb"]], "in memory", [in_memory["total_mb"]]),
    ]


def large_run(out: Path, n_windows: int, n_nets: int, dim: int, cap: int, threads: int) -> None:
    """Write the caches under `out` (refused when the disk is short) and print the out-of-core fit's wall time and
    peak memory."""
    needed = n_windows * n_nets * dim * 2
    out.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(out).free
    if free < 1.1 * needed:
        sys.exit(f"{out}: {free / 1e9:.1f} GB free, the caches need {needed / 1e9:.1f} GB plus 10 %; "
                 "choose another --out or fewer --windows")
    started = time.perf_counter()
    write_caches(out, n_windows, n_nets, dim)
    print(f"caches: {n_windows:,} windows x {n_nets} nets x {dim} float16 ({needed / 1e9:.1f} GB) written in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    run = in_own_process(out_of_core_side, out, 0, cap, threads)
    epoch = "every training window" if cap == 0 else f"at most {cap} windows per training track"
    print(f"out-of-core fit (1 epoch of {epoch}, aggregations {', '.join(AGGREGATIONS)}, {threads} thread(s)): "
          f"fit {run['fit_seconds']:.0f} s, process "
          f"{time.perf_counter() - started:.0f} s; peak RSS anon {run['anon_mb']:,.0f} MB, total (mapped cache "
          f"pages included) {run['total_mb']:,.0f} MB")


def main() -> None:
    """Print the transfer rows, or with --out, run the fit at the given size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=200_000)
    parser.add_argument("--nets", type=int, default=3)
    parser.add_argument("--dim", type=int, default=256, help="features per net")
    parser.add_argument("--reps", type=int, default=3, help="timed epochs per side")
    parser.add_argument("--threads", type=int, default=1, help="torch compute threads of each side")
    parser.add_argument("--out", type=Path, help="write the caches here and run only the out-of-core fit")
    parser.add_argument("--cap", type=int, default=0, help="with --out: training windows per track (0: all)")
    args = parser.parse_args()
    if args.out is not None:
        large_run(args.out, args.windows, args.nets, args.dim, args.cap, args.threads)
        return
    from suite import print_rows

    with tempfile.TemporaryDirectory() as tmp:
        print_rows(transfer_measurements(Path(tmp), args.reps, args.threads, args.windows, args.nets, args.dim))


if __name__ == "__main__":
    main()
