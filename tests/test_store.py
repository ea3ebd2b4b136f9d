"""The packed feature store: bit-exact arrays, the journal as completion marker, readers in other processes, and
the one-time conversion of first-layout stores."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agf.config import FeatureConfig, key_settings
from agf.errors import StoreError
from agf.store import ENTRY_COLUMNS, LAYOUT, PACK_ALIGN, FeatureStore, _shard, features_key

CONFIG = FeatureConfig(n_mels=32, n_mfcc=5)


def _entry(track_id: str, frames: int, status: str = "ok") -> dict:
    return {"track_id": track_id, "status": status, "reason": "", "audio_path": f"/x/{track_id}.mp3",
            "file_size": 10, "file_mtime_ns": 1, "sample_rate": 22050, "channels": 1, "duration": 1.0,
            "frames": frames, "peak_db": 0.0, "rms_db": -20.0, "decoder": "test"}


def _arrays(frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.normal(-40, 20, (frames, CONFIG.n_mels)).astype(np.float16),
            rng.normal(0, 50, (frames, CONFIG.n_mfcc)).astype(np.float32))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frames=st.lists(st.integers(1, 70), min_size=1, max_size=8))
def test_arrays_read_back_bit_for_bit_and_aligned(tmp_path_factory: pytest.TempPathFactory, frames: list[int]) -> None:
    store = FeatureStore(tmp_path_factory.mktemp("store"), CONFIG)
    written = {f"t{i}": _arrays(n, i) for i, n in enumerate(frames)}
    for track_id, (mel, mfcc) in written.items():
        store.write_track(_entry(track_id, len(mel)), mel, mfcc)
    reader = FeatureStore(store.root, CONFIG)  # another reader: maps the packs afresh
    for track_id, (mel, mfcc) in written.items():
        assert reader.mel(track_id).tobytes() == mel.tobytes() and reader.mel(track_id).dtype == np.float16
        assert reader.mfcc(track_id).tobytes() == mfcc.tobytes() and reader.mfcc(track_id).dtype == np.float32
        assert reader.read_entry(track_id)["mel_offset"] % PACK_ALIGN == 0
    assert not reader.mel("t0").flags.writeable
    assert len(list((store.root / "packs").iterdir())) == 2  # one pack and its journal for this process


def test_latest_line_wins_and_cut_lines_are_ignored(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, CONFIG)
    first, again = _arrays(30, 1), _arrays(12, 2)
    store.write_track(_entry("a", 30), *first)
    store.write_track(_entry("b", 0, status="failed"))
    np.testing.assert_array_equal(store.mel("a"), first[0])
    store.write_track(_entry("a", 12), *again)
    np.testing.assert_array_equal(store.mel("a"), again[0])
    (store.root / "packs" / "dead-1-0.jsonl").write_text(json.dumps(_entry("c", 5))[:40])
    index = store.write_index()
    assert index["track_id"].tolist() == ["a", "b"] and list(index.columns[: len(ENTRY_COLUMNS)]) == list(ENTRY_COLUMNS)
    assert store.ok_ids() == ["a"]
    assert store.read_entry("c") is None and not store.has_arrays("b")
    with pytest.raises(StoreError, match="no mel features for track b"):
        store.mel("b")
    with pytest.raises(StoreError, match="do not match"):
        store.write_track(_entry("d", 4), np.zeros((4, CONFIG.n_mels + 1)), np.zeros((4, CONFIG.n_mfcc)))


def test_a_pack_shorter_than_its_journal_is_one_clear_error(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, CONFIG)
    store.write_track(_entry("a", 30), *_arrays(30, 1))
    [pack] = (store.root / "packs").glob("*.bin")
    pack.write_bytes(pack.read_bytes()[:100])
    with pytest.raises(StoreError, match="shorter than its journal"):
        FeatureStore(store.root, CONFIG).mel("a")


def test_track_mels_pickle_without_their_maps(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, CONFIG)
    written = {f"t{i}": _arrays(20 + i, i) for i in range(5)}
    for track_id, (mel, mfcc) in written.items():
        store.write_track(_entry(track_id, len(mel)), mel, mfcc)
    mels = store.track_mels(["t3", "t0"])
    assert mels[1].tobytes() == written["t0"][0].tobytes()
    blob = pickle.dumps(mels)
    assert len(blob) < 2000  # paths and offsets, not the mapped arrays
    copy = pickle.loads(blob)
    assert len(copy) == 2 and copy[0].tobytes() == written["t3"][0].tobytes()
    with pytest.raises(StoreError, match="no mel features for track nope"):
        store.track_mels(["t1", "nope"])


def _legacy_store(root: Path, tracks: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """A store in the first layout (one .npy per track and kind, an entry .json per track), as agf wrote it."""
    root.mkdir(parents=True)
    (root / "settings.json").write_text(json.dumps({"format": 1, "features": key_settings(CONFIG)}))
    for track_id, (mel, mfcc) in tracks.items():
        shard = _shard(track_id)
        for kind, array in (("mel", mel), ("mfcc", mfcc)):
            (root / kind / shard).mkdir(parents=True, exist_ok=True)
            np.save(root / kind / shard / f"{track_id}.npy", array)
        (root / "entries" / shard).mkdir(parents=True, exist_ok=True)
        (root / "entries" / shard / f"{track_id}.json").write_text(json.dumps(_entry(track_id, len(mel))))
    (root / "entries" / _shard("bad")).mkdir(parents=True, exist_ok=True)
    (root / "entries" / _shard("bad") / "bad.json").write_text(json.dumps(_entry("bad", 0, status="failed")))


def test_a_first_layout_store_is_converted_once_bit_for_bit(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tracks = {f"t{i}": _arrays(10 + 7 * i, i) for i in range(6)}
    root = tmp_path / "features" / features_key(CONFIG)
    _legacy_store(root, tracks)
    (root / "packs").mkdir()
    (root / "packs" / "killed-conversion.jsonl").write_text(json.dumps(_entry("t0", 3)) + "\n")  # a killed try
    store = FeatureStore.open(tmp_path, CONFIG)
    assert "converting the feature store" in capsys.readouterr().err
    assert json.loads((root / "settings.json").read_text())["layout"] == LAYOUT
    assert not any((root / kind).exists() for kind in ("entries", "mel", "mfcc"))
    for track_id, (mel, mfcc) in tracks.items():
        assert store.mel(track_id).tobytes() == mel.tobytes()
        assert store.mfcc(track_id).tobytes() == mfcc.tobytes()
    assert store.read_entry("bad")["status"] == "failed"
    assert sorted(store.index()["track_id"]) == ["bad", *sorted(tracks)]
    FeatureStore.open(tmp_path, CONFIG)  # once: the second open converts nothing
    assert "converting" not in capsys.readouterr().err
