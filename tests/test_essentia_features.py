"""Task e: flattening MusicExtractor pools, parallel extraction with failures and timeouts, caching."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from test_factors import FakeStore

from agf.config import FactorConfig
from agf.factors import build as build_module
from agf.factors import build_factors, format_summary
from agf.factors.essentia_features import (
    PITCH_CLASSES,
    essentia_unavailable_reason,
    extract_many,
    flatten_pool,
)
from agf.fileio import read_json

pytestmark = pytest.mark.skipif(essentia_unavailable_reason() is not None, reason="essentia is not importable")
SAMPLE_RATE = 22050


class DictPool:
    """A stand-in for essentia's Pool: descriptorNames() and item access."""

    def __init__(self, values: dict):
        self.values = values

    def descriptorNames(self) -> list[str]:  # noqa: N802 (essentia's name)
        return list(self.values)

    def __getitem__(self, name: str):
        return self.values[name]


def write_clip(path: Path, seed: int, seconds: float = 3.0) -> None:
    """A short clip: a seeded chord with noise and a pulse, so rhythm and key descriptors have content."""
    rng = np.random.default_rng(seed)
    time = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitches = 220 * 2 ** (rng.integers(0, 12, 3) / 12)
    tone = sum(np.sin(2 * np.pi * f * time) for f in pitches) / 3
    pulse = (np.sin(2 * np.pi * rng.uniform(1.5, 3) * time) > 0.9).astype(float)
    signal = 0.3 * tone * (0.5 + pulse) + 0.02 * rng.normal(size=time.size)
    sf.write(path, signal.astype(np.float32), SAMPLE_RATE)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three good WAV clips and one broken file."""
    folder = tmp_path_factory.mktemp("clips")
    paths = {f"good{i}": folder / f"good{i}.wav" for i in range(3)}
    for i, path in enumerate(paths.values()):
        write_clip(path, seed=i)
    paths["broken"] = folder / "broken.wav"
    paths["broken"].write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio" * 20)
    return paths


def test_flatten_pool_drops_metadata_beats_and_covariances_and_one_hots_keys() -> None:
    pool = DictPool({
        "metadata.tags.file_name": "x.wav",
        "metadata.audio_properties.length": 3.0,
        "rhythm.beats_position": np.array([0.5, 1.0]),
        "lowlevel.mfcc.cov": np.eye(2),
        "lowlevel.mfcc.icov": np.eye(2),
        "lowlevel.mfcc.mean": np.array([1.0, 2.0]),
        "rhythm.bpm": 120.0,
        "tonal.key_edma.key": "Bb",
        "tonal.key_edma.scale": "minor",
        "tonal.chords_key": "E",
        "tonal.some_label": "text",
    })
    features = flatten_pool(pool)
    assert features["lowlevel.mfcc.mean.0"] == 1.0 and features["lowlevel.mfcc.mean.1"] == 2.0
    assert features["rhythm.bpm"] == 120.0
    assert not [n for n in features if n.startswith("metadata") or "cov" in n or "beats_position" in n]
    keys = {n: v for n, v in features.items() if n.startswith("tonal.key_edma.key=")}
    assert len(keys) == len(PITCH_CLASSES) and sum(keys.values()) == 1 and keys["tonal.key_edma.key=A#"] == 1
    assert features["tonal.key_edma.scale=minor"] == 1 and features["tonal.key_edma.scale=major"] == 0
    assert features["tonal.chords_key=E"] == 1
    assert "tonal.some_label" not in features and len(features) == 2 + 1 + 12 + 2 + 12


@pytest.mark.slow
def test_extraction_runs_in_parallel_and_reports_broken_files(clips: dict[str, Path]) -> None:
    outcomes = {o.track_id: o for o in extract_many([(t, str(p)) for t, p in clips.items()], workers=2,
                                                    timeout_s=120, progress=False)}
    assert set(outcomes) == set(clips)
    assert outcomes["broken"].features is None and "RuntimeError" in outcomes["broken"].error
    good = [outcomes[f"good{i}"].features for i in range(3)]
    assert all(o is not None for o in good) and len({len(f) for f in good}) == 1
    assert len(good[0]) > 3000
    assert sum(v for n, v in good[0].items() if n.startswith("tonal.key_krumhansl.key=")) == 1
    assert good[0]["lowlevel.spectral_centroid.mean"] != good[1]["lowlevel.spectral_centroid.mean"]


@pytest.mark.slow
def test_a_hanging_file_times_out_without_stopping_the_others(clips: dict[str, Path], tmp_path: Path) -> None:
    fifo = tmp_path / "never_written.wav"
    os.mkfifo(fifo)  # opening it for reading blocks forever: the extractor hangs
    jobs = [("hang", str(fifo)), ("good0", str(clips["good0"]))]
    outcomes = {o.track_id: o for o in extract_many(jobs, workers=1, timeout_s=15, progress=False)}
    assert outcomes["hang"].error.startswith("timeout")
    assert outcomes["good0"].features is not None


@pytest.mark.slow
def test_task_e_caches_vectors_records_failures_and_resumes(clips: dict[str, Path], tmp_path: Path,
                                                              monkeypatch) -> None:
    tracks = pd.DataFrame({
        "track_id": list(clips), "audio_path": [str(p) for p in clips.values()],
        "artist_id": ["a0", "a0", "a1", "a1"], "album_id": "", "genre": ["x", "x", "y", "y"],
        "subgenres": [[]] * 4, "split": "train",
    })
    store = FakeStore(tmp_path / "features", {t: np.zeros((2, 3), np.float32) for t in clips})
    config = FactorConfig(tasks=("e",), n_words=8, n_topics=3, lda_max_iter=5)
    result = build_factors(tracks, store, config, tmp_path / "factors", workers=2, progress=False)["e"]
    assert result.available
    assert result.summary["essentia_failed_tracks"] == 1 and result.summary["n_words"] == 3
    assert "reduced from 8 to 3 words" in result.summary["dictionary_note"]
    failures = read_json(store.root / "essentia" / "failures.json")
    assert list(failures) == ["broken"]
    # Said where the caller's log prints the summary (agf.factors logged to an unconfigured logger before).
    assert f"1 track(s) failed and skipped (why, per track: {store.root / 'essentia' / 'failures.json'})" in (
        format_summary({"e": result}))
    names = read_json(store.root / "essentia" / "descriptors.json")
    assert result.summary["descriptors_total"] == len(names) and names == sorted(names)
    assert all(store.read_array("essentia", f"good{i}").shape == (len(names),) for i in range(3))
    assert not store.has_array("essentia", "broken")
    np.testing.assert_allclose(result.track_targets.sum(axis=1), 1.0)

    def no_extraction(*args, **kwargs):
        raise AssertionError("cached vectors and recorded failures must not be extracted again")

    monkeypatch.setattr(build_module, "extract_many", no_extraction)
    (tmp_path / "factors" / "e" / "done.json").unlink()
    again = build_factors(tracks, store, config, tmp_path / "factors", workers=2, progress=False)["e"]
    pd.testing.assert_frame_equal(again.artist_topics, result.artist_topics)
