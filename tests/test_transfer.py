"""Tests of agf.transfer: windows, cached window features, the leak-free transfer MLP, baselines and evaluation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file
from store_fixtures import make_store as make_mel_store
from store_fixtures import toy_mels

import agf.transfer.mlp as transfer_mlp
from agf.config import PATCH_FRAMES, FeatureConfig, TransferConfig, key_settings, load_config
from agf.errors import ModelFileError, TransferError
from agf.evaluation import CLASSICAL, evaluate
from agf.fileio import read_json, write_json_atomic
from agf.metrics import accuracy, aggregate_window_probs, log_loss, mean_window_probs, pooled_window_features
from agf.models import MTN, STN, save_net
from agf.store import FeatureStore
from agf.transfer import (
    MTN_BASELINE,
    STN_BASELINE,
    check_train_only,
    fit_transfer,
    load_mlp,
    load_source,
    net_window_features,
    window_batch,
    window_starts,
)
from agf.transfer.mlp import (
    Candidate,
    FeatureMatrix,
    WindowSet,
    choose_candidate,
    epoch_positions,
    fold_standardization,
    predict_batches,
    standardization,
    window_cache_dir,
)

GENRES = ["blues", "folk", "rock"]
N_MELS = 128
SPLIT_SIZES = {"train": 8, "val": 3, "test": 3}  # tracks per genre
TOY_FRAMES = 86  # 2 s: windows at 0, 21, 42 and 43 (flush with the end)


def make_store(root: Path, mels: dict[str, np.ndarray]) -> FeatureStore:
    """A store of the given log-mels (store_fixtures) with MFCC-like arrays for the classical baseline."""
    return make_mel_store(root, mels, mfccs={track_id: mel[:, ::5] for track_id, mel in mels.items()})


def toy_tracks() -> pd.DataFrame:
    """A track table: every genre in every split; one val and one test track have a wrong given label (noise)."""
    rows = []
    for genre in GENRES:
        for split, count in SPLIT_SIZES.items():
            for i in range(count):
                rows.append(
                    {
                        "track_id": f"{genre}-{split}-{i}",
                        "audio_path": f"/nowhere/{genre}-{split}-{i}.mp3",
                        "artist_id": f"{genre}-artist-{i % 2}",
                        "album_id": "",
                        "genre": genre,
                        "subgenres": [],
                        "split": split,
                        "true_genre": genre,
                    }
                )
    tracks = pd.DataFrame(rows)
    tracks.loc[tracks["track_id"].isin(["blues-val-0", "folk-test-0"]), "true_genre"] = ["rock", "blues"]
    return tracks


def net_meta(store: FeatureStore, outputs: dict[str, int]) -> dict:
    """The meta agf's training writes that a transfer reads: the net's input settings, tasks and genres."""
    return {"task_outputs": outputs, "genres": GENRES, "features": key_settings(store.config),
            "patch_frames": PATCH_FRAMES}


def fitted_stn(n_out: int, mels: list[np.ndarray]) -> STN:
    """A random (untrained) STN whose band statistics are fitted on the given log-mels."""
    net = STN(n_out)
    frames = np.concatenate(mels).astype(np.float32)
    net.band_norm.set_stats(torch.from_numpy(frames.mean(0)), torch.from_numpy(frames.std(0) + 1e-3))
    return net.eval()


@pytest.fixture(autouse=True)
def seeded() -> None:
    torch.manual_seed(0)


# -- windows -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_frames", "count", "last"),
    [(43, 1, 0), (1292, 61, 1249), (10336, 492, 10293)],
    ids=["1 s", "30 s", "4 min"],
)
def test_window_starts_for_paper_clip_lengths(n_frames: int, count: int, last: int) -> None:
    starts = window_starts(n_frames, patch=43, hop=21)
    assert len(starts) == count and starts[0] == 0 and starts[-1] == last
    assert starts[-1] + 43 == n_frames  # the end of the clip is covered
    steps = np.diff(starts)
    assert np.all(steps[:-1] == 21) and (len(steps) == 0 or 1 <= steps[-1] <= 21)


@settings(max_examples=200, deadline=None)
@given(n_frames=st.integers(1, 3000), patch=st.integers(1, 64), hop_share=st.floats(0.01, 1.0))
def test_windows_cover_every_frame(n_frames: int, patch: int, hop_share: float) -> None:
    hop = max(1, int(patch * hop_share))
    starts = window_starts(n_frames, patch, hop)
    assert starts[0] == 0 and np.all(np.diff(starts) >= 1) and np.all(np.diff(starts) <= hop)
    assert starts[-1] == max(n_frames - patch, 0)
    covered = np.zeros(n_frames, dtype=bool)
    for start in starts:
        covered[start : start + patch] = True
    assert covered.all()


def test_window_batch_slices_and_pads_short_clips() -> None:
    mel = np.arange(100 * 4, dtype=np.float16).reshape(100, 4) - 80
    starts = window_starts(100, 43, 21)
    batch = window_batch(mel, starts, 43)
    assert batch.shape == (len(starts), 43, 4) and batch.dtype == np.float32
    for window, start in zip(batch, starts):
        np.testing.assert_array_equal(window, mel[start : start + 43])
    short = window_batch(mel[:20], window_starts(20, 43, 21), 43)
    assert short.shape == (1, 43, 4)
    np.testing.assert_array_equal(short[0, :20], mel[:20])
    assert np.all(short[0, 20:] == mel[:20].min())  # padded with the clip's floor (silence), not 0 dB


# -- window features -----------------------------------------------------------------------------


@pytest.fixture
def small_store(tmp_path: Path) -> tuple[FeatureStore, dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    mels = {f"t{i}": rng.normal(-40.0, 6.0, size=(frames, N_MELS)) for i, frames in enumerate([43, 30, 100, 140])}
    return make_store(tmp_path / "store", mels), mels


def test_window_features_shape_values_and_cache(small_store, tmp_path: Path, monkeypatch) -> None:
    store, mels = small_store
    net = fitted_stn(3, list(mels.values()))
    ids = list(mels)
    cache = tmp_path / "cache"
    first = net_window_features(net, store, ids, 43, hop=21, device="cpu", batch_windows=4, cache_path=cache)
    counts = [len(window_starts(len(m), 43, 21)) for m in mels.values()]
    assert counts == [1, 1, 4, 6]
    assert first.features.shape == (sum(counts), 256) and first.features.dtype == np.float16
    assert first.tracks[first.track_of_window].tolist() == np.repeat(ids, counts).tolist()
    assert first.track_of_window.dtype == np.int32 and first.genre_probs is None
    assert isinstance(first.features, np.memmap)  # computed into the cache file and read from there
    stored = store.mel("t3")
    with torch.no_grad():
        expected = net.features(torch.from_numpy(window_batch(stored, window_starts(140, 43, 21), 43)).unsqueeze(1))
    np.testing.assert_allclose(first.features[-6:], expected.numpy(), rtol=2e-3, atol=2e-3)
    assert (cache / "done.json").exists()

    def fail(x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the net ran although the cache holds its features")

    monkeypatch.setattr(net, "features", fail)
    again = net_window_features(net, store, ids, 43, hop=21, device="cpu", cache_path=cache)
    np.testing.assert_array_equal(again.features, first.features)
    np.testing.assert_array_equal(again.starts, first.starts)
    assert again.tracks.tolist() == ids and np.array_equal(again.track_of_window, first.track_of_window)
    with pytest.raises(AssertionError, match="the net ran"):  # another hop is another request: recomputed
        net_window_features(net, store, ids, 43, hop=10, device="cpu", cache_path=cache)


def test_genre_head_probabilities_of_stn_and_mtn(small_store) -> None:
    store, mels = small_store
    stn = fitted_stn(3, list(mels.values()))
    mtn = MTN({"m": 5, "g": 3}).eval()
    x = torch.from_numpy(window_batch(store.mel("t2"), window_starts(100, 43, 21), 43)).unsqueeze(1)
    for net, direct in ((stn, lambda: stn(x)), (mtn, lambda: mtn(x, "g"))):
        result = net_window_features(net, store, ["t2"], 43, hop=21, device="cpu", head_genres=GENRES)
        assert result.genre_probs.shape == (4, 3) and result.head_genres == tuple(GENRES)
        np.testing.assert_allclose(result.genre_probs.sum(axis=1), 1.0, rtol=1e-5)
        with torch.no_grad():
            np.testing.assert_allclose(result.genre_probs, torch.softmax(direct(), dim=1).numpy(), atol=1e-5)


def test_check_train_only_rejects_validation_and_test_windows() -> None:
    tracks = toy_tracks()
    check_train_only(np.array(["blues-train-0", "rock-train-7", "blues-train-0"]), tracks)
    with pytest.raises(TransferError, match="folk-val-1"):
        check_train_only(np.array(["blues-train-0", "folk-val-1"]), tracks)
    with pytest.raises(TransferError, match="rock-test-0"):
        check_train_only(["rock-test-0"], tracks)


# -- the transfer end to end ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def transfer_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A toy store, a genre STN and a g+m MTN, a transfer fitted on both (train_mlp spied on)."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("transfer")
    tracks = toy_tracks()
    rng = np.random.default_rng(0)
    true_genres = tracks["true_genre"].map(GENRES.index).to_numpy()
    mels = dict(zip(tracks["track_id"], toy_mels(true_genres, TOY_FRAMES, N_MELS, rng, separation=30.0)))
    store = make_store(root / "features", mels)
    train_mels = [mels[t] for t in tracks.loc[tracks["split"] == "train", "track_id"]]
    save_net(root / "nets" / "stn-g", fitted_stn(3, train_mels), net_meta(store, {"g": 3}))
    mtn = MTN({"g": 3, "m": 5})
    mtn.band_norm.load_state_dict(fitted_stn(3, train_mels).band_norm.state_dict())
    save_net(root / "nets" / "mtn-gm", mtn, net_meta(store, {"g": 3, "m": 5}))
    save_net(root / "nets" / "stn-m", STN(5), net_meta(store, {"m": 5}))
    sources = [root / "nets" / "stn-g", root / "nets" / "mtn-gm"]
    config = TransferConfig(epochs=12, hidden=64, batch_size=32)
    fitted_on: list[np.ndarray] = []
    real_train_mlp = transfer_mlp.train_mlp

    def spy(model, train, *args, **kwargs):
        fitted_on.append(train.track_ids[train.track_of_row])
        return real_train_mlp(model, train, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transfer_mlp, "train_mlp", spy)
        result = fit_transfer(sources, store, tracks, config, 0, root / "transfer" / "run", device="cpu",
                              progress=False)
    return {
        "root": root, "tracks": tracks, "store": store, "sources": sources, "config": config,
        "result": result, "fitted_on": fitted_on,
    }


def test_mlp_is_fitted_on_training_windows_only(transfer_run: dict) -> None:
    tracks = transfer_run["tracks"]
    (fitted_ids,) = transfer_run["fitted_on"]
    train_ids = set(tracks.loc[tracks["split"] == "train", "track_id"])
    assert set(fitted_ids) == train_ids
    assert not set(fitted_ids) & set(tracks.loc[tracks["split"] != "train", "track_id"])
    assert len(fitted_ids) == 4 * len(train_ids)  # every window of every training track
    spec = read_json(transfer_run["result"].out_dir / "mlp.json")
    assert spec["n_train_tracks"] == len(train_ids) and spec["n_train_windows"] == len(fitted_ids)


def test_transfer_learns_and_predicts_every_track(transfer_run: dict) -> None:
    result, tracks = transfer_run["result"], transfer_run["tracks"]
    predictions = result.predictions
    assert predictions["track_id"].tolist() == tracks["track_id"].tolist()
    assert predictions["split"].tolist() == tracks["split"].tolist()
    assert list(predictions.columns) == ["track_id", "split", *GENRES]
    probs = predictions[GENRES].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    held_out = predictions["split"] != "train"
    truth = tracks.loc[held_out, "genre"].map(GENRES.index).to_numpy()
    assert accuracy(truth, probs[held_out.to_numpy()].argmax(axis=1)) > 0.6  # chance is 1/3
    curves = result.curves
    assert curves["epoch"].tolist() == list(range(1, 13))
    assert result.best_epoch == int(curves.loc[curves["val_log_loss"].idxmin(), "epoch"])
    for name in ("mlp.safetensors", "mlp.json", "curves.csv", "predictions.parquet", "done.json"):
        assert (result.out_dir / name).exists()


def test_track_prediction_is_the_mean_of_window_probabilities(transfer_run: dict) -> None:
    result, store, tracks = transfer_run["result"], transfer_run["store"], transfer_run["tracks"]
    model, spec = load_mlp(result.out_dir)
    assert spec["input_dim"] == 256 + 512 and spec["genres"] == GENRES
    parts = [
        net_window_features(
            load_source(path, store.config).net, store, tracks["track_id"], PATCH_FRAMES, 21, "cpu",
            cache_path=window_cache_dir(result.out_dir, path, 21), amp=transfer_run["config"].amp,
        )
        for path in transfer_run["sources"]
    ]
    features = FeatureMatrix(tuple(p.features for p in parts), torch.device("cpu"))
    window_probs = np.concatenate(list(predict_batches(model, features, np.arange(features.n_rows))))
    by_hand = np.stack([window_probs[4 * i : 4 * i + 4].mean(axis=0) for i in range(len(tracks))])
    np.testing.assert_allclose(result.predictions[GENRES].to_numpy(), by_hand, atol=1e-6)


def test_baselines_give_probability_rows(transfer_run: dict) -> None:
    result = transfer_run["result"]
    kinds = {b.kind: b for b in result.baselines}
    assert set(kinds) == {STN_BASELINE, MTN_BASELINE}
    for baseline in result.baselines:
        table = pd.read_parquet(result.out_dir / baseline.file)
        assert len(table) == len(transfer_run["tracks"])
        np.testing.assert_allclose(table[GENRES].to_numpy().sum(axis=1), 1.0, rtol=1e-5)
    assert load_source(transfer_run["root"] / "nets" / "stn-m", transfer_run["store"].config).baseline is None


def test_rerun_reuses_the_finished_transfer(transfer_run: dict, monkeypatch) -> None:
    def fail(*args, **kwargs):
        raise AssertionError("retrained although done.json matches the request")

    monkeypatch.setattr(transfer_mlp, "train_mlp", fail)
    run = transfer_run
    again = fit_transfer(run["sources"], run["store"], run["tracks"], run["config"], 0, run["result"].out_dir,
                         device="cpu", progress=False)
    pd.testing.assert_frame_equal(again.predictions, run["result"].predictions)
    assert again.best_epoch == run["result"].best_epoch and again.name == run["result"].name


def test_evaluate_scores_every_model_on_given_and_true_labels(transfer_run: dict, tmp_path: Path) -> None:
    run = evaluate([transfer_run["result"].out_dir], transfer_run["tracks"], tmp_path / "eval",
                   store=transfer_run["store"])
    models = run.metrics["models"]
    assert {m["kind"] for m in models.values()} == {"transfer", STN_BASELINE, MTN_BASELINE, "classical"}
    assert CLASSICAL in models and transfer_run["result"].name in models
    assert run.metrics["splits"] == {"val": {"n_tracks": 9}, "test": {"n_tracks": 9}}
    assert run.metrics["primary_split"] == "test"
    for entry in models.values():
        for split in ("val", "test"):
            assert set(entry["scores"][split]) == {"given", "true"}
            assert entry["scores"][split]["given"]["n"] == 9
    transfer_scores = models[transfer_run["result"].name]["scores"]
    for split in ("val", "test"):  # the audio follows the true genre: the noisy given label costs accuracy
        assert transfer_scores[split]["true"]["accuracy"] > transfer_scores[split]["given"]["accuracy"]
    written = read_json(tmp_path / "eval" / "metrics.json")
    assert written["models"][CLASSICAL]["scores"]["test"]["true"]["accuracy"] == pytest.approx(
        models[CLASSICAL]["scores"]["test"]["true"]["accuracy"]
    )
    assert len(list((tmp_path / "eval" / "confusion").glob("*.png"))) == 2 * len(models)
    assert (tmp_path / "eval" / "per_genre_f1.png").exists()
    f1 = pd.read_csv(tmp_path / "eval" / "per_genre_f1.csv", index_col="genre")
    assert list(f1.index) == GENRES and set(f1.columns) == set(models)
    for name in models:
        assert name in run.table


def test_calibration_is_fitted_on_validation_labels_only(transfer_run: dict, tmp_path: Path) -> None:
    """Poisoned test labels change no temperature; poisoned validation labels do (the check can fail)."""
    tracks = transfer_run["tracks"]
    clean = evaluate([transfer_run["result"].out_dir], tracks, tmp_path / "clean").metrics["models"]
    for split, out in (("test", "test-poisoned"), ("val", "val-poisoned")):
        poisoned = tracks.copy()
        rows = poisoned["split"] == split
        poisoned.loc[rows, "genre"] = np.roll(poisoned.loc[rows, "genre"].to_numpy(), 1)
        models = evaluate([transfer_run["result"].out_dir], poisoned, tmp_path / out).metrics["models"]
        moved = {name: abs(models[name]["temperature"] - entry["temperature"]) > 1e-3 for name, entry in clean.items()}
        assert (moved[transfer_run["result"].name] if split == "val" else not any(moved.values())), split
    for entry in clean.values():  # calibration never raises the validation log loss it minimises
        assert entry["temperature"] != 1.0
        assert entry["scores"]["val"]["given"]["log_loss"] <= entry["uncalibrated"]["val"]["given"]["log_loss"] + 1e-9
        assert entry["scores"]["test"]["given"]["accuracy"] == entry["uncalibrated"]["test"]["given"]["accuracy"]
    assert len(list((tmp_path / "clean" / "reliability").glob("*.png"))) == len(clean)


def test_evaluate_rejects_a_transfer_of_other_genres(transfer_run: dict, tmp_path: Path) -> None:
    tracks = transfer_run["tracks"].copy()
    tracks["genre"] = tracks["genre"].str.upper()
    tracks["true_genre"] = tracks["true_genre"].str.upper()
    with pytest.raises(TransferError, match="trained on genres"):
        evaluate([transfer_run["result"].out_dir], tracks, tmp_path / "eval")


def test_a_net_carries_the_input_it_takes(transfer_run: dict, tmp_path: Path) -> None:
    """Transfer reads the features and window length from net.json: other features or mixed lengths are refused."""
    run = transfer_run
    other = FeatureConfig(n_mels=N_MELS, hop_length=256)
    with pytest.raises(TransferError, match="other features.*hop_length"):
        load_source(run["sources"][0], other)
    long = tmp_path / "stn-g-86"
    save_net(long, STN(3), {**net_meta(run["store"], {"g": 3}), "patch_frames": 86})
    assert load_source(long, run["store"].config).patch_frames == 86
    with pytest.raises(TransferError, match="different lengths"):
        fit_transfer([run["sources"][0], long], run["store"], run["tracks"], run["config"], 0, tmp_path / "t",
                     device="cpu", progress=False)


def test_poisoned_test_labels_change_no_mlp_choice(transfer_run: dict, tmp_path: Path) -> None:
    """Shuffled test labels: the MLP's curves, best epoch and validation predictions are unchanged."""
    run = transfer_run
    tracks = run["tracks"].copy()
    test = tracks.index[tracks["split"] == "test"]
    tracks.loc[test, "genre"] = np.random.default_rng(5).permutation(tracks.loc[test, "genre"].to_numpy())
    poisoned = fit_transfer(run["sources"], run["store"], tracks, run["config"], 0, tmp_path / "poisoned",
                            device="cpu", progress=False)
    clean = run["result"]
    assert poisoned.best_epoch == clean.best_epoch
    columns = ["epoch", "train_loss", "val_log_loss", "val_accuracy"]
    pd.testing.assert_frame_equal(poisoned.curves[columns], clean.curves[columns])
    pd.testing.assert_frame_equal(poisoned.predictions, clean.predictions)


def test_fixed_epoch_budget_keeps_the_last_mlp_epoch(transfer_run: dict, tmp_path: Path) -> None:
    run = transfer_run
    config = dataclasses.replace(run["config"], epochs=4, select_epoch="last")
    result = fit_transfer(run["sources"], run["store"], run["tracks"], config, 0, tmp_path / "last", device="cpu",
                          progress=False)
    assert result.best_epoch == 4


def test_model_names_are_plain_and_never_merge_two_nets(transfer_run: dict, tmp_path: Path) -> None:
    import shutil

    from agf.errors import EvaluationError

    run = transfer_run
    assert run["result"].name == "transfer MLP: STN[g] + MTN[gm]"  # no directory hashes in names
    other_net = tmp_path / "stn-g-other-seed"
    shutil.copytree(run["sources"][0], other_net)
    other = fit_transfer([other_net, run["sources"][1]], run["store"], run["tracks"], run["config"], 0,
                         tmp_path / "other", device="cpu", progress=False)
    assert other.name == run["result"].name
    with pytest.raises(EvaluationError, match="one seed at a time"):
        evaluate([run["result"].out_dir, other.out_dir], run["tracks"], tmp_path / "eval")


# -- windows cap, standardisation, track aggregations and their selection -------------------------------------


def test_windows_cap_draws_at_most_n_per_track_anew_every_epoch() -> None:
    sizes = {"t0": 1, "t1": 3, "t2": 10, "t3": 10, "t4": 2, "t5": 7}
    ids = np.repeat(list(sizes), list(sizes.values()))
    track_of_row = np.repeat(np.arange(len(sizes), dtype=np.int32), list(sizes.values()))
    train = WindowSet(FeatureMatrix((np.zeros((len(ids), 2)),), torch.device("cpu")), np.arange(len(ids)),
                      track_of_row, np.zeros(len(ids), dtype=np.int64), np.array(list(sizes)))
    first = epoch_positions(train, 3, seed=0, epoch=1)
    assert pd.Series(ids[first]).value_counts().to_dict() == {t: min(3, n) for t, n in sizes.items()}
    assert len(set(first)) == len(first)  # no window twice
    assert not np.array_equal(first, epoch_positions(train, 3, seed=0, epoch=2))  # other windows next epoch
    assert np.array_equal(first, epoch_positions(train, 3, seed=0, epoch=1))  # the same seed: the same draw
    assert not np.array_equal(first, epoch_positions(train, 3, seed=1, epoch=1))
    assert np.array_equal(epoch_positions(train, 0, seed=0, epoch=1), np.arange(len(ids)))  # 0: all


def test_capped_transfer_trains_on_at_most_n_windows_per_track_and_epoch(
    transfer_run: dict, tmp_path: Path, monkeypatch
) -> None:
    run = transfer_run
    drawn: list[np.ndarray] = []
    real = transfer_mlp.epoch_positions

    def spy(train, cap, seed, epoch):
        positions = real(train, cap, seed, epoch)
        drawn.append(train.track_ids[train.track_of_row[positions]])
        return positions

    monkeypatch.setattr(transfer_mlp, "epoch_positions", spy)
    config = dataclasses.replace(run["config"], max_windows_per_track=2, epochs=3)
    fit_transfer(run["sources"], run["store"], run["tracks"], config, 0, tmp_path / "capped", device="cpu",
                 progress=False)
    n_train = (run["tracks"]["split"] == "train").sum()
    assert len(drawn) == 3 and all(pd.Series(ids).value_counts().max() == 2 and len(ids) == 2 * n_train
                                   for ids in drawn)
    spec = read_json(tmp_path / "capped" / "mlp.json")
    assert spec["train_windows_per_epoch"] == 2 * n_train and spec["n_train_windows"] == 4 * n_train


def test_mlp_training_equals_torch_default_single_tensor_adam(monkeypatch) -> None:
    """The MLP's multi-tensor (foreach) Adam is a speed-up only: the weights are bitwise those of torch's default."""
    rng = np.random.default_rng(0)
    track_of_row = np.repeat(np.arange(12, dtype=np.int32), 5)
    features = FeatureMatrix((rng.normal(size=(len(track_of_row), 16)).astype(np.float32),), torch.device("cpu"))
    train = WindowSet(features, np.arange(len(track_of_row)), track_of_row, rng.integers(0, 3, len(track_of_row)),
                      np.array([f"t{i}" for i in range(12)]))
    config = TransferConfig(epochs=4, hidden=32, batch_size=8, select_epoch="last")

    def trained() -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        return transfer_mlp.train_mlp(transfer_mlp.build_mlp(16, 3, 32), train, None, config, 0, False)[0]

    multi_tensor = trained()
    default_adam = torch.optim.Adam
    monkeypatch.setattr(torch.optim, "Adam", lambda *args, foreach=None, **kwargs: default_adam(*args, **kwargs))
    single_tensor = trained()
    assert all(torch.equal(multi_tensor[name], single_tensor[name]) for name in multi_tensor)


def test_standardisation_folds_into_the_first_layer() -> None:
    x = torch.randn(20, 6) * torch.tensor([1.0, 5.0, 0.1, 2.0, 1.0, 0.0]) + 3.0  # the last column is constant
    mean, std = standardization(FeatureMatrix((x.numpy(),), torch.device("cpu")), np.arange(15))
    assert std[-1] == 1.0 and torch.allclose(std[:2], x[:15, :2].double().std(0, unbiased=False).float())
    model = transfer_mlp.build_mlp(6, 3, hidden=8).eval()
    expected = model((x - mean) / std)
    fold_standardization(model, mean, std)
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


# -- out of core: features read from the nets' caches by batch -----------------------------------------------


def in_memory_mlp(
    features: torch.Tensor, labels: np.ndarray, ids: np.ndarray, split: np.ndarray, config: TransferConfig, seed: int
) -> tuple[pd.DataFrame, np.ndarray]:
    """The transfer MLP as fitted before its features went out of core, on one in-memory matrix (a row per window,
    or per track): standardised at once by torch's float64 statistics, batches indexed from the matrix. Returns
    the curves and the kept MLP's probabilities of every row."""
    train, val = (torch.from_numpy(np.flatnonzero(split == name)) for name in ("train", "val"))
    inputs = features
    if config.standardize:
        stats = features[train].double()
        mean, std = stats.mean(0).float(), stats.std(0, unbiased=False)
        std = torch.where(std < transfer_mlp.STD_FLOOR, torch.ones_like(std), std).float()
        inputs = ((features.float() - mean) / std).to(features.dtype)
    torch.manual_seed(seed)
    model = transfer_mlp.build_mlp(features.shape[1], len(GENRES), config.hidden, config.dropout)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, foreach=True)
    shuffle = torch.Generator().manual_seed(seed)
    val_labels = pd.Series(labels[val], index=ids[val]).groupby(level=0, sort=False).first().to_numpy()

    def probs(x: torch.Tensor, rows: torch.Tensor) -> np.ndarray:
        model.eval()
        with torch.inference_mode():
            batches = rows.split(transfer_mlp.PREDICT_BATCH)
            return torch.cat([torch.softmax(model(x[batch].float()), 1) for batch in batches]).numpy()

    curves, best = [], (np.inf, {})
    for _ in range(config.epochs):
        model.train()
        loss_sum = torch.zeros(())
        for batch in train[torch.randperm(len(train), generator=shuffle)].split(config.batch_size):
            loss = torch.nn.functional.cross_entropy(model(inputs[batch].float()), torch.from_numpy(labels[batch]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach() * len(batch)
        track_probs = mean_window_probs(ids[val], probs(inputs, val)).to_numpy()
        val_loss = log_loss(val_labels, track_probs)
        curves.append([loss_sum.item() / len(train), val_loss, accuracy(val_labels, track_probs.argmax(1))])
        if val_loss < best[0]:
            best = (val_loss, {name: t.detach().clone() for name, t in model.state_dict().items()})
    model.load_state_dict(best[1])
    if config.standardize:
        fold_standardization(model, mean, std)
    return pd.DataFrame(curves, columns=["train_loss", "val_log_loss", "val_accuracy"]), probs(
        features, torch.arange(len(features)))


@pytest.mark.slow
@pytest.mark.parametrize("standardize", [True, False])
def test_the_mlp_read_by_batch_from_memmapped_caches_is_the_in_memory_mlp(
    tmp_path: Path, monkeypatch, standardize: bool
) -> None:
    """Three nets' float16 features memory-mapped and read a batch at a time (statistics, validation, predictions
    and pooled features in chunks of 16 and 8 rows, tracks straddling them) give bitwise the curves and track
    probabilities of the concatenated in-memory matrix, for every aggregation."""
    monkeypatch.setattr(transfer_mlp, "PREDICT_BATCH", 16)
    monkeypatch.setattr(transfer_mlp, "POOL_BATCH", 8)
    rng = np.random.default_rng(3)
    tracks = toy_tracks()
    labels = tracks["genre"].map(GENRES.index).to_numpy()
    track_of_row = np.repeat(np.arange(len(tracks), dtype=np.int32), rng.integers(1, 12, len(tracks)))
    parts = []
    for i, dim in enumerate((8, 12, 4)):
        values = rng.normal(rng.normal(0, 1, dim), rng.uniform(0.2, 2, dim), (len(track_of_row), dim))
        np.save(tmp_path / f"net{i}.npy", (values + labels[track_of_row, None]).astype(np.float16))
        parts.append(np.load(tmp_path / f"net{i}.npy", mmap_mode="r"))
    ids, split = tracks["track_id"].to_numpy(dtype=object), tracks["split"].to_numpy()
    rows = transfer_mlp.Rows(FeatureMatrix(tuple(parts), torch.device("cpu")), track_of_row, ids, labels, split)
    config = TransferConfig(epochs=4, hidden=16, batch_size=8, standardize=standardize,
                            aggregations=("probs", "log_probs", "pooled"))
    fitted = {c.aggregation: c for c in transfer_mlp.fit_candidates(rows, tracks, tuple(GENRES), config, 5, False)}

    features = torch.from_numpy(np.concatenate(parts, axis=1))
    window_ids = ids[track_of_row]
    curves, window_probs = in_memory_mlp(features, labels[track_of_row], window_ids, split[track_of_row], config, 5)
    pooled = pooled_window_features(window_ids, features.float().numpy()).to_numpy(dtype=np.float32)
    pooled_curves, pooled_probs = in_memory_mlp(torch.tensor(pooled), labels, ids, split, config, 5)
    expected = {aggregation: (curves, aggregate_window_probs(window_ids, window_probs, aggregation).to_numpy())
                for aggregation in ("probs", "log_probs")}
    expected["pooled"] = (pooled_curves, pooled_probs)
    for aggregation, (reference_curves, reference_probs) in expected.items():
        candidate = fitted[aggregation]
        pd.testing.assert_frame_equal(candidate.fitted.curves[list(reference_curves)], reference_curves,
                                      check_exact=True)
        assert np.array_equal(candidate.predictions[GENRES].to_numpy(), reference_probs), aggregation


@settings(max_examples=100, deadline=None)
@given(sizes=st.lists(st.integers(1, 9), min_size=1, max_size=12), batch=st.integers(1, 20))
def test_batches_regroup_into_whole_tracks(sizes: list[int], batch: int) -> None:
    track_of_row = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)
    values = np.arange(len(track_of_row))
    batches = (values[s] for s in transfer_mlp.batch_slices(len(values), batch))
    chunks = list(transfer_mlp.whole_tracks(track_of_row, batches))
    assert np.array_equal(np.concatenate([v for _, v in chunks]), values)  # every row once, in order
    ends = np.cumsum([len(v) for _, v in chunks])
    assert set(ends) <= set(np.cumsum(sizes))  # no track split between chunks
    assert all(np.array_equal(codes, track_of_row[end - len(v) : end]) for (codes, v), end in zip(chunks, ends))


def test_nets_with_other_windows_are_refused(small_store) -> None:
    store, mels = small_store
    net = fitted_stn(3, list(mels.values()))
    ids = list(mels)
    one = net_window_features(net, store, ids, 43, hop=21, device="cpu")
    other = net_window_features(net, store, ids, 43, hop=10, device="cpu")
    tracks = pd.DataFrame({"track_id": ids, "genre": GENRES[0], "split": "train"})
    rows = transfer_mlp.window_rows(transfer_mlp.shared_windows([one, one]), tracks, GENRES, torch.device("cpu"))
    assert rows.features.dim == 512 and np.array_equal(rows.track_of_row, one.track_of_window)
    with pytest.raises(TransferError, match="different windows"):
        transfer_mlp.shared_windows(iter([one, other]))
    shuffled = dataclasses.replace(one, track_of_window=one.track_of_window[::-1].copy())
    with pytest.raises(TransferError, match="not grouped by track"):
        transfer_mlp.shared_windows([shuffled])


def _candidate(name: str, tracks: pd.DataFrame, right: float, test_right: float) -> Candidate:
    """A fake candidate giving each validation track's given genre probability `right`, each test track's
    `test_right` (the rest spread evenly)."""
    probs = np.zeros((len(tracks), len(GENRES)))
    share = np.where(tracks["split"] == "test", test_right, right)
    probs[:] = ((1 - share) / (len(GENRES) - 1))[:, None]
    probs[np.arange(len(tracks)), tracks["genre"].map(GENRES.index)] = share
    table = pd.DataFrame(probs, columns=GENRES).assign(track_id=tracks["track_id"].to_numpy(),
                                                       split=tracks["split"].to_numpy())
    fitted = transfer_mlp.FittedMLP(transfer_mlp.build_mlp(2, 3, 4), pd.DataFrame(), 1)
    return Candidate(name, fitted, table[["track_id", "split", *GENRES]])


def test_selection_takes_the_lowest_validation_log_loss_and_never_reads_test_labels() -> None:
    tracks = toy_tracks()
    candidates = [_candidate("probs", tracks, 0.5, 0.2), _candidate("log_probs", tracks, 0.8, 0.1),
                  _candidate("pooled", tracks, 0.4, 0.99)]
    chosen, scores = choose_candidate(candidates, tracks, GENRES)
    assert chosen.aggregation == "log_probs"  # the best on validation; 'pooled' is the best on test
    assert scores["log_probs"]["val_log_loss_calibrated"] == min(s["val_log_loss_calibrated"] for s in scores.values())
    poisoned = tracks.copy()
    test = poisoned["split"] == "test"
    poisoned.loc[test, "genre"] = np.roll(poisoned.loc[test, "genre"].to_numpy(), 1)
    assert choose_candidate(candidates, poisoned, GENRES) == (chosen, scores)
    no_val = tracks[tracks["split"] != "val"]
    without = [_candidate("pooled", no_val, 0.4, 0.2), _candidate("probs", no_val, 0.5, 0.9)]
    assert choose_candidate(without, no_val, GENRES) == (without[0], {"pooled": None, "probs": None})  # the first


@pytest.mark.slow
def test_every_aggregation_is_fitted_and_the_choice_ignores_test_labels(transfer_run: dict, tmp_path: Path) -> None:
    run = transfer_run
    config = dataclasses.replace(run["config"], aggregations=("probs", "log_probs", "pooled"))
    clean = fit_transfer(run["sources"], run["store"], run["tracks"], config, 0, tmp_path / "all", device="cpu",
                         progress=False)
    spec = read_json(clean.out_dir / "mlp.json")
    scores = spec["candidates"]
    assert set(scores) == {"probs", "log_probs", "pooled"}
    assert spec["aggregation"] == min(scores, key=lambda a: scores[a]["val_log_loss_calibrated"])
    assert spec["input_dim"] == (2 if spec["aggregation"] == "pooled" else 1) * (256 + 512)
    assert scores["probs"]["val_log_loss"] != scores["log_probs"]["val_log_loss"]
    tracks = run["tracks"].copy()
    test = tracks["split"] == "test"
    tracks.loc[test, "genre"] = np.random.default_rng(5).permutation(tracks.loc[test, "genre"].to_numpy())
    poisoned = fit_transfer(run["sources"], run["store"], tracks, config, 0, tmp_path / "poisoned", device="cpu",
                            progress=False)
    assert read_json(poisoned.out_dir / "mlp.json")["candidates"] == scores
    pd.testing.assert_frame_equal(poisoned.predictions, clean.predictions)


@pytest.mark.slow
@pytest.mark.parametrize(("aggregation", "standardize"), [("log_probs", False), ("pooled", True)])
def test_an_exported_transfer_predicts_what_the_evaluation_scored(
    transfer_run: dict, tmp_path: Path, aggregation: str, standardize: bool
) -> None:
    """The bundle carries the aggregation (and the folded standardisation); the classifier aggregates a track's
    windows as the transfer did, then applies the temperature."""
    from agf.calibration import apply_temperature
    from agf.predict import GenreClassifier, bundle_from_transfer, save_bundle
    from agf.predict.classifier import Decoded

    run = transfer_run
    store, tracks = run["store"], run["tracks"]
    config = dataclasses.replace(run["config"], aggregations=(aggregation,), standardize=standardize)
    result = fit_transfer(run["sources"], store, tracks, config, 0, tmp_path / "t", device="cpu", progress=False)
    bundle = bundle_from_transfer(result.out_dir, run["sources"], store.config, config.amp, {}, temperature=1.7)
    classifier = GenreClassifier.load(save_bundle(bundle, tmp_path / "model"), device="cpu")
    assert classifier.bundle.aggregation == aggregation
    test_ids = tracks.loc[tracks["split"] == "test", "track_id"].tolist()
    predicted = np.stack([p.probabilities for p in classifier._score(Decoded(t, store.mel(t)) for t in test_ids)])
    scored = result.predictions.set_index("track_id").loc[test_ids, GENRES].to_numpy()
    assert np.abs(predicted - apply_temperature(scored, 1.7)).max() < 1e-5
    assert np.abs(predicted - scored).max() > 1e-3  # the temperature was applied (the check can fail)


@pytest.mark.parametrize("damage", ["cut in half", "torch.save"])
def test_unreadable_weights_of_a_net_or_an_mlp_are_one_line_errors(small_store, tmp_path: Path, damage: str) -> None:
    """`agf transfer` on a net, and export's read of a transfer MLP, whose safetensors file is cut short or is a
    torch.save file: one line naming the file and how to make it again; never unpickled."""
    store, mels = small_store
    net = STN(3, width=0.25)
    save_net(tmp_path / "net", net, net_meta(store, {"g": 3}))
    mlp = transfer_mlp.build_mlp(net.feature_dim, 3, hidden=8)
    (tmp_path / "mlp").mkdir()
    save_file(mlp.state_dict(), str(tmp_path / "mlp" / "mlp.safetensors"))
    write_json_atomic(tmp_path / "mlp" / "mlp.json",
                      {"input_dim": net.feature_dim, "genres": GENRES, "hidden": 8, "dropout": 0.5})
    tracks = pd.DataFrame({"track_id": list(mels), "genre": GENRES[0], "split": "train"})
    loads = {
        tmp_path / "net" / "model.safetensors": (net, "train the net again", lambda: fit_transfer(
            [tmp_path / "net"], store, tracks, TransferConfig(), 0, tmp_path / "transfer", "cpu", progress=False)),
        tmp_path / "mlp" / "mlp.safetensors": (mlp, "run the transfer again", lambda: load_mlp(tmp_path / "mlp")),
    }
    for weights, (module, fix, load) in loads.items():
        if damage == "torch.save":
            torch.save(module.state_dict(), weights)
        else:
            weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        with pytest.raises(ModelFileError, match=f"{weights}: not a readable safetensors file") as caught:
            load()
        message = str(caught.value)
        assert fix in message and "\n" not in message
        assert ("a pickle or torch.save file, which agf never unpickles" in message) == (damage == "torch.save")


# -- the paper's transfer settings ---------------------------------------------------------------------------


@pytest.mark.slow
def test_paper_transfer_keeps_the_mean_of_window_probabilities_and_is_never_calibrated(
    transfer_run: dict, tmp_path: Path
) -> None:
    """aggregations = ['probs'], calibrate = false: one candidate, recorded; the evaluation scores the raw
    probabilities of the MLP, its baselines and the classical baseline (temperature 1); by default it does not."""
    run = transfer_run
    config = dataclasses.replace(run["config"], aggregations=("probs",), calibrate=False)
    result = fit_transfer(run["sources"], run["store"], run["tracks"], config, 0, tmp_path / "paper", device="cpu",
                          progress=False)
    spec = read_json(result.out_dir / "mlp.json")
    assert (list(spec["candidates"]), spec["aggregation"], spec["calibrate"]) == (["probs"], "probs", False)
    assert result.calibrate is False
    models = evaluate([result.out_dir], run["tracks"], tmp_path / "eval", store=run["store"]).metrics["models"]
    assert {CLASSICAL, result.name} <= set(models) and len(models) >= 4
    for name, entry in models.items():
        assert (entry["temperature"], entry["calibrated"]) == (1.0, False), name
        for split in ("val", "test"):
            assert entry["scores"][split]["given"]["log_loss"] == entry["uncalibrated"][split]["given"]["log_loss"]
    default = evaluate([run["result"].out_dir], run["tracks"], tmp_path / "default", store=run["store"])
    assert all(entry["temperature"] != 1.0 and entry["calibrated"] for entry in default.metrics["models"].values())


def test_paper_choice_without_calibration_is_on_the_raw_validation_log_loss() -> None:
    """Near-uniform but always right: the best once a temperature sharpens it. Confident with two validation
    mistakes: the best uncalibrated, what the evaluation scores with calibrate = false."""
    tracks = toy_tracks()
    flat, confident = _candidate("probs", tracks, 0.36, 0.36), _candidate("log_probs", tracks, 0.6, 0.6)
    probs = confident.predictions.copy()
    for row in np.flatnonzero(probs["split"] == "val")[:2]:
        wrong = GENRES[(GENRES.index(tracks.loc[row, "genre"]) + 1) % len(GENRES)]
        probs.loc[row, GENRES] = 0.2
        probs.loc[row, wrong] = 0.6
    confident = dataclasses.replace(confident, predictions=probs)
    assert choose_candidate([flat, confident], tracks, GENRES)[0] is flat
    chosen, scores = choose_candidate([flat, confident], tracks, GENRES, calibrate=False)
    assert chosen is confident
    assert scores["probs"]["val_log_loss_calibrated"] < scores["log_probs"]["val_log_loss_calibrated"]


def test_paper_mlp_without_standardisation_sees_the_raw_features(monkeypatch) -> None:
    """The paper presets' transfer.standardize = false: the MLP is trained on the stored features as they are."""
    rng = np.random.default_rng(0)
    n_tracks, per_track = 12, 5
    raw = (rng.normal(size=(n_tracks * per_track, 16)) * 7 + 40).astype(np.float32)
    rows = transfer_mlp.Rows(FeatureMatrix((raw,), torch.device("cpu")),
                             np.repeat(np.arange(n_tracks, dtype=np.int32), per_track),
                             np.array([f"t{i}" for i in range(n_tracks)]), rng.integers(0, 3, n_tracks),
                             np.array(["train"] * 9 + ["val"] * 3))
    tracks = pd.DataFrame({"track_id": rows.track_ids, "split": rows.split})
    seen: list[torch.Tensor] = []
    real_train_mlp = transfer_mlp.train_mlp

    def spy(model, train, *args, **kwargs):
        seen.append(train.features.batch(train.rows))
        return real_train_mlp(model, train, *args, **kwargs)

    monkeypatch.setattr(transfer_mlp, "train_mlp", spy)
    for preset in (load_config("paper").transfer, TransferConfig()):  # the paper's raw input, then agf's default
        config = dataclasses.replace(preset, epochs=1, hidden=8, batch_size=16)
        transfer_mlp.fit_mlp(rows, tracks, 3, config, 0, False)
    raw_input, standardised = seen
    torch.testing.assert_close(raw_input, torch.from_numpy(raw[: 9 * per_track]))
    assert abs(float(standardised.mean())) < 0.05 and abs(float(raw_input.mean()) - 40) < 1


def test_paper_mlp_l2_term_adds_beta_times_squared_dense_weights_to_the_loss(monkeypatch) -> None:
    """transfer.l2_loss: one full-batch step of SGD at learning rate 1 (Adam swapped out) moves each dense weight by
    2 beta w more than without the term, and no bias."""
    rng = np.random.default_rng(0)
    track_of_row = np.repeat(np.arange(12, dtype=np.int32), 5)
    features = FeatureMatrix((rng.normal(size=(len(track_of_row), 16)).astype(np.float32),), torch.device("cpu"))
    train = WindowSet(features, np.arange(len(track_of_row)), track_of_row, rng.integers(0, 3, len(track_of_row)),
                      np.array([f"t{i}" for i in range(12)]))
    monkeypatch.setattr(torch.optim, "Adam", lambda params, lr, foreach=None: torch.optim.SGD(params, lr=1.0))
    torch.manual_seed(0)
    start = transfer_mlp.build_mlp(16, 3, 32, dropout=0.0).state_dict()
    beta = 0.05

    def step(l2_loss: float) -> dict[str, torch.Tensor]:
        model = transfer_mlp.build_mlp(16, 3, 32, dropout=0.0)
        model.load_state_dict(start)
        config = TransferConfig(epochs=1, hidden=32, dropout=0.0, batch_size=len(track_of_row), l2_loss=l2_loss,
                                select_epoch="last")
        state = transfer_mlp.train_mlp(model, train, None, config, 0, False)[0]
        return {name: start[name] - state[name] for name in start}

    plain, with_l2 = step(0.0), step(beta)
    for name, weight in start.items():
        expected = 2 * beta * weight if name.endswith("weight") else torch.zeros_like(weight)
        torch.testing.assert_close(with_l2[name] - plain[name], expected, atol=1e-6, rtol=1e-4, msg=name)
