"""agf.selection: seed ensembles, blends, the choice among candidates on the selection tracks only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from agf.errors import EvaluationError
from agf.selection import apply_choice, blend, choose, combine, fold_scores

GENRES = ["a", "b", "c"]


def _frame(values: np.ndarray, ids: list[str]) -> pd.DataFrame:
    probs = np.asarray(values, dtype=np.float64)
    return pd.DataFrame(probs / probs.sum(axis=1, keepdims=True), index=pd.Index(ids, name="track_id"),
                        columns=GENRES)


def _noisy(truth: np.ndarray, strength: float, rng: np.random.Generator, ids: list[str]) -> pd.DataFrame:
    """Probabilities that lean to the true class by `strength`, with noise."""
    logits = rng.normal(size=(len(truth), len(GENRES)))
    logits[np.arange(len(truth)), truth] += strength
    return _frame(np.exp(logits), ids)


def test_combine_is_the_mean_or_the_renormalised_geometric_mean() -> None:
    ids = ["1", "2"]
    first = _frame([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], ids)
    second = _frame([[0.1, 0.6, 0.3], [0.2, 0.2, 0.6]], ids)
    mean = combine([first, second], "probs")
    np.testing.assert_allclose(mean.to_numpy(), (first.to_numpy() + second.to_numpy()) / 2)
    geometric = combine([first, second], "log_probs").to_numpy()
    expected = np.sqrt(first.to_numpy() * second.to_numpy())
    np.testing.assert_allclose(geometric, expected / expected.sum(axis=1, keepdims=True))
    # Another seed's frame in another track order is aligned by track id.
    np.testing.assert_allclose(combine([first, second.iloc[::-1]], "probs").to_numpy(), mean.to_numpy())
    np.testing.assert_allclose(combine([first], "log_probs").to_numpy(), first.to_numpy())
    with pytest.raises(EvaluationError, match="lacks 1 of the 2 tracks"):
        combine([first, second.iloc[:1]], "probs")


def test_blend_averages_transfer_and_head_over_their_common_tracks() -> None:
    transfer = _frame([[0.8, 0.1, 0.1], [0.2, 0.4, 0.4]], ["1", "2"])
    head = _frame([[0.2, 0.4, 0.4]], ["2"])[["c", "b", "a"]]  # columns in another order
    mixed = blend(transfer, head)
    assert list(mixed.index) == ["2"]
    np.testing.assert_allclose(mixed.to_numpy(), [[0.2, 0.4, 0.4]])


def test_choose_ranks_on_the_selection_tracks_only_and_ignores_other_tracks_labels_and_probabilities() -> None:
    rng = np.random.default_rng(0)
    n_val, n_test = 60, 40
    ids = [f"t{i}" for i in range(n_val + n_test)]
    truth = rng.integers(0, len(GENRES), n_val + n_test)
    val = pd.Index(ids[:n_val])
    labels = pd.Series(np.array(GENRES)[truth[:n_val]], index=val)
    good = [_noisy(truth, 3.0, rng, ids) for _ in range(3)]
    weak = [_noisy(truth, 0.5, rng, ids) for _ in range(3)]
    # The weak model is perfect on the test tracks: no choice may see that.
    for frame in weak:
        frame.iloc[n_val:] = np.eye(len(GENRES))[truth[n_val:]]
    choice = choose({"good": good, "weak": weak}, {"good": "transfer", "weak": "genre STN softmax"}, labels, GENRES)
    assert choice.name == "good" and choice.kind == "transfer"
    assert set(choice.ranking["combination"]) == {"probs", "log_probs"}  # several seeds: both combinations
    assert choice.ranking.iloc[0]["accuracy"] >= choice.ranking.iloc[-1]["accuracy"]
    best = choice.ranking.iloc[0]
    assert best["log_loss"] <= best["log_loss_uncalibrated"] + 1e-9  # the temperature is fitted on these tracks
    # The choice reads only the selection tracks' labels: others' are not even given.
    again = choose({"good": good, "weak": weak}, {"good": "transfer", "weak": "genre STN softmax"}, labels, GENRES)
    assert (again.name, again.combination, again.temperature) == (choice.name, choice.combination, choice.temperature)
    one_seed = choose({"good": good[:1]}, {"good": "transfer"}, labels, GENRES)
    assert list(one_seed.ranking["combination"]) == ["probs"]
    without = choose({"good": good}, {"good": "transfer"}, labels, GENRES, calibrate=False)
    assert without.temperature == 1.0


def test_a_seed_ensemble_beats_its_seeds_on_log_loss() -> None:
    """What the ensemble is for: the mean of several noisy seeds scores better than a seed alone."""
    rng = np.random.default_rng(1)
    ids = [f"t{i}" for i in range(300)]
    truth = rng.integers(0, len(GENRES), len(ids))
    labels = pd.Series(np.array(GENRES)[truth], index=pd.Index(ids))
    seeds = [_noisy(truth, 1.5, rng, ids) for _ in range(5)]
    ensemble = choose({"ensemble": seeds}, {"ensemble": "transfer"}, labels, GENRES, calibrate=False).ranking
    singles = [choose({"one": [s]}, {"one": "transfer"}, labels, GENRES, calibrate=False).ranking.iloc[0]
               for s in seeds]
    assert ensemble["log_loss"].min() < min(s["log_loss"] for s in singles)


def test_apply_choice_combines_then_scales() -> None:
    ids = ["1", "2"]
    seeds = [_frame([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3]], ids), _frame([[0.5, 0.4, 0.1], [0.3, 0.3, 0.4]], ids)]
    plain = apply_choice(seeds, "probs", 1.0)
    np.testing.assert_allclose(plain.to_numpy(), combine(seeds, "probs").to_numpy())
    softer = apply_choice(seeds, "probs", 3.0).to_numpy()
    assert (softer.max(axis=1) < plain.to_numpy().max(axis=1)).all()
    assert (softer.argmax(axis=1) == plain.to_numpy().argmax(axis=1)).all()


def test_fold_scores_count_each_fold_s_tracks_and_artists() -> None:
    tracks = pd.DataFrame({"track_id": [f"t{i}" for i in range(6)], "artist_id": ["x", "x", "y", "z", "z", "w"],
                           "genre": ["a", "a", "b", "c", "c", "a"]})
    probs = _frame(np.eye(3)[[0, 1, 1, 2, 2, 0]] + 0.01, list(tracks["track_id"]))
    folds = pd.Series([0, 0, 0, 1, 1, 1], index=tracks["track_id"])
    scores = fold_scores(probs, tracks, folds, GENRES)
    assert list(scores["fold"]) == [0, 1] and list(scores["labels"]) == ["given", "given"]
    assert list(scores["n_tracks"]) == [3, 3] and list(scores["n_artists"]) == [2, 2]
    assert scores["accuracy"].tolist() == pytest.approx([2 / 3, 1.0])
