"""scripts/small_collections.py: a draw takes whole artists, the same number per genre, about the tracks asked for;
the summary's paired differences and intervals are those of agf.statistics over the draws."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from script_modules import script_module

from agf.statistics import mean_ci


@pytest.fixture(scope="module")
def sc():
    """scripts/small_collections.py as a module."""
    with script_module("small_collections") as module:
        yield module


def corpus_table(genres: int = 8, artists_per_genre: int = 10, seed: int = 0) -> pd.DataFrame:
    """A made-up track table: per artist 1-12 tracks, one straddling track of another genre per artist."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(genres):
        for a in range(artists_per_genre):
            artist = f"a{g}-{a}"
            n = int(rng.integers(1, 13))
            genres_of_tracks = [f"G{g}"] * n + [f"G{(g + 1) % genres}"]
            rows += [{"track_id": f"{artist}-{i}", "artist": artist, "genre": genre, "true_genre": f"G{g}"}
                     for i, genre in enumerate(genres_of_tracks)]
    return pd.DataFrame(rows)


def test_a_draw_takes_whole_artists_the_same_number_per_genre(sc) -> None:
    table = corpus_table()
    drawn = sc.draw_collection(table, 3, tracks=250, min_artists=40, max_artists=70)
    artists = drawn["artist"].unique()
    assert 40 <= len(artists) <= 70
    whole = table[table["artist"].isin(artists)]
    assert len(drawn) == len(whole)  # every track of a drawn artist, nothing else
    per_genre = sc.artist_genres(drawn).value_counts()
    assert per_genre.nunique() == 1 and len(per_genre) == 8
    # the count per genre is the one whose total is nearest 250
    totals = {n: len(sc.draw_collection(table, 3, tracks=250, min_artists=8 * n, max_artists=8 * n))
              for n in range(5, 9)}
    assert abs(len(drawn) - 250) == min(abs(total - 250) for total in totals.values())
    assert drawn.equals(sc.draw_collection(table, 3))  # seeded
    assert set(sc.draw_collection(table, 4)["artist"]) != set(artists)  # another draw, other artists


def test_a_draw_refuses_a_corpus_with_too_few_artists(sc) -> None:
    with pytest.raises(SystemExit, match="render a bigger corpus"):
        sc.draw_collection(corpus_table(artists_per_genre=4), 0)


def draw_file(sc, k: int, values: dict[str, tuple[float, float]]) -> pd.DataFrame:
    """A made-up draw file: per model (accuracy, log loss), true labels; given labels shifted."""
    rows = [{"model": model, "labels": labels, "metric": metric, "value": value + (0.1 if labels == "given" else 0)}
            for model, pair in values.items() for labels in sc.LABELS for metric, value in zip(sc.METRICS, pair)]
    return pd.DataFrame(rows).assign(draw=k, n_tracks=250, n_artists=40, n_test_tracks=35, n_test_artists=8,
                                     seconds=100.0, new_mode="crossval", new_chosen="x", commit="c")[
        list(sc.DRAW_COLUMNS)]


def test_summary_pairs_the_draws_and_writes_its_files(sc, tmp_path: Path) -> None:
    new_accuracy = [0.60, 0.55, 0.70]
    today_accuracy = [0.50, 0.52, 0.58]
    data = tmp_path / "data"
    data.mkdir()
    for k, (new, today) in enumerate(zip(new_accuracy, today_accuracy)):
        values = {"today": (today, 1.2), "new": (new, 1.0 + 0.1 * k), "logreg": (0.4, 1.5), "rbf-svm": (0.45, 1.4)}
        draw_file(sc, k, values).to_csv(data / f"draw-{k}.csv", index=False)
    out = tmp_path / "out"
    sc.summary(data, out, runs=tmp_path / "no-runs")
    found = pd.read_csv(out / "summary.csv", dtype={"labels": str}).set_index(["comparison", "metric"])
    assert len(found) == 6 and (found["draws"] == 3).all() and (found["labels"] == "true").all()
    differences = np.subtract(new_accuracy, today_accuracy)
    row = found.loc[("new - today", "accuracy")]
    assert row["mean"] == pytest.approx(differences.mean(), rel=1e-5)
    low, high, kind = mean_ci(differences)
    assert (row["ci_low"], row["ci_high"], row["interval"]) == (pytest.approx(low, rel=1e-5), pytest.approx(high, rel=1e-5), kind)
    assert found.loc[("new - logreg", "log_loss"), "mean"] == pytest.approx(1.1 - 1.5, rel=1e-5)
    assert found.loc[("new - today", "log_loss"), "new_better_if"] == "negative"
    assert found.loc[("new - today", "accuracy"), "new_better_if"] == "positive"
    assert "| new - today | accuracy | 3 |" in (out / "summary.md").read_text()
    assert (out / "figure.png").stat().st_size > 0


def test_a_kept_run_of_another_manifest_is_refused(sc, tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("track_id,path,genre\n1,/root/a.mp3,Rock\n")
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "run.json").write_text(f'{{"manifest_sha256": "{sc.manifest_digest(manifest)}"}}')
    sc.check_kept(kept, manifest)  # the same manifest: reused
    manifest.write_text("track_id,path,genre\n1,/elsewhere/a.mp3,Rock\n")
    sc.check_kept(kept, manifest)  # the same collection under another ROOT: reused
    manifest.write_text("track_id,path,genre\n1,/root/a.mp3,Jazz\n")
    with pytest.raises(SystemExit, match="another manifest"):
        sc.check_kept(kept, manifest)


def test_the_rbf_svm_gives_probabilities_of_every_genre(sc, recwarn) -> None:
    rng = np.random.default_rng(0)
    train_y = np.repeat([0, 2], 20)  # genre 1 absent from training
    train_X = rng.normal(size=(40, 4)) + train_y[:, None]
    probs = sc.rbf_svm(train_X, train_y, train_X[:6], 3, seed=0)
    assert probs.shape == (6, 3) and np.allclose(probs.sum(axis=1), 1) and (probs[:, 1] == 0).all()
    assert (probs[:3, 0] > 0.5).all()
    assert not [w for w in recwarn if issubclass(w.category, FutureWarning)]


def test_net_epochs_lists_the_nets_of_the_grid_the_folds_and_the_final_fit(sc, tmp_path: Path) -> None:
    for where, seed, best, select in (("nets", 0, 12, "best_val"), ("crossval/fold1/nets", 1, 60, "best_val"),
                                      ("crossval/fold2/nets", 3, 120, "last"), ("crossval/final/nets", 2, 31, "last")):
        net_dir = tmp_path / where / f"mtn-gm-{seed}"
        net_dir.mkdir(parents=True)
        meta = {"spec": {"arch": "mtn", "tasks": ["g", "m"]}, "seed": seed, "epochs": 120, "max_epochs": 120,
                "best_epoch": best, "stopped_early": False, "val_tracks": {"g": 39 * (seed != 2), "m": 0},
                "train_config": {"select_epoch": select}}
        (net_dir / "net.json").write_text(json.dumps({"format": "agf-net/1", "kind": "mtn", "meta": meta}))
    found = sc.net_epochs(tmp_path).set_index("where")
    assert list(found.index) == ["crossval/final/nets", "crossval/fold1/nets", "crossval/fold2/nets", "nets"]
    assert found.loc["crossval/fold1/nets", "best_epoch"] == 60 and (found["tasks"] == "gm").all()
    # No validation targets, or the last epoch kept by train.select_epoch (cross-validation): chosen on none.
    assert list(found["chosen_on"]) == ["", "g", "", "g"]


def test_best_epochs_count_the_nets_still_improving_at_the_cap(sc, tmp_path: Path) -> None:
    rows = "where,arch,tasks,seed,epochs,max_epochs,best_epoch,stopped_early,chosen_on\n"
    (tmp_path / "draw-0" / "auto").mkdir(parents=True)
    (tmp_path / "draw-0" / "auto" / "nets.csv").write_text(
        rows + "crossval/fold0/nets,stn,m,0,60,60,60,False,m\ncrossval/fold1/nets,stn,m,0,60,60,41,False,m\n"
        "crossval/final/nets,stn,m,0,50,60,50,False,m\n")
    (tmp_path / "draw-1" / "validation").mkdir(parents=True)
    (tmp_path / "draw-1" / "validation" / "nets.csv").write_text(
        rows + "nets,mtn,gm,0,120,120,16,False,g\nnets,stn,m,0,60,60,60,False,\n")
    table = sc.best_epochs(tmp_path).set_index(["protocol", "fit", "net"])
    fold = table.loc[("auto", "fold", "STN m")]
    assert (fold["nets"], fold["best_is_last"], fold["median_best"]) == (2, 1, 50.5)
    assert table.loc[("validation", "grid", "MTN gm"), "best_is_last"] == 0
    assert table.loc[("validation", "grid", "STN m"), "chosen_on"] == "-"
    assert "| auto | final | STN m | m | 1 | 60 | 50 | 50 | 1 of 1 |" in sc.best_epochs_markdown(table.reset_index())
    assert sc.best_epochs_markdown(sc.best_epochs(tmp_path / "none")) == ""


def test_fold_curves_average_the_finished_fold_genre_nets_per_epoch(sc, tmp_path: Path) -> None:
    def net(fold: int, name: str, tasks: list[str], losses: list[float], done: bool = True) -> None:
        net_dir = tmp_path / "crossval" / f"fold{fold}" / "nets" / name
        net_dir.mkdir(parents=True)
        meta = {"spec": {"arch": "stn", "tasks": tasks}, "train_config": {"select_epoch": "last"}}
        (net_dir / "net.json").write_text(json.dumps({"format": "agf-net/1", "kind": "stn", "meta": meta}))
        rows = [{"epoch": e + 1, "task": tasks[0], "val_loss": loss, "val_accuracy": 0.1 * (e + 1)}
                for e, loss in enumerate(losses)]
        pd.DataFrame(rows).to_csv(net_dir / "curves.csv", index=False)
        if done:
            (net_dir / "done.json").write_text("{}")

    net(0, "stn-g-a", ["g"], [2.0, 1.0])
    net(1, "stn-g-b", ["g"], [1.0, 3.0])
    net(2, "stn-g-c", ["g"], [9.0, 9.0], done=False)  # still training: left out
    net(0, "stn-m-a", ["m"], [5.0, 5.0])  # no genre task
    found = sc.fold_curves(tmp_path)
    assert list(found["net"].unique()) == ["STN g"] and list(found["nets"]) == [2, 2]
    assert list(found["val_loss"]) == [1.5, 2.0] and found["val_accuracy"].tolist() == pytest.approx([0.1, 0.2])


def test_a_variant_is_the_new_protocol_with_its_settings(sc, tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    budget = sc.run_config(manifest, tmp_path / "work-budget", 3, "budget")
    new = sc.run_config(manifest, tmp_path / "work-auto", 3, "auto")
    assert budget.select.mode == new.select.mode == "auto" and budget.dataset.seed == 3
    assert (budget.train.crops_per_track, new.train.crops_per_track) == (0, 1)
    assert sc.dataclasses.replace(budget.train, crops_per_track=1) == new.train
    assert sc.run_config(manifest, tmp_path / "w", 3, "validation").select.mode == "validation"


def kept_selection(sc, runs: Path, k: int, kind: str, oof_log_loss: float, test_log_loss: float) -> None:
    """A made-up kept run: selection.json whose chosen model is the ranking's first, and run.json."""
    directory = runs / f"draw-{k}" / kind
    directory.mkdir(parents=True)
    chosen = {"name": f"transfer MLP: {kind}", "combination": "probs"}
    selection = {"chosen": chosen,
                 "ranking": [{**chosen, "log_loss": oof_log_loss, "accuracy": 0.5},
                             {"name": "other", "combination": "probs", "log_loss": 9.0, "accuracy": 0.1}],
                 "test": {labels: {"log_loss": test_log_loss, "accuracy": 0.4} for labels in sc.LABELS}}
    (directory / "selection.json").write_text(json.dumps(selection))
    (directory / "run.json").write_text(json.dumps({"seconds": 100.0 * (1 + (kind == "budget"))}))


def test_variants_pair_each_variant_with_the_new_protocol_by_draw(sc, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for k, (base, budget) in enumerate([(1.30, 1.20), (1.10, 1.05), (1.50, 1.30)]):
        kept_selection(sc, runs, k, "auto", base, base + 0.2)
        kept_selection(sc, runs, k, "budget", budget, budget + 0.1)
    kept_selection(sc, runs, 3, "auto", 1.0, 1.0)  # no variant: not paired
    kept_selection(sc, runs, 4, "budget", 1.0, 1.0)  # no new-protocol run: not paired
    data = tmp_path / "data"
    data.mkdir()
    today_log_loss = [1.60, 1.00, 1.20]
    for k, today in enumerate(today_log_loss):
        values = {"today": (0.5, today), "new": (0.4, 9.0), "logreg": (0.3, 2.0), "rbf-svm": (0.6, 3.0)}
        draw_file(sc, k, values).to_csv(data / f"draw-{k}.csv", index=False)
    sc.variants(runs, tmp_path / "out", data)
    rows = pd.read_csv(tmp_path / "out" / "variants.csv")
    assert sorted(set(rows["draw"])) == [0, 1, 2] and len(rows) == 6
    against = sc.compare_variants(pd.concat([rows, sc.baseline_rows(sc.read_draws(data))]))
    against = against.set_index(["comparison", "score"])
    budget_test = np.add([1.20, 1.05, 1.30], 0.1)
    expected = (budget_test - today_log_loss).mean()
    assert against.loc[("budget - today", "test_log_loss"), "mean"] == pytest.approx(expected)
    assert against.loc[("budget - rbf-svm", "test_accuracy"), "mean"] == pytest.approx(0.4 - 0.6)
    assert ("budget - today", "oof_log_loss") not in against.index  # the draw files have no out-of-fold scores
    p_raw = against.loc[("budget - auto", "oof_log_loss"), "p"]  # one comparison of its score: Holm changes nothing
    (alone,) = sc.compare({"x": np.subtract([1.20, 1.05, 1.30], [1.30, 1.10, 1.50])})
    assert p_raw == pytest.approx(alone.p_permutation)
    assert "| budget - logreg | test_log_loss | 3 |" in (tmp_path / "out" / "variants.md").read_text()
    found = sc.compare_variants(rows).set_index("score")
    oof = np.subtract([1.20, 1.05, 1.30], [1.30, 1.10, 1.50])
    assert found.loc["oof_log_loss", "mean"] == pytest.approx(oof.mean())
    assert found.loc["test_log_loss", "mean"] == pytest.approx(oof.mean() - 0.1)
    assert found.loc["oof_log_loss", "ci_low"] == pytest.approx(mean_ci(oof)[0])
    assert found.loc["test_accuracy", "mean"] == pytest.approx(0.0)
    assert "| budget - auto | oof_log_loss | 3 |" in (tmp_path / "out" / "variants.md").read_text()


def test_a_chosen_model_that_is_not_the_ranking_first_is_refused(sc, tmp_path: Path) -> None:
    kept_selection(sc, tmp_path, 0, "auto", 1.0, 1.0)
    path = tmp_path / "draw-0" / "auto" / "selection.json"
    selection = json.loads(path.read_text())
    selection["ranking"].reverse()
    with pytest.raises(SystemExit, match="not the ranking's first"):
        sc.chosen_scores(selection)
