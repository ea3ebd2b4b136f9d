"""The plan of a run: frames from durations and segments, the time estimate's arithmetic, the printed lines.
(That its counts equal what a run does is tested end to end in test_pipeline.py.)"""

from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from agf.config import Config, FactorConfig, FeatureConfig
from agf.plan import NetPlan, Plan, Throughput, track_frames
from agf.training.spec import NetSpec


def test_frames_follow_the_declared_duration_cut_to_the_segment() -> None:
    tracks = pd.DataFrame({"track_id": ["a", "b", "c"], "declared_duration": [600.0, 20.0, 30.0],
                           "audio_path": ["", "", ""]})
    config = dataclasses.replace(Config(), features=FeatureConfig(max_duration=30.0, offset="centre"))
    frames = track_frames(tracks, config, None)
    hop, rate = config.features.hop_length, config.features.sample_rate
    assert frames.to_dict() == {"a": 1 + 30 * rate // hop, "b": 1 + 20 * rate // hop, "c": 1 + 30 * rate // hop}
    whole = track_frames(tracks, Config(), None)
    assert whole["a"] == 1 + 600 * rate // hop


def _plan(**changes: object) -> Plan:
    nets = (NetPlan(NetSpec("stn", ("g",)), 0, epochs=10, train_patches=100, val_crops=30, params=1000),
            NetPlan(NetSpec("mtn", ("g", "m")), 0, epochs=20, train_patches=100, val_crops=60, params=3000))
    plan = Plan(tracks={"train": 100, "val": 10}, to_prepare=110, audio_seconds=3300.0, training_artists=20,
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
    assert any(line.startswith("  estimated time: ") for line in lines)
    assert lines[-1] == "  warning: too many words"
    assert not any("estimated" in line for line in _plan().lines())  # no speeds, no estimate
