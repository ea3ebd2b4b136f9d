"""Tests of source-net training: data plans, band statistics, schedules, checkpoints, resume, selection, divergence."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from store_fixtures import artist_soft_targets, toy_collection

from agf.config import TrainConfig
from agf.device import resolve_device
from agf.errors import ConfigError, TrainingDiverged, TrainingError
from agf.fileio import stable_key
from agf.models import MTN, load_net, soft_cross_entropy
from agf.tasks import parse_tasks
from agf.store import FeatureStore
from agf.training import (
    NetSpec,
    fit_band_norm,
    net_specs,
    net_train_config,
    task_targets,
    train_net,
)
from agf.training.checkpoint import load_checkpoint
from agf.training.data import CropDataset, epoch_plan, fixed_offsets, validation_plan
from agf.training.loop import CURVE_COLUMNS, prepare_data, task_parameters
from agf.training.spec import net_dir, setup_params, training_settings, wstn_spec

WIDTH = 0.25
SMALL_PATCHES = {"batch_size": 8, "patch_frames": 16, "loader_workers": 0}
FAST = TrainConfig(epochs=3, amp=False, channels_last=False, **SMALL_PATCHES)
AUGMENTED = {"gain_db": 6.0, "time_mask_frames": 4, "freq_mask_bins": 8, "mixup_alpha": 0.4}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def collection(tmp_path_factory: pytest.TempPathFactory):
    return toy_collection(tmp_path_factory.mktemp("toy"))


@pytest.fixture(scope="module")
def targets(collection) -> dict[str, pd.DataFrame]:
    """Genre one-hot for every track; artist-group targets ('m') for training tracks only (artist-disjoint case)."""
    tracks = collection.tracks
    return {"g": task_targets(tracks, "g", None), "m": task_targets(tracks, "m", artist_soft_targets(tracks, 5))}


def train(collection, targets, out_dir: Path, spec: NetSpec, config: TrainConfig = FAST, seed: int = 0, **kwargs):
    return train_net(spec, collection.store, collection.tracks, targets, config, seed, out_dir, "cpu", False, **kwargs)


def curves(out_dir: Path) -> pd.DataFrame:
    return pd.read_csv(out_dir / "curves.csv")


def checkpoint(out_dir: Path) -> dict:
    return load_checkpoint(out_dir / "checkpoint.pt", torch.device("cpu"))


def assert_same_state(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> None:
    assert left.keys() == right.keys()
    for name in left:
        assert torch.equal(left[name], right[name]), name


# -- targets, band statistics, plans, loading -------------------------------------------------------------


def test_genre_targets_are_one_hot_in_genre_list_order(collection) -> None:
    genre = task_targets(collection.tracks, "g", None)
    assert list(genre.columns) == ["genre0", "genre1", "genre2"]
    assert genre.loc["t0000"].tolist() == [1, 0, 0] and genre.loc["t0030"].tolist() == [0, 0, 1]
    assert (genre.sum(axis=1) == 1).all()


def test_factor_targets_must_be_distributions(collection) -> None:
    soft = artist_soft_targets(collection.tracks, 4)
    assert task_targets(collection.tracks, "m", soft).dtypes.eq(np.float32).all()
    broken = soft.copy()
    broken.iloc[3] = broken.iloc[3] * 2
    with pytest.raises(TrainingError, match=f"track {broken.index[3]}"):
        task_targets(collection.tracks, "m", broken)
    with pytest.raises(TrainingError, match="agf factors"):
        task_targets(collection.tracks, "d", None)


def test_band_norm_is_fitted_once_per_set_of_tracks_and_again_when_one_is_rewritten(tmp_path: Path,
                                                                                    monkeypatch) -> None:
    toy = toy_collection(tmp_path)
    train_ids = toy.tracks.loc[toy.tracks["split"] == "train", "track_id"].tolist()
    mean, std = fit_band_norm(toy.store, train_ids)
    reads = []
    original_mel = FeatureStore.mel
    monkeypatch.setattr(FeatureStore, "mel", lambda self, t: reads.append(t) or original_mel(self, t))
    again = fit_band_norm(toy.store, train_ids)
    assert reads == [] and np.array_equal(again[0], mean) and np.array_equal(again[1], std)

    fewer = fit_band_norm(toy.store, train_ids[1:])  # another set of tracks: fitted on its own
    assert reads == train_ids[1:] and not np.array_equal(fewer[0], mean)
    reads.clear()
    louder = np.asarray(toy.store.mel(train_ids[0]), dtype=np.float32) + 10
    toy.store.write_track(toy.store.read_entry(train_ids[0]), louder, np.asarray(toy.store.mfcc(train_ids[0])))
    reads.clear()
    refitted = fit_band_norm(toy.store, train_ids)
    assert reads == train_ids and refitted[0].mean() > mean.mean()


def test_band_norm_streams_all_frames_of_training_tracks_only(tmp_path: Path) -> None:
    toy = toy_collection(tmp_path)
    train_ids = toy.tracks.loc[toy.tracks["split"] == "train", "track_id"].tolist()
    val_id = toy.tracks.loc[toy.tracks["split"] == "val", "track_id"].iloc[0]
    loud = np.full((60, 32), 500.0, dtype=np.float16)
    toy.store.write_track(toy.store.read_entry(val_id), loud, np.zeros((60, 25), dtype=np.float32))
    frames = np.concatenate([np.asarray(toy.store.mel(t), dtype=np.float64) for t in train_ids])
    mean, std = fit_band_norm(toy.store, train_ids)
    np.testing.assert_allclose(mean, frames.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(std, frames.std(axis=0), rtol=1e-10)

    targets = {"g": task_targets(toy.tracks, "g", None)}
    config = dataclasses.replace(FAST, epochs=1)
    train_net(NetSpec("stn", ("g",), WIDTH), toy.store, toy.tracks, targets, config, 0, tmp_path / "net", "cpu", False)
    _, meta = load_net(tmp_path / "net")
    np.testing.assert_allclose(meta["band_mean"], mean.astype(np.float32), rtol=1e-6)
    np.testing.assert_allclose(meta["band_std"], std.astype(np.float32), rtol=1e-6)
    assert max(meta["band_mean"]) < 0  # the +500 dB validation track did not move them


def test_epoch_plan_is_seeded_and_covers_every_training_track_once() -> None:
    rows = {"g": np.arange(0, 21), "m": np.arange(4, 30)}
    max_offsets = np.arange(30) % 7
    plan = epoch_plan(np.random.default_rng([3, 1]), rows, max_offsets, 8, "batch")
    again = epoch_plan(np.random.default_rng([3, 1]), rows, max_offsets, 8, "batch")
    other = epoch_plan(np.random.default_rng([3, 2]), rows, max_offsets, 8, "batch")
    assert [(b.task, b.rows.tolist(), b.offsets.tolist()) for b in plan] == [
        (b.task, b.rows.tolist(), b.offsets.tolist()) for b in again
    ]
    assert [b.rows.tolist() for b in plan] != [b.rows.tolist() for b in other]
    for task, task_rows in rows.items():
        planned = np.concatenate([b.rows for b in plan if b.task == task])
        assert sorted(planned) == sorted(task_rows)  # 21 and 26 rows: no batch of one to drop here
    for batch in plan:
        assert np.all((batch.offsets >= 0) & (batch.offsets <= max_offsets[batch.rows]))
    assert {b.task for b in plan} == {"g", "m"}
    single = epoch_plan(np.random.default_rng(0), rows, max_offsets, 8, "epoch")
    assert len({b.task for b in single}) == 1
    nine = epoch_plan(np.random.default_rng(0), {"g": np.arange(9)}, max_offsets, 8, "epoch")
    assert [len(b.rows) for b in nine] == [8]  # a last batch of one is dropped (batch-norm)


def test_crops_are_the_planned_memmap_slices(collection, targets) -> None:
    data = prepare_data(collection.store, collection.tracks, targets, ("g",), 16)
    dataset = CropDataset(data.mels, data.targets, 16)
    plan = validation_plan("g", data.val_rows["g"][:2], data.max_offsets, 64)
    task, x, y = dataset[plan[0]]
    assert task == "g" and x.shape == (6, 1, 16, 32) and x.dtype == torch.float32 and y.shape == (6, 3)
    row = data.val_rows["g"][1]
    start = fixed_offsets(data.max_offsets[[row]])[0, 2]
    expected = np.asarray(collection.store.mel(data.track_ids[row])[start : start + 16], dtype=np.float32)
    np.testing.assert_array_equal(x[5, 0].numpy(), expected)
    assert data.max_offsets[row] == 60 - 16 and fixed_offsets(np.array([44]))[0].tolist() == [11, 22, 33]


# -- schedules and optimisers ------------------------------------------------------------------------------


def test_epoch_schedule_trains_one_task_per_epoch_with_its_own_optimizer(collection, targets, tmp_path: Path) -> None:
    spec = NetSpec("mtn", ("g", "m"), WIDTH)
    train(collection, targets, tmp_path, spec, stop_after_epoch=1)
    trained = curves(tmp_path).dropna(subset=["train_loss"])
    assert len(trained) == 1
    task = trained["task"].iloc[0]
    other = "m" if task == "g" else "g"
    state = checkpoint(tmp_path)
    n_batches = math.ceil(24 / FAST.batch_size)  # 8 training tracks per genre
    steps = {int(s["step"]) for s in state["optimizers"][task]["state"].values()}
    assert steps == {n_batches}
    assert state["optimizers"][other]["state"] == {}  # the other task's Adam state is untouched

    torch.manual_seed(0)
    initial = MTN({"g": 3, "m": 5}, WIDTH, 32).state_dict()
    model = state["model"]
    untouched = [name for name in model if name.startswith((f"trunks.{other}.", f"heads.{other}."))]
    assert untouched and all(torch.equal(model[name], initial[name]) for name in untouched)
    assert not torch.equal(model["first_block.0.weight"], initial["first_block.0.weight"])
    net = MTN({"g": 3, "m": 5}, WIDTH, 32)
    shared = {id(p) for p in net.first_block.parameters()}
    assert all(shared <= {id(p) for p in task_parameters(net, t)} for t in ("g", "m"))


def test_epoch_schedule_draws_tasks_per_epoch(collection, targets, tmp_path: Path) -> None:
    config = dataclasses.replace(FAST, epochs=6)
    train(collection, targets, tmp_path, NetSpec("mtn", ("g", "m"), WIDTH), config)
    table = curves(tmp_path)
    per_epoch = table.dropna(subset=["train_loss"]).groupby("epoch")["task"].apply(list)
    assert len(per_epoch) == 6 and all(len(tasks) == 1 for tasks in per_epoch)
    assert set(per_epoch.str[0]) == {"g", "m"}
    state = checkpoint(tmp_path)
    for task in ("g", "m"):
        epochs = (per_epoch.str[0] == task).sum()
        steps = {int(s["step"]) for s in state["optimizers"][task]["state"].values()}
        assert steps == {epochs * 3}


def test_batch_schedule_trains_both_tasks_every_epoch(collection, targets, tmp_path: Path) -> None:
    config = dataclasses.replace(FAST, schedule="batch")
    train(collection, targets, tmp_path, NetSpec("mtn", ("g", "m"), WIDTH), config, stop_after_epoch=1)
    assert curves(tmp_path)["train_loss"].notna().all()
    state = checkpoint(tmp_path)
    for task in ("g", "m"):
        assert {int(s["step"]) for s in state["optimizers"][task]["state"].values()} == {3}


# -- resume, completion, selection, curves -------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, config",
    [
        (NetSpec("stn", ("g",), WIDTH), FAST),
        (
            NetSpec("mtn", ("g", "m"), WIDTH),
            dataclasses.replace(FAST, amp=True, channels_last=True, loader_workers=1, schedule="batch"),
        ),
        (NetSpec("mtn", ("g", "m"), WIDTH), dataclasses.replace(FAST, schedule="batch", **AUGMENTED)),
    ],
    ids=["stn-fp32", "mtn-bf16-worker", "mtn-augmented"],
)
def test_resume_equals_uninterrupted(collection, targets, tmp_path: Path, spec: NetSpec, config: TrainConfig) -> None:
    whole = train(collection, targets, tmp_path / "whole", spec, config)
    stopped = train(collection, targets, tmp_path / "killed", spec, config, stop_after_epoch=1)
    assert not stopped.finished and stopped.epochs_done == 1
    assert not (tmp_path / "killed" / "model.safetensors").exists()
    resumed = train(collection, targets, tmp_path / "killed", spec, config)
    assert resumed.finished and resumed.best_epoch == whole.best_epoch and resumed.epochs_done == 3
    saved = [load_file(tmp_path / run / "model.safetensors") for run in ("whole", "killed")]
    assert_same_state(*saved)
    assert_same_state(checkpoint(tmp_path / "whole")["model"], checkpoint(tmp_path / "killed")["model"])
    losses = ["epoch", "task", "train_loss", "val_loss", "val_accuracy"]
    pd.testing.assert_frame_equal(curves(tmp_path / "whole")[losses], curves(tmp_path / "killed")[losses])


def test_done_marker_makes_a_second_call_a_no_op(collection, targets, tmp_path: Path) -> None:
    spec = NetSpec("stn", ("g",), WIDTH)
    first = train(collection, targets, tmp_path, spec, dataclasses.replace(FAST, epochs=1))
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    second = train(collection, targets, tmp_path, spec, dataclasses.replace(FAST, epochs=1, loader_workers=2))
    assert second == first and {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == stamps
    with pytest.raises(TrainingError, match="other settings"):
        train(collection, targets, tmp_path, spec, dataclasses.replace(FAST, epochs=1, lr=0.01))


def test_checkpoint_of_other_settings_is_not_resumed(collection, targets, tmp_path: Path) -> None:
    spec = NetSpec("stn", ("g",), WIDTH)
    train(collection, targets, tmp_path, spec, stop_after_epoch=1)
    with pytest.raises(TrainingError, match="checkpoint of a run with other settings"):
        train(collection, targets, tmp_path, spec, seed=1)


def val_loss_of_saved_net(collection, genre: pd.DataFrame, out_dir: Path) -> float:
    """The genre validation loss of the saved net, computed here from the fixed crops."""
    net, _ = load_net(out_dir)
    data = prepare_data(collection.store, collection.tracks, {"g": genre}, ("g",), 16)
    rows = data.val_rows["g"]
    crops, labels = [], []
    for row, starts in zip(rows, fixed_offsets(data.max_offsets[rows])):
        mel = np.asarray(collection.store.mel(data.track_ids[row]), dtype=np.float32)
        crops += [mel[start : start + 16] for start in starts]
        labels += [data.targets["g"][row]] * len(starts)
    with torch.no_grad():
        logits = net(torch.from_numpy(np.stack(crops)).unsqueeze(1))
    return soft_cross_entropy(logits, torch.from_numpy(np.stack(labels))).item()


def test_best_epoch_has_the_lowest_validation_loss(collection, tmp_path: Path) -> None:
    genre = task_targets(collection.tracks, "g", None)
    val_ids = collection.tracks.loc[collection.tracks["split"] == "val", "track_id"]
    genre.loc[val_ids] = np.roll(genre.loc[val_ids].to_numpy(), 1, axis=1)  # wrong labels: learning hurts val
    config = dataclasses.replace(FAST, epochs=4, lr=0.01)
    result = train(collection, {"g": genre}, tmp_path, NetSpec("stn", ("g",), WIDTH), config)
    table = curves(tmp_path)
    best = int(table.loc[table["val_loss"].idxmin(), "epoch"])
    assert result.best_epoch == best < 4 and result.best_score == pytest.approx(table["val_loss"].min())
    assert val_loss_of_saved_net(collection, genre, tmp_path) == pytest.approx(table["val_loss"].min(), rel=1e-5)
    _, meta = load_net(tmp_path)
    assert meta["best_epoch"] == best and meta["epochs"] == 4 and meta["selection"].startswith("lowest")


def test_augmentation_changes_training_only_and_keys_nets_only_when_on(collection, tmp_path: Path) -> None:
    genre = task_targets(collection.tracks, "g", None)
    spec = NetSpec("stn", ("g",), WIDTH)
    config = dataclasses.replace(FAST, epochs=2, gain_db=30.0, time_mask_frames=8, freq_mask_bins=16, mixup_alpha=1.0)
    result = train(collection, {"g": genre}, tmp_path / "augmented", spec, config)
    plain = train(collection, {"g": genre}, tmp_path / "plain", spec, dataclasses.replace(FAST, epochs=2))
    assert result.finished and plain.finished
    augmented, unaugmented = curves(tmp_path / "augmented"), curves(tmp_path / "plain")
    assert not np.allclose(augmented["train_loss"], unaugmented["train_loss"])
    # The validation loss of the kept epoch is that of the saved net on the plain validation crops.
    best_val_loss = augmented.loc[augmented["epoch"] == result.best_epoch, "val_loss"].item()
    assert val_loss_of_saved_net(collection, genre, tmp_path / "augmented") == pytest.approx(best_val_loss, rel=1e-5)
    # All off keys nets as before the augmentation settings existed; any on gives another net.
    assert stable_key(training_settings(TrainConfig(), 0)) == "9ed16650dae7"
    assert net_dir(tmp_path, spec, config, 0, "in") != net_dir(tmp_path, spec, dataclasses.replace(FAST, epochs=2), 0, "in")
    for name, value in AUGMENTED.items():
        on = dataclasses.replace(TrainConfig(), **{name: value})
        assert stable_key(training_settings(on, 0)) != "9ed16650dae7", name


def test_curves_and_meta_of_an_mtn_without_artist_validation_targets(collection, targets, tmp_path: Path) -> None:
    config = dataclasses.replace(FAST, schedule="batch")
    result = train(collection, targets, tmp_path, NetSpec("mtn", ("g", "m"), WIDTH), config)
    table = curves(tmp_path)
    assert tuple(table.columns) == CURVE_COLUMNS
    assert table[["epoch", "task"]].values.tolist() == [[e, t] for e in (1, 2, 3) for t in ("g", "m")]
    genre, artist = table[table["task"] == "g"], table[table["task"] == "m"]
    assert genre["val_loss"].notna().all() and genre["val_accuracy"].between(0, 1).all()
    assert (genre["val_tracks"] == 12).all() and (artist["val_tracks"] == 0).all()
    assert artist["val_loss"].isna().all() and artist["val_accuracy"].isna().all()
    assert (table["patches_per_s"] > 0).all() and (table["seconds"] > 0).all() and table["train_loss"].notna().all()
    net, meta = load_net(tmp_path)
    assert isinstance(net, MTN) and meta["task_outputs"] == {"g": 3, "m": 5} and meta["genres"][0] == "genre0"
    assert meta["tasks_without_val_targets"] == ["m"] and meta["selection"].endswith("tasks g")
    assert meta["train_tracks"] == {"g": 24, "m": 24} and meta["param_count"] == result.param_count
    assert json.loads((tmp_path / "done.json").read_text())["best_epoch"] == result.best_epoch


def test_without_validation_targets_the_last_epoch_is_kept(collection, targets, tmp_path: Path) -> None:
    result = train(collection, targets, tmp_path, NetSpec("stn", ("m",), WIDTH))
    assert result.best_epoch == 3 and math.isnan(result.best_score)
    _, meta = load_net(tmp_path)
    assert meta["selection"] == "last epoch: no task has validation targets"
    assert_same_state(load_file(tmp_path / "model.safetensors"), checkpoint(tmp_path)["model"])


def test_nan_loss_stops_the_run_without_saving_a_model(collection, targets, tmp_path: Path) -> None:
    config = dataclasses.replace(FAST, lr=1e30)
    with pytest.raises(TrainingDiverged, match=r"epoch 1.*Lower the learning rate") as caught:
        train(collection, targets, tmp_path, NetSpec("stn", ("g",), WIDTH), config)
    assert caught.value.epoch == 1 and caught.value.task == "g"
    assert not (tmp_path / "model.safetensors").exists() and not (tmp_path / "done.json").exists()


def test_separable_genres_are_learned(tmp_path: Path) -> None:
    toy = toy_collection(tmp_path, tracks_per_genre=16, separation=6.0, seed=1)
    targets = {"g": task_targets(toy.tracks, "g", None)}
    config = dataclasses.replace(FAST, epochs=6, amp=True, channels_last=True)
    train_net(NetSpec("stn", ("g",), WIDTH), toy.store, toy.tracks, targets, config, 0, tmp_path / "net", "cpu", False)
    accuracy = curves(tmp_path / "net")["val_accuracy"]
    assert accuracy.iloc[-1] >= 0.9 and accuracy.iloc[-1] > 1 / 3 + 0.4


# -- specs, devices, CLI helpers ------------------------------------------------------------------------------


def test_net_specs_are_validated() -> None:
    with pytest.raises(ValueError, match="one STN per task"):
        NetSpec("stn", ("g", "m"))
    with pytest.raises(ValueError, match="genre task only"):
        NetSpec("wstn", ("m",))
    with pytest.raises(ValueError, match="unknown arch"):
        NetSpec("cnn", ("g",))  # type: ignore[arg-type]


def test_wstn_matches_the_compared_setup() -> None:
    outputs = {"g": 16, "m": 40, "d": 40}
    spec = wstn_spec("mtn", outputs, 128)
    target = setup_params("mtn", outputs, 128)
    assert spec.tasks == ("g",) and spec.width > 1.5 and spec.matched_params == target
    assert setup_params("stn", outputs, 128) > target  # the STN set has three first blocks
    assert net_specs("wstn", outputs, 128, match="stn")[0].matched_params == setup_params("stn", outputs, 128)


def test_devices_and_task_lists() -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="unknown device"):
        resolve_device("abacus")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")
    assert parse_tasks("s,g,m") == ("g", "m", "s") and parse_tasks("gmdes") == ("g", "m", "d", "e", "s")
    with pytest.raises(ConfigError, match="use letters"):
        parse_tasks("gx")


def test_specs_of_an_architecture_and_mtn_epochs() -> None:
    outputs = {"g": 3, "m": 5}
    assert net_specs("stn", outputs, 32) == [NetSpec("stn", ("g",)), NetSpec("stn", ("m",))]
    [mtn] = net_specs("mtn", outputs, 32)
    assert mtn == NetSpec("mtn", ("g", "m"))
    # As in the paper, an MTN trains the STN epochs x its number of tasks; STNs and wSTNs the epochs as set.
    assert net_train_config(mtn, FAST).epochs == 2 * FAST.epochs
    assert net_train_config(NetSpec("stn", ("g",)), FAST) == FAST


def test_fixed_epoch_budget_keeps_the_last_epoch(collection, targets, tmp_path: Path) -> None:
    config = dataclasses.replace(FAST, select_epoch="last")
    result = train(collection, targets, tmp_path, NetSpec("stn", ("g",), WIDTH), config)
    assert result.best_epoch == result.epochs_done == config.epochs
    assert_same_state(load_file(tmp_path / "model.safetensors"), checkpoint(tmp_path)["model"])
    _, meta = load_net(tmp_path)
    assert "last epoch" in meta["selection"]


def test_test_labels_never_change_a_net(tmp_path: Path) -> None:
    """Poisoned test labels: the trained net, its curves and its best epoch are unchanged."""
    results = {}
    for name, poison in (("clean", False), ("poisoned", True)):
        toy = toy_collection(tmp_path / name)
        tracks = toy.tracks.copy()
        test = tracks.index[tracks["split"] == "val"][::2]
        tracks.loc[test, "split"] = "test"
        if poison:
            tracks.loc[test, "genre"] = np.random.default_rng(3).permutation(tracks.loc[test, "genre"].to_numpy())
        genre = task_targets(tracks, "g", None)
        results[name] = train_net(NetSpec("stn", ("g",), WIDTH), toy.store, tracks, {"g": genre}, FAST, 0,
                                  tmp_path / name / "net", "cpu", False)
    assert results["clean"].best_epoch == results["poisoned"].best_epoch
    assert_same_state(*(load_file(tmp_path / name / "net" / "model.safetensors") for name in results))
    pd.testing.assert_frame_equal(*(curves(tmp_path / name / "net").drop(columns=["patches_per_s", "seconds"])
                                    for name in results))


class _RunsCode:
    """A pickle payload that would run a shell command when unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_that_would_run_code_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "checkpoint.pt"
    torch.save({"format": 1, "payload": _RunsCode(marker)}, path)
    with pytest.raises(TrainingError, match="unreadable checkpoint"):
        load_checkpoint(path, torch.device("cpu"))
    assert not marker.exists()



def _step_gradients(net: torch.nn.Module, task: str, l2_loss: float) -> dict[str, torch.Tensor]:
    """-(change of every parameter) in one train_step with SGD at learning rate 1 (the gradient of its loss); the
    net's parameters are put back."""
    from agf.training.loop import train_step

    torch.manual_seed(0)
    x, y = torch.randn(6, 1, 16, 128), torch.softmax(torch.randn(6, 3), dim=1)
    before = {name: param.detach().clone() for name, param in net.named_parameters()}
    torch.manual_seed(1)  # the same dropout masks
    train_step(net, torch.optim.SGD(net.parameters(), lr=1.0), task, x, y, False, l2_loss)
    gradients = {name: before[name] - param.detach() for name, param in net.named_parameters()}
    with torch.no_grad():
        for name, param in net.named_parameters():
            param.copy_(before[name])
    return gradients


def test_paper_l2_term_adds_beta_times_squared_weights_and_gammas_to_the_loss() -> None:
    """train.l2_loss: the step's gradient gains 2 beta w on every convolution, dense and batch-norm weight the
    task reaches (d/dw of beta sum w^2), nothing on biases and batch-norm shifts or another task's branch."""
    from agf.models import STN

    beta = 0.05
    for net in (STN(3, width=WIDTH).train(), MTN({"g": 3, "m": 5}, width=WIDTH).train()):
        plain, with_l2 = _step_gradients(net, "g", 0.0), _step_gradients(net, "g", beta)
        gammas = {f"{name}.weight" for name, module in net.named_modules()
                  if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d))}
        for name, param in net.named_parameters():
            regularised = name.endswith("weight") and not name.startswith(("trunks.m.", "heads.m."))
            expected = 2 * beta * param.detach() if regularised else torch.zeros_like(param)
            torch.testing.assert_close(with_l2[name] - plain[name], expected, atol=1e-6, rtol=1e-4, msg=name)
        assert gammas and gammas <= {name for name, _ in net.named_parameters()}


# -- the training budget: crops per track, early stopping (issue 27) -----------------------------------------


def test_crops_per_track_from_the_audio_length() -> None:
    """0: one crop per 30 s of audio, at least 1, at most MAX_CROPS_PER_TRACK; N >= 1: N for every track."""
    from agf.config import MAX_CROPS_PER_TRACK
    from agf.training.data import crops_per_track

    hop, rate = 512, 22050  # frames as the store computes them: 1 + samples // hop
    frames = np.array([1 + seconds * rate // hop for seconds in (180, 30, 29, 59, 61, 3, 3600)])
    assert crops_per_track(frames, rate / hop, 0).tolist() == [6, 1, 1, 1, 2, 1, MAX_CROPS_PER_TRACK]
    assert crops_per_track(frames, rate / hop, 1).tolist() == [1] * 7
    assert crops_per_track(frames, rate / hop, 3).tolist() == [3] * 7


def test_epoch_plan_repeats_a_track_with_independent_offsets_seeded() -> None:
    rows = {"g": np.arange(0, 21), "m": np.arange(4, 30)}
    max_offsets = np.full(30, 1000)
    crops = np.where(np.arange(30) % 2 == 0, 6, 1)  # even rows: 3-min tracks, odd rows: 30-s clips

    def plan(epoch: int, crops: np.ndarray | None, schedule: str = "batch"):
        batches = epoch_plan(np.random.default_rng([3, epoch]), rows, max_offsets, 8, schedule, crops)
        return [(b.task, b.rows.tolist(), b.offsets.tolist()) for b in batches]

    assert plan(1, crops) == plan(1, crops) != plan(2, crops)  # from (seed, epoch) alone: a resume replans it
    assert plan(1, np.ones(30, np.int64)) == plan(1, None)  # one crop each: exactly the plan of before
    assert plan(1, crops, "epoch") == plan(1, crops, "epoch")
    for task, task_rows in rows.items():
        planned = [(row, offset) for b_task, b_rows, b_offsets in plan(1, crops) if b_task == task
                   for row, offset in zip(b_rows, b_offsets)]
        counts = pd.Series([row for row, _ in planned]).value_counts()
        assert counts.to_dict() == {row: int(crops[row]) for row in task_rows}
        offsets_of_row = {row: {o for r, o in planned if r == row} for row in task_rows if crops[row] == 6}
        assert sum(len(offsets) for offsets in offsets_of_row.values()) > 5 * len(offsets_of_row)  # independent


def test_training_data_holds_each_rows_crops(collection, targets) -> None:
    genre = {"g": targets["g"]}
    assert set(prepare_data(collection.store, collection.tracks, genre, ("g",), 16).crops.tolist()) == {1}
    assert set(prepare_data(collection.store, collection.tracks, genre, ("g",), 16, 3).crops.tolist()) == {3}


def test_more_crops_per_track_train_more_patches_and_key_a_new_net(collection, targets, tmp_path: Path) -> None:
    spec = NetSpec("stn", ("g",), WIDTH)
    one = dataclasses.replace(FAST, epochs=1)
    three = dataclasses.replace(one, crops_per_track=3)
    assert net_dir(tmp_path, spec, one, 0, "k") != net_dir(tmp_path, spec, three, 0, "k")
    from agf.training.data import shuffled_batches

    data = prepare_data(collection.store, collection.tracks, {"g": targets["g"]}, ("g",), 16, 3)
    batches = shuffled_batches(np.random.default_rng(0), "g", data.train_rows["g"], data.max_offsets, 8, data.crops)
    assert sum(len(b.rows) for b in batches) >= 3 * len(data.train_rows["g"]) - 1
    result = train(collection, targets, tmp_path / "three", spec, three)
    assert result.finished and result.epochs_done == 1


def _scripted_run(losses: list[float], patience: int) -> tuple[int, int]:
    """(epochs trained, best epoch) of a run whose validation losses are `losses`, stopping as train_net does."""
    from agf.training.checkpoint import RunState
    from agf.training.loop import stopped_early

    net, run = torch.nn.Linear(1, 1), RunState()
    for epoch, loss in enumerate(losses, 1):
        if stopped_early(run, patience):
            break
        run.record(epoch, [{"epoch": epoch, "task": "g", "val_loss": loss}], net)
    return run.epoch, run.best_epoch


def test_patience_stops_after_that_many_epochs_without_improvement() -> None:
    losses = [1.0, 0.9, 0.95, 0.97, 0.8, 0.85, 0.9, 0.91, 0.92, 0.7]
    assert _scripted_run(losses, 0) == (10, 10)  # off: every epoch
    assert _scripted_run(losses, 2) == (4, 2)
    assert _scripted_run(losses, 3) == (8, 5)
    assert _scripted_run(losses, 5) == (10, 10)  # the cap
    assert _scripted_run([math.nan] * 6, 1) == (6, 6)  # no validation targets: never stops early
    mtn = NetSpec("mtn", ("g", "m"))
    assert net_train_config(mtn, dataclasses.replace(FAST, patience=4)).patience == 8  # as its epochs
    assert net_train_config(NetSpec("stn", ("g",)), dataclasses.replace(FAST, patience=4)).patience == 4


@pytest.fixture(scope="module")
def overfitting_genre(collection) -> pd.DataFrame:
    """Genre targets whose validation labels are wrong: learning raises the validation loss."""
    genre = task_targets(collection.tracks, "g", None)
    val_ids = collection.tracks.loc[collection.tracks["split"] == "val", "track_id"]
    genre.loc[val_ids] = np.roll(genre.loc[val_ids].to_numpy(), 1, axis=1)
    return genre


PATIENT = dataclasses.replace(FAST, epochs=10, lr=0.01, patience=2)


def test_a_net_stops_early_and_says_so(collection, overfitting_genre, tmp_path: Path) -> None:
    result = train(collection, {"g": overfitting_genre}, tmp_path, NetSpec("stn", ("g",), WIDTH), PATIENT)
    table = curves(tmp_path)
    assert result.finished and result.epochs_done == result.best_epoch + 2 < PATIENT.epochs
    assert int(table["epoch"].max()) == result.epochs_done
    assert result.best_epoch == int(table.loc[table["val_loss"].idxmin(), "epoch"])
    _, meta = load_net(tmp_path)
    assert meta["stopped_early"] and meta["epochs"] == result.epochs_done and meta["max_epochs"] == 10


@pytest.mark.parametrize("kill_after", ["first", "last"])
def test_a_killed_run_resumes_and_stops_at_the_same_epoch(collection, overfitting_genre, tmp_path: Path,
                                                         kill_after: str) -> None:
    spec, targets = NetSpec("stn", ("g",), WIDTH), {"g": overfitting_genre}
    whole = train(collection, targets, tmp_path / "whole", spec, PATIENT)
    stop = 1 if kill_after == "first" else whole.epochs_done  # "last": killed before net.json and done.json
    killed = train(collection, targets, tmp_path / "killed", spec, PATIENT, stop_after_epoch=stop)
    assert not killed.finished and killed.epochs_done == stop
    resumed = train(collection, targets, tmp_path / "killed", spec, PATIENT)
    assert resumed.finished and (resumed.epochs_done, resumed.best_epoch) == (whole.epochs_done, whole.best_epoch)
    saved = [load_file(tmp_path / run / "model.safetensors") for run in ("whole", "killed")]
    assert_same_state(*saved)
    losses = ["epoch", "task", "train_loss", "val_loss"]
    pd.testing.assert_frame_equal(curves(tmp_path / "whole")[losses], curves(tmp_path / "killed")[losses])
