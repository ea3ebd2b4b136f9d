"""Factor settings sized to the data: dictionaries and topics a collection's artists can support.

Rules of thumb (not fitted): about 8 words per artist whose tracks fit the dictionaries (a power of two in
[64, 2048]) and a quarter as many topics as artists (in [4, 40]); a set value more than twice that is warned
about. FMA medium's thousands of training artists get the paper's 2,048 words and 40 topics.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from agf.config import FactorConfig
from agf.datasets.table import fit_splits, split_mask

MAX_WORDS, MIN_WORDS, WORDS_PER_ARTIST = 2048, 64, 8
MAX_TOPICS, MIN_TOPICS, ARTISTS_PER_TOPIC = 40, 4, 4


def fitting_artists(tracks: pd.DataFrame, factors: FactorConfig) -> int:
    """Artists whose tracks fit the factors: the training split's (with validation's too when leaky)."""
    return int(tracks.loc[split_mask(tracks, *fit_splits(factors.leaky)), "artist_id"].nunique())


def sized_factors(factors: FactorConfig, artists: int) -> tuple[FactorConfig, list[str]]:
    """The settings with n_words / n_topics of 0 sized to `artists`, and a warning for each set value far
    above what so few artists support."""
    words = int(np.clip(2 ** round(np.log2(max(1, WORDS_PER_ARTIST * artists))), MIN_WORDS, MAX_WORDS))
    topics = int(np.clip(artists // ARTISTS_PER_TOPIC, MIN_TOPICS, MAX_TOPICS))
    warnings = []
    if factors.n_words > 2 * max(words, WORDS_PER_ARTIST * artists):
        warnings.append(f"factors.n_words = {factors.n_words} for {artists} artists fitting the factors: "
                        f"about {words} suits so few (or 0: sized to the data)")
    if factors.n_topics > 2 * topics:
        warnings.append(f"factors.n_topics = {factors.n_topics} for {artists} artists fitting the factors: "
                        f"about {topics} suits so few (or 0: sized to the data)")
    return replace(factors, n_words=factors.n_words or words, n_topics=factors.n_topics or topics), warnings
