"""The fault suite: a collection with about 10 % broken files of every kind, and kills at random moments of
factors and training; each time the rest of the work must equal a clean, uninterrupted run."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from audio_cases import (
    make_empty,
    make_random_bytes,
    make_truncated_mp3,
    make_zero_samples_wav,
    music_like,
)

from agf.audio import write_audio
from agf.config import FeatureConfig
from agf.prepare import prepare_features
from agf.store import FeatureStore

SR = 22050
N_GOOD = 36


def good_files(root: Path) -> pd.DataFrame:
    """N_GOOD decodable clips of 1.5 s in several formats."""
    rows = []
    for i in range(N_GOOD):
        suffix = (".mp3", ".wav", ".flac", ".ogg")[i % 4]
        path = root / f"good{i:02d}{suffix}"
        write_audio(path, music_like(1.5, SR, seed=i), SR)
        rows.append({"track_id": f"good{i:02d}", "audio_path": str(path), "declared_duration": 1.5})
    return pd.DataFrame(rows)


def broken_files(root: Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """One file of each broken kind (about 10 % of the collection) and the status each must get."""
    write_audio(root / "wav-named-mp3.wav", music_like(1.5, SR, seed=99), SR)
    (root / "wav-named-mp3.wav").rename(root / "wav-named.mp3")
    (root / "text.ogg").write_text("this is not audio, whatever its extension says\n" * 100)
    write_audio(root / "silence.wav", np.zeros(int(1.5 * SR), dtype=np.float32), SR)
    cases = {
        "empty": (make_empty(root / "empty.mp3"), "failed"),
        "truncated": (make_truncated_mp3(root / "truncated.mp3", seconds=4.0, fraction=0.3), "truncated"),
        "random": (make_random_bytes(root / "random.mp3"), "failed"),
        "wrong-extension": (root / "wav-named.mp3", "ok"),  # the decoder reads the content, not the name
        "unsupported": (root / "text.ogg", "failed"),
        "zero-length": (make_zero_samples_wav(root / "zero.wav"), "failed"),
        "silence": (root / "silence.wav", "silent"),
    }
    declared = {"truncated": 4.0, "wrong-extension": 1.5, "silence": 1.5}
    table = pd.DataFrame([{"track_id": name, "audio_path": str(path), "declared_duration": declared.get(name, np.nan)}
                          for name, (path, _) in cases.items()])
    return table, {name: status for name, (_, status) in cases.items()}


@pytest.mark.slow
def test_broken_files_are_flagged_and_the_rest_equals_a_clean_run(tmp_path: Path) -> None:
    good = good_files(tmp_path / "audio")
    broken, statuses = broken_files(tmp_path / "audio")
    mixed = pd.concat([good, broken]).sample(frac=1.0, random_state=0).reset_index(drop=True)
    assert 0.1 <= len(broken) / len(mixed) <= 0.2
    clean_store = FeatureStore.open(tmp_path / "clean", FeatureConfig())
    prepare_features(good, clean_store, workers=2, progress=False)
    store = FeatureStore.open(tmp_path / "mixed", FeatureConfig())
    summary = prepare_features(mixed, store, workers=2, progress=False)
    index = store.index().set_index("track_id")
    assert {name: index.loc[name, "status"] for name in statuses} == statuses
    assert all(index.loc[name, "reason"] for name, status in statuses.items() if status != "ok")
    assert summary.done == len(mixed) and "not usable, by reason:" in summary.format()
    for track_id in good["track_id"]:
        np.testing.assert_array_equal(store.mel(track_id), clean_store.mel(track_id))
        np.testing.assert_array_equal(store.mfcc(track_id), clean_store.mfcc(track_id))
    columns = ["status", "frames", "duration", "sample_rate", "channels"]
    pd.testing.assert_frame_equal(index.loc[good["track_id"], columns],
                                  clean_store.index().set_index("track_id").loc[good["track_id"], columns])


KILLED_RUN = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from store_fixtures import artist_soft_targets, toy_collection
from agf.config import FactorConfig, TrainConfig
from agf.training import NetSpec, task_targets, train_net

root = Path(sys.argv[1])
toy = toy_collection(root / "toy")
config = TrainConfig(epochs=6, batch_size=8, patch_frames=16, loader_workers=0, amp=False, channels_last=False)
targets = {{"g": task_targets(toy.tracks, "g", None)}}
print("start", flush=True)
train_net(NetSpec("stn", ("g",), 0.25), toy.store, toy.tracks, targets, config, 0, root / "net", "cpu", False)
print("done", flush=True)
"""


def run_until_done(script: Path, root: Path, kill_after: float | None) -> bool:
    """Run the training script; with kill_after, SIGKILL it that many seconds after it starts training.
    Return whether it finished."""
    process = subprocess.Popen([sys.executable, str(script), str(root)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "start"
    if kill_after is not None:
        time.sleep(kill_after)
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=300)
    return process.returncode == 0


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_training_killed_at_random_moments_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(KILLED_RUN.format(tests=str(Path(__file__).parent)))
    assert run_until_done(script, tmp_path / "whole", None)
    killed = tmp_path / "killed"
    rng = np.random.default_rng(2018)
    kills = 0
    while kills < 3 and not (killed / "net" / "done.json").exists():
        finished = run_until_done(script, killed, float(rng.uniform(0.2, 1.5)))
        kills += not finished
    assert kills >= 1, "the run finished before any kill: the kill points are too late"
    assert run_until_done(script, killed, None)
    from safetensors.torch import load_file

    whole, resumed = (load_file(root / "net" / "model.safetensors") for root in (tmp_path / "whole", killed))
    assert whole.keys() == resumed.keys() and all(np.array_equal(whole[k], resumed[k]) for k in whole)
    curves = [pd.read_csv(root / "net" / "curves.csv")[["epoch", "task", "train_loss", "val_loss"]]
              for root in (tmp_path / "whole", killed)]
    pd.testing.assert_frame_equal(*curves)
    shutil.rmtree(killed / "toy")
