"""Per-mel-band standardisation statistics, fitted on training tracks only, once per set of tracks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agf.errors import TrainingError
from agf.fileio import read_json, write_json_atomic
from agf.store import FeatureStore

# Floor of a band's standard deviation (dB): a constant band must not divide by zero.
BAND_STD_FLOOR = 1e-3
# Where a store keeps the statistics it fitted (one JSON file per set of tracks and their arrays).
BAND_NORM_DIR = "band-norm"


def fit_band_norm(store: FeatureStore, track_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and std (float64, population) over ALL frames of the given tracks.

    Kept in the store under the key of these tracks' arrays, so the nets of a grid, which share their training
    tracks, read the log-mels once (at FMA large's size 28 GB per net) instead of once per net.
    """
    path = store.root / BAND_NORM_DIR / f"{store.arrays_key(track_ids)}.json"
    if path.exists():
        saved = read_json(path)
        return np.array(saved["mean"], dtype=np.float64), np.array(saved["std"], dtype=np.float64)
    mean, std = _stream_band_norm(store, track_ids)
    write_json_atomic(path, {"tracks": len(track_ids), "mean": mean.tolist(), "std": std.tolist()})
    return mean, std


def _stream_band_norm(store: FeatureStore, track_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The statistics computed track by track: memory is one track; tracks are merged with Chan's pairwise
    update, so the sums stay accurate."""
    count = 0
    mean = np.zeros(store.config.n_mels)
    m2 = np.zeros(store.config.n_mels)
    for track_id in track_ids:
        frames = np.asarray(store.mel(track_id), dtype=np.float64)
        if not np.isfinite(frames).all():
            raise TrainingError(
                f"{store.root}: track {track_id} has non-finite log-mel values; prepare the collection again "
                "into a new work directory"
            )
        n = frames.shape[0]
        track_mean = frames.mean(axis=0)
        delta = track_mean - mean
        total = count + n
        mean += delta * (n / total)
        m2 += ((frames - track_mean) ** 2).sum(axis=0) + delta**2 * (count * n / total)
        count = total
    if count == 0:
        raise TrainingError(f"no training tracks to fit the band statistics on in {store.root}")
    return mean, np.maximum(np.sqrt(m2 / count), BAND_STD_FLOOR)
