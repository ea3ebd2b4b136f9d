"""Training of the source nets (STN, MTN, wSTN): deterministic per seed, resumable, bf16 on CPU and CUDA.

One call trains one net into one output directory:
    checkpoint.pt        latest state, rewritten atomically after every epoch (resume point)
    curves.csv           one row per (epoch, task): losses, genre accuracy, speed
    tensorboard/         the same curves, when TensorBoard is installed
    model.safetensors    the best epoch's weights, and net.json with the meta (via agf.models.save_net): the
                         net carries the settings its input needs (features, patch_frames, genres)
    done.json            the completion marker (agf.workdir), written last

The best epoch is the one with the lowest mean validation loss over the net's tasks (the last epoch when no
task has validation tracks); only training tracks are fitted on. With train.patience, training stops once that
loss has not improved for `patience` epochs (train.epochs is then a cap). Each training track gives
train.crops_per_track crops per epoch (0: from its length, agf.training.data.crops_per_track).

Under torchrun (agf.training.distributed) every process trains the same net in DistributedDataParallel on its
share of each epoch's batches and validates its share of the tracks; rank 0 alone writes the files above.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from agf.config import TrainConfig, config_to_dict, key_settings
from agf.datasets.table import TRAIN, VAL, genre_list, split_mask
from agf.device import resolve_device
from agf.errors import TrainingDiverged, TrainingError
from agf.fileio import stable_key, write_text_atomic
from agf.models import MTN, STN, count_params, save_net, soft_cross_entropy
from agf.models.losses import l2_parameters, l2_term
from agf.store import FeatureStore, TrackMels
from agf.tasks import GENRE_TASK
from agf.training import distributed
from agf.training.augment import augment_batch, augment_rng
from agf.training.checkpoint import CHECKPOINT_FILE, RunState, restore, save_checkpoint
from agf.training.data import (
    VAL_CROP_FRACTIONS,
    Batch,
    CropDataset,
    PlanSampler,
    crops_per_track,
    epoch_plan,
    make_loader,
    rank_batches,
    validation_plan,
)
from agf.training.normalization import fit_band_norm
from agf.training.spec import NetSpec, build_net, net_width, training_settings
from agf.workdir import clear_done, mark_done, read_marker

CURVES_FILE = "curves.csv"
CURVE_COLUMNS: tuple[str, ...] = (
    "epoch",
    "task",
    "train_loss",
    "val_loss",
    "val_accuracy",
    "val_tracks",
    "patches_per_s",
    "seconds",
)
# Validation batches are this many training batches (no gradients to keep).
EVAL_BATCH_FACTOR = 4


@dataclass(frozen=True)
class TrainResult:
    """What a train_net call left in out_dir."""

    out_dir: Path
    epochs_done: int
    best_epoch: int
    # The best epoch's selection score (mean validation loss over tasks with validation targets); NaN when
    # no task has validation targets and the last epoch is taken.
    best_score: float
    param_count: int
    finished: bool


@dataclass(frozen=True)
class TrainingData:
    """The tracks one net sees: a dataset row per track, per-task targets, and each task's train/val rows."""

    track_ids: list[str]
    mels: TrackMels
    # Last valid crop start per row (frames - patch_frames).
    max_offsets: np.ndarray
    # task -> (rows, K) float32; NaN rows for tracks without a target of that task.
    targets: dict[str, np.ndarray]
    train_rows: dict[str, np.ndarray]
    val_rows: dict[str, np.ndarray]
    # Every usable training-split track: the tracks the band statistics are fitted on.
    band_track_ids: list[str]
    # Training crops of each row per epoch (train.crops_per_track; from frames and the setting, so the digest's
    # offsets and the run key's settings cover it).
    crops: np.ndarray | None = None

    def digest(self) -> str:
        """A hash of everything training reads from the data, so a checkpoint is only resumed on the same data."""
        sha = hashlib.sha256("\n".join(self.track_ids).encode())
        sha.update(self.max_offsets.tobytes())
        for task in sorted(self.targets):
            sha.update(task.encode())
            sha.update(np.ascontiguousarray(self.targets[task]).tobytes())
            sha.update(self.train_rows[task].tobytes())
        return sha.hexdigest()[:16]


def prepare_data(
    store: FeatureStore,
    tracks: pd.DataFrame,
    targets: dict[str, pd.DataFrame],
    tasks: tuple[str, ...],
    patch_frames: int,
    crops_setting: int = 1,
) -> TrainingData:
    """Align the usable train/val tracks long enough for a patch with each task's targets; each row's training
    crops per epoch from `crops_setting` (train.crops_per_track) and its length."""
    index = store.index()
    long_enough = index[index["frames"] >= patch_frames]
    frames = dict(zip(long_enough["track_id"], long_enough["frames"].astype(int)))
    chosen = tracks[split_mask(tracks, TRAIN, VAL) & tracks["track_id"].isin(frames)]
    track_ids = chosen["track_id"].tolist()
    is_train = split_mask(chosen, TRAIN).to_numpy()
    arrays, train_rows, val_rows = {}, {}, {}
    for task in tasks:
        if task not in targets:
            raise TrainingError(f"no targets given for task {task!r}; pass targets[{task!r}] (see task_targets)")
        aligned = targets[task].reindex(pd.Index(track_ids)).to_numpy(dtype=np.float32)
        has_target = ~np.isnan(aligned).any(axis=1)
        train_rows[task] = np.flatnonzero(has_target & is_train)
        val_rows[task] = np.flatnonzero(has_target & ~is_train)
        if len(train_rows[task]) < 2:
            raise TrainingError(
                f"task {task!r}: {len(train_rows[task])} training track(s) with targets and ok features of at "
                f"least {patch_frames} frames in {store.root} (2 needed); "
                "check the split, `agf prepare` and the targets"
            )
        arrays[task] = aligned
    row_frames = np.array([frames[t] for t in track_ids], dtype=np.int64)
    frames_per_second = store.config.sample_rate / store.config.hop_length
    return TrainingData(
        track_ids=track_ids,
        mels=store.track_mels(track_ids),
        max_offsets=row_frames - patch_frames,
        targets=arrays,
        train_rows=train_rows,
        val_rows=val_rows,
        band_track_ids=[t for t, train in zip(track_ids, is_train) if train],
        crops=crops_per_track(row_frames, frames_per_second, crops_setting),
    )


def task_logits(net: torch.nn.Module, x: torch.Tensor, task: str) -> torch.Tensor:
    """Logits of one task of an STN or MTN, or of one in DistributedDataParallel (an STN has only its own)."""
    return net(x, task) if isinstance(distributed.unwrap(net), MTN) else net(x)


def task_parameters(net: STN | MTN, task: str) -> list[torch.nn.Parameter]:
    """The parameters a task's loss reaches: all of an STN; an MTN's shared ones plus the task's own branch."""
    if not isinstance(net, MTN):
        return list(net.parameters())
    others = tuple(f"{part}.{other}." for other in net.task_outputs if other != task for part in ("trunks", "heads"))
    return [param for name, param in net.named_parameters() if not name.startswith(others)]


def task_l2_parameters(net: STN | MTN, task: str) -> list[torch.nn.Parameter]:
    """The parameters a task's loss reaches that the authors' L2 term covers (models.losses.l2_parameters)."""
    reached = {id(param) for param in task_parameters(net, task)}
    return [param for param in l2_parameters(net) if id(param) in reached]


def make_optimizer(params: list[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Adam:
    """Adam with agf's L2 (weight_decay) on convolution and dense weights only, not on biases or batch-norm."""
    weights = [p for p in params if p.ndim > 1]
    others = [p for p in params if p.ndim <= 1]
    groups = [{"params": weights, "weight_decay": config.weight_decay}, {"params": others, "weight_decay": 0.0}]
    return torch.optim.Adam(groups, lr=config.lr)


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on the device's type (CPU or CUDA) when enabled."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def to_device(
    x: torch.Tensor, y: torch.Tensor, device: torch.device, channels_last: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move a batch to the device (asynchronously from pinned memory), the input channels_last if asked."""
    x = x.to(device, non_blocking=True)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y.to(device, non_blocking=True)


def train_step(
    net: torch.nn.Module, optimizer: torch.optim.Optimizer, task: str, x: torch.Tensor, y: torch.Tensor, amp: bool,
    l2_loss: float = 0.0,
) -> tuple[float, int]:
    """One Adam step on one batch of one task (per process, data-parallel), on the loss plus, with `l2_loss`, the
    authors' L2 term over the task's parameters (task_l2_parameters); return the cross-entropy (without the term)
    summed over the step's examples of all processes, and their number. A non-finite sum (any process) is returned
    without a step on every process."""
    with autocast(x.device, amp):
        logits = task_logits(net, x, task)
    loss = soft_cross_entropy(logits, y)
    total, count = distributed.sum_floats([loss.item() * len(y), len(y)])
    if math.isfinite(total):
        if l2_loss:
            loss = loss + l2_term(task_l2_parameters(distributed.unwrap(net), task), l2_loss).to(loss.device)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return total, int(count)


def train_epoch(
    net: torch.nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    loader: DataLoader,
    device: torch.device,
    config: TrainConfig,
    epoch: int,
    augment: np.random.Generator,
    bar: tqdm,
) -> dict[str, tuple[float, int]]:
    """Train on every batch the loader yields, augmented (config's settings) with draws from `augment`; return
    task -> (mean loss, patches) over all processes. NaN/inf loss: TrainingDiverged."""
    net.train()
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    start = time.perf_counter()
    for number, (task, x, y) in enumerate(loader, 1):
        x, y = augment_batch(*to_device(x, y, device, config.channels_last), config, augment)
        total, count = train_step(net, optimizers[task], task, x, y, config.amp, config.l2_loss)
        if not math.isfinite(total):
            raise TrainingDiverged(epoch, task, f"training batch {number}", total / count, config.lr)
        sums[task] = sums.get(task, 0.0) + total
        counts[task] = counts.get(task, 0) + count
        rate = sum(counts.values()) / (time.perf_counter() - start)
        bar.update()
        bar.set_postfix(task=task, loss=f"{total / count:.3f}", patches_s=f"{rate:.0f}")
    return {task: (sums[task] / counts[task], counts[task]) for task in sums}


@torch.no_grad()
def validate(
    net: STN | MTN, loader: DataLoader, device: torch.device, config: TrainConfig, n_crops: int
) -> tuple[float, float]:
    """(mean loss over all crops, track accuracy) of the loader's batches, which hold n_crops crops per track,
    and of the other processes' (each validates its share of the tracks).

    A track's prediction is the argmax of its crops' mean probabilities; its truth, the argmax of its target.
    Both are NaN when there is nothing to evaluate.
    """
    net.eval()
    loss_sum, probs, targets = 0.0, [], []
    for task, x, y in loader:
        x, y = to_device(x, y, device, config.channels_last)
        with autocast(device, config.amp):
            logits = task_logits(net, x, task)
        loss_sum += soft_cross_entropy(logits, y).item() * len(y)
        probs.append(torch.softmax(logits.float(), dim=-1).cpu())
        targets.append(y.cpu())
    crops = correct = 0
    if probs:
        crop_probs, crop_targets = torch.cat(probs), torch.cat(targets)
        track_probs = crop_probs.view(-1, n_crops, crop_probs.shape[1]).mean(dim=1)
        crops = len(crop_probs)
        correct = int((track_probs.argmax(dim=1) == crop_targets[::n_crops].argmax(dim=1)).sum())
    loss_sum, crops, correct = distributed.sum_floats([loss_sum, crops, correct])
    if not crops:
        return math.nan, math.nan
    # float32, as the mean of a float32 tensor of hits
    return loss_sum / crops, float(np.float32(correct) / np.float32(crops // n_crops))


def epoch_seeds(seed: int, epoch: int, rank: int = 0) -> tuple[np.random.Generator, int]:
    """The epoch's numpy Generator (order, crops, task draw: the same on every process) and the torch seed
    (dropout) of process `rank` (rank 0's is the single-process one), from (seed, epoch, rank) only."""
    entropy = [seed, epoch, 1] + ([rank] if rank else [])
    torch_seed = int(np.random.SeedSequence(entropy).generate_state(1)[0])
    return np.random.default_rng([seed, epoch]), torch_seed


def write_curves(out_dir: Path, rows: list[dict[str, Any]]) -> None:
    """curves.csv with every epoch's rows so far, written atomically."""
    write_text_atomic(out_dir / CURVES_FILE, pd.DataFrame(rows, columns=list(CURVE_COLUMNS)).to_csv(index=False))


def tensorboard_writer(out_dir: Path, first_epoch: int) -> Any:
    """A TensorBoard SummaryWriter under out_dir/tensorboard (events from first_epoch on replaced), or None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out_dir / "tensorboard"), purge_step=first_epoch)


def log_tensorboard(writer: Any, rows: list[dict[str, Any]]) -> None:
    """Add an epoch's curve rows as scalars task/column."""
    if writer is None:
        return
    for row in rows:
        for column in ("train_loss", "val_loss", "val_accuracy", "patches_per_s"):
            writer.add_scalar(f"{row['task']}/{column}", row[column], row["epoch"])
    writer.flush()


def finished_result(out_dir: Path, run_key: str) -> TrainResult | None:
    """The result its marker records; None when unfinished; TrainingError when it is another run's."""
    done = read_marker(out_dir)
    if done is None:
        return None
    if done["key"] != run_key:
        raise TrainingError(
            f"{out_dir}: holds a finished net of other settings or data; use a new output directory or delete it"
        )
    score = math.nan if done["best_score"] is None else done["best_score"]
    return TrainResult(out_dir, done["epochs"], done["best_epoch"], score, done["param_count"], True)


def run_epoch(
    epoch: int,
    net: torch.nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    loader: DataLoader,
    sampler: PlanSampler,
    data: TrainingData,
    val_plans: dict[str, list[Batch]],
    device: torch.device,
    config: TrainConfig,
    seed: int,
    progress: bool,
) -> list[dict[str, Any]]:
    """Train one epoch, validate every task; return its curve rows (one per task).

    `net` may be in DistributedDataParallel: then this process trains its share of the epoch's batches and
    `val_plans` hold its share of the validation tracks; the rows are the same on every process.
    """
    rank, world = distributed.rank(), distributed.world_size()
    rng, torch_seed = epoch_seeds(seed, epoch, rank)
    torch.manual_seed(torch_seed)
    plan = epoch_plan(rng, data.train_rows, data.max_offsets, config.batch_size, config.schedule, data.crops)
    sampler.plan = rank_batches(plan, rank, world)
    start = time.perf_counter()
    description = f"epoch {epoch}/{config.epochs}"
    augment = augment_rng(seed, epoch, rank)
    with tqdm(total=len(sampler.plan), desc=description, unit="batch", disable=not progress) as bar:
        trained = train_epoch(net, optimizers, loader, device, config, epoch, augment, bar)
    train_seconds = time.perf_counter() - start
    patches_per_s = sum(patches for _, patches in trained.values()) / train_seconds
    module = distributed.unwrap(net)
    distributed.sync_buffers(module)
    rows = []
    for task, plan in val_plans.items():
        sampler.plan = plan
        val_loss, val_accuracy = validate(module, loader, device, config, len(VAL_CROP_FRACTIONS))
        if len(data.val_rows[task]) and not math.isfinite(val_loss):
            raise TrainingDiverged(epoch, task, "validation", val_loss, config.lr)
        rows.append(
            {
                "epoch": epoch,
                "task": task,
                "train_loss": trained.get(task, (math.nan, 0))[0],
                "val_loss": val_loss,
                "val_accuracy": val_accuracy if task == GENRE_TASK else math.nan,
                "val_tracks": len(data.val_rows[task]),
                "patches_per_s": patches_per_s,
            }
        )
    seconds = time.perf_counter() - start
    return [{**row, "seconds": seconds} for row in rows]


def stopped_early(run: RunState, patience: int) -> bool:
    """Whether early stopping ends the run after its last recorded epoch: `patience` (> 0) epochs since the best
    one. Derived from the run state alone (the checkpoint's), so a resumed run stops where an uninterrupted one
    does. Without validation targets every epoch is the best so far (the last epoch is kept): never."""
    return patience > 0 and run.epoch - run.best_epoch >= patience


def net_meta(
    spec: NetSpec,
    net: STN | MTN,
    tracks: pd.DataFrame,
    data: TrainingData,
    config: TrainConfig,
    seed: int,
    store: FeatureStore,
    run: RunState,
) -> dict[str, Any]:
    """The meta saved in net.json: the input it takes, what was trained on what, how the best epoch was chosen."""
    without_val = [task for task in spec.tasks if len(data.val_rows[task]) == 0]
    with_val = [task for task in spec.tasks if task not in without_val]
    return {
        "spec": asdict(spec),
        "width": net.width,
        "genres": genre_list(tracks),
        "features": key_settings(store.config),
        "patch_frames": config.patch_frames,
        "task_outputs": {task: int(data.targets[task].shape[1]) for task in spec.tasks},
        "band_mean": net.band_norm.mean.tolist(),
        "band_std": net.band_norm.std.tolist(),
        "epochs": run.epoch,
        "max_epochs": config.epochs,
        # Why training ended: early stopping (train.patience) or the epoch budget.
        "stopped_early": stopped_early(run, config.patience),
        "best_epoch": run.best_epoch,
        "param_count": count_params(net),
        "matched_params": spec.matched_params,
        "selection": (
            "last epoch: train.select_epoch = 'last' (a fixed epoch budget)"
            if config.select_epoch == "last"
            else f"lowest mean validation loss over tasks {','.join(with_val)}"
            if with_val
            else "last epoch: no task has validation targets"
        ),
        "tasks_without_val_targets": without_val,
        "train_tracks": {task: len(data.train_rows[task]) for task in spec.tasks},
        "val_tracks": {task: len(data.val_rows[task]) for task in spec.tasks},
        "train_config": config_to_dict(config),
        "seed": seed,
        "processes": distributed.world_size(),  # > 1: trained data-parallel (torchrun)
    }


def train_net(
    spec: NetSpec,
    store: FeatureStore,
    tracks: pd.DataFrame,
    targets: dict[str, pd.DataFrame],
    config: TrainConfig,
    seed: int,
    out_dir: Path,
    device: str | torch.device = "auto",
    progress: bool = True,
    stop_after_epoch: int | None = None,
) -> TrainResult:
    """Train one net with the run seed `seed` on the 'train' tracks (ok in the store, with targets), validate on
    the 'val' ones.

    Resumes from out_dir/checkpoint.pt; returns at once when out_dir is finished. stop_after_epoch
    returns right after that epoch's checkpoint (a simulated kill). See the module docstring for the files.
    In a process group (torchrun), every process calls this with the same arguments and out_dir on storage they
    share; see agf.training.distributed.
    """
    out_dir = Path(out_dir)
    if config.epochs < 1:
        raise TrainingError(f"train.epochs must be at least 1, got {config.epochs}")
    if config.patience and config.select_epoch != "best_val":
        raise TrainingError("train.patience needs train.select_epoch = 'best_val' (early stopping selects on "
                            "validation)")
    data = prepare_data(store, tracks, targets, spec.tasks, config.patch_frames, config.crops_per_track)
    run_key = stable_key("train-net", asdict(spec), training_settings(config, seed), data.digest())
    finished = finished_result(out_dir, run_key)
    if finished is not None:
        return finished
    target_device = distributed.local_device(resolve_device(device))
    rank, world, main = distributed.rank(), distributed.world_size(), distributed.is_main()
    torch.manual_seed(seed)
    task_outputs = {task: int(data.targets[task].shape[1]) for task in spec.tasks}
    net = build_net(spec, task_outputs, net_width(spec, config), store.config.n_mels)
    checkpoint_path = out_dir / CHECKPOINT_FILE
    resuming = distributed.agree(checkpoint_path.exists())
    if not resuming and main:  # the other processes get rank 0's statistics when the net is wrapped
        net.band_norm.set_stats(*fit_band_norm(store, data.band_track_ids))
    memory_format = torch.channels_last if config.channels_last else torch.preserve_format
    net = net.to(target_device, memory_format=memory_format)
    optimizers = {task: make_optimizer(task_parameters(net, task), config) for task in spec.tasks}
    run = RunState()
    if resuming:
        run = restore(checkpoint_path, target_device, run_key, net, optimizers)
    model = distributed.wrap(net, target_device, find_unused=len(spec.tasks) > 1)

    sampler = PlanSampler()
    dataset = CropDataset(data.mels, data.targets, config.patch_frames)
    loader = make_loader(dataset, sampler, config.loader_workers, pin_memory=target_device.type == "cuda")
    eval_batch = config.batch_size * EVAL_BATCH_FACTOR
    val_plans = {
        task: validation_plan(task, distributed.shard(data.val_rows[task], rank, world), data.max_offsets, eval_batch)
        for task in spec.tasks
    }
    writer = tensorboard_writer(out_dir, run.epoch + 1) if main else None
    try:
        for epoch in range(run.epoch + 1, config.epochs + 1):
            if stopped_early(run, config.patience):
                break
            rows = run_epoch(
                epoch, model, optimizers, loader, sampler, data, val_plans, target_device, config, seed,
                progress and main,
            )
            run.record(epoch, rows, net, select=config.select_epoch == "best_val")
            if main:
                save_checkpoint(checkpoint_path, run, run_key, net, optimizers)
                write_curves(out_dir, run.curves)
                log_tensorboard(writer, rows)
            if stop_after_epoch == epoch:
                distributed.barrier()
                return TrainResult(out_dir, epoch, run.best_epoch, run.best_score, count_params(net), False)
    finally:
        if writer is not None:
            writer.close()

    net.load_state_dict(run.best_model)
    if main:
        clear_done(out_dir)
        save_net(out_dir, net, net_meta(spec, net, tracks, data, config, seed, store, run))
        score = None if math.isnan(run.best_score) else run.best_score
        mark_done(out_dir, run_key, epochs=run.epoch, best_epoch=run.best_epoch, best_score=score,
                  param_count=count_params(net))
    distributed.barrier()
    return TrainResult(out_dir, run.epoch, run.best_epoch, run.best_score, count_params(net), True)
