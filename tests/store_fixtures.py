"""Tiny feature stores built from generated arrays (no audio), for tests of training and later stages.

    collection = toy_collection(tmp_path)            # separable genres: each lights its own mel bands
    store, tracks = collection.store, collection.tracks
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from agf.config import FeatureConfig
from agf.datasets.table import validate_track_table
from agf.store import FeatureStore


def make_store(
    root: Path,
    mels: Mapping[str, np.ndarray],
    config: FeatureConfig | None = None,
    statuses: Mapping[str, str] | None = None,
    mfccs: Mapping[str, np.ndarray] | None = None,
) -> FeatureStore:
    """A store under root holding each (frames, n_mels) array as a float16 log-mel, with an entry and the index.

    `statuses` marks tracks other than 'ok' (their entries say so; their arrays are still written). `mfccs`:
    each track's (frames, n_mfcc) MFCC-like array (default: the log-mel's first n_mfcc bands).
    """
    config = config or FeatureConfig(n_mels=next(iter(mels.values())).shape[1])
    store = FeatureStore(root, config)
    for track_id, mel in mels.items():
        status = (statuses or {}).get(track_id, "ok")
        store.write_track(
            {
                "track_id": track_id,
                "status": status,
                "reason": "" if status == "ok" else "test",
                "audio_path": f"/nonexistent/{track_id}.mp3",
                "file_size": 0,
                "file_mtime_ns": 0,
                "sample_rate": config.sample_rate,
                "channels": 1,
                "duration": mel.shape[0] * config.hop_length / config.sample_rate,
                "frames": int(mel.shape[0]),
                "peak_db": 0.0,
                "rms_db": -20.0,
                "decoder": "generated",
            },
            mel,
            np.asarray(mel if mfccs is None else mfccs[track_id], dtype=np.float32)[:, : config.n_mfcc],
        )
    store.write_index()
    return store


def toy_mels(
    genres: np.ndarray, frames: int, n_mels: int, rng: np.random.Generator, separation: float
) -> list[np.ndarray]:
    """Log-mel-like arrays: -40 dB +- noise, genre k adds `separation` dB on its own block of bands."""
    n_genres = int(genres.max()) + 1
    block = n_mels // n_genres
    mels = []
    for genre in genres:
        mel = rng.normal(-40.0, 6.0, size=(frames, n_mels))
        mel[:, genre * block : (genre + 1) * block] += separation
        mels.append(mel)
    return mels


@dataclass(frozen=True)
class ToyCollection:
    """A validated track table and its feature store."""

    tracks: pd.DataFrame
    store: FeatureStore


def toy_collection(
    root: Path,
    n_genres: int = 3,
    tracks_per_genre: int = 12,
    val_per_genre: int = 4,
    frames: int = 60,
    n_mels: int = 32,
    separation: float = 12.0,
    tracks_per_artist: int = 2,
    seed: int = 0,
) -> ToyCollection:
    """Tracks of n_genres genres (the first val_per_genre of each genre are 'val'), artists of a few tracks each."""
    rng = np.random.default_rng(seed)
    genres = np.repeat(np.arange(n_genres), tracks_per_genre)
    track_ids = [f"t{i:04d}" for i in range(len(genres))]
    position = np.tile(np.arange(tracks_per_genre), n_genres)
    tracks = pd.DataFrame(
        {
            "track_id": track_ids,
            "audio_path": [f"/nonexistent/{t}.mp3" for t in track_ids],
            "artist_id": [f"a{i // tracks_per_artist:03d}" for i in range(len(genres))],
            "album_id": "",
            "genre": [f"genre{g}" for g in genres],
            "subgenres": [[] for _ in genres],
            "split": np.where(position < val_per_genre, "val", "train"),
        }
    )
    mels = dict(zip(track_ids, toy_mels(genres, frames, n_mels, rng, separation)))
    store = make_store(root / "features", mels, FeatureConfig(n_mels=n_mels))
    return ToyCollection(validate_track_table(tracks, "toy collection"), store)


def artist_soft_targets(
    tracks: pd.DataFrame, n_topics: int, seed: int = 0, splits: tuple[str, ...] = ("train",)
) -> pd.DataFrame:
    """Artist-group-like targets: each artist a Dirichlet topic distribution, given to its tracks in `splits`."""
    rng = np.random.default_rng(seed)
    artists = sorted(tracks["artist_id"].unique())
    topics = dict(zip(artists, rng.dirichlet(np.full(n_topics, 0.3), size=len(artists))))
    chosen = tracks[tracks["split"].isin(splits)]
    values = np.stack([topics[a] for a in chosen["artist_id"]])
    index = pd.Index(chosen["track_id"], name="track_id")
    return pd.DataFrame(values, index=index, columns=[f"topic{k}" for k in range(n_topics)])
