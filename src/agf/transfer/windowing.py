"""Windows of a clip and a net's fingerprint: NumPy and torch only (agf.transfer.windows re-exports them)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn

from agf.models import MTN
from agf.tasks import GENRE_TASK


def window_starts(n_frames: int, patch: int, hop: int) -> np.ndarray:
    """First frames of the windows covering a clip of n_frames: every `hop` frames, plus one flush with the end."""
    if n_frames < 1 or patch < 1 or hop < 1:
        raise ValueError(f"window_starts needs n_frames, patch and hop >= 1; got {n_frames}, {patch}, {hop}")
    if n_frames <= patch:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, n_frames - patch + 1, hop, dtype=np.int64)
    if starts[-1] + patch < n_frames:
        starts = np.append(starts, n_frames - patch)
    return starts


def window_batch(mel: np.ndarray, starts: np.ndarray, patch: int) -> np.ndarray:
    """(n_windows, patch, n_mels) float32 windows of a (frames, n_mels) clip; a short clip is padded at the end."""
    frames = np.asarray(mel, dtype=np.float32)
    if frames.ndim != 2 or frames.shape[0] == 0:
        raise ValueError(f"expected a (frames >= 1, n_mels) log-mel array, got shape {frames.shape}")
    if frames.shape[0] < patch:
        frames = np.pad(frames, ((0, patch - frames.shape[0]), (0, 0)), constant_values=frames.min())
    return frames[np.asarray(starts)[:, None] + np.arange(patch)]


def net_fingerprint(net: nn.Module) -> str:
    """A hash of every weight and buffer of a net: window features are reused only for the very same net."""
    digest = hashlib.sha256()
    for name, tensor in net.state_dict().items():
        digest.update(name.encode("utf-8"))
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def genre_head_logits(net: nn.Module, features: torch.Tensor) -> torch.Tensor:
    """Genre logits from a net's penultimate features: an STN's head, or an MTN's 'g' head on its 'g' slice."""
    if isinstance(net, MTN):
        net.check_task(GENRE_TASK)
        branch_dim = net.feature_dim // len(net.task_outputs)
        offset = list(net.task_outputs).index(GENRE_TASK) * branch_dim
        return net.heads[GENRE_TASK](features[:, offset : offset + branch_dim])
    return net.head(features)
