"""Window features: a source net's penultimate activation for every patch-long window of every clip, cached.

A clip of T frames gives windows starting at 0, hop, 2*hop, ... while the window fits, plus a last window
flush with the end when the tail would be left uncovered; a clip shorter than one patch gives one window,
padded with the clip's quietest value (silence in dB: with ref 1.0, zero dB is a loud level, not silence).

Cache layout (one directory per net and hop, written by net_window_features):
    features.npy      (n_windows, D) float16 penultimate activations
    windows.parquet   track_id, start: which window each row is (grouped by track, in the order asked for)
    genre_probs.npy   (n_windows, G) float32 softmax of the net's genre head (only for nets with one)
    done.json         the completion marker (agf.workdir): the key of the request the files answer (net
                      fingerprint, hop, patch, store, track ids), written last

Memory: the arrays are computed into the cache's files through memory maps and read back memory-mapped, so a
net's windows are never all in memory (FMA-large: 6.5 M windows x 256 features, 3.3 GB of float16 per net). A
track id is held once per track, a window by an int32 index into them: windows.parquet's track_id column is
dictionary-encoded by Arrow on reading (one Python string per window cost 0.5-0.7 GB per net at 6.5 M windows).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from numpy.lib.format import open_memmap
from torch import nn
from tqdm.auto import tqdm

from agf.transfer.windowing import genre_head_logits, net_fingerprint, window_batch, window_starts
from agf.fileio import atomic_path, stable_key, write_parquet_atomic
from agf.store import FeatureStore
from agf.workdir import clear_done, is_done, mark_done

CACHE_FORMAT = 1


@dataclass(frozen=True)
class WindowFeatures:
    """Per-window features of one net and which track and frame each row is (windows grouped by track)."""

    features: np.ndarray  # (n_windows, D) float16, memory-mapped when cached
    tracks: np.ndarray  # (n_tracks,) str: the tracks, in the order asked for
    track_of_window: np.ndarray  # (n_windows,) int32 index into `tracks`, non-decreasing (grouped by track)
    starts: np.ndarray  # (n_windows,) int64 first frame of each window
    genre_probs: np.ndarray | None  # (n_windows, G) float32 genre-head softmax (memory-mapped when cached), or None
    head_genres: tuple[str, ...] | None  # the genre of each genre_probs column


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
    progress: bool,
    amp: bool,
    features: np.ndarray,
    probs: np.ndarray | None,
) -> None:
    """Fill `features` (n_windows, D) with every window's features and `probs` (when given) with its genre-head
    probabilities, in large batches, eval mode.

    With `amp`, under bf16 autocast with channels_last (3.2x faster than fp32 on a CPU here).
    """
    was_training = net.training
    memory_format = torch.channels_last if amp else torch.contiguous_format
    net.to(device, memory_format=memory_format).eval()
    offset = 0
    chunks = _window_chunks(store, track_ids, starts, patch, batch_windows)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)
    bar = tqdm(total=len(features), unit="win", disable=not progress, leave=False)
    with torch.inference_mode(), autocast, bar:
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


@contextlib.contextmanager
def _output_arrays(
    cache_path: Path | None, n_windows: int, dim: int, n_genres: int
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Arrays for the features (float16, n_windows x dim) and, when n_genres, the genre-head probabilities
    (float32): in memory without a cache, else memory maps of the cache's files, written under temporary names
    and renamed into place when the block succeeds."""
    if cache_path is None:
        yield (np.empty((n_windows, dim), dtype=np.float16),
               np.empty((n_windows, n_genres), dtype=np.float32) if n_genres else None)
        return
    with contextlib.ExitStack() as files:

        def mapped(name: str, dtype: type, width: int) -> np.ndarray:
            path = files.enter_context(atomic_path(cache_path / name))
            array = open_memmap(path, mode="w+", dtype=dtype, shape=(n_windows, width))
            if hasattr(os, "posix_fallocate"):  # the blocks reserved now: a full disk is an OSError, not a SIGBUS
                with open(path, "r+b") as handle:
                    os.posix_fallocate(handle.fileno(), 0, path.stat().st_size)
            return array

        arrays = (mapped("features.npy", np.float16, dim),
                  mapped("genre_probs.npy", np.float32, n_genres) if n_genres else None)
        yield arrays
        for array in arrays:
            if array is not None:
                array.flush()


def _read_windows(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """windows.parquet as (tracks, track_of_window, starts): the track ids dictionary-encoded by Arrow (in order
    of first appearance), never one Python string per window."""
    table = pq.read_table(path, columns=["track_id", "start"])
    encoded = table.column("track_id").combine_chunks().dictionary_encode()
    windows = (
        encoded.dictionary.to_numpy(zero_copy_only=False),
        encoded.indices.to_numpy().astype(np.int32),
        table.column("start").to_numpy().astype(np.int64),
    )
    del table, encoded
    pa.default_memory_pool().release_unused()  # Arrow's allocator would keep the 0.3 GB it took (6.5 M windows)
    return windows


def read_window_cache(cache_path: Path, head_genres: tuple[str, ...] | None) -> WindowFeatures:
    """A finished cache's window features (memory-mapped); head_genres: None for a net without a genre head."""
    tracks, track_of_window, starts = _read_windows(cache_path / "windows.parquet")
    probs_path = cache_path / "genre_probs.npy"
    return WindowFeatures(
        features=np.load(cache_path / "features.npy", mmap_mode="r", allow_pickle=False),
        tracks=tracks,
        track_of_window=track_of_window,
        starts=starts,
        genre_probs=np.load(probs_path, mmap_mode="r", allow_pickle=False) if head_genres else None,
        head_genres=head_genres,
    )


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
        return read_window_cache(cache, head)
    starts = [window_starts(store.mel(t).shape[0], patch, hop) for t in track_ids]
    tracks = np.array(track_ids, dtype=object)
    track_of_window = np.repeat(np.arange(len(tracks), dtype=np.int32), [len(s) for s in starts])
    if cache is not None:
        clear_done(cache)  # removed first: a killed write is redone
    with _output_arrays(cache, len(track_of_window), net.feature_dim, len(head or ())) as (features, probs):
        _compute(net, store, track_ids, starts, patch, torch.device(device), batch_windows, progress, amp,
                 features, probs)
    all_starts = np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)
    if cache is None:
        return WindowFeatures(features, tracks, track_of_window, all_starts, probs, head)
    write_parquet_atomic(cache / "windows.parquet",
                         pd.DataFrame({"track_id": tracks[track_of_window], "start": all_starts}))
    mark_done(cache, stable_key(request), request=request)
    return read_window_cache(cache, head)
