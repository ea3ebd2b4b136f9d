"""Per-task training targets: genre one-hot from the track table, artist-group distributions as given."""

from __future__ import annotations

import numpy as np
import pandas as pd

from agf.datasets.table import genre_list
from agf.errors import TrainingError
from agf.tasks import GENRE_TASK

# A target row must sum to one within this tolerance.
SUM_TOLERANCE = 1e-3


def genre_targets(tracks: pd.DataFrame) -> pd.DataFrame:
    """One-hot genre rows indexed by track_id; columns in genre_list order (class i is genre_list(tracks)[i])."""
    genres = genre_list(tracks)
    codes = pd.Categorical(tracks["genre"], categories=genres).codes
    one_hot = np.eye(len(genres), dtype=np.float32)[codes]
    return pd.DataFrame(one_hot, index=pd.Index(tracks["track_id"], name="track_id"), columns=genres)


def check_distribution_targets(targets: pd.DataFrame, task: str) -> pd.DataFrame:
    """Return `targets` as float32 after checking every row is a probability distribution."""
    values = targets.to_numpy(dtype=np.float64)
    duplicated = targets.index[targets.index.duplicated()]
    if len(duplicated):
        raise TrainingError(f"targets of task {task!r}: duplicate track ids, e.g. {duplicated[0]}; rebuild the factors")
    bad = ~np.isfinite(values).all(axis=1) | (values < 0).any(axis=1)
    bad |= np.abs(values.sum(axis=1) - 1.0) > SUM_TOLERANCE
    if bad.any():
        raise TrainingError(
            f"targets of task {task!r}: {int(bad.sum())} row(s) are not probability distributions "
            f"(non-negative, finite, summing to 1), e.g. track {targets.index[bad][0]}; rebuild the factors"
        )
    return targets.astype(np.float32)


def task_targets(tracks: pd.DataFrame, task: str, factor_targets: pd.DataFrame | None) -> pd.DataFrame:
    """Targets of one task indexed by track_id, float columns: genre one-hot for 'g', else factor_targets checked."""
    if task == GENRE_TASK:
        return genre_targets(tracks)
    if factor_targets is None:
        raise TrainingError(f"task {task!r} needs its artist-group targets: build them with `agf factors` first")
    return check_distribution_targets(factor_targets, task)
