"""Word dictionaries: MiniBatch K-means over frames (tasks m, d) or tracks (task e), and word assignment."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from sklearn.cluster import MiniBatchKMeans
from sklearn.metrics import pairwise_distances_argmin

from agf.errors import FactorError

# Frames assigned to words per call: large enough to amortise overhead, small enough for memory.
ASSIGN_CHUNK_ROWS = 131_072
# Rows per step when counting distinct rows.
DISTINCT_CHUNK_ROWS = 1 << 20


@dataclass(frozen=True)
class Dictionary:
    """K-means centres (the words) and a note when fewer words than requested were possible."""

    centres: np.ndarray
    requested: int
    note: str

    @property
    def n_words(self) -> int:
        """How many words the dictionary holds."""
        return len(self.centres)


def count_distinct_rows(data: np.ndarray, enough: int | None = None) -> int:
    """How many distinct rows `data` (2-D) has, counted DISTINCT_CHUNK_ROWS rows at a time (a memory-mapped array
    is never copied whole); with `enough`, counting stops once that many are found (the count is then >= enough)."""
    seen = np.zeros(0, dtype=np.dtype((np.void, data.dtype.itemsize * data.shape[1])))
    for start in range(0, len(data), DISTINCT_CHUNK_ROWS):
        rows = np.ascontiguousarray(data[start : start + DISTINCT_CHUNK_ROWS])
        seen = np.unique(np.concatenate([seen, rows.view(seen.dtype).ravel()]))
        if enough is not None and len(seen) >= enough:
            break
    return len(seen)


def fit_dictionary(samples: np.ndarray, n_words: int, batch_size: int, seed: int) -> Dictionary:
    """Fit a MiniBatch K-means dictionary of up to `n_words` centres on (n, dims) samples (in memory or
    memory-mapped: the same centres).

    With fewer distinct samples than `n_words` (tiny corpora) the dictionary shrinks to the
    number of distinct samples, and the returned note says so.
    """
    if samples.ndim != 2 or len(samples) == 0:
        raise FactorError(f"no samples to fit a dictionary on (got shape {samples.shape}); check the feature store")
    distinct = count_distinct_rows(samples, enough=n_words)
    size = min(n_words, distinct)
    note = "" if size == n_words else f"reduced from {n_words} to {size} words: only {distinct} distinct samples"
    kmeans = MiniBatchKMeans(
        n_clusters=size, batch_size=batch_size, n_init=1, random_state=seed, compute_labels=False
    )
    kmeans.fit(samples)
    return Dictionary(centres=kmeans.cluster_centers_.astype(np.float32), requested=n_words, note=note)


def assign_words(data: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The index of the nearest centre (word) for every row of `data`."""
    return pairwise_distances_argmin(np.asarray(data, dtype=centres.dtype), centres)


def words_per_array(arrays: Iterable[np.ndarray], centres: np.ndarray) -> Iterator[np.ndarray]:
    """Yield the word indices of each (rows, dims) array, in order, assigning rows in large chunks."""
    pending: list[np.ndarray] = []
    pending_rows = 0
    for array in arrays:
        pending.append(np.asarray(array, dtype=centres.dtype))
        pending_rows += len(array)
        if pending_rows >= ASSIGN_CHUNK_ROWS:
            yield from _split_words(pending, centres)
            pending, pending_rows = [], 0
    if pending:
        yield from _split_words(pending, centres)


def _split_words(arrays: list[np.ndarray], centres: np.ndarray) -> list[np.ndarray]:
    """Assign the rows of several arrays at once and split the words back per array."""
    lengths = [len(a) for a in arrays]
    if sum(lengths) == 0:
        return [np.zeros(0, dtype=np.intp) for _ in arrays]
    words = assign_words(np.concatenate(arrays), centres)
    return np.split(words, np.cumsum(lengths)[:-1])


def sample_rows(array: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Up to `limit` rows of `array` drawn without replacement, in time order (limit 0 = all rows)."""
    if limit <= 0 or len(array) <= limit:
        return np.asarray(array)
    keep = np.sort(rng.choice(len(array), size=limit, replace=False))
    return np.asarray(array)[keep]
