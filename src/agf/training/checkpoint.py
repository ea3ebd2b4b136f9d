"""The per-epoch training checkpoint: the run's progress, written atomically, read without unpickling objects."""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agf.errors import TrainingError
from agf.fileio import atomic_path
from agf.training.distributed import world_size

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


@dataclass
class RunState:
    """Progress of a run: what the checkpoint restores besides the net and optimiser states."""

    epoch: int = 0
    best_epoch: int = 0
    best_score: float = math.nan
    best_model: dict[str, torch.Tensor] = field(default_factory=dict)
    curves: list[dict[str, Any]] = field(default_factory=list)

    def record(self, epoch: int, rows: list[dict[str, Any]], net: torch.nn.Module, select: bool = True) -> None:
        """Add an epoch's curve rows; keep the net's weights if the epoch is the best so far (with `select`,
        by validation loss; without, every epoch replaces the last: the last epoch is kept)."""
        self.epoch = epoch
        self.curves.extend(rows)
        score = selection_score(rows)
        if not select or self.best_epoch == 0 or math.isnan(score) or score < self.best_score:
            self.best_epoch, self.best_score = epoch, score
            self.best_model = {name: tensor.detach().clone() for name, tensor in net.state_dict().items()}


def selection_score(rows: list[dict[str, Any]]) -> float:
    """Mean validation loss over the epoch's tasks that have validation targets (NaN when none has)."""
    losses = [row["val_loss"] for row in rows if not math.isnan(row["val_loss"])]
    return float(np.mean(losses)) if losses else math.nan


def save_checkpoint(
    path: Path, run: RunState, run_key: str, net: torch.nn.Module, optimizers: dict[str, torch.optim.Optimizer]
) -> None:
    """Write the net, the optimisers (one per task), the best weights, the curves and the number of data-parallel
    processes via a temporary file."""
    state = {
        "format": CHECKPOINT_FORMAT,
        "run_key": run_key,
        "processes": world_size(),
        "epoch": run.epoch,
        "model": net.state_dict(),
        "optimizers": {task: optimizer.state_dict() for task, optimizer in optimizers.items()},
        "best_epoch": run.best_epoch,
        "best_score": run.best_score,
        "best_model": run.best_model,
        "curves": run.curves,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, map_location: torch.device) -> dict[str, Any]:
    """Read a checkpoint with torch.load(weights_only=True); TrainingError naming the file when unusable."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise TrainingError(f"{path}: unreadable checkpoint ({exc}); delete it to train from the start") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path}: not an agf checkpoint of format {CHECKPOINT_FORMAT}; delete it to start over")
    return state


def restore(
    path: Path, device: torch.device, run_key: str, net: torch.nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
) -> RunState:
    """Load a checkpoint's net and optimiser states; its RunState. TrainingError when it is another run's or was
    written by another number of data-parallel processes (whose batches differ)."""
    state = load_checkpoint(path, device)
    if state["run_key"] != run_key:
        raise TrainingError(
            f"{path}: checkpoint of a run with other settings or data; use a new output directory or delete it"
        )
    processes = state.get("processes", 1)
    if processes != world_size():
        raise TrainingError(
            f"{path}: checkpoint of a run on {processes} process(es), this one has {world_size()}; resume with "
            f"the same number (torchrun --nproc-per-node), or delete it to train from the start"
        )
    net.load_state_dict(state["model"])
    for task, optimizer in optimizers.items():
        optimizer.load_state_dict(state["optimizers"][task])
    return RunState(state["epoch"], state["best_epoch"], state["best_score"], state["best_model"], state["curves"])
