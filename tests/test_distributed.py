"""Tests of data-parallel training (agf.training.distributed): batch sharding, a group of one equal to no group,
two Gloo processes training one net in sync and resuming rank 0's checkpoint, and `torchrun -m agf train`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from store_fixtures import ToyCollection, artist_soft_targets, toy_collection

from agf.config import TrainConfig
from agf.errors import TrainingError
from agf.models import load_net
from agf.store import features_key
from agf.training import NetSpec, distributed, task_targets, train_net
from agf.training import loop as training_loop
from agf.training.checkpoint import load_checkpoint
from agf.training.data import Batch, rank_batches

MTN_BATCH = TrainConfig(epochs=2, batch_size=4, patch_frames=16, loader_workers=0, amp=False, channels_last=False,
                        schedule="batch")
SPEC = NetSpec("mtn", ("g", "m"), 0.25)
# Columns that depend on timing, not on what was computed.
TIMING = ["patches_per_s", "seconds"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def genre_and_artist_targets(collection: ToyCollection) -> dict[str, pd.DataFrame]:
    tracks = collection.tracks
    return {"g": task_targets(tracks, "g", None), "m": task_targets(tracks, "m", artist_soft_targets(tracks, 5))}


def train(collection: ToyCollection, out_dir: Path, **kwargs):
    targets = genre_and_artist_targets(collection)
    return train_net(SPEC, collection.store, collection.tracks, targets, MTN_BATCH, 0, out_dir, "cpu", False, **kwargs)


def timeless(curves: pd.DataFrame) -> pd.DataFrame:
    return curves.drop(columns=TIMING)


def test_rank_batches_give_every_rank_as_many_steps_of_one_task() -> None:
    plan = [Batch(task, np.array([i]), np.array([0])) for i, task in enumerate("gmgggmmg")]
    shares = [rank_batches(plan, rank, 2) for rank in range(2)]
    assert [len(share) for share in shares] == [3, 3]
    assert [b.task for b in shares[0]] == [b.task for b in shares[1]] == ["g", "g", "m"]
    taken = sorted(int(b.rows[0]) for share in shares for b in share)
    assert taken == [0, 1, 2, 3, 4, 5]  # the m (6) and the g (7) left without a partner are dropped
    assert rank_batches(plan, 0, 1) == plan


def test_a_group_of_one_trains_exactly_as_no_group(tmp_path: Path) -> None:
    collection = toy_collection(tmp_path / "toy")
    alone = train(collection, tmp_path / "alone")
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        grouped = train(collection, tmp_path / "grouped")
    finally:
        dist.destroy_process_group()
    assert (grouped.best_epoch, grouped.best_score) == (alone.best_epoch, alone.best_score)
    left, right = (load_checkpoint(tmp_path / name / "checkpoint.pt", torch.device("cpu"))
                   for name in ("alone", "grouped"))
    for name, tensor in left["model"].items():
        assert torch.equal(tensor, right["model"][name]), name
    pd.testing.assert_frame_equal(timeless(pd.DataFrame(left["curves"])), timeless(pd.DataFrame(right["curves"])))


def _rank_worker(rank: int, port: int, collection: ToyCollection, root: Path) -> None:
    """One of two Gloo processes: a run stopped after epoch 1 and resumed, and an uninterrupted one; saves this
    rank's weights after every epoch and the epochs each call trained, for the test to compare."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    epochs: list[int] = []
    original = training_loop.run_epoch

    def spy(epoch: int, net: torch.nn.Module, *args):
        rows = original(epoch, net, *args)
        epochs.append(epoch)
        torch.save(distributed.unwrap(net).state_dict(), root / f"rank{rank}-epoch{len(epochs)}.pt")
        return rows

    training_loop.run_epoch = spy
    try:
        stopped = train(collection, root / "killed", stop_after_epoch=1)
        resumed = train(collection, root / "killed")
        whole = train(collection, root / "whole")
        torch.save({"epochs": epochs, "results": [stopped, resumed, whole]}, root / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_processes_train_one_net_in_sync_and_resume(tmp_path: Path) -> None:
    collection = toy_collection(tmp_path / "toy")
    mp.spawn(_rank_worker, args=(free_port(), collection, tmp_path), nprocs=2)
    logs = [torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in range(2)]
    # killed after epoch 1, resumed for epoch 2 (not from the start), then 2 epochs uninterrupted
    assert logs[0]["epochs"] == logs[1]["epochs"] == [1, 2, 1, 2]
    assert logs[0]["results"] == logs[1]["results"]
    stopped, resumed, whole = logs[0]["results"]
    assert not stopped.finished and resumed.finished and resumed.epochs_done == 2
    for number in range(1, 5):  # DDP keeps the ranks' weights and batch-norm statistics equal
        rank0, rank1 = (torch.load(tmp_path / f"rank{r}-epoch{number}.pt") for r in range(2))
        for name, tensor in rank0.items():
            assert torch.equal(tensor, rank1[name]), (number, name)
    killed, uninterrupted = (load_checkpoint(tmp_path / name / "checkpoint.pt", torch.device("cpu"))
                             for name in ("killed", "whole"))
    assert killed["processes"] == 2 and killed["epoch"] == 2
    for name, tensor in uninterrupted["model"].items():
        assert torch.equal(tensor, killed["model"][name]), name
    curves = pd.read_csv(tmp_path / "killed" / "curves.csv")
    pd.testing.assert_frame_equal(timeless(curves), timeless(pd.read_csv(tmp_path / "whole" / "curves.csv")))
    _, meta = load_net(tmp_path / "killed")
    assert meta["epochs"] == 2 and meta["best_epoch"] == resumed.best_epoch
    # a group of another size does not resume that checkpoint
    (tmp_path / "killed" / "done.json").unlink()
    with pytest.raises(TrainingError, match="on 2 process"):
        train(collection, tmp_path / "killed")


def prepared_workdir(root: Path) -> Path:
    """A work directory as `agf prepare` leaves it: config.toml, tracks.parquet and the feature store."""
    toy = toy_collection(root / "toy")
    (root / "features").mkdir()
    (root / "toy" / "features").rename(root / "features" / features_key(toy.store.config))
    (root / "toy").rmdir()
    toy.tracks.to_parquet(root / "tracks.parquet")
    (root / "config.toml").write_text(
        "[features]\nn_mels = 32\n[train]\nepochs = 2\nbatch_size = 4\npatch_frames = 16\nloader_workers = 0\n"
        "amp = false\nchannels_last = false\n[run]\ndevice = \"cpu\"\nthreads = 1\n"
    )
    return root


@pytest.mark.slow
def test_torchrun_agf_train_writes_one_net_from_rank_0(tmp_path: Path) -> None:
    workdir = prepared_workdir(tmp_path / "work")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
               str(free_port()), "-m", "agf", "train", "-w", str(workdir), "--seed", "0", "-q"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = [line for line in done.stdout.splitlines() if line.startswith("net: ")]
    assert len(printed) == 1  # rank 0 alone prints
    net_dir = Path(printed[0].removeprefix("net: "))
    _, meta = load_net(net_dir)
    assert meta["epochs"] == 2 and meta["processes"] == 2
    assert load_checkpoint(net_dir / "checkpoint.pt", torch.device("cpu"))["processes"] == 2
    assert sorted(path.name for path in workdir.iterdir()) == [".agf.lock", "config.toml", "features", "nets",
                                                                "tracks.parquet"]
