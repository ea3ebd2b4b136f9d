"""Per-mel-band standardisation statistics, fitted on training tracks only."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from agf.errors import TrainingError
from agf.store import FeatureStore

# Floor of a band's standard deviation (dB): a constant band must not divide by zero.
BAND_STD_FLOOR = 1e-3


def fit_band_norm(store: FeatureStore, track_ids: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and std (float64, population) over ALL frames of the given tracks, streamed track by track.

    Tracks are merged with Chan's pairwise update, so memory is one track and the sums stay accurate.
    """
    count = 0
    mean = np.zeros(store.config.n_mels)
    m2 = np.zeros(store.config.n_mels)
    for track_id in track_ids:
        frames = np.asarray(store.mel(track_id), dtype=np.float64)
        if not np.isfinite(frames).all():
            raise TrainingError(
                f"{store.array_path('mel', track_id)}: non-finite log-mel values; delete the file and its entry "
                "and run `agf prepare` again"
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
