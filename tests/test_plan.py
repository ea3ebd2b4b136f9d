"""The plan of a run: frames from durations and segments, the store's size from real durations, the time
estimate's arithmetic, the printed lines. (That its counts equal what a run does is tested end to end in
test_pipeline.py.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile

from agf.config import Config, DatasetConfig, FactorConfig, FeatureConfig
from agf.plan import NetPlan, Plan, Throughput, track_frames
from agf.training.spec import NetSpec


def test_frames_follow_the_declared_duration_cut_to_the_segment() -> None:
    tracks = pd.DataFrame({"track_id": ["a", "b", "c"], "declared_duration": [600.0, 20.0, 30.0],
                           "audio_path": ["", "", ""]})
    config = dataclasses.replace(Config(), features=FeatureConfig(max_duration=30.0, offset="centre"))
    frames = track_frames(tracks, config, None).frames
    hop, rate = config.features.hop_length, config.features.sample_rate
    assert frames.to_dict() == {"a": 1 + 30 * rate // hop, "b": 1 + 20 * rate // hop, "c": 1 + 30 * rate // hop}
    whole = track_frames(tracks, Config(), None).frames
    assert whole["a"] == 1 + 600 * rate // hop


def _plan(**changes: object) -> Plan:
    nets = (NetPlan(NetSpec("stn", ("g",)), 0, epochs=10, train_patches=100, val_crops=30, params=1000),
            NetPlan(NetSpec("mtn", ("g", "m")), 0, epochs=20, train_patches=100, val_crops=60, params=3000))
    plan = Plan(tracks={"train": 100, "val": 10}, to_prepare=110, audio_seconds=3300.0, store_bytes=720_000_000,
                store_bytes_to_prepare=700_000_000, lengths="110 read from file headers", training_artists=20,
                factors=FactorConfig(), factor_tasks="m", nets=nets, transfers=3, transfer_epochs=5,
                windows_per_net=2000, mlp_windows_per_epoch=1000, warnings=("too many words",))
    return dataclasses.replace(plan, **changes)


def test_the_estimate_is_counts_over_measured_speeds() -> None:
    speed = Throughput(decode_realtime=100.0, train_patches_s=50.0, infer_windows_s=200.0, mlp_windows_s=500.0,
                       stn_params=1000)
    stages = _plan().stage_seconds(speed, workers=2)
    assert stages["prepare"] == pytest.approx(3300 / (100 * 2))
    # The MTN has 3x the parameters: 3x slower per patch.
    assert stages["nets"] == pytest.approx(10 * (100 / 50 + 30 / 200) + 20 * 3 * (100 / 50 + 60 / 200))
    assert stages["window features"] == pytest.approx(2000 / 200 + 3 * 2000 / 200)
    assert stages["transfer MLPs"] == pytest.approx(3 * 5 * 1000 / 500)
    faster = dataclasses.replace(speed, train_patches_s=100.0, infer_windows_s=400.0)
    assert _plan().stage_seconds(faster, 2)["nets"] == pytest.approx(stages["nets"] / 2)


def test_the_printed_plan() -> None:
    speed = Throughput(700.0, 900.0, 2000.0, 20000.0, 1000)
    lines = _plan().lines(speed, workers=2)
    assert lines[0] == "plan:"
    assert "  nets: 2 (30 epochs in all; 100 training crops per epoch)" in lines
    assert ("  feature store: about 0.72 GB (0.70 GB of it still to write); track lengths: 110 read from file "
            "headers") in lines
    assert any(line.startswith("  estimated time: ") for line in lines)
    assert lines[-1] == "  warning: too many words"
    assert not any("estimated" in line for line in _plan().lines())  # no speeds, no estimate


def _manifest_tracks(folder: Path, seconds: float | None) -> pd.DataFrame:
    """The track table of a manifest of 12 artists in 3 genres, 2 tracks each (empty audio files), with a duration
    column of `seconds` (None: no duration column)."""
    from test_datasets_manifest import rows_for, write_manifest

    from agf.datasets.manifest import load_manifest

    rows = rows_for([genre for genre in ("rock", "jazz", "folk") for _ in range(4)], tracks_per_artist=2)
    rows = [row if seconds is None else {**row, "duration": str(seconds)} for row in rows]
    return load_manifest(write_manifest(folder, rows), split="artist", val_fraction=0.25, test_fraction=0.25).tracks


def test_the_plan_sizes_the_store_from_declared_durations(tmp_path: Path) -> None:
    """A manifest of 10-min tracks: 20x the store of 30-s tracks (what was assumed for every track before)."""
    from agf.plan import make_plan

    config = dataclasses.replace(Config(), dataset=DatasetConfig(kind="manifest"))
    long = make_plan(config, _manifest_tracks(tmp_path / "long", 600.0), None)
    short = make_plan(config, _manifest_tracks(tmp_path / "short", 30.0), None)
    assert long.store_bytes == pytest.approx(20 * short.store_bytes, rel=1e-3)
    assert long.store_bytes_to_prepare == long.store_bytes and long.lengths == "24 declared"
    # A 30-s track's float16 log-mel and float32 MFCCs: 1,292 frames x (128 x 2 + 25 x 4) bytes.
    assert (config.features.n_mels, config.features.n_mfcc) == (128, 25)
    assert short.store_bytes == pytest.approx(24 * 1292 * (128 * 2 + 25 * 4), rel=1e-3)
    assert any(line.startswith("  feature store: about 0.22 GB (0.22 GB of it still to write)")
               for line in long.lines())


def test_the_plan_counts_the_factor_tasks_of_the_grid_as_the_run_builds_them(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """run_grid builds the artist-group tasks its subsets use, whatever factors.tasks lists, and leaves out those
    unavailable here (e without Essentia): the plan walks the same grid (agf.grid.walk_grid)."""
    from agf.config import GridConfig
    from agf.grid import grid_nets, walk_grid
    from agf.plan import make_plan

    monkeypatch.setattr("agf.plan.essentia_unavailable_reason", lambda: "no essentia here", raising=False)
    grid = GridConfig(tasks=("g", "m", "e", "s"), archs=("stn", "mtn", "wstn"), seeds=(0, 1))
    config = dataclasses.replace(Config(), dataset=DatasetConfig(kind="manifest"), grid=grid,
                                 factors=FactorConfig(tasks=("m",)))
    plan = make_plan(config, _manifest_tracks(tmp_path, 30.0), None)
    outputs = {"g": 3, "m": plan.factors.n_topics, "s": plan.factors.n_topics}
    steps = walk_grid(grid, outputs, config.features.n_mels, unavailable={"e"})
    assert plan.factor_tasks == "ms"
    assert plan.transfers == len(steps) == 2 * (7 + 4 + 2)  # per seed: 7 subsets of gms, 4 MTNs, wSTN N=2, 3
    assert [(net.spec, net.seed) for net in plan.nets] == grid_nets(steps)
    assert "task e unavailable (no essentia here); the run drops the subsets that use it" in plan.warnings


def _wav(path: Path, seconds: float) -> str:
    """A silent 16-bit WAV of `seconds` at 8 kHz (its header declares the duration)."""
    soundfile.write(path, np.zeros(int(seconds * 8000), np.int16), 8000, subtype="PCM_16")
    return str(path)


def test_without_durations_the_store_is_sized_from_file_headers_else_assumed_and_said(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import agf.plan
    from agf.plan import ASSUMED_TRACK_SECONDS, store_bytes

    config = dataclasses.replace(Config(), dataset=DatasetConfig(kind="manifest"))
    tracks = pd.DataFrame({"track_id": ["long", "short"],
                           "audio_path": [_wav(tmp_path / "long.wav", 600.0), _wav(tmp_path / "short.wav", 30.0)]})
    (long, lengths), (short, _) = store_bytes(tracks[:1], config), store_bytes(tracks[1:], config)
    assert long == pytest.approx(20 * short, rel=1e-3) and lengths == "1 read from file headers"
    assert store_bytes(tracks, config) == (long + short, "2 read from file headers")
    unreadable = tmp_path / "empty.wav"
    unreadable.touch()
    assumed, lengths = store_bytes(pd.DataFrame({"track_id": ["x"], "audio_path": [str(unreadable)]}), config)
    assert assumed == short and ASSUMED_TRACK_SECONDS == 30.0
    assert lengths == "1 assumed 30 s each (no duration declared, no file header read)"
    # A declared duration wins over a header; beyond the files probed (here 1), tracks get the mean of the headers
    # read, as do probed files whose header cannot be read.
    monkeypatch.setattr(agf.plan, "PROBED_FILES", 1)
    mixed = pd.DataFrame({"track_id": ["a", "b", "c", "d"],
                          "audio_path": [tracks["audio_path"][1], tracks["audio_path"][0], str(unreadable), ""],
                          "declared_duration": [600.0, np.nan, np.nan, np.nan]})
    frames = track_frames(mixed, config, None)
    assert frames.frames.nunique() == 1
    assert list(frames.sources) == ["declared", "read from file headers", "the mean of those headers",
                                    "the mean of those headers"]


def test_planning_reads_a_stale_store_index_without_rewriting_it(tmp_path: Path) -> None:
    """A store whose journals are newer than its index (a killed prepare): the plan takes each prepared track's
    frames from the journals and writes nothing (`agf run --dry-run` creates and writes nothing)."""
    from store_fixtures import make_store

    from agf.plan import make_plan

    tracks = _manifest_tracks(tmp_path / "music", None)
    store = make_store(tmp_path / "store", {tracks["track_id"][0]: np.zeros((100, 128), np.float16)})
    for journal in (tmp_path / "store").rglob("*.jsonl"):
        journal.touch()  # newer than index.parquet
    before = {str(p): p.stat().st_mtime_ns for p in (tmp_path / "store").rglob("*")}
    config = dataclasses.replace(Config(), dataset=DatasetConfig(kind="manifest"))
    plan = make_plan(config, tracks, store, {tracks["track_id"][0]})
    assert {str(p): p.stat().st_mtime_ns for p in (tmp_path / "store").rglob("*")} == before
    assert plan.lengths == "1 as stored, 23 assumed 30 s each (no duration declared, no file header read)"
    assert plan.to_prepare == 23


def test_the_plan_states_the_training_budget() -> None:
    """With early stopping the epochs are a cap, and the crops per epoch say the rule that gave them."""
    fixed = _plan().nets_line()
    assert fixed == "  nets: 2 (30 epochs in all; 100 training crops per epoch)"
    sized = _plan(patience=10, crops_per_track=0, crops_range=(1, 6)).nets_line()
    assert sized == ("  nets: 2 (at most 30 epochs in all: each stops after 10 epochs without a lower validation "
                     "loss (an MTN after 10 x its tasks); 100 training crops per epoch: one per 30 s of a track's "
                     "audio, 1 to 6 per track)")
    assert _plan(crops_per_track=3).nets_line().endswith("100 training crops per epoch: 3 per track)")
    assert sized in _plan(patience=10, crops_per_track=0, crops_range=(1, 6)).lines()


def test_the_plan_counts_crops_per_track_from_the_tracks_lengths(tmp_path: Path) -> None:
    """crops_per_track = 0: a 3-minute track gives 6 crops per epoch, a 30-s one 1; the MTN's cap and patience
    are its tasks times the setting's."""
    from agf.config import GridConfig, TrainConfig
    from agf.plan import make_plan

    base = dataclasses.replace(Config(), dataset=DatasetConfig(kind="manifest"),
                               grid=GridConfig(tasks=("g", "m"), archs=("stn", "mtn"), subsets=("g", "gm"), seeds=(0,)))
    sized = dataclasses.replace(base, train=TrainConfig(epochs=50, patience=5, crops_per_track=0))
    for seconds, crops in ((180.0, 6), (30.0, 1)):
        tracks = _manifest_tracks(tmp_path / str(seconds), seconds)
        n_train = int((tracks["split"] == "train").sum())
        plan = make_plan(sized, tracks, None)
        assert {net.train_patches for net in plan.nets} == {crops * n_train}
        assert plan.crops_range == (crops, crops) and plan.patience == 5
        assert {net.train_patches for net in make_plan(base, tracks, None).nets} == {n_train}
    assert sorted(net.epochs for net in plan.nets) == [50, 50, 100]  # STN g, STN m, MTN gm (a cap)
    assert f"{6 * n_train} training crops per epoch: one per 30 s of a track's audio, 6 per track" in "\n".join(
        make_plan(sized, _manifest_tracks(tmp_path / "again", 180.0), None).lines())
