"""The synthetic collection's hierarchy: genres and sub-genres, artists, albums and tracks, labels and splits.

Each part draws from its own random stream of the config seed, so changing, say, the label-noise rate
relabels albums without changing a single note. Genre labels are given per album (as on FMA); an exact
share of albums is labelled with a sub-genre of a wrong genre. The split is artist-disjoint and
stratified by each artist's true genre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from agf.config import SynthConfig
from agf.datasets.noise import exact_share
from agf.datasets.synth.style import (
    ARCHETYPES,
    ARTIST_SPREAD,
    ARTIST_SWITCH,
    SUBGENRE_SPREAD,
    SUBGENRE_SWITCH,
    Signature,
    Style,
    album_production,
    artist_signature,
    blend_styles,
    prototype_style,
    vary_style,
)
from agf.errors import SynthError

SUBGENRE_PREFIXES = ("Deep", "Lo-fi", "Hard", "Nu", "Dream", "Acid", "Dark", "Bright", "Raw", "Slow", "Future", "Classic")
SYLLABLES = (
    "ka", "lo", "mi", "ra", "ve", "to", "su", "na", "el", "or", "di", "an", "bel", "cor", "fen", "gal",
    "hum", "jin", "mar", "nox", "pel", "quin", "ros", "sil", "tam", "ul", "vor", "wen", "yas", "zo",
)
# Shares of artists held out per split; the rest train. FMA's official split is 80/10/10.
HELD_OUT = (("validation", 0.1), ("test", 0.1))
# A straddling artist's style moves this far (uniform range) towards its second genre.
STRADDLE_WEIGHT = (0.3, 0.5)
# Independent random streams of one seed.
STYLE_STREAM, NAME_STREAM, LABEL_STREAM, SPLIT_STREAM = range(1, 5)


@dataclass(frozen=True)
class Genre:
    """A genre node: top-level (parent 0) or a sub-genre of one."""

    genre_id: int
    title: str
    parent: int
    style: Style

    @property
    def top_level(self) -> int:
        """The id of the root genre of this node."""
        return self.parent or self.genre_id


@dataclass(frozen=True)
class Artist:
    """An artist: its true genre and sub-genre, a second genre it leans to (0 = none), its split."""

    artist_id: int
    name: str
    genre_id: int
    subgenre_id: int
    second_genre_id: int
    signature: Signature
    split: str


@dataclass(frozen=True)
class Album:
    """An album: its production style and the sub-genre it is labelled with (wrong when noisy)."""

    album_id: int
    title: str
    artist_id: int
    production: Style
    label_id: int
    noisy: bool


@dataclass(frozen=True)
class Track:
    """A track of an album."""

    track_id: int
    title: str
    album_id: int
    artist_id: int


@dataclass(frozen=True)
class Collection:
    """The whole generated collection."""

    genres: tuple[Genre, ...]
    artists: tuple[Artist, ...]
    albums: tuple[Album, ...]
    tracks: tuple[Track, ...]

    def genre(self, genre_id: int) -> Genre:
        """The genre node with this id."""
        return self.genres[genre_id - 1]

    def artist(self, artist_id: int) -> Artist:
        """The artist with this id."""
        return self.artists[artist_id - 1]

    def album(self, album_id: int) -> Album:
        """The album with this id."""
        return self.albums[album_id - 1]


def check_synth_config(config: SynthConfig) -> None:
    """Raise SynthError naming the [synth] setting that cannot give a corpus."""
    problems = []
    if config.n_genres < 2:
        problems.append(("n_genres", "at least 2"))
    if not 1 <= config.min_subgenres <= config.max_subgenres <= len(SUBGENRE_PREFIXES):
        problems.append(("min_subgenres/max_subgenres", f"1 <= min_subgenres <= max_subgenres <= {len(SUBGENRE_PREFIXES)}"))
    for name in ("artists_per_genre", "albums_per_artist", "tracks_per_album", "sample_rate", "bitrate"):
        if getattr(config, name) < 1:
            problems.append((name, "at least 1"))
    if not 0.0 < config.clip_seconds <= 30.0:
        problems.append(("clip_seconds", "more than 0 and at most 30"))
    for name in ("label_noise", "straddle_fraction"):
        if not 0.0 <= getattr(config, name) <= 1.0:
            problems.append((name, "between 0 and 1"))
    if problems:
        name, rule = problems[0]
        raise SynthError(f"[synth] {name} must be {rule}; fix it in the config or on the command line")


def _stream(config: SynthConfig, stream: int) -> np.random.Generator:
    """One of the independent random streams of the config seed."""
    return np.random.default_rng([config.seed, stream])


def _round(value: float) -> int:
    """Round half up (Python's round() rounds half to even)."""
    return math.floor(value + 0.5)


def _name(rng: np.random.Generator, words: int) -> str:
    """A pronounceable made-up name of `words` words."""
    parts = ["".join(rng.choice(SYLLABLES, size=int(rng.integers(2, 4)))).capitalize() for _ in range(words)]
    return " ".join(parts)


def _genres(config: SynthConfig, rng: np.random.Generator) -> list[Genre]:
    """Top-level genres (ids 1..n, from archetypes in a seeded order), then their sub-genres."""
    order = rng.permutation(len(ARCHETYPES))
    tops, subs = [], []
    for index in range(config.n_genres):
        archetype = ARCHETYPES[order[index % len(ARCHETYPES)]]
        cycle = index // len(ARCHETYPES)
        top = Genre(index + 1, archetype.name + (f" {cycle + 1}" if cycle else ""), 0, prototype_style(archetype, rng))
        tops.append(top)
        count = int(rng.integers(config.min_subgenres, config.max_subgenres + 1))
        for prefix in rng.choice(SUBGENRE_PREFIXES, size=count, replace=False):
            style = vary_style(top.style, SUBGENRE_SPREAD, SUBGENRE_SWITCH, rng)
            subs.append((f"{prefix} {top.title}", top.genre_id, style))
    return tops + [Genre(config.n_genres + i + 1, title, parent, style) for i, (title, parent, style) in enumerate(subs)]


def _artist_splits(genre_of_artist: list[int], rng: np.random.Generator) -> list[str]:
    """Artist-disjoint split stratified by genre: each held-out split gets its rounded share of artists,
    spread over genres in a rotating order so every genre keeps at least one training artist."""
    genres = sorted(set(genre_of_artist))
    members = {g: list(rng.permutation([a for a, ga in enumerate(genre_of_artist) if ga == g])) for g in genres}
    splits = ["training"] * len(genre_of_artist)
    rotation = [genres[i] for i in rng.permutation(len(genres))]
    turn = 0
    for split, share in HELD_OUT:
        wanted = _round(share * len(genre_of_artist))
        tries = 0
        while wanted and tries < len(rotation):
            genre = rotation[turn % len(rotation)]
            turn += 1
            if len(members[genre]) > 1:
                splits[members[genre].pop()] = split
                wanted -= 1
                tries = 0
            else:
                tries += 1
    return splits


def build_collection(config: SynthConfig) -> Collection:
    """Generate the whole collection (no audio) from the config, deterministically."""
    check_synth_config(config)
    style_rng, name_rng = _stream(config, STYLE_STREAM), _stream(config, NAME_STREAM)
    genres = _genres(config, style_rng)
    tops = genres[: config.n_genres]
    subgenres = {top.genre_id: [g for g in genres if g.parent == top.genre_id] for top in tops}
    n_artists = config.n_genres * config.artists_per_genre
    straddlers = set(style_rng.choice(n_artists, size=_round(config.straddle_fraction * n_artists), replace=False).tolist())
    genre_of_artist = [index // config.artists_per_genre + 1 for index in range(n_artists)]
    splits = _artist_splits(genre_of_artist, _stream(config, SPLIT_STREAM))
    artists = []
    for index, genre_id in enumerate(genre_of_artist):
        subgenre = subgenres[genre_id][int(style_rng.integers(len(subgenres[genre_id])))]
        style = vary_style(subgenre.style, ARTIST_SPREAD, ARTIST_SWITCH, style_rng)
        second = 0
        if index in straddlers:
            second = int(style_rng.choice([g.genre_id for g in tops if g.genre_id != genre_id]))
            style = blend_styles(style, tops[second - 1].style, float(style_rng.uniform(*STRADDLE_WEIGHT)), style_rng)
        signature = artist_signature(style, style_rng)
        artists.append(Artist(index + 1, _name(name_rng, 2), genre_id, subgenre.genre_id, second, signature, splits[index]))
    albums = _albums(config, artists, subgenres, style_rng, name_rng)
    track_albums = [album for album in albums for _ in range(config.tracks_per_album)]
    tracks = [
        Track(index + 1, _name(name_rng, int(name_rng.integers(1, 4))), album.album_id, album.artist_id)
        for index, album in enumerate(track_albums)
    ]
    return Collection(tuple(genres), tuple(artists), tuple(albums), tuple(tracks))


def _albums(config: SynthConfig, artists: list[Artist], subgenres: dict[int, list[Genre]],
            style_rng: np.random.Generator, name_rng: np.random.Generator) -> list[Album]:
    """Albums of every artist, labelled with the artist's sub-genre except for an exact share of wrong labels."""
    n_albums = len(artists) * config.albums_per_artist
    label_rng = _stream(config, LABEL_STREAM)
    noisy = exact_share([artists[i // config.albums_per_artist].split for i in range(n_albums)],
                        config.label_noise, label_rng)
    albums = []
    for index in range(n_albums):
        artist = artists[index // config.albums_per_artist]
        label = artist.subgenre_id
        if index in noisy:
            wrong = int(label_rng.choice([g for g in subgenres if g != artist.genre_id]))
            label = int(label_rng.choice([g.genre_id for g in subgenres[wrong]]))
        production = album_production(artist.signature, style_rng)
        title = _name(name_rng, int(name_rng.integers(1, 3)))
        albums.append(Album(index + 1, title, artist.artist_id, production, label, index in noisy))
    return albums
