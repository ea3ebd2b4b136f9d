"""Artist-grouped cross-validation (agf.pipeline.crossval, agf.pipeline.choosing) on a tiny synthetic corpus: the
folds hold out whole artists and never test, every choice is made on out-of-fold predictions, the final model is
fitted on train + validation, and the chosen seed ensemble is what the report and the bundle carry."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agf.cli import main
from agf.config import Config, SelectConfig, load_config
from agf.datasets.table import genre_list
from agf.factors import load_track_targets
from agf.pipeline.choosing import out_of_fold, out_of_fold_temperatures, selection_labels
from agf.pipeline.crossval import chosen_transfers, run_folds
from agf.selection import choose, crossval_cost, selection_mode
from agf.pipeline.stages import open_prepared
from agf.pipeline.times import StageTimes

CROSSVAL = """
[dataset]
kind = "synth"
val_fraction = 0.2
test_fraction = 0.2
[synth]
n_genres = 3
artists_per_genre = 4
albums_per_artist = 1
tracks_per_album = 3
clip_seconds = 3.0
seed = 1
[factors]
tasks = ["m"]
n_words = 16
n_topics = 4
frames_per_track = 40
[train]
epochs = 3
batch_size = 8
loader_workers = 0
[transfer]
epochs = 3
[grid]
tasks = ["g", "m"]
archs = ["stn", "mtn"]
subsets = ["g", "gm"]
seeds = [0, 1]
[select]
mode = "crossval"
fold_seeds = 2
[run]
workers = 2
"""


@pytest.fixture(scope="module")
def crossval_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("crossval")
    (root / "cv.toml").write_text(CROSSVAL)
    assert main(["run", str(root / "cv.toml"), "-w", str(root / "work"), "--quiet"]) == 0
    return root / "work"


def _config(work: Path) -> Config:
    config = load_config(work / "config.toml")
    return dataclasses.replace(config, run=dataclasses.replace(config.run, workdir=str(work)))


def _transfer_tables(run_dir: Path) -> list[pd.DataFrame]:
    return [pd.read_parquet(p) for p in sorted(run_dir.glob("transfer/*/predictions.parquet"))]


def test_folds_hold_out_whole_artists_and_never_see_test(crossval_run: Path) -> None:
    tracks = pd.read_parquet(crossval_run / "tracks.parquet").set_index("track_id")
    labelled = set(tracks.index[tracks["split"].isin(["train", "val"])])
    held_out: list[str] = []
    for fold in range(3):
        fold_dir = crossval_run / "crossval" / f"fold{fold}"
        tables = _transfer_tables(fold_dir)
        assert tables
        for table in tables:
            assert set(table["track_id"]) == labelled  # test tracks take no part in a fold
            train = table.loc[table["split"] == "train", "track_id"]
            held = table.loc[table["split"] == "val", "track_id"]
            assert not set(tracks.loc[train, "artist_id"]) & set(tracks.loc[held, "artist_id"])
        held_out += list(held)
        # Nothing fitted in the fold saw its held-out artists: the artist groups were fitted without them.
        [factors_dir] = list((fold_dir / "factors").iterdir())
        assert not set(load_track_targets(factors_dir, "m").index) & set(held)
    assert sorted(held_out) == sorted(labelled)  # each labelled track held out exactly once


def test_the_final_model_is_fitted_on_train_and_validation_with_the_chosen_epochs(crossval_run: Path) -> None:
    tracks = pd.read_parquet(crossval_run / "tracks.parquet").set_index("track_id")
    labelled = set(tracks.index[tracks["split"].isin(["train", "val"])])
    test = set(tracks.index[tracks["split"] == "test"])
    record = json.loads((crossval_run / "selection" / "selection.json").read_text())
    final = crossval_run / "crossval" / "final"
    for table in _transfer_tables(final):
        assert set(table.loc[table["split"] == "train", "track_id"]) == labelled
        assert set(table.loc[table["split"] == "test", "track_id"]) == test and "val" not in set(table["split"])
    for path in (final / "transfer").glob("*/mlp.json"):
        spec = json.loads(path.read_text())
        assert spec["n_train_tracks"] == len(labelled)
        assert spec["aggregation"] == record["crossval"]["transfers"][_setup(spec)]["aggregation"]
    epochs = sorted(json.loads(p.read_text())["epochs"] for p in final.glob("nets/*/done.json"))
    assert epochs == sorted(record["crossval"]["net_epochs"] * 2)  # every net of both seeds


def test_every_net_trains_its_budget_and_keeps_its_last_epoch_in_the_folds_and_the_final_fit(
        crossval_run: Path) -> None:
    # The nets' epochs are not chosen on a few held-out artists: the final nets are trained as the scored ones.
    budget = {"stn": 3, "mtn": 6}  # train.epochs, an MTN's times its 2 tasks
    markers = {path: json.loads(path.read_text()) for path in (crossval_run / "crossval").glob("*/nets/*/done.json")}
    assert {path.parts[-4] for path in markers} == {"fold0", "fold1", "fold2", "final"}
    for path, marker in markers.items():
        assert marker["epochs"] == marker["best_epoch"] == budget[path.parent.name.split("-")[0]], path
    # Fold nets had validation targets (genre) and would have chosen their epoch by them otherwise.
    fold_net = next(p.parent for p in markers if p.parts[-4] == "fold0" and p.parent.name.startswith("stn-g-"))
    assert json.loads((fold_net / "net.json").read_text())["meta"]["selection"].startswith("last epoch: train.select_epoch")


def _setup(spec: dict) -> str:
    """The setup key of a transfer's mlp.json ('stn gm 2'), from its sources."""
    tasks = "".join(sorted({t for s in spec["sources"] for t in s["tasks"]}, key="gmdes".index))
    arch = "mtn" if any(len(s["tasks"]) > 1 for s in spec["sources"]) else "stn"
    return f"{arch} {tasks} {len(tasks)}"


def test_poisoned_test_labels_change_no_choice(crossval_run: Path) -> None:
    config = _config(crossval_run)
    prepared = open_prepared(config)
    folds = run_folds(config, prepared, False, lambda _: None, True, StageTimes())
    genres = genre_list(prepared.tracks)
    pooled = out_of_fold(folds, genres)

    def choices(tracks: pd.DataFrame) -> tuple:
        temperatures = out_of_fold_temperatures(pooled, tracks, genres, True)
        chosen = choose(pooled.frames(folds.of_track.index), pooled.kinds,
                        selection_labels(tracks, folds.of_track.index), genres)
        return temperatures, chosen.name, chosen.combination, chosen.temperature

    poisoned = prepared.tracks.copy()
    test = poisoned["split"] == "test"
    shift = {g: genres[(i + 1) % len(genres)] for i, g in enumerate(genres)}
    poisoned.loc[test, "genre"] = poisoned.loc[test, "genre"].map(shift)
    assert choices(poisoned) == choices(prepared.tracks)
    assert all("test" not in set(table["split"]) for table in folds.tables)
    # The epochs and aggregations are read from the folds' runs alone.
    record = json.loads((crossval_run / "selection" / "selection.json").read_text())
    assert {" ".join(map(str, s)): t.epochs for s, t in chosen_transfers(folds.runs, config.transfer).items()} == {
        k: v["epochs"] for k, v in record["crossval"]["transfers"].items()}


def test_the_report_shows_the_cross_validated_estimate_beside_test(crossval_run: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    record = json.loads((crossval_run / "selection" / "selection.json").read_text())
    assert record["mode"] == "crossval" and record["chosen"]["seeds"] == [0, 1]
    # Two seeds per fold: how the seeds combine is chosen out of fold too.
    assert {row["combination"] for row in record["ranking"]} == {"probs", "log_probs"}
    per_fold = pd.DataFrame(record["crossval"]["per_fold"])
    given = per_fold[per_fold["labels"] == "given"]
    assert given["n_tracks"].sum() == record["selection"]["n_tracks"]
    assert given["n_artists"].sum() == record["selection"]["n_artists"]
    assert record["crossval"]["estimate"]["given"]["accuracy"]["mean"] == pytest.approx(given["accuracy"].mean())
    assert set(record["test"]) == {"given", "true"}
    (crossval_run / "report" / "report.html").unlink()

    def no_fitting(*args: object, **kwargs: object) -> None:
        raise AssertionError("agf report fitted a model")

    monkeypatch.setattr("agf.pipeline.crossval.classical_model", no_fitting)
    assert main(["report", "-w", str(crossval_run), "--quiet"]) == 0  # reads the finished folds and final fit
    html = (crossval_run / "report" / "report.html").read_text()
    assert "The chosen model" in html and "cross-validated: mean ± std over 3 folds" in html
    assert "Lead over the best " in html and "over 3 folds)" in html  # the lead over each other kind, its spread
    results = pd.read_csv(crossval_run / "report" / "results.csv")
    assert set(results["split"]) == {"val", "test"}  # validation rows: the out-of-fold predictions


def test_auto_mode_cross_validates_when_validation_has_few_artists_per_genre() -> None:
    tracks = pd.DataFrame({
        "track_id": [str(i) for i in range(12)],
        "split": ["train"] * 6 + ["val"] * 6,
        "genre": ["a", "b"] * 3 + ["a", "a", "a", "b", "b", "b"],
        "artist_id": ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "10", "10"],
    })
    config = Config(select=SelectConfig(mode="auto", min_val_artists=3))
    mode, reason = selection_mode(config, tracks)
    assert mode == "crossval" and "fewer than 3 artists in 1 of 2 genres (b 1)" in reason
    assert selection_mode(dataclasses.replace(config, select=SelectConfig(mode="auto", min_val_artists=1)),
                          tracks)[0] == "validation"
    assert selection_mode(Config(), tracks)[0] == "validation"  # the default chooses on validation


def test_cross_validation_cost_is_stated_in_units_of_the_validation_run() -> None:
    config = Config(select=SelectConfig(mode="crossval", folds=3))
    config = dataclasses.replace(config, grid=dataclasses.replace(config.grid, seeds=(0, 1, 2)))
    tracks = pd.DataFrame({"split": ["train"] * 80 + ["val"] * 20 + ["test"] * 30})
    # train + val = 1.25 x train; the folds 3 x 2/3 x fold_seeds, the final fit 3 seeds, against 3 seeds on train
    assert crossval_cost(config, tracks) == pytest.approx(1.25 * (2 + 3) / 3)
    two = dataclasses.replace(config, select=SelectConfig(mode="crossval", folds=3, fold_seeds=2))
    assert crossval_cost(two, tracks) == pytest.approx(1.25 * (4 + 3) / 3)


def test_more_folds_than_artists_is_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    config = tmp_path / "cv.toml"
    config.write_text(CROSSVAL.replace('mode = "crossval"', 'mode = "crossval"\nfolds = 10')
                      .replace("fold_seeds = 2", "fold_seeds = 3").replace("artists_per_genre = 4",
                                                                           "artists_per_genre = 2"))
    assert main(["run", str(config), "-w", str(tmp_path / "work"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "select.folds = 10: cross-validation deals whole artists into folds" in err
    assert "select.fold_seeds = 3: more than the 2 run seeds of grid.seeds" in err
    assert not (tmp_path / "work" / "features").exists()  # refused before anything was decoded


def test_the_exported_ensemble_predicts_what_the_selection_scored(crossval_run: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    """`agf export` ships the chosen model, every seed of it, with its combination and out-of-fold temperature;
    `agf predict` on the test files gives the probabilities the selection scored on test."""
    from agf.pipeline import open_chosen
    from agf.selection import apply_choice

    bundle = tmp_path / "model"
    assert main(["export", "-w", str(crossval_run), str(bundle), "-q"]) == 0
    assert "the ensemble of seeds 0, 1" in capsys.readouterr().out
    _, chosen = open_chosen(_config(crossval_run))
    selection = chosen.selection
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert len(manifest["members"]) == 2 and manifest["name"] == selection.choice.name
    tracks = pd.read_parquet(crossval_run / "tracks.parquet")
    test = tracks[tracks["split"] == "test"]
    ids = pd.Index(test["track_id"].astype(str))
    expected = apply_choice([m.probs.loc[ids] for m in selection.members], selection.choice.combination,
                            selection.choice.temperature)
    out = tmp_path / "predictions.csv"
    assert main(["predict", str(bundle), *test["audio_path"], "-o", str(out), "-q"]) == 0
    predicted = pd.read_csv(out, dtype={"file_id": str}).set_index("file_id")
    genres = manifest["genres"]
    stems = [Path(path).stem for path in test["audio_path"]]
    assert np.abs(predicted.loc[stems, genres].to_numpy() - expected[genres].to_numpy()).max() < 1e-5
    # Its scores are the selection's test scores.
    from agf.metrics import score_against

    scored = score_against(tracks, expected, genres)
    assert scored["true"]["log_loss"] == pytest.approx(selection.record["test"]["true"]["log_loss"])


@pytest.mark.parametrize("kind", ["genre STN softmax", "MTN genre head", "blend"])
def test_a_head_or_blend_bundle_predicts_what_the_selection_scored(crossval_run: Path, tmp_path: Path,
                                                                    kind: str) -> None:
    """Every kind of candidate can be the chosen model: its bundle predicts its members' combined probabilities."""
    from agf import GenreClassifier
    from agf.pipeline import open_chosen, source_nets
    from agf.pipeline.choosing import candidates_of
    from agf.predict import MemberSource, bundle_from_transfers, save_bundle
    from agf.selection import apply_choice

    config = _config(crossval_run)
    _, chosen = open_chosen(config)
    tracks = pd.read_parquet(crossval_run / "tracks.parquet")
    candidates = candidates_of(chosen.grid.transfers, genre_list(tracks))
    name = next(n for n, k in candidates.kinds.items() if k == kind)
    members = candidates.members[name]
    sources = [MemberSource(m.transfer_dir, tuple(source_nets(m.transfer_dir).values()), m.output, m.head)
               for m in members]
    bundle = save_bundle(bundle_from_transfers(sources, config.features, config.transfer.amp, {}, 1.5, "log_probs"),
                         tmp_path / "model")
    test = tracks[tracks["split"] == "test"]
    expected = apply_choice([m.probs.loc[test["track_id"].astype(str)] for m in members], "log_probs", 1.5)
    classifier = GenreClassifier.load(bundle)
    predicted = [classifier.predict(path) for path in test["audio_path"]]
    genres = list(expected.columns)
    assert np.abs(np.array([[p[g] for g in genres] for p in predicted]) - expected.to_numpy()).max() < 1e-5


def test_the_plan_states_the_cross_validation_and_its_cost(crossval_run: Path) -> None:
    from agf.pipeline import plan_run
    from agf.plan import Throughput, _duration

    config = _config(crossval_run)
    plan, _ = plan_run(config, measure=False)
    speed = Throughput(decode_realtime=100.0, train_patches_s=100.0, infer_windows_s=100.0, mlp_windows_s=100.0,
                       stn_params=300_000)
    [line] = [line for line in plan.lines(speed) if line.startswith("  selection: ")]
    assert "3-fold cross-validation by artist over train + validation (select.mode = 'crossval')" in line
    assert "the folds train 2 seeds each on 2/3" in line and f"about {plan.selection_cost:.1f}x" in line
    stages = plan.stage_seconds(speed, 1)
    expected = stages["prepare"] + plan.selection_cost * (sum(stages.values()) - stages["prepare"])
    assert line.endswith(f"about {_duration(expected)} in all")
