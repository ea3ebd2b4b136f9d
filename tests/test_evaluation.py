"""Tests of agf.evaluation: metrics against hand-computed values, aggregation, baseline, plots, I/O."""

from __future__ import annotations

import math

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agf.errors import EvaluationError
from agf.evaluation import classical_baseline, mfcc_stats, plot_confusion
from agf.fileio import read_json, write_json_atomic
from agf.metrics import (
    accuracy,
    aggregate_window_probs,
    challenge_macro_f1,
    confusion,
    format_table,
    log_loss,
    macro_f1,
    mean_window_probs,
    per_class_report,
    pool_moments,
    pooled_window_features,
    score,
    score_against,
)

# Shared toy predictions: 5 tracks, 4 classes, class 3 absent from truth and predictions.
Y_TRUE = np.array([0, 0, 1, 1, 2])
Y_PRED = np.array([0, 1, 1, 1, 0])
GENRES = ["a", "b", "c", "d"]


def test_log_loss_hand_computed() -> None:
    probs = np.array([[0.5, 0.5], [0.2, 0.8]])
    expected = (-math.log(0.5) - math.log(0.8)) / 2  # (0.693147 + 0.223144) / 2
    assert log_loss(np.array([0, 1]), probs) == pytest.approx(expected)
    assert expected == pytest.approx(0.458145, abs=1e-6)


def test_log_loss_clips_zero_and_one_without_renormalising() -> None:
    probs = np.array([[1.0, 0.0], [1.0, 0.0]])
    # Track 0: p_true = 1 -> 0. Track 1: p_true = 0 -> clipped to 1e-8 -> -ln(1e-8) = 18.420680...
    assert log_loss(np.array([1]), probs[1:]) == pytest.approx(18.420680743952367)
    assert log_loss(np.array([0, 1]), probs) == pytest.approx(18.420680743952367 / 2)
    assert log_loss(np.array([1]), probs[1:], eps=1e-15) == pytest.approx(-math.log(1e-15))


def test_perfect_prediction() -> None:
    probs = np.eye(4)[Y_TRUE]
    assert log_loss(Y_TRUE, probs) == pytest.approx(0.0, abs=1e-12)
    assert macro_f1(Y_TRUE, Y_TRUE, 4) == 1.0
    assert accuracy(Y_TRUE, Y_TRUE) == 1.0


def test_macro_f1_ignores_absent_class_and_scores_unpredicted_as_zero() -> None:
    # class 0: TP 1, FP 1, FN 1 -> P 1/2, R 1/2, F1 0.5
    # class 1: TP 2, FP 1, FN 0 -> P 2/3, R 1, F1 2*(2/3)*1/(2/3+1) = 0.8
    # class 2: in truth, never predicted -> F1 0; class 3: absent from both -> ignored
    expected = (0.5 + 0.8 + 0.0) / 3
    assert macro_f1(Y_TRUE, Y_PRED, 4) == pytest.approx(expected)


def test_macro_f1_scores_the_genres_present_in_the_truth_only() -> None:
    """Predicting a genre absent from the split once must not cost a whole class of F1 (the challenge's union did)."""
    truth = np.array([0, 0, 1, 1])
    pred = np.array([0, 0, 1, 3])  # class 3 has no track in this split
    # class 0: F1 1; class 1: TP 1, FN 1 -> P 1, R 1/2, F1 2/3; class 3: not in the truth -> not scored
    assert macro_f1(truth, pred, 4) == pytest.approx((1.0 + 2 / 3) / 2)
    assert challenge_macro_f1(truth, pred, 4) == pytest.approx((1.0 + 2 / 3 + 0.0) / 3)
    result = score(truth, np.eye(4)[pred], GENRES)
    assert result["absent_genres"] == ["c", "d"] and result["macro_f1_challenge"] < result["macro_f1"]


def test_accuracy_hand_computed() -> None:
    assert accuracy(Y_TRUE, Y_PRED) == pytest.approx(3 / 5)


def test_per_class_report() -> None:
    report = per_class_report(Y_TRUE, Y_PRED, GENRES)
    assert list(report.columns) == ["genre", "precision", "recall", "f1", "support"]
    assert report["genre"].tolist() == GENRES
    np.testing.assert_allclose(report["precision"], [0.5, 2 / 3, 0.0, 0.0])
    np.testing.assert_allclose(report["recall"], [0.5, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(report["f1"], [0.5, 0.8, 0.0, 0.0])
    assert report["support"].tolist() == [2, 2, 1, 0]


def test_confusion_counts() -> None:
    expected = np.array([[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(confusion(Y_TRUE, Y_PRED, 4), expected)


def test_plot_confusion_writes_png(tmp_path) -> None:
    path = tmp_path / "plots" / "confusion.png"
    plot_confusion(confusion(Y_TRUE, Y_PRED, 4), GENRES, path, "toy")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert [p.name for p in path.parent.iterdir()] == ["confusion.png"]


def test_plot_confusion_rejects_wrong_shape(tmp_path) -> None:
    with pytest.raises(EvaluationError, match="does not match 3 genres"):
        plot_confusion(np.zeros((4, 4)), GENRES[:3], tmp_path / "x.png", "bad")


def test_score_combines_metrics() -> None:
    probs = np.array([[0.6, 0.4, 0.0, 0.0], [0.3, 0.7, 0.0, 0.0], [0.1, 0.9, 0.0, 0.0],
                      [0.2, 0.8, 0.0, 0.0], [0.5, 0.25, 0.25, 0.0]])  # argmax = Y_PRED
    result = score(Y_TRUE, probs, GENRES)
    expected_loss = -(math.log(0.6) + math.log(0.3) + math.log(0.9) + math.log(0.8) + math.log(0.25)) / 5
    assert result["log_loss"] == pytest.approx(expected_loss)
    assert result["macro_f1"] == pytest.approx((0.5 + 0.8) / 3)
    assert result["accuracy"] == pytest.approx(0.6)
    assert result["n"] == 5
    assert [row["genre"] for row in result["per_class"]] == GENRES
    assert result["per_class"][1]["f1"] == pytest.approx(0.8)


def test_score_errors_name_the_problem() -> None:
    with pytest.raises(EvaluationError, match=r"class index\(es\) \[4\]"):
        log_loss(np.array([0, 4]), np.full((2, 4), 0.25))
    with pytest.raises(EvaluationError, match="3 columns but there are 4 genres"):
        score(np.array([0, 1]), np.full((2, 3), 1 / 3), GENRES)
    with pytest.raises(EvaluationError, match="expected shape"):
        log_loss(np.array([0, 1, 1]), np.full((2, 2), 0.5))
    with pytest.raises(EvaluationError, match="y_pred has 2"):
        macro_f1(np.array([0, 1, 1]), np.array([0, 1]), 2)


def _track_table(with_true_genre: bool) -> pd.DataFrame:
    tracks = pd.DataFrame(
        {
            "track_id": ["t1", "t2", "t3", "t4"],
            "genre": ["rock", "pop", "rock", "jazz"],
            "split": ["train", "val", "val", "val"],
        }
    )
    if with_true_genre:
        tracks["true_genre"] = ["rock", "pop", "jazz", "jazz"]
    return tracks


def _val_probs() -> pd.DataFrame:
    # Rows in a different order than the table; columns in a different order than the genre list.
    return pd.DataFrame(
        {"rock": [0.1, 0.7, 0.2], "pop": [0.1, 0.2, 0.6], "jazz": [0.8, 0.1, 0.2]},
        index=pd.Index(["t4", "t3", "t2"], name="track_id"),
    )


def test_score_against_with_true_genre() -> None:
    genres = ["jazz", "pop", "rock"]
    results = score_against(_track_table(with_true_genre=True), _val_probs(), genres)
    assert set(results) == {"given", "true"}
    # given: t4 jazz p=0.8, t3 rock p=0.7, t2 pop p=0.6 -> all argmax correct
    assert results["given"]["log_loss"] == pytest.approx(-(math.log(0.8) + math.log(0.7) + math.log(0.6)) / 3)
    assert results["given"]["accuracy"] == 1.0 and results["given"]["n"] == 3
    # true: t3 is jazz (p=0.1, predicted rock) -> accuracy 2/3
    assert results["true"]["log_loss"] == pytest.approx(-(math.log(0.8) + math.log(0.1) + math.log(0.6)) / 3)
    assert results["true"]["accuracy"] == pytest.approx(2 / 3)
    # true F1: jazz TP1 FN1 -> 2/3; pop 1; rock predicted once but never true -> not scored: mean (2/3 + 1) / 2
    assert results["true"]["macro_f1"] == pytest.approx((2 / 3 + 1.0) / 2)
    assert results["true"]["macro_f1_challenge"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)


def test_score_against_without_true_genre() -> None:
    results = score_against(_track_table(with_true_genre=False), _val_probs(), ["jazz", "pop", "rock"])
    assert set(results) == {"given"}


def test_score_against_rejects_unknown_labels_and_ids() -> None:
    tracks = _track_table(with_true_genre=False)
    tracks.loc[3, "genre"] = "metal"
    with pytest.raises(EvaluationError, match="metal"):
        score_against(tracks, _val_probs(), ["jazz", "pop", "rock"])
    probs = _val_probs().rename(index={"t2": "t9"})
    with pytest.raises(EvaluationError, match="t9"):
        score_against(_track_table(with_true_genre=False), probs, ["jazz", "pop", "rock"])


def test_mean_window_probs_order_and_mean() -> None:
    ids = np.array(["t2", "t2", "t1", "t2"])
    window_probs = np.array([[0.6, 0.4], [0.2, 0.8], [1.0, 0.0], [0.1, 0.9]])
    tracks = mean_window_probs(ids, window_probs, columns=["x", "y"])
    assert tracks.index.tolist() == ["t2", "t1"] and tracks.index.name == "track_id"
    # t2: ((0.6 + 0.2 + 0.1) / 3, (0.4 + 0.8 + 0.9) / 3) = (0.3, 0.7); t1: its one window
    np.testing.assert_allclose(tracks.loc["t2"], [0.3, 0.7])
    np.testing.assert_allclose(tracks.loc["t1"], [1.0, 0.0])
    np.testing.assert_allclose(tracks.sum(axis=1), 1.0)
    assert list(tracks.columns) == ["x", "y"]


def test_log_probs_aggregation_is_the_renormalised_geometric_mean() -> None:
    ids = np.array(["t2", "t2", "t1", "t2"])
    window_probs = np.array([[0.6, 0.4], [0.2, 0.8], [1.0, 0.0], [0.1, 0.9]])
    tracks = aggregate_window_probs(ids, window_probs, "log_probs", columns=["x", "y"])
    # t2: cube roots of 0.6 * 0.2 * 0.1 = 0.012 and 0.4 * 0.8 * 0.9 = 0.288, renormalised
    x, y = 0.012 ** (1 / 3), 0.288 ** (1 / 3)
    np.testing.assert_allclose(tracks.loc["t2"], [x / (x + y), y / (x + y)])
    assert tracks.loc["t2", "y"] > mean_window_probs(ids, window_probs).loc["t2", 1]  # sharper than the mean: 0.7
    # t1: a zero probability is clipped at 1e-8 before the logarithm, as the log loss clips it
    np.testing.assert_allclose(tracks.loc["t1"], [1 / (1 + 1e-8), 1e-8 / (1 + 1e-8)])
    assert tracks.index.tolist() == ["t2", "t1"] and list(tracks.columns) == ["x", "y"]
    np.testing.assert_allclose(aggregate_window_probs(ids, window_probs, "probs"), mean_window_probs(ids, window_probs))
    with pytest.raises(EvaluationError, match="median"):
        aggregate_window_probs(ids, window_probs, "median")


def test_pooled_window_features_are_each_tracks_mean_and_std() -> None:
    rng = np.random.default_rng(0)
    ids = np.array(["b", "a", "b", "b", "a"])
    features = rng.normal(size=(5, 3))
    pooled = pooled_window_features(ids, features)
    assert pooled.index.tolist() == ["b", "a"] and pooled.shape == (2, 6)
    for track in ("a", "b"):
        rows = features[ids == track]
        np.testing.assert_allclose(pooled.loc[track], np.concatenate([rows.mean(0), rows.std(0)]), atol=1e-12)
    one = pool_moments(np.array([2.0, 5.0]))  # E[x] = 2, E[x^2] = 5: std 1
    np.testing.assert_allclose(one, [2.0, 1.0])


def test_mfcc_stats() -> None:
    frames = np.array([[1.0, 2.0], [3.0, 6.0]])
    # means (2, 4); population stds (|1-2|, |2-4|) = (1, 2)
    np.testing.assert_allclose(mfcc_stats(frames), [2.0, 4.0, 1.0, 2.0])


def _separable_set(seed: int, labels: list[int], per_class: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = {label: rng.normal(0.0, 1.0, 5) * 6 for label in range(4)}
    X = np.concatenate([centres[label] + rng.normal(0.0, 1.0, (per_class, 5)) for label in labels])
    y = np.repeat(labels, per_class)
    return X, y


def test_classical_baseline_beats_chance_with_missing_class() -> None:
    train_X, train_y = _separable_set(0, [0, 2, 3], per_class=30)
    eval_X, eval_y = _separable_set(0, [0, 2, 3], per_class=10)
    probs = classical_baseline(train_X, train_y, eval_X, n_classes=4)
    assert probs.shape == (30, 4)
    np.testing.assert_array_equal(probs[:, 1], 0.0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert accuracy(eval_y, probs.argmax(axis=1)) > 0.9  # chance is 1/3
    np.testing.assert_array_equal(probs, classical_baseline(train_X, train_y, eval_X, n_classes=4))


def test_classical_baseline_needs_two_classes() -> None:
    with pytest.raises(EvaluationError, match="single class"):
        classical_baseline(np.zeros((3, 2)), np.array([1, 1, 1]), np.zeros((1, 2)), n_classes=3)


def test_write_metrics_round_trip(tmp_path) -> None:
    metrics = score(Y_TRUE, np.eye(4)[Y_PRED] * 0.9 + 0.025, GENRES)
    path = tmp_path / "metrics.json"
    write_json_atomic(path, metrics)
    assert read_json(path) == metrics
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_format_table() -> None:
    rows = [
        {"model": "stn-g", "labels": "given", "log_loss": 1.23456, "macro_f1": 0.5, "accuracy": 0.625},
        {"model": "baseline-lr", "labels": "true", "log_loss": 2.0, "macro_f1": None},
    ]
    lines = format_table(rows).splitlines()
    assert len(lines) == 4
    assert [cell.strip() for cell in lines[0].strip("|").split("|")] == [
        "model", "labels", "log_loss", "macro_f1", "accuracy", "ece"
    ]
    assert [cell.strip() for cell in lines[2].strip("|").split("|")] == [
        "stn-g", "given", "1.2346", "0.5000", "0.6250", "-"
    ]
    assert [cell.strip() for cell in lines[3].strip("|").split("|")] == ["baseline-lr", "true", "2.0000", "-", "-", "-"]
    assert len({len(line) for line in lines}) == 1


@st.composite
def _predictions(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Labels and row-stochastic probabilities for 1..30 tracks over 2..6 classes."""
    n_classes = draw(st.integers(2, 6))
    n_tracks = draw(st.integers(1, 30))
    labels = np.array(draw(st.lists(st.integers(0, n_classes - 1), min_size=n_tracks, max_size=n_tracks)))
    weights = np.array(
        draw(st.lists(st.floats(0.0, 1.0), min_size=n_tracks * n_classes, max_size=n_tracks * n_classes))
    ).reshape(n_tracks, n_classes) + 1e-3
    return labels, weights / weights.sum(axis=1, keepdims=True)


@settings(max_examples=60, deadline=None)
@given(_predictions())
def test_metric_bounds(prediction: tuple[np.ndarray, np.ndarray]) -> None:
    labels, probs = prediction
    assert 0.0 <= log_loss(labels, probs) <= -math.log(1e-8)
    assert 0.0 <= macro_f1(labels, probs.argmax(axis=1), probs.shape[1]) <= 1.0
    assert 0.0 <= accuracy(labels, probs.argmax(axis=1)) <= 1.0
    # The challenge's union of classes only adds classes with F1 0 (predicted, never true): never higher.
    challenge = challenge_macro_f1(labels, probs.argmax(axis=1), probs.shape[1])
    assert challenge <= macro_f1(labels, probs.argmax(axis=1), probs.shape[1]) + 1e-12


@settings(max_examples=30, deadline=None)
@given(_predictions(), st.randoms(use_true_random=False))
def test_score_is_invariant_to_row_order(prediction: tuple[np.ndarray, np.ndarray], random) -> None:
    labels, probs = prediction
    order = list(range(labels.size))
    random.shuffle(order)
    genres = [f"g{i}" for i in range(probs.shape[1])]
    original = score(labels, probs, genres)
    shuffled = score(labels[order], probs[order], genres)
    for key in ("log_loss", "macro_f1", "accuracy"):
        assert shuffled[key] == pytest.approx(original[key])


def test_genre_names_are_drawn_literally_not_as_mathtext(tmp_path) -> None:
    """A name with '$...$' (here invalid mathtext) crashed matplotlib after training; it is plain text now."""
    from agf.factors.plots import plot_genre_mixtures

    genres = ["Drum $n$ Bass", r"$\notacommand{$", "Folk"]
    plot_confusion(np.eye(3, dtype=int) * 2, genres, tmp_path / "c.png", r"model $\x$")
    plot_genre_mixtures(pd.DataFrame(np.full((3, 4), 0.25), index=genres), tmp_path / "h.png", "groups $")
    assert (tmp_path / "c.png").stat().st_size > 0 and (tmp_path / "h.png").stat().st_size > 0
