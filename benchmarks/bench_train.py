"""Benchmark: source-net training speed from the feature store against tensors already in memory, in one run.

    .venv/bin/python benchmarks/bench_train.py [--tracks 500] [--frames 1300] [--epochs 6] [--threads 2]

Writes N random log-mel "tracks" of 1,300 frames x 128 bands (FMA's 30-s size) as a feature store on disk,
then, for fp32 and for bf16 autocast + channels_last, measures training patches per second of the paper's
genre STN (batch 64, 43-frame crops):
  store        agf.training.train_net, crops read from memmaps by a persistent DataLoader worker
               (median of the epochs after the first, which includes warm-up)
  in-memory    the same model and train_step on one batch held in memory (median of runs before and after)
  interleaved  one loader batch, then one in-memory batch, on the same net, alternating: both sides see the
               same load from other jobs, so their ratio is the steadiest measure on a shared machine
and the DataLoader's own rate without training. Target (issue 5): store >= 0.9 x in-memory.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from agf.config import FeatureConfig, TrainConfig
from agf.store import FeatureStore
from agf.training import NetSpec, fit_band_norm, task_targets, train_net
from agf.training.data import CropDataset, PlanSampler, epoch_plan, make_loader
from agf.training.loop import epoch_seeds, make_optimizer, prepare_data, to_device, train_step
from agf.training.spec import build_net

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from store_fixtures import make_store  # noqa: E402

N_GENRES = 16
SEED = 0


def random_collection(root: Path, n_tracks: int, frames: int, n_mels: int) -> tuple[pd.DataFrame, FeatureStore]:
    """A track table (all 'train') and a store of random log-mel arrays."""
    rng = np.random.default_rng(0)
    track_ids = [f"{i:06d}" for i in range(n_tracks)]
    mels = {t: rng.normal(-40.0, 10.0, size=(frames, n_mels)) for t in track_ids}
    store = make_store(root / "features", mels, FeatureConfig(n_mels=n_mels))
    tracks = pd.DataFrame(
        {"track_id": track_ids, "genre": [f"genre{i % N_GENRES:02d}" for i in range(n_tracks)], "split": "train"}
    )
    return tracks, store


class InMemorySteps:
    """train_step on one batch of the store's crops held in memory: train_net's net, statistics and optimiser."""

    def __init__(self, config: TrainConfig, store: FeatureStore, track_ids: list[str]) -> None:
        torch.manual_seed(0)
        net = build_net(NetSpec("stn", ("g",)), {"g": N_GENRES}, 1.0, store.config.n_mels)
        net.band_norm.set_stats(*fit_band_norm(store, track_ids))
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        self.net = net.to(memory_format=memory_format).train()
        self.optimizer = make_optimizer(list(self.net.parameters()), config)
        first = track_ids[: config.batch_size]
        crops = np.stack([np.asarray(store.mel(t)[: config.patch_frames], dtype=np.float32) for t in first])
        self.x = torch.from_numpy(crops).unsqueeze(1).contiguous(memory_format=memory_format)
        self.y = torch.eye(N_GENRES)[torch.arange(config.batch_size) % N_GENRES]
        self.amp = config.amp
        self.rate(2)  # warm-up: oneDNN builds its kernels on first use

    def rate(self, steps: int) -> float:
        """Patches/s over `steps` training steps."""
        start = time.perf_counter()
        for _ in range(steps):
            train_step(self.net, self.optimizer, "g", self.x, self.y, self.amp)
        return steps * len(self.y) / (time.perf_counter() - start)


def loader_rate(tracks: pd.DataFrame, store: FeatureStore, config: TrainConfig, epochs: int) -> float:
    """Patches/s the DataLoader alone delivers (crops read and batched by the workers, no training)."""
    targets = {"g": task_targets(tracks, "g", None)}
    data = prepare_data(store, tracks, targets, ("g",), config.patch_frames)
    sampler = PlanSampler()
    dataset = CropDataset(data.mel_paths, data.targets, config.patch_frames)
    loader = make_loader(dataset, sampler, config.loader_workers, pin_memory=False)
    patches = 0
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        rng, _ = epoch_seeds(SEED, epoch)
        sampler.plan = epoch_plan(rng, data.train_rows, data.max_offsets, config.batch_size, "epoch")
        patches += sum(len(y) for _, _, y in loader)
    return patches / (time.perf_counter() - start)


def store_rates(tracks: pd.DataFrame, store: FeatureStore, config: TrainConfig, out_dir: Path) -> np.ndarray:
    """Patches/s train_net recorded for each epoch after the first."""
    targets = {"g": task_targets(tracks, "g", None)}
    train_net(NetSpec("stn", ("g",)), store, tracks, targets, config, SEED, out_dir, device="cpu", progress=False)
    curves = pd.read_csv(out_dir / "curves.csv")
    return curves.loc[curves["epoch"] > 1, "patches_per_s"].to_numpy()


def interleaved_ratio(
    tracks: pd.DataFrame, store: FeatureStore, config: TrainConfig, in_memory: InMemorySteps
) -> float:
    """Time per patch on in-memory batches over time per patch on loader batches, taken alternately."""
    data = prepare_data(store, tracks, {"g": task_targets(tracks, "g", None)}, ("g",), config.patch_frames)
    sampler = PlanSampler()
    dataset = CropDataset(data.mel_paths, data.targets, config.patch_frames)
    loader = make_loader(dataset, sampler, config.loader_workers, pin_memory=False)
    memory_seconds = loader_seconds = 0.0
    for epoch in range(1, config.epochs + 1):
        rng, _ = epoch_seeds(SEED, epoch)
        plan = epoch_plan(rng, data.train_rows, data.max_offsets, config.batch_size, "epoch")
        sampler.plan = [batch for batch in plan if len(batch.rows) == config.batch_size]
        batches = iter(loader)
        for _ in sampler.plan:
            start = time.perf_counter()
            _, x, y = next(batches)
            x, y = to_device(x, y, torch.device("cpu"), config.channels_last)
            train_step(in_memory.net, in_memory.optimizer, "g", x, y, config.amp)
            middle = time.perf_counter()
            in_memory.rate(1)
            if epoch > 1:
                loader_seconds += middle - start
                memory_seconds += time.perf_counter() - middle
    return memory_seconds / loader_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=500)
    parser.add_argument("--frames", type=int, default=1300)
    parser.add_argument("--epochs", type=int, default=6, help="epochs; the first (warm-up) is not counted")
    parser.add_argument("--threads", type=int, default=2, help="torch compute threads of the main process")
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    n_mels = 128
    print(f"torch {torch.__version__}, {args.threads} compute thread(s), {args.workers} loader worker(s), "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")

    base = TrainConfig(epochs=args.epochs, loader_workers=args.workers)
    modes = {"fp32": (False, False), "bf16+channels_last": (True, True)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        tracks, store = random_collection(root, args.tracks, args.frames, n_mels)
        steps = args.tracks // base.batch_size
        print(f"store: {args.tracks} tracks x {args.frames} frames x {n_mels} bands; {steps} batches of "
              f"{base.batch_size} per epoch, {args.epochs} epochs")
        print(f"{'mode':<20} {'store p/s':>10} {'memory p/s':>11} {'ratio':>6} {'interleaved':>12}")
        memory_rates = {}
        for name, (amp, channels_last) in modes.items():
            config = dataclasses.replace(base, amp=amp, channels_last=channels_last)
            in_memory = InMemorySteps(config, store, tracks["track_id"].tolist())
            before = [in_memory.rate(steps) for _ in range(3)]
            from_store = float(np.median(store_rates(tracks, store, config, root / name)))
            memory_rates[name] = float(np.median(before + [in_memory.rate(steps) for _ in range(3)]))
            ratio = from_store / memory_rates[name]
            paired = interleaved_ratio(tracks, store, config, in_memory)
            verdict = "ok" if min(ratio, paired) >= 0.9 else "BELOW 0.9"
            rates = f"{from_store:>10.1f} {memory_rates[name]:>11.1f}"
            print(f"{name:<20} {rates} {ratio:>6.2f} {paired:>12.2f}  {verdict}")
        alone = loader_rate(tracks, store, base, args.epochs)
        print(f"DataLoader alone (no training): {alone:.0f} patches/s")
        speedup = memory_rates["bf16+channels_last"] / memory_rates["fp32"]
        print(f"bf16+channels_last vs fp32 (in memory): {speedup:.2f}x; load average now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
