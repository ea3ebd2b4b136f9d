"""The feature store and `agf prepare`: statuses, resume after a kill, parallel == serial, settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile
from audio_cases import (
    make_damaged,
    make_empty,
    make_random_bytes,
    make_truncated_mp3,
    make_vbr_mp3_without_header,
    music_like,
    write_case,
)

from agf.audio import write_audio
from agf.config import FeatureConfig
from agf.errors import StoreError
from agf.features import extractor_for
from agf.prepare import TrackJob, is_finished, prepare_features, prepare_track
from agf.store import LOCATION_COLUMNS, FeatureStore, features_key

SR = 22050


def _table(rows: list[tuple[str, Path]]) -> pd.DataFrame:
    return pd.DataFrame({"track_id": [r[0] for r in rows], "audio_path": [str(r[1]) for r in rows]})


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """Good clips in several formats plus every kind of bad input."""
    root = tmp_path_factory.mktemp("corpus")
    rows = []
    for i, (suffix, sr, channels) in enumerate([(".mp3", 44100, 2), (".wav", 48000, 1), (".flac", 22050, 2), (".ogg", 44100, 1)]):
        path = root / f"good{i}{suffix}"
        audio = music_like(2.0, sr, seed=i)
        write_audio(path, np.stack([audio, audio]) if channels == 2 else audio, sr)
        rows.append((f"good{i}", path))
    write_audio(root / "short.wav", music_like(0.3, SR, seed=9), SR)
    write_audio(root / "silence.wav", np.zeros(SR * 10, dtype=np.float32), SR)
    rows += [
        ("short", root / "short.wav"),
        ("silence", root / "silence.wav"),
        ("empty", make_empty(root / "empty.mp3")),
        ("random", make_random_bytes(root / "random.mp3")),
        ("truncated", make_truncated_mp3(root / "truncated.mp3", fraction=0.3)),
        ("missing", root / "does-not-exist.mp3"),
        ("bad1486", root / "good0.mp3"),
    ]
    return _table(rows)


def test_statuses_and_facts(corpus: pd.DataFrame, tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path, FeatureConfig())
    summary = prepare_features(corpus, store, workers=1, known_bad=frozenset({"bad1486"}), progress=False)
    index = store.index().set_index("track_id")
    assert summary.done == len(corpus) and summary.skipped == 0
    for i in range(4):
        assert index.loc[f"good{i}", "status"] == "ok"
    assert index.loc["good0", "sample_rate"] == 44100 and index.loc["good0", "channels"] == 2
    assert index.loc["good1", "sample_rate"] == 48000 and index.loc["good1", "channels"] == 1
    assert index.loc["good1", "duration"] == pytest.approx(2.0, abs=0.01)
    assert index.loc["good1", "frames"] == 1 + (2 * SR) // 512
    assert index.loc["short", "status"] == "too_short"
    assert index.loc["silence", "status"] == "silent"
    assert index.loc["bad1486", "status"] == "known_bad"
    for bad in ("empty", "random", "missing"):
        assert index.loc[bad, "status"] == "failed"
        assert index.loc[bad, "reason"]
    # A truncated MP3 decodes what is there (test_audio): 30 % of the 4 s its own header declares.
    assert index.loc["truncated", "status"] == "truncated"
    assert "of the 4.0 s its header declares" in index.loc["truncated", "reason"]
    assert index.loc["truncated", "duration"] == pytest.approx(1.2, abs=0.3)
    # The same silence rule as prediction's (agf.audio.silence_reason).
    assert index.loc["silence", "reason"] == "RMS level -200.0 dBFS is below the silence threshold of -60 dBFS"
    assert "(the decoder said: " in index.loc["random", "reason"]  # libmpg123's chatter, with its file
    mel = store.mel("good0")
    assert mel.dtype == np.float16 and mel.shape == (index.loc["good0", "frames"], 128)
    assert store.mfcc("good0").shape == (mel.shape[0], 25)
    assert store.dmfcc("good0").shape == (mel.shape[0] - 1, 25)
    assert set(store.ok_ids()) >= {"good0", "good1", "good2", "good3"}
    assert "failed" in summary.format()


def test_a_file_much_shorter_than_its_metadata_says_is_flagged_truncated(corpus: pd.DataFrame, tmp_path) -> None:
    """tracks.csv says 6 s, the file decodes to 1.2 s: flagged truncated (not usable), not silently ok."""
    store = FeatureStore.open(tmp_path, FeatureConfig())
    tracks = corpus[corpus["track_id"].isin(["truncated", "good1"])].copy()
    tracks["declared_duration"] = tracks["track_id"].map({"truncated": 6.0, "good1": 2.0})
    prepare_features(tracks, store, workers=1, progress=False)
    index = store.index().set_index("track_id")
    assert index.loc["truncated", "status"] == "truncated" and "of the 6.0 s" in index.loc["truncated", "reason"]
    assert index.loc["good1", "status"] == "ok"  # 2 s declared, 2 s decoded
    assert "truncated" not in store.usable(tracks)["track_id"].tolist()


def test_a_file_shorter_than_its_header_declares_is_truncated_without_metadata(tmp_path: Path) -> None:
    """No duration in the metadata: the file's own header (12 s) against what decodes (4 s) flags it; a good file
    and a VBR MP3 whose duration FFmpeg only estimates stay ok."""
    tracks = _table([("cut", make_truncated_mp3(tmp_path / "cut.mp3", seconds=12.0, fraction=0.33)),
                     ("vbr", make_vbr_mp3_without_header(tmp_path / "vbr.mp3")),
                     ("good", write_case(tmp_path, "mp3", 44100, 2, 4.0, music=True))])
    store = FeatureStore.open(tmp_path / "work", FeatureConfig())
    summary = prepare_features(tracks, store, workers=1, progress=False)
    index = store.index().set_index("track_id")
    assert index["status"].to_dict() == {"cut": "truncated", "vbr": "ok", "good": "ok"}
    assert index.loc["cut", "reason"] == "decoded 3.9 s of the 12.0 s its header declares (a damaged or partial file)"
    assert "truncated: decoded 3.9 s of the 12.0 s its header declares" in summary.format()


def test_decoder_messages_of_a_usable_file_are_kept_with_it(tmp_path: Path) -> None:
    """A damaged Ogg page: the file decodes (ok) and FFmpeg's 'CRC mismatch' is its reason, listed by the summary."""
    path = make_damaged(write_case(tmp_path, "ogg", 44100, 2, 6.0, music=True))
    store = FeatureStore.open(tmp_path / "work", FeatureConfig())
    summary = prepare_features(_table([("damaged", path)]), store, workers=1, progress=False)
    entry = store.index().set_index("track_id").loc["damaged"]
    assert entry["status"] == "ok" and entry["reason"].startswith("the decoder said: ogg: CRC mismatch")
    assert f"usable, with decoder messages: 1\n  {path}: the decoder said: ogg: CRC mismatch" in summary.format()


def test_rerun_skips_finished_and_redoes_changed_files(corpus: pd.DataFrame, tmp_path: Path) -> None:
    store = FeatureStore.open(tmp_path, FeatureConfig())
    prepare_features(corpus, store, workers=1, progress=False)
    again = prepare_features(corpus, store, workers=1, progress=False)
    assert again.skipped == len(corpus) and again.done == 0
    assert again.format() == f"tracks: {len(corpus)}  newly prepared: 0  already done (skipped): {len(corpus)}"
    retried = prepare_features(corpus, store, workers=1, retry_failed=True, progress=False)
    assert retried.done == (store.index()["status"] == "failed").sum()
    # A replaced audio file is detected and prepared again.
    src = Path(corpus.set_index("track_id").loc["good1", "audio_path"])
    moved = tmp_path / "replaced.wav"
    write_audio(moved, music_like(3.0, 48000, seed=5), 48000)
    table = corpus.copy()
    table.loc[table["track_id"] == "good1", "audio_path"] = str(moved)
    assert not is_finished(store.read_entry("good1"), str(moved), retry_failed=False)
    third = prepare_features(table, store, workers=1, progress=False)
    assert third.done == 1
    assert store.index().set_index("track_id").loc["good1", "duration"] == pytest.approx(3.0, abs=0.01)
    assert src.exists()


def test_half_written_track_is_redone(corpus: pd.DataFrame, tmp_path: Path) -> None:
    """Arrays without a journal line, a journal line cut by a kill, and temp files never count as finished."""
    config = FeatureConfig()
    store = FeatureStore.open(tmp_path, config)
    path = corpus.set_index("track_id").loc["good0", "audio_path"]
    entry = prepare_track(TrackJob("good0", path, str(tmp_path / "reference"), config))
    killed = store.root / "packs" / "killedhost-1-00000000"
    killed.parent.mkdir()
    killed.with_suffix(".bin").write_bytes(b"\1" * 5000)
    killed.with_suffix(".jsonl").write_text('{"track_id": "good0", "status": "ok"')
    (store.root / ".index.parquet.abc.tmp").write_bytes(b"half")
    assert store.read_entry("good0") is None
    summary = prepare_features(corpus[corpus.track_id == "good0"], store, workers=1, progress=False)
    assert summary.done == 1
    stored = store.read_entry("good0")
    assert {k: stored[k] for k in entry} == entry
    assert is_finished(stored, path, retry_failed=False)
    assert not list(store.root.glob(".*.tmp"))


def test_parallel_equals_serial(corpus: pd.DataFrame, tmp_path: Path) -> None:
    serial = FeatureStore.open(tmp_path / "serial", FeatureConfig())
    parallel = FeatureStore.open(tmp_path / "parallel", FeatureConfig())
    prepare_features(corpus, serial, workers=1, progress=False)
    prepare_features(corpus, parallel, workers=2, progress=False)
    a = serial.index().drop(columns=["audio_path", *LOCATION_COLUMNS])
    b = parallel.index().drop(columns=["audio_path", *LOCATION_COLUMNS])
    pd.testing.assert_frame_equal(a, b)
    for track_id in serial.ok_ids():
        np.testing.assert_array_equal(serial.mel(track_id), parallel.mel(track_id))
        np.testing.assert_array_equal(serial.mfcc(track_id), parallel.mfcc(track_id))


def test_changed_settings_get_a_new_store(tmp_path: Path) -> None:
    base = FeatureConfig()
    changed = replace(base, n_mels=64)
    assert features_key(base) != features_key(changed)
    store = FeatureStore.open(tmp_path, base)
    # A store folder whose recorded settings differ is refused, never mixed.
    with pytest.raises(StoreError, match="other feature settings"):
        FeatureStore(store.root, changed)


def _manifest(corpus: pd.DataFrame, directory: Path, n: int) -> Path:
    good = Path(corpus.set_index("track_id").loc["good1", "audio_path"])
    rows = []
    for i in range(n):
        target = directory / f"clip{i}.wav"
        write_audio(target, music_like(3.0, 44100, seed=100 + i), 44100)
        rows.append({"path": target.name, "artist": f"a{i % 3}", "genre": ["rock", "jazz"][i % 2]})
    assert good.exists()
    frame = pd.DataFrame(rows)
    frame["split"] = ["train"] * (n - 2) + ["val", "test"]
    path = directory / "manifest.csv"
    frame.to_csv(path, index=False)
    return path


def _prepare_cmd(manifest: Path, workdir: Path, workers: int) -> list[str]:
    return [sys.executable, "-m", "agf.cli", "prepare", "--manifest", str(manifest), "--workdir", str(workdir),
            "--workers", str(workers), "--quiet"]


@pytest.mark.slow
def test_killed_prepare_resumes_to_the_same_store(corpus: pd.DataFrame, tmp_path: Path) -> None:
    manifest = _manifest(corpus, tmp_path, n=30)
    reference = tmp_path / "reference"
    subprocess.run(_prepare_cmd(manifest, reference, 1), check=True, capture_output=True)

    killed = tmp_path / "killed"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(_prepare_cmd(manifest, killed, 1), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and _journal_lines(killed) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished_before = _journal_lines(killed)
    assert 0 < finished_before < 30, "the kill should land mid-run"

    result = subprocess.run(_prepare_cmd(manifest, killed, 1), check=True, capture_output=True, text=True)
    assert f"already done (skipped): {finished_before}" in result.stdout
    [ref_store] = list(reference.glob("features/*"))
    [new_store] = list(killed.glob("features/*"))
    ref_index = pd.read_parquet(ref_store / "index.parquet").drop(columns=["audio_path", *LOCATION_COLUMNS])
    new_index = pd.read_parquet(new_store / "index.parquet").drop(columns=["audio_path", *LOCATION_COLUMNS])
    pd.testing.assert_frame_equal(ref_index, new_index)
    ref, new = FeatureStore(ref_store, FeatureConfig()), FeatureStore(new_store, FeatureConfig())
    for track_id in ref.ok_ids():
        np.testing.assert_array_equal(ref.mel(track_id), new.mel(track_id))
        np.testing.assert_array_equal(ref.mfcc(track_id), new.mfcc(track_id))


def _journal_lines(workdir: Path) -> int:
    """Finished tracks in a work directory's store: complete journal lines."""
    return sum(path.read_bytes().count(b"\n") for path in workdir.glob("features/*/packs/*.jsonl"))


SEGMENTS = [  # (file seconds, max_duration, offset, expected segment [start, stop) in seconds)
    (10.0, None, "start", (0.0, 10.0)),
    (10.0, 30.0, "centre", (0.0, 10.0)),  # shorter than the segment: the whole file
    (10.0, 4.0, 3.0, (3.0, 7.0)),
    (30.0, 30.0, "centre", (0.0, 30.0)),
    (30.0, 10.0, "centre", (10.0, 20.0)),
    (30.0, 10.0, 25.0, (25.0, 30.0)),  # runs past the end: what is left
    (600.0, 30.0, "centre", (285.0, 315.0)),
    (600.0, 30.0, "start", (0.0, 30.0)),
    (600.0, None, 590.0, (590.0, 600.0)),
]


@pytest.mark.parametrize(("seconds", "max_duration", "offset", "expected"), SEGMENTS)
def test_segment_settings_store_the_expected_frames(
    tmp_path: Path, seconds: float, max_duration: float | None, offset: str | float, expected: tuple[float, float]
) -> None:
    """The stored log-mel is the feature extractor's output on exactly the segment's samples (a lossless file
    at the feature rate, so the decoded samples are the written ones)."""
    config = FeatureConfig(max_duration=max_duration, offset=offset)
    rate = config.sample_rate
    samples = music_like(seconds, rate, seed=3) * 0.5
    path = write_case_wav(tmp_path / "track.wav", samples, rate)
    store = FeatureStore(tmp_path / "store", config)
    entry = prepare_track(TrackJob("1", str(path), str(store.root), config, declared_duration=seconds))
    assert entry["status"] == "ok"
    decoded = soundfile.read(path, dtype="float32")[0]
    start, stop = round(expected[0] * rate), round(expected[1] * rate)
    want = extractor_for(config)(decoded[start:stop]).mel
    assert entry["frames"] == want.shape[0] == 1 + (stop - start) // config.hop_length
    np.testing.assert_array_equal(store.mel("1"), want)


def test_a_segment_past_the_end_is_too_short_and_a_limited_decode_is_not_truncated(tmp_path: Path) -> None:
    path = write_case_wav(tmp_path / "track.wav", music_like(10.0, 22050) * 0.5, 22050)
    past = FeatureConfig(max_duration=5.0, offset=12.0)
    entry = prepare_track(TrackJob("1", str(path), str(tmp_path / "a"), past, declared_duration=10.0))
    assert entry["status"] == "too_short" and "segment" in entry["reason"]
    # Decoding stops after 5 s of a file whose metadata declares 600 s: not a damaged file.
    first = FeatureConfig(max_duration=5.0)
    entry = prepare_track(TrackJob("2", str(path), str(tmp_path / "b"), first, declared_duration=600.0))
    assert entry["status"] == "ok"


def test_segment_settings_key_a_new_store_and_defaults_keep_the_old_key() -> None:
    # The default store's key before the segment settings existed (agf 990ebec): old work directories stay valid.
    assert features_key(FeatureConfig(max_duration=None, offset="start")) == "349b7e9e6040"
    assert features_key(FeatureConfig(max_duration=30.0)) != features_key(FeatureConfig())
    assert features_key(FeatureConfig(max_duration=30.0, offset="centre")) != features_key(
        FeatureConfig(max_duration=30.0))


def write_case_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    """A 16-bit WAV whose decoded samples are exactly the quantised ones written."""
    write_audio(path, samples, rate)
    return path
