"""The per-epoch training checkpoint: written atomically, read without unpickling arbitrary objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from agf.fileio import atomic_path
from agf.training.errors import TrainingError

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint (tensors, numbers, strings, lists and dicts only) via a temporary file and a rename."""
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)


def load_checkpoint(path: Path, map_location: torch.device) -> dict[str, Any]:
    """Read a checkpoint with torch.load(weights_only=True); TrainingError naming the file when unusable."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise TrainingError(f"{path}: unreadable checkpoint ({exc}); delete it to train from the start") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path}: not an agf checkpoint of format {CHECKPOINT_FORMAT}; delete it to start over")
    return state
