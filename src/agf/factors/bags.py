"""Artist bags of words: per artist, the word counts of its tracks (optionally divided by its number of tracks)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from agf.errors import FactorError


def artist_bags(
    artists: Sequence[str], tracks: Iterable[tuple[str, np.ndarray]], n_words: int, divide: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Bags (len(artists), n_words) and track counts (len(artists),) from (artist_id, word indices) per track.

    Every word occurrence (a frame for m/d, a track for e, a genre label for s) counts once; with `divide`,
    an artist's counts are divided by how many of its tracks were given. Artists without tracks, or
    whose tracks hold no words, get an all-zero (empty) bag.
    """
    row_of = {artist: i for i, artist in enumerate(artists)}
    counts = np.zeros((len(artists), n_words), dtype=np.float64)
    n_tracks = np.zeros(len(artists), dtype=np.int64)
    for artist, words in tracks:
        if artist not in row_of:
            raise FactorError(f"artist {artist!r} is not among the {len(artists)} artists the bags are built for")
        row = row_of[artist]
        counts[row] += np.bincount(np.asarray(words, dtype=np.intp), minlength=n_words)
        n_tracks[row] += 1
    if divide:
        counts /= np.maximum(n_tracks, 1)[:, None]
    return counts, n_tracks
