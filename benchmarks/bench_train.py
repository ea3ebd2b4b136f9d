"""Source-net training speed from the feature store against tensors already in memory, fp32 and bf16 autocast +
channels_last.

    .venv/bin/python benchmarks/bench_train.py [--tracks 500] [--epochs 6] [--threads 2]

Writes N random log-mel "tracks" of 1,300 frames x 128 bands (FMA's 30-s size) as a feature store on disk,
then measures training patches per second of the paper's genre STN (batch 64, 43-frame crops):
  store      agf.training.train_net, crops read from memmaps by a persistent DataLoader worker (the epochs
             after the first, which includes warm-up)
  in-memory  the same model and train_step on one batch held in memory (runs before and after, after 2 warm-up
             steps)
  alternating one loader batch, then one in-memory batch, on the same net, per epoch: both sides see the same
             load from other jobs, so their ratio is the steadiest measure on a shared machine
Target (issue 5): store >= 0.9 x in-memory. With a CUDA device, train_net's store rate there fills the GPU column.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

from measure import Measurement

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from agf.config import FeatureConfig, TrainConfig  # noqa: E402
from agf.store import FeatureStore  # noqa: E402
from agf.training import NetSpec, fit_band_norm, task_targets, train_net  # noqa: E402
from agf.training.data import CropDataset, PlanSampler, epoch_plan, make_loader  # noqa: E402
from agf.training.loop import epoch_seeds, make_optimizer, prepare_data, to_device, train_step  # noqa: E402
from agf.training.spec import build_net  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from store_fixtures import make_store  # noqa: E402

N_GENRES = 16
N_MELS = 128
SEED = 0
MODES = {"fp32": (False, False), "bf16 autocast + channels_last": (True, True)}


def random_collection(root: Path, n_tracks: int, frames: int) -> tuple[pd.DataFrame, FeatureStore]:
    """A track table (all 'train') and a store of random log-mel arrays."""
    rng = np.random.default_rng(0)
    track_ids = [f"{i:06d}" for i in range(n_tracks)]
    mels = {t: rng.normal(-40.0, 10.0, size=(frames, N_MELS)) for t in track_ids}
    store = make_store(root / "features", mels, FeatureConfig(n_mels=N_MELS))
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


def store_rates(tracks: pd.DataFrame, store: FeatureStore, config: TrainConfig, out_dir: Path,
                device: str = "cpu") -> list[float]:
    """Patches/s train_net recorded for each epoch after the first."""
    targets = {"g": task_targets(tracks, "g", None)}
    train_net(NetSpec("stn", ("g",)), store, tracks, targets, config, SEED, out_dir, device=device, progress=False)
    curves = pd.read_csv(out_dir / "curves.csv")
    return curves.loc[curves["epoch"] > 1, "patches_per_s"].tolist()


def interleaved_rates(tracks: pd.DataFrame, store: FeatureStore, config: TrainConfig,
                      in_memory: InMemorySteps) -> tuple[list[float], list[float]]:
    """Per epoch after the first, patches/s of loader batches (read by the DataLoader worker, then a step) and of
    in-memory batches, taken alternately on the same net: both see the same load from other jobs."""
    data = prepare_data(store, tracks, {"g": task_targets(tracks, "g", None)}, ("g",), config.patch_frames)
    sampler = PlanSampler()
    loader = make_loader(CropDataset(data.mels, data.targets, config.patch_frames), sampler,
                         config.loader_workers, pin_memory=False)
    from_loader, from_memory = [], []
    for epoch in range(1, config.epochs + 1):
        rng, _ = epoch_seeds(SEED, epoch)
        plan = epoch_plan(rng, data.train_rows, data.max_offsets, config.batch_size, "epoch")
        sampler.plan = [batch for batch in plan if len(batch.rows) == config.batch_size]
        batches = iter(loader)
        loader_seconds = memory_seconds = 0.0
        for _ in sampler.plan:
            start = time.perf_counter()
            _, x, y = next(batches)
            x, y = to_device(x, y, torch.device("cpu"), config.channels_last)
            train_step(in_memory.net, in_memory.optimizer, "g", x, y, config.amp)
            middle = time.perf_counter()
            in_memory.rate(1)
            loader_seconds += middle - start
            memory_seconds += time.perf_counter() - middle
        if epoch > 1:
            patches = len(sampler.plan) * config.batch_size
            from_loader.append(patches / loader_seconds)
            from_memory.append(patches / memory_seconds)
    return from_loader, from_memory


def train_measurements(tracks: pd.DataFrame, store: FeatureStore, root: Path, epochs: int,
                       threads: int) -> list[Measurement]:
    """Store vs in-memory for each mode, and bf16 + channels_last vs fp32 in memory; on CUDA too when present."""
    torch.set_num_threads(threads)
    base = TrainConfig(epochs=epochs, loader_workers=1)
    steps = len(tracks) // base.batch_size
    rows, memory = [], {}
    for name, (amp, channels_last) in MODES.items():
        config = dataclasses.replace(base, amp=amp, channels_last=channels_last)
        in_memory = InMemorySteps(config, store, tracks["track_id"].tolist())
        before = [in_memory.rate(steps) for _ in range(3)]
        from_store = store_rates(tracks, store, config, root / name)
        memory[name] = before + [in_memory.rate(steps) for _ in range(3)]
        gpu = (float(np.median(store_rates(tracks, store, config, root / f"{name}-cuda", "cuda")))
               if torch.cuda.is_available() else None)
        rows.append(Measurement(f"training {name}: from the store vs in memory, {threads} threads", "patches/s",
                                from_store, "in-memory train_step", memory[name], "target ratio >= 0.9", gpu))
        loader_batches, memory_batches = interleaved_rates(tracks, store, config, in_memory)
        rows.append(Measurement(f"training {name}: loader batches vs in-memory batches, alternating", "patches/s",
                                loader_batches, "in-memory batches", memory_batches,
                                "the steadiest ratio on a shared machine"))
    rows.append(Measurement("training bf16 autocast + channels_last vs fp32, in memory", "patches/s",
                            memory["bf16 autocast + channels_last"], "fp32", memory["fp32"]))
    return rows


def main() -> None:
    """Print the training rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=6, help="epochs; the first (warm-up) is not counted")
    parser.add_argument("--threads", type=int, default=2, help="torch compute threads of the main process")
    args = parser.parse_args()
    from suite import print_rows

    with tempfile.TemporaryDirectory() as tmp:
        tracks, store = random_collection(Path(tmp), args.tracks, 1300)
        print_rows(train_measurements(tracks, store, Path(tmp), args.epochs, args.threads))


if __name__ == "__main__":
    main()
