"""Artist group factors: shapes, normalisation, determinism, no leakage, caching, and genre information.

The corpus is generated per track: artists of a genre draw MFCC-like frames, Essentia-like vectors
and subgenre labels from their genre's distribution, so every task's groups should know the genre.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agf.config import FactorConfig
from agf.errors import ConfigError, FactorError
from agf.factors import build as build_module
from agf.factors import build_factors, format_summary, load_track_targets
from agf.factors import dictionary as dictionary_module
from agf.factors.bags import artist_bags
from agf.factors.dictionary import (
    assign_words,
    fit_dictionary,
    sample_rows,
    words_per_array,
)
from agf.factors.lda import fit_artist_topics
from agf.factors.summary import genre_information, topic_concentration
from agf.fileio import write_json_atomic, write_npy_atomic

CONFIG = FactorConfig(n_words=32, n_topics=6, kmeans_batch_size=256, lda_max_iter=10, seed=0)
N_GENRES, TRAIN_ARTISTS, TRACKS_PER_ARTIST, FRAMES, DIMS, ESSENTIA_DIMS = 4, 4, 3, 120, 12, 30


class FakeStore:
    """The FeatureStore methods the factors stage uses, over in-memory MFCCs and .npy files under root."""

    def __init__(self, root: Path, mfcc: dict[str, np.ndarray], ok: set[str] | None = None):
        self.root = root
        self.frames = mfcc
        self.ok = set(mfcc) if ok is None else ok
        self.reads = 0

    def ok_ids(self) -> list[str]:
        return sorted(self.ok)

    def mfcc(self, track_id: str) -> np.ndarray:
        self.reads += 1
        return self.frames[track_id]

    def dmfcc(self, track_id: str) -> np.ndarray:
        return np.diff(self.mfcc(track_id), axis=0)

    def array_path(self, kind: str, track_id: str) -> Path:
        return self.root / kind / f"{track_id}.npy"

    def has_array(self, kind: str, track_id: str) -> bool:
        return self.array_path(kind, track_id).exists()

    def write_array(self, kind: str, track_id: str, array: np.ndarray) -> None:
        write_npy_atomic(self.array_path(kind, track_id), array)

    def read_array(self, kind: str, track_id: str) -> np.ndarray:
        return np.load(self.array_path(kind, track_id), allow_pickle=False)


def make_corpus(root: Path, seed: int = 0, val_shift: float = 0.0) -> tuple[pd.DataFrame, FakeStore]:
    """A track table and store: 4 genres x (4 train + 1 val) artists x 3 tracks.

    Genre g has its own frame mean and spread (so deltas differ too), Essentia mean and subgenre
    set. `val_shift` moves only the validation tracks' features and labels (for leakage tests).
    """
    genre_rng = np.random.default_rng(1234)
    frame_means = genre_rng.normal(0, 3, (N_GENRES, DIMS))
    spreads = np.array([0.3, 1.0, 2.0, 4.0])
    essentia_means = genre_rng.normal(0, 2, (N_GENRES, ESSENTIA_DIMS))
    rng = np.random.default_rng(seed)
    rows, frames = [], {}
    for genre in range(N_GENRES):
        for artist in range(TRAIN_ARTISTS + 1):
            split = "train" if artist < TRAIN_ARTISTS else "val"
            shift = val_shift if split == "val" else 0.0
            artist_mean = frame_means[genre] + rng.normal(0, 0.5, DIMS) + shift
            favourite = int(rng.integers(3))
            for track in range(TRACKS_PER_ARTIST):
                track_id = f"t{genre}{artist}{track}"
                frames[track_id] = (artist_mean + spreads[genre] * rng.normal(0, 1, (FRAMES, DIMS))).astype(np.float32)
                labels = [f"g{genre}.s{favourite}"] + ([f"g{genre}.s{int(rng.integers(3))}"] if track else [])
                rows.append({
                    "track_id": track_id, "audio_path": f"/audio/{track_id}.mp3", "artist_id": f"a{genre}{artist}",
                    "album_id": "", "genre": f"genre{genre}", "split": split,
                    "subgenres": [f"v{val_shift}"] if shift else labels,
                })
    tracks = pd.DataFrame(rows)
    store = FakeStore(root / "features", frames)
    names = [f"lowlevel.x.{i:02d}" for i in range(ESSENTIA_DIMS)]
    write_json_atomic(store.root / "essentia" / "descriptors.json", names)
    for row in rows:
        genre = int(row["genre"][-1])
        vector = essentia_means[genre] + rng.normal(0, 0.7, ESSENTIA_DIMS) + (val_shift if row["split"] == "val" else 0)
        if row["track_id"] == "t000":
            vector[-1] = np.nan  # a descriptor missing on one training track: the column is dropped
        store.write_array("essentia", row["track_id"], vector.astype(np.float32))
    return tracks, store


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, FakeStore, Path, dict]:
    """The corpus built once with every task."""
    root = tmp_path_factory.mktemp("built")
    tracks, store = make_corpus(root)
    out_dir = root / "factors"
    return tracks, store, out_dir, build_factors(tracks, store, CONFIG, out_dir, progress=False)


def test_outputs_have_the_documented_shapes_and_rows_sum_to_one(built) -> None:
    tracks, _, out_dir, results = built
    train = tracks[tracks["split"] == "train"]
    columns = [f"topic_{k}" for k in range(CONFIG.n_topics)]
    assert list(results) == ["m", "d", "e", "s"]
    for task, result in results.items():
        assert result.available, result.summary
        assert sorted(result.artist_topics.index) == sorted(train["artist_id"].unique())
        assert list(result.artist_topics.columns) == columns
        np.testing.assert_allclose(result.artist_topics.sum(axis=1), 1.0, atol=1e-9)
        assert sorted(result.track_targets.index) == sorted(train["track_id"])
        np.testing.assert_allclose(result.track_targets.sum(axis=1), 1.0, atol=1e-9)
        artist_of = train.set_index("track_id")["artist_id"]
        expected = result.artist_topics.loc[artist_of.loc[result.track_targets.index]].to_numpy()
        np.testing.assert_array_equal(result.track_targets.to_numpy(), expected)
        pd.testing.assert_frame_equal(load_track_targets(out_dir, task), result.track_targets)
        task_dir = out_dir / task
        assert (task_dir / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (task_dir / "done.json").exists() and (task_dir / "summary.json").exists()
        for npy in task_dir.glob("*.npy"):
            np.load(npy, allow_pickle=False)  # plain arrays only: loading never runs code
    assert np.load(out_dir / "m" / "dictionary.npy").shape == (CONFIG.n_words, DIMS)
    assert np.load(out_dir / "d" / "dictionary.npy").shape == (CONFIG.n_words, DIMS)
    assert results["e"].summary["descriptors_kept"] == ESSENTIA_DIMS - 1
    assert np.load(out_dir / "e" / "dictionary.npy").shape == (CONFIG.n_words, ESSENTIA_DIMS - 1)
    assert np.load(out_dir / "e" / "quantiles.npy").shape == (len(train), ESSENTIA_DIMS - 1)
    assert results["s"].summary["n_words"] == len({g for labels in train["subgenres"] for g in labels})
    table = format_summary(results)
    assert all(f"\n{task} " in table for task in "mdes")


def test_each_task_groups_carry_genre_information_beyond_shuffled_genres(built) -> None:
    for task, result in built[3].items():
        summary = result.summary
        assert summary["nmi_genre"] > summary["nmi_shuffled_p95"] + 0.1, (task, summary)
        assert 1 / CONFIG.n_topics < summary["mean_max_topic"] <= 1.0


def test_the_random_groups_control_breaks_the_artist_group_association(built, tmp_path: Path) -> None:
    """Same groups, permuted across artists: the groups' genre information (NMI of the dominant group with the
    genre) falls to the level of random artist permutations, far below the real groups'; each artist's tracks
    still share one target."""
    from sklearn.metrics import normalized_mutual_info_score

    tracks, store, _, results = built
    config = dataclasses.replace(CONFIG, tasks=("m", "s"), control="random-groups")
    shuffled = build_factors(tracks, store, config, tmp_path / "shuffled", progress=False)
    train = tracks[tracks["split"] == "train"]

    def nmi(artist_topics: pd.DataFrame) -> float:
        groups = artist_topics.loc[train["artist_id"]].to_numpy().argmax(axis=1)
        return normalized_mutual_info_score(train["genre"], groups)

    for task in ("m", "s"):
        real, control = results[task].artist_topics, shuffled[task].artist_topics
        assert sorted(map(tuple, control.to_numpy())) == sorted(map(tuple, real.to_numpy()))  # the same groups
        assert (control.to_numpy() != real.to_numpy()).any(axis=1).mean() > 0.8
        rng = np.random.default_rng(0)
        null = [nmi(real.set_axis(rng.permutation(real.index))) for _ in range(200)]
        assert nmi(control) <= np.percentile(null, 95) < nmi(real), task
        assert shuffled[task].summary["control"] == "random-groups" and results[task].summary["control"] == "none"
        per_artist = shuffled[task].track_targets.groupby(train.set_index("track_id")["artist_id"]).nunique()
        assert (per_artist.max(axis=1) == 1).all()  # one target per artist


def test_the_per_track_control_keeps_the_targets_but_no_artist_shares_one(built, tmp_path: Path) -> None:
    """The fit tracks' targets permuted across tracks: the same multiset of targets (marginal distribution), but
    the tracks of one artist no longer share a target, so nothing about artists is left to learn."""
    tracks, store, _, results = built
    config = dataclasses.replace(CONFIG, tasks=("m",), control="per-track")
    per_track = build_factors(tracks, store, config, tmp_path / "per-track", progress=False)["m"]
    real = results["m"].track_targets
    assert sorted(map(tuple, per_track.track_targets.to_numpy())) == sorted(map(tuple, real.to_numpy()))
    assert list(per_track.track_targets.index) == list(real.index)
    artist_of = tracks.set_index("track_id").loc[real.index, "artist_id"]
    distinct = per_track.track_targets.round(12).apply(tuple, axis=1).groupby(artist_of.to_numpy()).nunique()
    assert (distinct > 1).mean() > 0.8  # an artist's tracks had one target each; now most have several
    assert per_track.summary["control"] == "per-track"


def test_same_seed_gives_identical_factors_and_another_seed_differs(built, tmp_path: Path) -> None:
    tracks, store, _, results = built
    again = build_factors(tracks, store, CONFIG, tmp_path / "again", progress=False)
    for task in results:
        pd.testing.assert_frame_equal(again[task].artist_topics, results[task].artist_topics)
    other = build_factors(tracks, store, dataclasses.replace(CONFIG, seed=1, tasks=("m",)), tmp_path / "other",
                          progress=False)
    assert not np.allclose(other["m"].artist_topics.to_numpy(), results["m"].artist_topics.to_numpy())


def test_validation_tracks_never_influence_the_fit_unless_leaky(built, tmp_path: Path) -> None:
    _, _, out_dir, results = built
    shifted_tracks, shifted_store = make_corpus(tmp_path, val_shift=25.0)
    shifted = build_factors(shifted_tracks, shifted_store, CONFIG, tmp_path / "clean", progress=False)
    for task in results:
        pd.testing.assert_frame_equal(shifted[task].artist_topics, results[task].artist_topics)
        pd.testing.assert_frame_equal(shifted[task].track_targets, results[task].track_targets)
        assert not set(shifted[task].track_targets.index) & set(shifted_tracks.query("split == 'val'")["track_id"])
    np.testing.assert_array_equal(np.load(tmp_path / "clean" / "m" / "dictionary.npy"),
                                  np.load(out_dir / "m" / "dictionary.npy"))
    leaky_config = dataclasses.replace(CONFIG, leaky=True, tasks=("m", "s"))
    # The authors' leaky protocol fits on training and validation tracks, never on test tracks.
    some_val = shifted_tracks.index[shifted_tracks["split"] == "val"][:3]
    shifted_tracks.loc[some_val, "split"] = "test"
    leaky = build_factors(shifted_tracks, shifted_store, leaky_config, tmp_path / "leaky", progress=False)
    for task in ("m", "s"):
        fitted = shifted_tracks.loc[shifted_tracks["split"] != "test", "track_id"]
        assert sorted(leaky[task].track_targets.index) == sorted(fitted)
        assert leaky[task].summary["leaky"] is True
    assert not np.allclose(np.load(tmp_path / "leaky" / "m" / "dictionary.npy"),
                           np.load(out_dir / "m" / "dictionary.npy"))


def test_finished_tasks_are_loaded_and_only_unfinished_ones_rebuilt(built, tmp_path: Path) -> None:
    tracks, store, _, _ = built
    config = dataclasses.replace(CONFIG, tasks=("m", "d", "s"))
    first = build_factors(tracks, store, config, tmp_path, progress=False)
    reads = store.reads
    loaded = build_factors(tracks, store, config, tmp_path, progress=False)
    assert store.reads == reads
    for task in config.tasks:
        pd.testing.assert_frame_equal(loaded[task].artist_topics, first[task].artist_topics)
        assert loaded[task].summary == first[task].summary
    (tmp_path / "d" / "done.json").unlink()  # as if killed while building d
    m_written = (tmp_path / "m" / "artist_topics.parquet").stat().st_mtime_ns
    build_factors(tracks, store, config, tmp_path, progress=False)
    assert store.reads > reads
    assert (tmp_path / "m" / "artist_topics.parquet").stat().st_mtime_ns == m_written
    assert (tmp_path / "d" / "done.json").exists()
    changed = build_factors(tracks, store, dataclasses.replace(config, n_topics=3, tasks=("s",)), tmp_path,
                            progress=False)
    assert changed["s"].track_targets.shape[1] == 3


def test_artists_without_words_get_uniform_groups_and_are_counted(tmp_path: Path) -> None:
    tracks, store = make_corpus(tmp_path)
    tracks["subgenres"] = [[] if a == "a01" else labels for a, labels in zip(tracks["artist_id"], tracks["subgenres"])]
    results = build_factors(tracks, store, dataclasses.replace(CONFIG, tasks=("m", "s")), tmp_path / "f",
                            progress=False)
    uniform = np.full(CONFIG.n_topics, 1 / CONFIG.n_topics)
    np.testing.assert_allclose(results["s"].artist_topics.loc["a01"], uniform)
    assert results["m"].summary["empty_bags"] == 0 and results["s"].summary["empty_bags"] == 1


def test_tiny_corpus_shrinks_the_dictionary_and_says_so(tmp_path: Path) -> None:
    tracks, store = make_corpus(tmp_path)
    palette = np.random.default_rng(0).normal(size=(5, DIMS)).astype(np.float32)
    store.frames = {t: palette[np.arange(FRAMES) % 5] for t in store.frames}
    results = build_factors(tracks, store, dataclasses.replace(CONFIG, tasks=("m",)), tmp_path / "f", progress=False)
    assert results["m"].summary["n_words"] == 5
    assert "reduced from 32 to 5 words" in results["m"].summary["dictionary_note"]


def test_missing_essentia_makes_task_e_unavailable_while_others_build(tmp_path: Path, monkeypatch) -> None:
    tracks, store = make_corpus(tmp_path)
    for path in (store.root / "essentia").glob("*.npy"):
        path.unlink()
    monkeypatch.setattr(build_module, "essentia_unavailable_reason", lambda: "essentia cannot be imported (test)")
    results = build_factors(tracks, store, dataclasses.replace(CONFIG, tasks=("e", "s")), tmp_path / "f",
                            progress=False)
    assert results["e"].summary["status"] == "unavailable: essentia cannot be imported (test)"
    assert not results["e"].available and results["s"].available
    assert not (tmp_path / "f" / "e" / "done.json").exists()
    assert "e    unavailable: essentia cannot be imported (test)" in format_summary(results)
    with pytest.raises(FactorError, match="run `agf factors`"):
        load_track_targets(tmp_path / "f", "e")


def test_unknown_task_is_rejected_by_name() -> None:
    with pytest.raises(ConfigError, match=r"factors.tasks = \['m', 'x'\]: use m, d, e, s"):
        dataclasses.replace(CONFIG, tasks=("m", "x"))


def test_artist_bags_count_words_and_divide_by_track_count() -> None:
    bags, n_tracks = artist_bags(["a", "b", "c"], [("a", np.array([0, 0, 2])), ("a", np.array([1])),
                                                   ("b", np.array([2]))], n_words=3)
    np.testing.assert_array_equal(bags, [[1.0, 0.5, 0.5], [0, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(n_tracks, [2, 1, 0])


def test_words_are_assigned_in_chunks_exactly_as_at_once(monkeypatch) -> None:
    rng = np.random.default_rng(0)
    arrays = [rng.normal(size=(n, 4)).astype(np.float32) for n in (7, 0, 13, 5, 21)]
    dictionary = fit_dictionary(np.concatenate(arrays), n_words=6, batch_size=16, seed=0)
    monkeypatch.setattr(dictionary_module, "ASSIGN_CHUNK_ROWS", 10)
    chunked = list(words_per_array(arrays, dictionary.centres))
    assert [len(w) for w in chunked] == [7, 0, 13, 5, 21]
    np.testing.assert_array_equal(np.concatenate(chunked), assign_words(np.concatenate(arrays), dictionary.centres))


def test_the_dictionary_of_frames_on_disk_is_the_dictionary_of_frames_in_memory(tmp_path: Path, monkeypatch) -> None:
    """The samples go through a memory-mapped temporary file (bounded memory at FMA sizes): the same centres, bit
    for bit, and the same distinct-row count when it is taken in chunks; the file is gone afterwards."""
    rng = np.random.default_rng(1)
    arrays = [rng.normal(size=(n, 5)).astype(np.float32) for n in (300, 0, 450, 250)]
    arrays[2][:100] = arrays[0][:100]  # repeated rows: distinct < total
    in_memory = fit_dictionary(np.concatenate(arrays), n_words=40, batch_size=64, seed=3)
    monkeypatch.setattr(dictionary_module, "DISTINCT_CHUNK_ROWS", 128)
    (tmp_path / ".frames-1.tmp").write_bytes(b"left by a killed run")
    with build_module.frames_on_disk(iter(arrays), tmp_path) as samples:
        assert isinstance(samples, np.memmap) and samples.shape == (1000, 5)
        np.testing.assert_array_equal(samples, np.concatenate(arrays))
        assert dictionary_module.count_distinct_rows(samples) == 900
        assert dictionary_module.count_distinct_rows(samples, enough=40) >= 40
        on_disk = fit_dictionary(samples, n_words=40, batch_size=64, seed=3)
    assert on_disk.centres.tobytes() == in_memory.centres.tobytes()
    assert not list(tmp_path.iterdir())
    tiny = fit_dictionary(np.repeat(arrays[0][:3], 50, axis=0), n_words=40, batch_size=64, seed=3)
    assert tiny.n_words == 3 and "only 3 distinct samples" in tiny.note


def test_sample_rows_keeps_time_order_and_is_seeded() -> None:
    array = np.arange(100)[:, None]
    first = sample_rows(array, 10, np.random.default_rng(3))
    assert len(first) == 10 and np.all(np.diff(first[:, 0]) > 0)
    np.testing.assert_array_equal(first, sample_rows(array, 10, np.random.default_rng(3)))
    assert len(sample_rows(array, 0, np.random.default_rng(3))) == 100


def test_lda_gives_uniform_rows_to_empty_bags_and_normalised_rows_elsewhere() -> None:
    bags = np.zeros((5, 8))
    bags[0, :4] = 10
    bags[1, 4:] = 10
    bags[3, ::2] = 3
    model = fit_artist_topics(bags, n_topics=3, max_iter=10, seed=0)
    np.testing.assert_array_equal(model.empty, [False, False, True, False, True])
    np.testing.assert_allclose(model.topics[[2, 4]], 1 / 3)
    np.testing.assert_allclose(model.topics.sum(axis=1), 1.0)
    assert np.isfinite(model.perplexity)


def test_concentration_and_genre_information_measures() -> None:
    one_hot, uniform = np.eye(4), np.full((4, 4), 0.25)
    assert topic_concentration(one_hot) == {"mean_max_topic": 1.0, "mean_relative_entropy": 0.0}
    assert topic_concentration(uniform)["mean_max_topic"] == 0.25
    assert topic_concentration(uniform)["mean_relative_entropy"] == pytest.approx(1.0)
    genres = np.repeat(["a", "b", "c"], 30)
    informative = genre_information(np.repeat([0, 1, 2], 30), genres)
    assert informative["nmi_genre"] == pytest.approx(1.0)
    assert informative["nmi_shuffled_p95"] < 0.2


def test_binary_essentia_columns_are_not_quantile_outliers() -> None:
    """One-hot key/scale columns: quantile normalisation makes them +-5.2 outliers; standardised they have unit
    variance like the continuous columns; dropped they are gone."""
    from agf.factors.build import normalise_descriptors

    rng = np.random.default_rng(0)
    continuous = rng.normal(size=(200, 3))
    key = (rng.random(200) < 0.1).astype(float)
    matrix = np.column_stack([continuous, key, np.full(200, np.nan)])
    quantile, keep, _, _ = normalise_descriptors(matrix, "quantile", 0)
    assert keep.tolist() == [True, True, True, True, False] and np.abs(quantile[:, 3]).max() > 5
    standard, _, quantiled, _ = normalise_descriptors(matrix, "standardise", 0)
    assert quantiled.tolist() == [True, True, True, False, False]
    assert standard[:, 3].std() == pytest.approx(1.0, abs=1e-5) and np.abs(standard[:, 3]).max() < 3.5
    assert standard[:, :3].std(axis=0) == pytest.approx([1.0] * 3, abs=0.15)
    dropped, keep, _, _ = normalise_descriptors(matrix, "drop", 0)
    assert dropped.shape == (200, 3) and keep.tolist() == [True, True, True, False, False]


def test_counted_bags_give_concentrated_groups_where_divided_ones_give_the_prior(tmp_path: Path) -> None:
    """One word per track (task e) or per label (s): divided by the track count, an artist's bag holds about one
    word and LDA returns near its prior; counted (the default for e and s), the groups are concentrated."""
    assert "e" not in FactorConfig().divide_bags and "s" not in FactorConfig().divide_bags
    tracks, store = make_corpus(tmp_path)
    concentration = {}
    for divide in ((), ("s",)):
        config = dataclasses.replace(CONFIG, tasks=("s",), divide_bags=divide)
        result = build_factors(tracks, store, config, tmp_path / f"divide-{divide}", progress=False)["s"]
        concentration[divide] = result.summary["mean_max_topic"]
    assert concentration[()] > concentration[("s",)] + 0.1, concentration


def test_factor_settings_are_sized_to_the_artists_that_fit_them() -> None:
    from agf.config import FactorConfig
    from agf.factors.sizing import fitting_artists, sized_factors

    auto = FactorConfig(n_words=0, n_topics=0)
    assert sized_factors(auto, 44)[0].n_words == 256 and sized_factors(auto, 44)[0].n_topics == 11
    assert sized_factors(auto, 3)[0].n_words == 64 and sized_factors(auto, 3)[0].n_topics == 4
    assert (sized_factors(auto, 5000)[0].n_words, sized_factors(auto, 5000)[0].n_topics) == (2048, 40)
    sized, warnings = sized_factors(FactorConfig(), 44)  # the paper's 2,048 words and 40 topics
    assert (sized.n_words, sized.n_topics) == (2048, 40) and len(warnings) == 2
    assert "about 256" in warnings[0] and "about 11" in warnings[1]
    assert sized_factors(FactorConfig(), 5000)[1] == []
    assert sized_factors(FactorConfig(n_words=256, n_topics=12), 38)[1] == []  # the demo's settings
    tracks = pd.DataFrame({"artist_id": [1, 1, 2, 3, 4], "split": ["train", "train", "train", "val", "test"]})
    assert fitting_artists(tracks, FactorConfig()) == 2
    assert fitting_artists(tracks, FactorConfig(leaky=True)) == 3


def test_the_dictionary_fits_on_at_most_dictionary_samples_frames(tmp_path: Path) -> None:
    """Above the cap the K-means sees a random draw of the frames; at or below it, all of them, as before."""
    tracks, store = make_corpus(tmp_path)
    config = FactorConfig(tasks=("m",), n_words=8, n_topics=2, frames_per_track=20)

    def build(cap: int, name: str) -> dict:
        config_cap = dataclasses.replace(config, dictionary_samples=cap)
        return build_factors(tracks, store, config_cap, tmp_path / name, workers=1, progress=False)["m"].summary

    every, capped, roomy = build(0, "every"), build(50, "capped"), build(10**6, "roomy")
    assert every["dictionary_samples"] == every["sampled_frames"] > 50
    assert capped["dictionary_samples"] == 50 and capped["sampled_frames"] == every["sampled_frames"]
    assert roomy["dictionary_samples"] == every["dictionary_samples"]
    dictionary = {name: np.load(tmp_path / name / "m" / "dictionary.npy") for name in ("every", "capped", "roomy")}
    assert np.array_equal(dictionary["roomy"], dictionary["every"])
    assert not np.array_equal(dictionary["capped"], dictionary["every"])


def test_paper_factor_settings_divide_e_bags_by_the_track_count(tmp_path: Path, monkeypatch) -> None:
    """The paper presets' divide_bags: an artist's e bag (one word per track) sums to 1, divided by its 3 tracks;
    agf's default counts it (sum 3)."""
    from agf.config import load_config

    tracks, store = make_corpus(tmp_path)
    paper = load_config("paper").factors
    sums: dict[tuple[str, ...], set[float]] = {}
    real_bags = build_module.artist_bags
    for divide in (paper.divide_bags, FactorConfig().divide_bags):
        def spy(*args, divide_now: tuple[str, ...] = divide, **kwargs):
            bags, counts = real_bags(*args, **kwargs)
            sums.setdefault(divide_now, set()).update(np.round(bags[counts > 0].sum(axis=1), 9).tolist())
            return bags, counts

        monkeypatch.setattr(build_module, "artist_bags", spy)
        config = dataclasses.replace(CONFIG, tasks=("e",), divide_bags=divide, essentia_binary=paper.essentia_binary)
        build_factors(tracks, store, config, tmp_path / "-".join(divide), progress=False)
    assert sums[paper.divide_bags] == {1.0} and sums[FactorConfig().divide_bags] == {float(TRACKS_PER_ARTIST)}


def test_paper_quantile_normalisation_makes_every_column_normal_on_the_fit_tracks() -> None:
    """essentia_binary = 'quantile' (the paper presets'): every kept column, binary ones too, is mapped through its
    ranks on the fit tracks to standard-normal quantiles (clipped near +-5.2)."""
    from scipy.stats import norm

    from agf.config import load_config
    from agf.factors.build import normalise_descriptors

    rng = np.random.default_rng(0)
    n = 200
    matrix = np.column_stack([rng.exponential(3.0, n), rng.uniform(-9, 1, n), (rng.random(n) < 0.1).astype(float)])
    normalised, keep, quantiled, _ = normalise_descriptors(matrix, load_config("paper").factors.essentia_binary, 0)
    assert keep.all() and quantiled.all()
    ranks = np.clip(np.linspace(0, 1, n), 1e-7, 1 - 1e-7)
    for column in (0, 1):
        np.testing.assert_allclose(np.sort(normalised[:, column]), norm.ppf(ranks), atol=1e-5)
    np.testing.assert_allclose(np.abs(normalised[:, 2]), norm.ppf(1 - 1e-7), rtol=1e-5)  # one-hot: the extremes


def test_validation_tracks_get_targets_inferred_by_the_fitted_parts_which_they_do_not_change(built, tmp_path: Path) -> None:
    tracks, store, out_dir, results = built
    config = dataclasses.replace(CONFIG, val_targets=True)
    inferred = build_factors(tracks, store, config, tmp_path / "inferred", progress=False)
    val = tracks[tracks["split"] == "val"]
    train = tracks[tracks["split"] == "train"]
    for task in "mds":
        result = inferred[task]
        pd.testing.assert_frame_equal(result.artist_topics, results[task].artist_topics)  # nothing refitted
        pd.testing.assert_frame_equal(result.track_targets, results[task].track_targets)
        assert sorted(result.val_targets.index) == sorted(val["track_id"])
        np.testing.assert_allclose(result.val_targets.sum(axis=1), 1.0, atol=1e-9)
        assert result.summary["val_target_tracks"] == len(val)
        loaded = load_track_targets(tmp_path / "inferred", task)  # what training reads: fit and validation tracks
        assert sorted(loaded.index) == sorted(tracks["track_id"])  # no test tracks in this corpus
        # each validation artist's groups resemble those of its genre's training artists more than the others'
        genre_of = tracks.set_index("track_id")["genre"]
        means = result.track_targets.groupby(genre_of.loc[result.track_targets.index].to_numpy()).mean()
        found = result.val_targets.groupby(genre_of.loc[result.val_targets.index].to_numpy()).mean()
        nearest = [(means - row).abs().sum(axis=1).idxmin() for _, row in found.iterrows()]
        assert sum(genre == near for genre, near in zip(found.index, nearest)) >= 3, (task, nearest)
    np.testing.assert_array_equal(np.load(tmp_path / "inferred" / "m" / "dictionary.npy"),
                                  np.load(out_dir / "m" / "dictionary.npy"))
    assert inferred["e"].val_targets.empty  # task e cannot give new tracks words: no inferred targets
    assert f"m: groups of {len(val)} validation tracks inferred" in format_summary(inferred)
    assert len(train) == len(inferred["m"].track_targets)
    # Turned off again: the inferred targets go with the rebuild.
    rebuilt = build_factors(tracks, store, dataclasses.replace(config, tasks=("m",), val_targets=False),
                            tmp_path / "inferred", progress=False)
    assert rebuilt["m"].val_targets.empty and not (tmp_path / "inferred" / "m" / "val_targets.parquet").exists()
    assert sorted(load_track_targets(tmp_path / "inferred", "m").index) == sorted(train["track_id"])


@pytest.mark.parametrize("change", [{"leaky": True}, {"control": "random-groups"}])
def test_no_targets_are_inferred_when_validation_tracks_are_fitted_or_groups_permuted(built, tmp_path: Path,
                                                                                    change: dict) -> None:
    tracks, store, _, _ = built
    config = dataclasses.replace(CONFIG, tasks=("m",), val_targets=True, **change)
    assert build_factors(tracks, store, config, tmp_path, progress=False)["m"].val_targets.empty


def test_inferred_topics_of_the_fitted_bags_are_their_fitted_topics() -> None:
    rng = np.random.default_rng(0)
    bags = rng.poisson(3.0, (12, 20)).astype(float)
    bags[4] = 0
    model = fit_artist_topics(bags, 4, 10, seed=0)
    np.testing.assert_allclose(model.infer(bags), model.topics, atol=1e-6)
    np.testing.assert_allclose(model.infer(np.zeros((2, 20))), 0.25)
