"""Window features: a source net's penultimate activation for every patch-long window of every clip, cached.

A clip of T frames gives windows starting at 0, hop, 2*hop, ... while the window fits, plus a last window
flush with the end when the tail would be left uncovered; a clip shorter than one patch gives one window,
padded with the clip's quietest value (silence in dB: with ref 1.0, zero dB is a loud level, not silence).

Cache layout (one directory per net and hop, written by net_window_features):
    features.npy      (n_windows, D) float16 penultimate activations
    windows.parquet   track_id, start: which window each row is
    genre_probs.npy   (n_windows, G) float32 softmax of the net's genre head (only for nets with one)
    done.json         the completion marker (agf.workdir): the key of the request the files answer (net
                      fingerprint, hop, patch, store, track ids), written last
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from agf.fileio import stable_key, write_npy_atomic, write_parquet_atomic
from agf.models import MTN
from agf.store import FeatureStore
from agf.tasks import GENRE_TASK
from agf.workdir import clear_done, is_done, mark_done

CACHE_FORMAT = 1


@dataclass(frozen=True)
class WindowFeatures:
    """Per-window features of one net (or several, concatenated) and which track and frame each row is."""

    features: np.ndarray  # (n_windows, D) float16
    track_ids: np.ndarray  # (n_windows,) str, grouped by track in the order asked for
    starts: np.ndarray  # (n_windows,) int64 first frame of each window
    genre_probs: np.ndarray | None  # (n_windows, G) float32 genre-head softmax, or None
    head_genres: tuple[str, ...] | None  # the genre of each genre_probs column


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


def _window_chunks(
    store: FeatureStore, track_ids: Sequence[str], starts: Sequence[np.ndarray], patch: int, batch_windows: int
) -> Iterator[np.ndarray]:
    """Windows of consecutive tracks in chunks of at least batch_windows (the last may be smaller)."""
    pending: list[np.ndarray] = []
    size = 0
    for track_id, track_starts in zip(track_ids, starts):
        pending.append(window_batch(store.mel(track_id), track_starts, patch))
        size += len(track_starts)
        if size >= batch_windows:
            yield np.concatenate(pending)
            pending, size = [], 0
    if pending:
        yield np.concatenate(pending)


def _compute(
    net: nn.Module,
    store: FeatureStore,
    track_ids: list[str],
    starts: list[np.ndarray],
    patch: int,
    device: torch.device,
    batch_windows: int,
    head_genres: tuple[str, ...] | None,
    progress: bool,
    amp: bool,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Features (float16) and genre-head probabilities of every window, in large batches, eval mode.

    With `amp`, under bf16 autocast with channels_last (3.2x faster than fp32 on a CPU here).
    """
    n_windows = sum(len(s) for s in starts)
    features = np.empty((n_windows, net.feature_dim), dtype=np.float16)
    probs = np.empty((n_windows, len(head_genres)), dtype=np.float32) if head_genres else None
    was_training = net.training
    memory_format = torch.channels_last if amp else torch.contiguous_format
    net.to(device, memory_format=memory_format).eval()
    offset = 0
    chunks = _window_chunks(store, track_ids, starts, patch, batch_windows)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)
    with torch.inference_mode(), autocast, tqdm(total=n_windows, unit="win", disable=not progress, leave=False) as bar:
        for chunk in chunks:
            batch = torch.from_numpy(chunk).to(device).unsqueeze(1).contiguous(memory_format=memory_format)
            activations = net.features(batch)
            rows = slice(offset, offset + len(chunk))
            features[rows] = activations.float().cpu().numpy()
            if probs is not None:
                logits = genre_head_logits(net, activations).float()
                probs[rows] = torch.softmax(logits, dim=1).cpu().numpy()
            offset += len(chunk)
            bar.update(len(chunk))
    net.train(was_training)
    return features, probs


def _load_cache(cache_path: Path, head_genres: tuple[str, ...] | None) -> WindowFeatures:
    """The cached window features (memory-mapped)."""
    windows = pd.read_parquet(cache_path / "windows.parquet")
    return WindowFeatures(
        features=np.load(cache_path / "features.npy", mmap_mode="r", allow_pickle=False),
        track_ids=windows["track_id"].to_numpy(dtype=object),
        starts=windows["start"].to_numpy(dtype=np.int64),
        genre_probs=np.load(cache_path / "genre_probs.npy", allow_pickle=False) if head_genres else None,
        head_genres=head_genres,
    )


def _write_cache(cache_path: Path, result: WindowFeatures, request: dict) -> None:
    """Write the cache files, the completion marker last (removed first, so a killed write is redone)."""
    clear_done(cache_path)
    write_npy_atomic(cache_path / "features.npy", result.features)
    windows = pd.DataFrame({"track_id": result.track_ids, "start": result.starts})
    write_parquet_atomic(cache_path / "windows.parquet", windows)
    if result.genre_probs is not None:
        write_npy_atomic(cache_path / "genre_probs.npy", result.genre_probs)
    mark_done(cache_path, stable_key(request), request=request)


def net_window_features(
    net: nn.Module,
    store: FeatureStore,
    track_ids: Sequence[str],
    patch: int,
    hop: int,
    device: str | torch.device,
    batch_windows: int = 1024,
    cache_path: str | Path | None = None,
    head_genres: Sequence[str] | None = None,
    progress: bool = False,
    amp: bool = False,
) -> WindowFeatures:
    """The net's penultimate activation for every window of every track (moves the net to `device`).

    head_genres names the columns of the net's genre head (None: no genre-head probabilities). With
    cache_path, the result is read from there when it was made for the same net weights, hop, patch,
    store and track ids, and written there otherwise.
    """
    track_ids = [str(t) for t in track_ids]
    head = tuple(head_genres) if head_genres else None
    request = {
        "format": CACHE_FORMAT,
        "net": net_fingerprint(net),
        "hop": hop,
        "patch": patch,
        "store": store.root.name,
        "tracks": stable_key(track_ids),
        "n_tracks": len(track_ids),
        "head_genres": list(head) if head else None,
        "amp": amp,
    }
    cache = Path(cache_path) if cache_path is not None else None
    if cache is not None and is_done(cache, stable_key(request)):
        return _load_cache(cache, head)
    starts = [window_starts(store.mel(t).shape[0], patch, hop) for t in track_ids]
    features, probs = _compute(
        net, store, track_ids, starts, patch, torch.device(device), batch_windows, head, progress, amp
    )
    result = WindowFeatures(
        features=features,
        track_ids=np.repeat(np.array(track_ids, dtype=object), [len(s) for s in starts]),
        starts=np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64),
        genre_probs=probs,
        head_genres=head,
    )
    if cache is not None:
        _write_cache(cache, result, request)
    return result
