"""The completion-marker and reuse protocol of agf.workdir, checked once for every stage that writes a directory.

One contract for all (as mirdata checks one contract for all loaders): a finished directory holds a marker with
the key of its inputs; the same call again reuses it and rewrites nothing; a directory without its marker (a
stage killed before its last write) is rebuilt; other inputs never silently reuse a finished directory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from store_fixtures import toy_collection

from agf.config import FactorConfig, TrainConfig, TransferConfig
from agf.errors import AgfError
from agf.evaluation import evaluate
from agf.factors import build_factors
from agf.models import load_net
from agf.training import NetSpec, task_targets, train_net
from agf.transfer import fit_transfer, net_window_features
from agf.workdir import MARKER, WorkDir, clear_done, is_done, read_marker, require_done

TRAIN = TrainConfig(epochs=1, batch_size=8, patch_frames=16, loader_workers=0, amp=False, channels_last=False)
TRANSFER = TransferConfig(epochs=1, hidden=8, batch_size=64, window_hop=8, amp=False)


@dataclasses.dataclass(frozen=True)
class Env:
    """A toy collection with MFCCs, a trained genre net and a transfer over it: the inputs of later stages."""

    tracks: object
    store: object
    net_dir: Path
    transfer_dir: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Env:
    root = tmp_path_factory.mktemp("contract")
    toy = toy_collection(root)
    for track_id in toy.tracks["track_id"]:
        toy.store.write_array("mfcc", track_id, np.asarray(toy.store.mel(track_id), dtype=np.float32)[:, :8])
    targets = {"g": task_targets(toy.tracks, "g", None)}
    net_dir = root / "net"
    train_net(NetSpec("stn", ("g",), 0.25), toy.store, toy.tracks, targets, TRAIN, 0, net_dir, "cpu", False)
    transfer_dir = root / "transfer"
    fit_transfer([net_dir], toy.store, toy.tracks, TRANSFER, 0, transfer_dir, "cpu", False)
    return Env(toy.tracks, toy.store, net_dir, transfer_dir)


def run_factors(env: Env, out: Path, variant: int) -> Path:
    config = FactorConfig(tasks=("m",), n_words=8, n_topics=3, seed=variant)
    build_factors(env.tracks, env.store, config, out, workers=1, progress=False)
    return out / "m"


def run_net(env: Env, out: Path, variant: int) -> Path:
    targets = {"g": task_targets(env.tracks, "g", None)}
    train_net(NetSpec("stn", ("g",), 0.25), env.store, env.tracks, targets, TRAIN, variant, out, "cpu", False)
    return out


def run_windows(env: Env, out: Path, variant: int) -> Path:
    net, _ = load_net(env.net_dir)
    net_window_features(net, env.store, env.tracks["track_id"], 16, 8 + variant, "cpu", cache_path=out)
    return out


def run_transfer(env: Env, out: Path, variant: int) -> Path:
    fit_transfer([env.net_dir], env.store, env.tracks, TRANSFER, variant, out, "cpu", False)
    return out


def run_evaluation(env: Env, out: Path, variant: int) -> Path:
    evaluate([env.transfer_dir], env.tracks, out, store=env.store, seed=variant)
    return out


STAGES: dict[str, Callable[[Env, Path, int], Path]] = {
    "factors": run_factors,
    "net": run_net,
    "windows": run_windows,
    "transfer": run_transfer,
    "evaluation": run_evaluation,
}


def stamps(directory: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in directory.rglob("*") if path.is_file()}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_honours_the_completion_marker(env: Env, tmp_path: Path, stage: str) -> None:
    run = STAGES[stage]
    out = run(env, tmp_path / stage, 0)
    marker = read_marker(out)
    assert marker is not None and isinstance(marker["key"], str) and is_done(out, marker["key"])
    # The same inputs again: reused, nothing rewritten.
    before = stamps(out)
    assert run(env, tmp_path / stage, 0) == out and stamps(out) == before
    # Killed before its last write (no marker): redone, and finished for the same key.
    clear_done(out)
    assert not is_done(out)
    run(env, tmp_path / stage, 0)
    assert read_marker(out)["key"] == marker["key"]
    assert stamps(out)[out / MARKER] != before[out / MARKER]
    # Other inputs never reuse the finished directory: rebuilt under another key, or refused by name.
    try:
        run(env, tmp_path / stage, 1)
    except AgfError as exc:
        assert "other settings" in str(exc)
    else:
        assert read_marker(out)["key"] != marker["key"]


def test_unreadable_marker_means_unfinished(tmp_path: Path) -> None:
    (tmp_path / MARKER).write_text("{half")
    assert read_marker(tmp_path) is None and not is_done(tmp_path)
    with pytest.raises(AgfError, match="not finished"):
        require_done(tmp_path, "the thing")
    assert WorkDir(tmp_path).nets == tmp_path / "nets"
