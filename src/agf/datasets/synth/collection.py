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
STYLE_STREAM, NAME_STREAM, LABEL_STREAM, SPLIT_STREAM, BORROW_STREAM, ALBUM_COUNT_STREAM = range(1, 7)
# The second genre of a confusable pair varies the first's prototype this much (a sub-genre varies by 0.08).
CONFUSABLE_SPREAD, CONFUSABLE_SWITCH = 0.12, 0.3


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
    confusable: tuple[tuple[str, str], ...] = ()  # the titles of each confusable genre pair

    @property
    def confusable_pairs(self) -> list[str]:
        """The confusable pairs as noise.confusable takes them: 'A/B'."""
        return [f"{a}/{b}" for a, b in self.confusable]

    def genre(self, genre_id: int) -> Genre:
        """The genre node with this id."""
        return self.genres[genre_id - 1]

    def artist(self, artist_id: int) -> Artist:
        """The artist with this id."""
        return self.artists[artist_id - 1]

    def album(self, album_id: int) -> Album:
        """The album with this id."""
        return self.albums[album_id - 1]


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


def _genres(config: SynthConfig, rng: np.random.Generator) -> tuple[list[Genre], list[tuple[str, str]]]:
    """Top-level genres (ids 1..n, from archetypes in a seeded order; the second of each confusable pair a close
    variant of the first), then their sub-genres (a share borrowing from another genre); the confusable pairs."""
    order = rng.permutation(len(ARCHETYPES))
    tops, subs, pairs = [], [], []
    for index in range(config.n_genres):
        archetype = ARCHETYPES[order[index % len(ARCHETYPES)]]
        cycle = index // len(ARCHETYPES)
        title = archetype.name + (f" {cycle + 1}" if cycle else "")
        if index % 2 == 1 and index // 2 < config.confusable_pairs:
            style = vary_style(tops[index - 1].style, CONFUSABLE_SPREAD, CONFUSABLE_SWITCH, rng)
            pairs.append((tops[index - 1].title, title))
        else:
            style = prototype_style(archetype, rng)
        top = Genre(index + 1, title, 0, style)
        tops.append(top)
        count = int(rng.integers(config.min_subgenres, config.max_subgenres + 1))
        for prefix in rng.choice(SUBGENRE_PREFIXES, size=count, replace=False):
            style = vary_style(top.style, SUBGENRE_SPREAD, SUBGENRE_SWITCH, rng)
            subs.append((f"{prefix} {top.title}", top.genre_id, style))
    borrow_rng = _stream(config, BORROW_STREAM)
    for number, (title, parent, style) in enumerate(subs):
        if config.subgenre_borrow and borrow_rng.random() < config.subgenre_borrow:
            other = tops[int(borrow_rng.choice([g.genre_id for g in tops if g.genre_id != parent])) - 1]
            subs[number] = (title, parent, blend_styles(style, other.style, float(borrow_rng.uniform(0.3, 0.5)),
                                                        borrow_rng))
    genres = tops + [Genre(config.n_genres + i + 1, title, parent, style) for i, (title, parent, style) in enumerate(subs)]
    return genres, pairs


def _album_counts(config: SynthConfig, n_artists: int) -> list[int]:
    """Albums per artist: albums_per_artist each, or Zipf-distributed counts capped at it."""
    if not config.albums_zipf:
        return [config.albums_per_artist] * n_artists
    draws = _stream(config, ALBUM_COUNT_STREAM).zipf(config.albums_zipf, size=n_artists)
    return np.minimum(draws, config.albums_per_artist).astype(int).tolist()


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
    style_rng, name_rng = _stream(config, STYLE_STREAM), _stream(config, NAME_STREAM)
    genres, pairs = _genres(config, style_rng)
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
    album_artists = [artist for artist, count in zip(artists, _album_counts(config, n_artists)) for _ in range(count)]
    albums = _albums(config, album_artists, subgenres, style_rng, name_rng)
    track_albums = [album for album in albums for _ in range(config.tracks_per_album)]
    tracks = [
        Track(index + 1, _name(name_rng, int(name_rng.integers(1, 4))), album.album_id, album.artist_id)
        for index, album in enumerate(track_albums)
    ]
    return Collection(tuple(genres), tuple(artists), tuple(albums), tuple(tracks), tuple(pairs))


def _albums(config: SynthConfig, album_artists: list[Artist], subgenres: dict[int, list[Genre]],
            style_rng: np.random.Generator, name_rng: np.random.Generator) -> list[Album]:
    """One album per entry of album_artists, labelled with the artist's sub-genre except for an exact share
    of wrong labels."""
    label_rng = _stream(config, LABEL_STREAM)
    noisy = exact_share([artist.split for artist in album_artists], config.label_noise, label_rng)
    albums = []
    for index, artist in enumerate(album_artists):
        label = artist.subgenre_id
        if index in noisy:
            wrong = int(label_rng.choice([g for g in subgenres if g != artist.genre_id]))
            label = int(label_rng.choice([g.genre_id for g in subgenres[wrong]]))
        production = album_production(artist.signature, style_rng)
        title = _name(name_rng, int(name_rng.integers(1, 3)))
        albums.append(Album(index + 1, title, artist.artist_id, production, label, index in noisy))
    return albums
