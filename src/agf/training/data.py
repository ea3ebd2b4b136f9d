"""Training data: crop plans drawn per epoch from seeded generators, and a DataLoader reading crops from the
feature store's mapped packs.

Every random choice (track order, crop offsets, the task of an epoch) is made in the main process from
numpy Generators seeded by (seed, epoch), so a resumed run sees exactly the crops of an uninterrupted one;
loader workers only read the planned crops.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from agf.config import CROP_SECONDS, MAX_CROPS_PER_TRACK
from agf.parallel import can_start_processes

# Validation crops start at these fractions of a track's last possible offset (0.5 = the centre crop).
VAL_CROP_FRACTIONS: tuple[float, ...] = (0.25, 0.5, 0.75)
# Batches each loader worker prepares ahead.
PREFETCH_BATCHES = 4


@dataclass(frozen=True)
class Batch:
    """One batch of one task: dataset rows and the first frame of each row's crop."""

    task: str
    rows: np.ndarray
    offsets: np.ndarray


class CropDataset(Dataset):
    """Crops of a fixed list of tracks with per-task target rows; an item is a whole Batch.

    `mels`: each row's (frames, n_mels) float16 log-mel (FeatureStore.track_mels: views of the mapped packs).
    Returns (task, x float32 (B, 1, patch_frames, n_mels), y float32 (B, K)). Rows without targets for a
    task hold NaN and are never planned for it.
    """

    def __init__(self, mels: Sequence[np.ndarray], targets: dict[str, np.ndarray], patch_frames: int) -> None:
        self.mels = mels
        self.targets = targets
        self.patch_frames = patch_frames

    def __getitem__(self, batch: Batch) -> tuple[str, torch.Tensor, torch.Tensor]:
        length = self.patch_frames
        crops = np.stack(
            [self.mels[row][start : start + length] for row, start in zip(batch.rows.tolist(), batch.offsets.tolist())]
        )
        # float16 -> float32 in torch: exact, and 20x faster than NumPy's conversion (benchmarks/bench_store_scale.py)
        x = torch.from_numpy(crops).float().unsqueeze(1)
        return batch.task, x, torch.from_numpy(self.targets[batch.task][batch.rows])


class PlanSampler(Sampler[Batch]):
    """Yields the batches of the current plan; assign `plan` before each pass (works with persistent workers)."""

    def __init__(self) -> None:
        self.plan: list[Batch] = []

    def __iter__(self):
        return iter(self.plan)

    def __len__(self) -> int:
        return len(self.plan)


def crops_per_track(frames: np.ndarray, frames_per_second: float, setting: int) -> np.ndarray:
    """Training crops per epoch of tracks of `frames` log-mel frames (train.crops_per_track): `setting` each when
    it is at least 1; at 0, one per CROP_SECONDS of audio, rounded down, at least 1, at most MAX_CROPS_PER_TRACK
    (a 30-s clip 1, a 3-minute track 6)."""
    frames = np.asarray(frames)
    if setting >= 1:
        return np.full(frames.shape, setting, dtype=np.int64)
    seconds = frames / frames_per_second
    return np.clip(np.floor(seconds / CROP_SECONDS + 1e-9), 1, MAX_CROPS_PER_TRACK).astype(np.int64)


def shuffled_batches(
    rng: np.random.Generator, task: str, rows: np.ndarray, max_offsets: np.ndarray, batch_size: int,
    crops: np.ndarray | None = None,
) -> list[Batch]:
    """The rows of one task in random order with one random crop each, cut into batches; with `crops` (per
    dataset row), each row comes crops[row] times, each with its own random offset.

    A last batch of one example is dropped: batch-norm cannot train on it.
    """
    if crops is not None:
        rows = np.repeat(rows, crops[rows])  # one crop each: the rows themselves, so the draws are as without
    order = rng.permutation(rows)
    offsets = rng.integers(0, max_offsets[order] + 1)
    batches = [
        Batch(task, order[start : start + batch_size], offsets[start : start + batch_size])
        for start in range(0, len(order), batch_size)
    ]
    return [batch for batch in batches if len(batch.rows) > 1]


def epoch_plan(
    rng: np.random.Generator,
    task_rows: dict[str, np.ndarray],
    max_offsets: np.ndarray,
    batch_size: int,
    schedule: Literal["epoch", "batch"],
    crops: np.ndarray | None = None,
) -> list[Batch]:
    """The batches of one epoch; `crops`: crops of each dataset row per epoch (crops_per_track; None: one).

    'epoch': one task drawn uniformly trains the whole epoch (the authors' code). 'batch': every task's rows
    are batched and the batches of all tasks are interleaved at random (each batch trains one task).
    """
    tasks = sorted(task_rows)
    if schedule == "epoch":
        task = tasks[int(rng.integers(len(tasks)))]
        return shuffled_batches(rng, task, task_rows[task], max_offsets, batch_size, crops)
    batches = [
        batch
        for task in tasks
        for batch in shuffled_batches(rng, task, task_rows[task], max_offsets, batch_size, crops)
    ]
    return [batches[i] for i in rng.permutation(len(batches))]


def rank_batches(plan: list[Batch], rank: int, world: int) -> list[Batch]:
    """Process `rank`'s batches of an epoch plan trained by `world` data-parallel processes.

    In plan order, each task's batches are grouped `world` at a time into steps (a task's last group of fewer
    is dropped) and process `rank` takes the rank-th batch of every step: all processes take as many batches,
    and the i-th of each trains the same task, as one optimiser step over all of them needs. One process: the
    plan itself.
    """
    pending: dict[str, list[Batch]] = {}
    mine = []
    for batch in plan:
        group = pending.setdefault(batch.task, [])
        group.append(batch)
        if len(group) == world:
            mine.append(group[rank])
            group.clear()
    return mine


def fixed_offsets(max_offsets: np.ndarray) -> np.ndarray:
    """(tracks, crops) validation crop offsets of tracks whose last possible crop starts at `max_offsets`."""
    return np.rint(np.outer(max_offsets, VAL_CROP_FRACTIONS)).astype(np.int64)


def validation_plan(task: str, rows: np.ndarray, max_offsets: np.ndarray, batch_size: int) -> list[Batch]:
    """Fixed crops (VAL_CROP_FRACTIONS) of every validation row, track-major, in batches."""
    crop_rows = np.repeat(rows, len(VAL_CROP_FRACTIONS))
    offsets = fixed_offsets(max_offsets[rows]).ravel()
    return [
        Batch(task, crop_rows[start : start + batch_size], offsets[start : start + batch_size])
        for start in range(0, len(crop_rows), batch_size)
    ]


def make_loader(dataset: CropDataset, sampler: PlanSampler, workers: int, pin_memory: bool) -> DataLoader:
    """A DataLoader over planned batches; workers (if any) persist across epochs and prefetch.

    Its own generator keeps the loader from drawing on torch's global RNG (dropout), so resuming is exact. A
    process that may not start processes (a dask worker) reads the crops itself: the same batches.
    """
    workers = workers if can_start_processes() else 0
    return DataLoader(
        dataset,
        sampler=sampler,
        batch_size=None,
        num_workers=workers,
        persistent_workers=workers > 0,
        prefetch_factor=PREFETCH_BATCHES if workers > 0 else None,
        pin_memory=pin_memory,
        generator=torch.Generator(),
    )
