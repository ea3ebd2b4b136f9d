"""Label noise as a controlled variable: album-level genre flips at an exact rate, symmetric or structured.

Genre labels are given per album (as on FMA), so noise flips whole albums: exactly round(rate x albums)
of them, spread over the splits in proportion (largest remainder), so the small test split carries its
share too. A flipped album's genre becomes, with 'symmetric' noise, any other genre (uniformly); with
'structured' noise, a genre declared confusable with it (as annotators confuse neighbouring genres) — only
albums of a genre with a confusable partner can flip. Sub-genre labels are flipped independently, at their
own rate, to sub-genres seen elsewhere in the collection. Truth is kept: `true_genre` (added as the genre
before noise when the table has none), `clean_genre`, `genre_flipped` and `subgenres_flipped` columns.
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

    albums: int
    flipped: int
    subgenre_flipped: int
    flipped_per_split: dict[str, int]
    albums_per_split: dict[str, int]

    def format(self) -> str:
        splits = ", ".join(f"{s} {self.flipped_per_split.get(s, 0)}/{n}" for s, n in self.albums_per_split.items())
        return (f"label noise: {self.flipped} of {self.albums} albums relabelled ({splits}); "
                f"sub-genres relabelled on {self.subgenre_flipped} albums")


def round_half_up(value: float) -> int:
    """Round half up (Python's round() rounds half to even)."""
    return math.floor(value + 0.5)


def exact_share(groups: Sequence[str], share: float, rng: np.random.Generator,
                eligible: Sequence[bool] | None = None) -> set[int]:
    """Exactly round(share x len(groups)) indices drawn among the eligible ones (default: all), spread over the
    groups (e.g. splits) in proportion to their eligible members by largest remainder; DatasetError when fewer
    are eligible."""
    total = round_half_up(share * len(groups))
    pools = {group: [i for i, g in enumerate(groups) if g == group and (eligible is None or eligible[i])]
             for group in dict.fromkeys(groups)}
    available = sum(len(pool) for pool in pools.values())
    if total > available:
        raise DatasetError(f"label noise: {total} albums should flip but only {available} can (structured noise "
                           "flips only albums of confusable genres); declare more confusable pairs or lower noise.rate")
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
    summary = NoiseSummary(
        albums=len(albums), flipped=len(flipped), subgenre_flipped=len(replaced),
        flipped_per_split={str(s): int(n) for s, n in per_split.items()},
        albums_per_split={str(s): int(n) for s, n in albums["split"].value_counts().items()},
    )
    return noisy, summary
