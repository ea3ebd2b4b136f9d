"""Label noise as a controlled variable: album-level genre flips at an exact rate, symmetric or structured.

Genre labels are given per album (as on FMA), so noise flips whole albums: exactly round(rate x eligible albums)
of them, spread over the splits in proportion (largest remainder), so the small test split carries its share
too. A flipped album's genre becomes, with 'symmetric' noise, any other genre (uniformly; every album is
eligible); with 'structured' noise, a genre declared confusable with it (as annotators confuse neighbouring
genres): only albums of a genre with a confusable partner are eligible, so "0.3 structured" relabels 30 % of
the albums of the confusable genres, as "0.3 symmetric" relabels 30 % of all. A rate at which some label
would be expected to hold as many albums of one other genre as of its own is refused: such labels are swapped,
not noisy (for a confusable pair: half wrong; under symmetric noise a label may be mostly wrong and still point
to its genre, its wrong albums coming from many genres). Sub-genre labels are flipped independently, at their
own rate, to sub-genres seen elsewhere in the collection. Truth is kept: `true_genre` (added as the genre before noise when the table has none),
`clean_genre`, `genre_flipped` and `subgenres_flipped` columns; `flip_rates` gives the realised rate per genre
and split.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from agf.config import NoiseConfig
from agf.errors import DatasetError

NOISE_STREAM, SUBGENRE_STREAM = 1, 2


@dataclass(frozen=True)
class NoiseSummary:
    """What the injector did: the units it counted and how many it flipped, per split."""

    albums: int  # eligible albums (symmetric: all; structured: those of the confusable genres)
    flipped: int
    subgenre_flipped: int
    flipped_per_split: dict[str, int]
    albums_per_split: dict[str, int]

    def format(self) -> str:
        splits = ", ".join(f"{s} {self.flipped_per_split.get(s, 0)}/{n}" for s, n in self.albums_per_split.items())
        return (f"label noise: {self.flipped} of {self.albums} eligible albums relabelled ({splits}); "
                f"sub-genres relabelled on {self.subgenre_flipped} albums")


def round_half_up(value: float) -> int:
    """Round half up (Python's round() rounds half to even)."""
    return math.floor(value + 0.5)


def exact_share(groups: Sequence[str], share: float, rng: np.random.Generator,
                eligible: Sequence[bool] | None = None) -> set[int]:
    """Exactly round(share x eligible) indices drawn among the eligible ones (default: all), spread over the
    groups (e.g. splits) in proportion to their eligible members by largest remainder."""
    pools = {group: [i for i, g in enumerate(groups) if g == group and (eligible is None or eligible[i])]
             for group in dict.fromkeys(groups)}
    available = sum(len(pool) for pool in pools.values())
    total = round_half_up(share * available)
    quotas = {group: total * len(pool) / available if available else 0.0 for group, pool in pools.items()}
    counts = {group: int(quota) for group, quota in quotas.items()}
    by_remainder = sorted(pools, key=lambda group: quotas[group] - counts[group], reverse=True)
    for group in by_remainder[: total - sum(counts.values())]:
        counts[group] += 1
    chosen: set[int] = set()
    for group, pool in pools.items():
        chosen |= set(rng.choice(pool, size=counts[group], replace=False).tolist())
    return chosen


def confusable_partners(pairs: Sequence[str], genres: Sequence[str]) -> dict[str, list[str]]:
    """{genre: genres it may be confused with} from 'A/B' pairs; DatasetError naming an unknown genre."""
    partners: dict[str, list[str]] = {}
    known = set(genres)
    for pair in pairs:
        a, b = (part.strip() for part in pair.split("/"))
        for genre in (a, b):
            if genre not in known:
                raise DatasetError(f"noise.confusable {pair!r}: no genre {genre!r} in the dataset "
                                   f"(genres: {', '.join(sorted(known))})")
        partners.setdefault(a, []).append(b)
        partners.setdefault(b, []).append(a)
    return {genre: sorted(set(others)) for genre, others in partners.items()}


def expected_sources(album_genres: pd.Series, partners: dict[str, list[str]], rate: float) -> pd.DataFrame:
    """Expected albums per (label after noise, true genre) at `rate`: an eligible album keeps its label with
    probability 1 - rate and moves to one of its partners uniformly. Rows: labels; columns: true genres."""
    counts = album_genres.value_counts()
    genres = sorted(counts.index)
    sources = pd.DataFrame(0.0, index=genres, columns=genres)
    for genre in genres:
        others = partners.get(genre, [])
        sources.loc[genre, genre] = counts[genre] * (1 - rate if others else 1.0)
        for other in others:
            sources.loc[other, genre] += rate * counts[genre] / len(others)
    return sources


def check_not_swapped(album_genres: pd.Series, partners: dict[str, list[str]], rate: float, kind: str) -> None:
    """DatasetError when noise at `rate` would leave some label expected to hold as many albums of one other
    genre as of its own: that label then points elsewhere (swapped, not noisy). For a confusable pair this is
    the point where the label is half wrong; under symmetric noise over G genres of equal size, rate (G-1)/G."""
    sources = expected_sources(album_genres, partners, rate)
    worst = None
    for label in sources.index:
        own = sources.loc[label, label]
        others = sources.loc[label].drop(label)
        if len(others) and others.max() > 0 and others.max() >= own:
            total = sources.loc[label].sum()
            found = (others.max() / total, label, others.idxmax(), own / total)
            worst = max(worst, found) if worst else found
    if worst:
        share, label, source, own = worst
        raise DatasetError(
            f"label noise: at noise.rate = {rate:g} ({kind}) the albums labelled {label!r} would be as much of "
            f"{source!r} ({share:.0%}) as of {label!r} itself ({own:.0%}): swapped labels, not noisy ones; lower "
            "noise.rate"
        )


def flip_rates(noisy: pd.DataFrame) -> pd.DataFrame:
    """The realised noise: per clean genre and split, its albums, how many were relabelled and their share."""
    albums = noisy.assign(album=_album_keys(noisy)).groupby("album", sort=False).agg(
        genre=("clean_genre", "first"), split=("split", "first"), flipped=("genre_flipped", "first"))
    table = albums.groupby(["genre", "split"], sort=True)["flipped"].agg(albums="size", flipped="sum").reset_index()
    return table.assign(rate=table["flipped"] / table["albums"])


def _album_keys(tracks: pd.DataFrame) -> pd.Series:
    """Each track's album: its album id, or the track itself when the album is unknown."""
    albums = tracks["album_id"].astype(str)
    return albums.where(albums != "", "track:" + tracks["track_id"].astype(str))


def inject_label_noise(tracks: pd.DataFrame, config: NoiseConfig) -> tuple[pd.DataFrame, NoiseSummary]:
    """The track table with album-level genre (and sub-genre) label noise as `config` says; see the module doc."""
    noisy = tracks.copy()
    if "true_genre" not in noisy.columns:
        noisy["true_genre"] = noisy["genre"]
    noisy["clean_genre"] = noisy["genre"]
    keys = _album_keys(noisy)
    albums = noisy.assign(_album=keys).groupby("_album", sort=True).agg(genre=("genre", "first"),
                                                                      split=("split", "first"))
    genres = sorted(noisy["genre"].unique())
    rng = np.random.default_rng([config.seed, NOISE_STREAM])
    if config.kind == "structured":
        partners = confusable_partners(config.confusable, genres)
        eligible = [genre in partners for genre in albums["genre"]]
    else:
        partners = {genre: [g for g in genres if g != genre] for genre in genres}
        eligible = None
    check_not_swapped(albums["genre"], partners, config.rate, config.kind)
    flipped = sorted(exact_share(list(albums["split"]), config.rate, rng, eligible))
    new_genre = albums["genre"].copy()
    for index in flipped:
        new_genre.iloc[index] = str(rng.choice(partners[albums["genre"].iloc[index]]))
    noisy["genre"] = keys.map(new_genre).to_numpy()
    noisy["genre_flipped"] = noisy["genre"] != noisy["clean_genre"]

    sub_rng = np.random.default_rng([config.seed, SUBGENRE_STREAM])
    sub_flipped = sorted(exact_share(list(albums["split"]), config.subgenre_rate, sub_rng))
    pool = sorted({label for labels in noisy["subgenres"] for label in labels})
    replaced: dict[str, list[str]] = {}
    for index in sub_flipped:
        album = albums.index[index]
        own = set(noisy.loc[keys == album, "subgenres"].iloc[0])
        others = [label for label in pool if label not in own]
        if others:
            replaced[album] = [str(sub_rng.choice(others))]
    noisy["subgenres_flipped"] = keys.isin(list(replaced)).to_numpy()
    noisy["subgenres"] = [replaced.get(album, labels) for album, labels in zip(keys, noisy["subgenres"])]
    per_split = albums.iloc[flipped]["split"].value_counts()
    candidates = albums if eligible is None else albums[np.asarray(eligible, dtype=bool)]
    summary = NoiseSummary(
        albums=len(candidates), flipped=len(flipped), subgenre_flipped=len(replaced),
        flipped_per_split={str(s): int(n) for s, n in per_split.items()},
        albums_per_split={str(s): int(n) for s, n in candidates["split"].value_counts().items()},
    )
    return noisy, summary
