"""The synthetic demo corpus: FMA layout read by the FMA loader, exact label noise, artist-disjoint split,
learnable-but-not-trivial audio, determinism, resume and idempotence."""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path

import av
import librosa
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from agf.audio import decode
from agf.config import MAX_SUBGENRES, SynthConfig
from agf.datasets.synth.collection import SUBGENRE_PREFIXES
from agf.datasets.fma import load_fma
from agf.datasets.synth import build_collection, corpus_summary, synthesize_corpus
from agf.datasets.synth.corpus import MARKER, render_job, render_jobs
from agf.errors import ConfigError, SynthError

# The reduced corpus of the tests: 6 genres x 4 artists x 2 albums x 3 tracks of 4 s = 144 clips.
SMALL = SynthConfig(n_genres=6, artists_per_genre=4, albums_per_artist=2, tracks_per_album=3, clip_seconds=4.0)
TINY = SynthConfig(n_genres=2, artists_per_genre=2, albums_per_artist=1, tracks_per_album=2, clip_seconds=1.5)
FEATURE_RATE = 22050
N_MFCC = 20


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reduced corpus, rendered once with two worker processes."""
    return synthesize_corpus(tmp_path_factory.mktemp("synth") / "corpus", SMALL, workers=2, progress=False)


@pytest.fixture(scope="module")
def raw_tracks(corpus: Path) -> pd.DataFrame:
    """tracks.csv as FMA's two-level frame."""
    return pd.read_csv(corpus / "fma_metadata" / "tracks.csv", index_col=0, header=[0, 1])


@pytest.fixture(scope="module")
def loaded(corpus: Path) -> pd.DataFrame:
    """The corpus through the FMA loader, as any FMA download would be read."""
    dataset = load_fma(corpus / "fma_metadata", corpus / "audio", subset="large")
    assert dataset.warnings == [] and dataset.missing.empty
    return dataset.tracks


@pytest.fixture(scope="module")
def mfcc_stats(loaded: pd.DataFrame) -> np.ndarray:
    """Per-track MFCC mean and standard deviation (the FMA paper's classical baseline features)."""
    rows = []
    for path in loaded["audio_path"]:
        samples, _ = decode(path, FEATURE_RATE)
        mfcc = librosa.feature.mfcc(y=samples, sr=FEATURE_RATE, n_mfcc=N_MFCC)
        rows.append(np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)]))
    return np.array(rows)


def _baseline() -> object:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))


@pytest.mark.slow
def test_fma_loader_reads_the_corpus(loaded: pd.DataFrame) -> None:
    n_tracks = 6 * 4 * 2 * 3
    assert len(loaded) == n_tracks
    assert loaded["audio_path"].map(os.path.isfile).all()
    assert set(loaded["split"]) == {"train", "val", "test"}
    assert loaded["true_genre"].nunique() == SMALL.n_genres
    assert loaded["artist_id"].nunique() == 24 and loaded["album_id"].nunique() == 48
    assert all(len(subgenres) == 1 for subgenres in loaded["subgenres"])


@pytest.mark.slow
def test_fma_layout_and_genre_hierarchy(corpus: Path, raw_tracks: pd.DataFrame) -> None:
    header = (corpus / "fma_metadata" / "tracks.csv").read_text().splitlines()[:3]
    assert header[0].startswith(",album,") and header[2].startswith("track_id")
    assert {"album", "artist", "set", "track"} == set(raw_tracks.columns.get_level_values(0))
    assert (corpus / "audio" / "000" / "000001.mp3").is_file()
    genres = pd.read_csv(corpus / "fma_metadata" / "genres.csv", index_col=0)
    roots = genres[genres["parent"] == 0]
    assert len(roots) == SMALL.n_genres and (roots["top_level"] == roots.index).all()
    children = genres[genres["parent"] != 0]
    per_root = children.groupby("parent").size()
    assert per_root.between(SMALL.min_subgenres, SMALL.max_subgenres).all() and len(per_root) == len(roots)
    assert (children["top_level"] == children["parent"]).all()
    for _, row in raw_tracks.iterrows():
        (subgenre,) = json.loads(row[("track", "genres")])
        assert genres.loc[subgenre, "parent"] != 0
        assert genres.loc[genres.loc[subgenre, "parent"], "title"] == row[("track", "genre_top")]
        assert json.loads(row[("track", "genres_all")]) == [genres.loc[subgenre, "parent"], subgenre]


@pytest.mark.slow
def test_label_noise_is_the_exact_share_of_albums_and_recorded(corpus: Path, raw_tracks: pd.DataFrame) -> None:
    track = raw_tracks["track"]
    noisy = track["label_noise"].astype(bool)
    assert (noisy == (track["genre_top"] != track["true_genre"])).all()
    per_album = noisy.groupby(raw_tracks[("album", "id")])
    assert (per_album.nunique() == 1).all()  # labels are given per album
    n_albums = per_album.ngroups
    assert per_album.first().sum() == math.floor(SMALL.label_noise * n_albums + 0.5) == 7
    summary = corpus_summary(corpus)
    assert (summary.albums, summary.noisy_albums, summary.noisy_tracks) == (n_albums, 7, 7 * SMALL.tracks_per_album)


@pytest.mark.slow
def test_split_is_artist_disjoint_and_genre_stratified(loaded: pd.DataFrame) -> None:
    artists = loaded.groupby("artist_id").agg(splits=("split", "nunique"), split=("split", "first"),
                                              genre=("true_genre", "first"))
    assert (artists["splits"] == 1).all()
    assert artists["split"].value_counts().to_dict() == {"train": 20, "val": 2, "test": 2}  # 80/10/10 of 24
    held_out = artists[artists["split"] != "train"]
    assert held_out["genre"].is_unique  # spread over genres
    assert set(artists.loc[artists["split"] == "train", "genre"]) == set(artists["genre"])


@pytest.mark.slow
def test_mfcc_baseline_learns_true_genres_well_above_chance_but_not_perfectly(
    loaded: pd.DataFrame, mfcc_stats: np.ndarray
) -> None:
    accuracy = cross_val_score(
        _baseline(), mfcc_stats, loaded["true_genre"], groups=loaded["artist_id"], cv=GroupKFold(n_splits=4)
    ).mean()
    chance = 1.0 / SMALL.n_genres
    assert 2.5 * chance < accuracy < 0.9, accuracy


@pytest.mark.slow
def test_artist_identity_is_predictable_from_audio(loaded: pd.DataFrame, mfcc_stats: np.ndarray) -> None:
    first_album = loaded.groupby("artist_id")["album_id"].transform(lambda a: a.astype(int).min()).astype(str)
    train = (loaded["album_id"] == first_album).to_numpy()
    model = _baseline().fit(mfcc_stats[train], loaded["artist_id"][train])
    accuracy = (model.predict(mfcc_stats[~train]) == loaded["artist_id"][~train]).mean()
    assert accuracy > 5.0 / loaded["artist_id"].nunique(), accuracy  # another album of the same artists


@pytest.mark.slow
def test_clips_are_stereo_music_of_the_configured_length(corpus: Path) -> None:
    path = corpus / "audio" / "000" / "000001.mp3"
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert (stream.codec_context.sample_rate, stream.codec_context.layout.nb_channels) == (44100, 2)
    samples, info = decode(path, FEATURE_RATE)
    assert abs(info.duration - SMALL.clip_seconds) < 0.1
    flatness = np.median(librosa.feature.spectral_flatness(y=samples))
    assert flatness < 0.05  # tonal: white noise is about 0.5
    loudness = librosa.feature.rms(y=samples)[0]
    assert loudness.std() / loudness.mean() > 0.1  # notes and hits come and go


@pytest.mark.slow
def test_workers_do_not_change_the_audio(corpus: Path, tmp_path: Path) -> None:
    jobs = render_jobs(build_collection(SMALL), SMALL, tmp_path)
    for job in (jobs[0], jobs[77]):
        rendered = render_job(job)
        from_pool = corpus / "audio" / rendered.relative_to(tmp_path)
        assert rendered.read_bytes() == from_pool.read_bytes()


def _fingerprint(root: Path) -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    """A corpus's metadata files (bytes) and decoded clips."""
    metadata = {name: (root / "fma_metadata" / name).read_bytes() for name in ("tracks.csv", "genres.csv")}
    audio = {path.name: decode(path, FEATURE_RATE)[0] for path in sorted((root / "audio").rglob("*.mp3"))}
    return metadata, audio


def test_same_seed_same_corpus_other_seed_other_corpus(tmp_path: Path) -> None:
    metadata, audio = _fingerprint(synthesize_corpus(tmp_path / "a", TINY, workers=1, progress=False))
    metadata_again, audio_again = _fingerprint(synthesize_corpus(tmp_path / "b", TINY, workers=1, progress=False))
    metadata_other, audio_other = _fingerprint(
        synthesize_corpus(tmp_path / "c", replace(TINY, seed=1), workers=1, progress=False)
    )
    assert metadata == metadata_again
    assert audio.keys() == audio_again.keys() and len(audio) == 8
    assert all(np.array_equal(audio[name], audio_again[name]) for name in audio)
    assert metadata["tracks.csv"] != metadata_other["tracks.csv"]
    assert not np.allclose(audio["000001.mp3"], audio_other["000001.mp3"])


def test_complete_corpus_is_reused_and_a_killed_run_resumes(tmp_path: Path) -> None:
    out = synthesize_corpus(tmp_path / "corpus", TINY, workers=1, progress=False)
    clips = sorted((out / "audio").rglob("*.mp3"))
    stamps = {path: path.stat().st_mtime_ns for path in clips}
    original = clips[1].read_bytes()
    synthesize_corpus(out, TINY, workers=1, progress=False)
    assert {path: path.stat().st_mtime_ns for path in clips} == stamps
    # A run killed mid-way: its marker says incomplete and a clip is missing.
    marker = json.loads((out / MARKER).read_text())
    (out / MARKER).write_text(json.dumps({**marker, "complete": False}))
    clips[1].unlink()
    with pytest.raises(SynthError, match="incomplete"):
        corpus_summary(out)
    synthesize_corpus(out, TINY, workers=1, progress=False)
    assert clips[1].read_bytes() == original
    assert all(path.stat().st_mtime_ns == stamps[path] for path in clips if path != clips[1])
    assert corpus_summary(out).tracks == len(clips)
    with pytest.raises(SynthError, match="seed"):
        synthesize_corpus(out, replace(TINY, seed=5), workers=1, progress=False)


def test_foreign_folder_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "audio").mkdir()
    with pytest.raises(SynthError, match="did not write"):
        synthesize_corpus(tmp_path, TINY, workers=1, progress=False)


@pytest.mark.parametrize(
    ("change", "setting"),
    [({"n_genres": 1}, "n_genres"), ({"clip_seconds": 601.0}, "clip_seconds"), ({"label_noise": 1.5}, "label_noise"),
     ({"min_subgenres": 3, "max_subgenres": 2}, "min_subgenres")],
)
def test_bad_settings_are_named(change: dict[str, object], setting: str) -> None:
    with pytest.raises(ConfigError, match=f"synth.{setting}"):
        replace(SynthConfig(), **change)


def test_default_collection_counts_and_straddlers() -> None:
    collection = build_collection(SynthConfig())
    assert len(collection.tracks) == 8 * 6 * 2 * 5 and len(collection.albums) == 96
    assert sum(album.noisy for album in collection.albums) == 14  # round(0.15 * 96)
    straddlers = [artist for artist in collection.artists if artist.second_genre_id]
    assert len(straddlers) == 5  # round(0.1 * 48)
    assert all(artist.second_genre_id != artist.genre_id for artist in straddlers)
    titles = [genre.title for genre in collection.genres]
    assert len(set(titles)) == len(titles)


def test_hard_profile_options_shape_the_collection() -> None:
    """Confusable genre pairs, sub-genres borrowing from other genres, Zipf album counts."""
    base = SynthConfig(n_genres=16, artists_per_genre=12, albums_per_artist=8, seed=4)
    hard = replace(base, confusable_pairs=4, subgenre_borrow=0.5, albums_zipf=2.0)
    plain, collection = build_collection(base), build_collection(hard)
    tops = {g.title: g for g in collection.genres if g.parent == 0}
    assert len(collection.confusable) == 4 and collection.confusable_pairs[0].count("/") == 1
    pair_gaps = [np.abs(tops[a].style.units - tops[b].style.units).mean() for a, b in collection.confusable]
    paired = {t for pair in collection.confusable for t in pair}
    others = [np.abs(x.style.units - y.style.units).mean() for x in tops.values() for y in tops.values()
              if x.title < y.title and not {x.title, y.title} & paired]
    assert max(pair_gaps) < np.percentile(others, 10)  # a pair is closer than almost any two unpaired genres
    counts = np.bincount([a.artist_id for a in collection.albums])[1:]
    assert counts.max() == 8 and np.mean(counts == 1) > 0.4 and len(collection.albums) < len(plain.albums)
    moved = [np.abs(a.style.units - b.style.units).mean()
             for a, b in zip(plain.genres[16:], collection.genres[16:]) if a.title == b.title]
    assert plain.confusable == () and sum(m > 0.02 for m in moved) >= 0.2 * len(moved)
    with pytest.raises(ConfigError, match="synth.confusable_pairs"):
        replace(base, confusable_pairs=9)
    with pytest.raises(ConfigError, match="synth.albums_zipf"):
        replace(base, albums_zipf=0.5)


def test_the_config_allows_as_many_subgenres_as_the_collection_can_name() -> None:
    assert len(SUBGENRE_PREFIXES) == MAX_SUBGENRES
