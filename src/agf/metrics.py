"""The WWW 2018 challenge metrics, per-class reports and track-level aggregation of windows (probabilities,
log-probabilities, pooled features).

Class index i is genres[i] everywhere (see agf.datasets.table.genre_list). Metrics follow the challenge
(Defferrard et al., arXiv 1803.05337): log loss with natural log and one-hot truth, probabilities clipped
at 1e-8 (the authors' value), and F1 as the unweighted mean of per-class F1 (macro-F1). agf's macro-F1 averages
over the genres present in the evaluated tracks' truth: a genre absent from a split is not scored (the
challenge's scikit-learn call averaged over the union of true and predicted classes, so predicting an absent
genre once counted an F1 of 0; `challenge_macro_f1` keeps that definition, recorded beside it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from agf.aggregation import pool_moments, probs_from_mean_terms, window_terms
from agf.calibration import LOG_LOSS_EPS, expected_calibration_error
from agf.errors import EvaluationError


@dataclass(frozen=True)
class Metric:
    """One score of a model: its key (in metrics.json, results.csv and the study's files), its title in tables and
    figures, and which way is better."""

    name: str
    title: str
    higher_is_better: bool

    @property
    def sign(self) -> float:
        """+1.0 when higher is better, -1.0 when lower is: (new - old) x sign is the improvement."""
        return 1.0 if self.higher_is_better else -1.0

    @property
    def direction(self) -> str:
        """'higher is better' or 'lower is better'."""
        return f"{'higher' if self.higher_is_better else 'lower'} is better"


# The registry: every metric a model is scored with, in the order tables show them (docs/architecture.md, "Adding a
# metric").
METRIC_REGISTRY: dict[str, Metric] = {
    metric.name: metric
    for metric in (
        Metric("log_loss", "log loss", higher_is_better=False),
        Metric("macro_f1", "macro-F1", higher_is_better=True),
        Metric("accuracy", "accuracy", higher_is_better=True),
        Metric("ece", "ECE", higher_is_better=False),
    )
}
METRICS: tuple[str, ...] = tuple(METRIC_REGISTRY)
TABLE_COLUMNS: tuple[str, ...] = ("model", "labels", *METRICS)
# The selection rule's metrics, in order: the first decides, the next breaks ties (every choice of a model, on the
# selection tracks: agf.report.results, agf.selection).
SELECTION_METRICS: tuple[str, ...] = ("accuracy", "log_loss")


def sort_by_selection(means: pd.DataFrame) -> pd.DataFrame:
    """Rows with (at least) columns SELECTION_METRICS, best first by the selection rule: each metric in its
    registry direction, the first deciding and the next breaking ties; rows still tied keep their order."""
    better_low = [not METRIC_REGISTRY[metric].higher_is_better for metric in SELECTION_METRICS]
    return means.sort_values(list(SELECTION_METRICS), ascending=better_low, kind="stable")


def check_labels(y: np.ndarray, n_classes: int, name: str) -> np.ndarray:
    """`y` as a 1-d int array of class indices in [0, n_classes); raise EvaluationError otherwise."""
    labels = np.asarray(y)
    if labels.ndim != 1 or labels.size == 0:
        raise EvaluationError(f"{name}: expected a non-empty 1-d array of class indices, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise EvaluationError(f"{name}: expected integer class indices, got dtype {labels.dtype}")
    out_of_range = np.unique(labels[(labels < 0) | (labels >= n_classes)])
    if out_of_range.size:
        raise EvaluationError(
            f"{name}: class index(es) {out_of_range[:10].tolist()} outside [0, {n_classes}); "
            "map labels with the genre list used for training"
        )
    return labels.astype(np.int64)


def _check_pair(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Validated truth and prediction index arrays of the same length."""
    truth = check_labels(y_true, n_classes, "y_true")
    pred = check_labels(y_pred, n_classes, "y_pred")
    if truth.shape != pred.shape:
        raise EvaluationError(f"y_true has {truth.size} labels but y_pred has {pred.size}; pass one per track")
    return truth, pred


def _check_probs(probs: np.ndarray, n_rows: int) -> np.ndarray:
    """`probs` as a finite float64 (n_rows, K) array with K >= 1; raise EvaluationError otherwise."""
    matrix = np.asarray(probs, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != n_rows or matrix.shape[1] == 0:
        raise EvaluationError(f"probs: expected shape ({n_rows}, n_classes), got {matrix.shape}; one row per label")
    if not np.isfinite(matrix).all():
        raise EvaluationError("probs: contains NaN or infinite values; check the model's outputs")
    return matrix


def _check_scored(y_true: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated truth indices and their (n, K) probability matrix."""
    n_columns = np.shape(probs)[1] if np.ndim(probs) == 2 else 0
    if n_columns == 0:
        raise EvaluationError(f"probs: expected a (n_tracks, n_classes) matrix, got shape {np.shape(probs)}")
    truth = check_labels(y_true, n_columns, "y_true")
    return truth, _check_probs(probs, truth.size)


def log_loss(y_true: np.ndarray, probs: np.ndarray, eps: float = LOG_LOSS_EPS) -> float:
    """Mean of -ln p[true class] over tracks, with probabilities clipped to [eps, 1].

    The challenge metric: natural log, one-hot truth, clip 1e-8 (the authors' value). Rows are NOT
    renormalised after clipping, so a 0 on the true class costs exactly -ln(eps) (18.42 for 1e-8).
    """
    truth, matrix = _check_scored(y_true, probs)
    true_probs = np.clip(matrix[np.arange(truth.size), truth], eps, 1.0)
    return float(-np.mean(np.log(true_probs)))


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """The unweighted mean of per-class F1 over the classes present in y_true.

    A class in the truth but never predicted has F1 0; a class absent from the truth is not scored, even when
    predicted (those wrong predictions still lower the recall of the true classes they were taken from).
    """
    truth, pred = _check_pair(y_true, y_pred, n_classes)
    return float(f1_score(truth, pred, labels=np.unique(truth), average="macro", zero_division=0))


def challenge_macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    """The WWW 2018 challenge's F1: the mean of per-class F1 over classes present in y_true OR y_pred."""
    truth, pred = _check_pair(y_true, y_pred, n_classes)
    return float(f1_score(truth, pred, labels=np.union1d(truth, pred), average="macro", zero_division=0))


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of tracks whose predicted class equals the true class."""
    truth = np.asarray(y_true)
    pred = np.asarray(y_pred)
    if truth.shape != pred.shape or truth.ndim != 1 or truth.size == 0:
        raise EvaluationError(f"accuracy: y_true {truth.shape} and y_pred {pred.shape} must be equal non-empty 1-d")
    return float(accuracy_score(truth, pred))


def per_class_report(y_true: np.ndarray, y_pred: np.ndarray, genres: Sequence[str]) -> pd.DataFrame:
    """One row per genre (all of them, in class order): genre, precision, recall, f1, support."""
    truth, pred = _check_pair(y_true, y_pred, len(genres))
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, pred, labels=np.arange(len(genres)), zero_division=0
    )
    return pd.DataFrame(
        {"genre": list(genres), "precision": precision, "recall": recall, "f1": f1, "support": support}
    )


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts (n_classes, n_classes): row = true class, column = predicted class."""
    truth, pred = _check_pair(y_true, y_pred, n_classes)
    return confusion_matrix(truth, pred, labels=np.arange(n_classes))


def score(y_true: np.ndarray, probs: np.ndarray, genres: Sequence[str]) -> dict[str, Any]:
    """log_loss, macro_f1, accuracy, ece (expected calibration error), n, macro_f1_challenge, the genres absent
    from the truth and the per-class report (list of dicts, every genre; an absent one has support 0);
    predicted = argmax probs."""
    truth, matrix = _check_scored(y_true, probs)
    if matrix.shape[1] != len(genres):
        raise EvaluationError(f"probs has {matrix.shape[1]} columns but there are {len(genres)} genres")
    pred = matrix.argmax(axis=1)
    return {
        "log_loss": log_loss(truth, matrix),
        "macro_f1": macro_f1(truth, pred, len(genres)),
        "accuracy": accuracy(truth, pred),
        "ece": expected_calibration_error(matrix, truth),
        "n": int(truth.size),
        "macro_f1_challenge": challenge_macro_f1(truth, pred, len(genres)),
        "absent_genres": [genre for i, genre in enumerate(genres) if i not in set(truth.tolist())],
        "per_class": per_class_report(truth, pred, genres).to_dict(orient="records"),
    }


def _genre_indices(labels: pd.Series, genres: Sequence[str], column: str) -> np.ndarray:
    """Map genre names to class indices; unknown names are an EvaluationError naming them."""
    index_of = {genre: i for i, genre in enumerate(genres)}
    unknown = sorted(set(labels) - set(index_of))
    if unknown:
        raise EvaluationError(
            f"tracks.{column}: label(s) {', '.join(map(str, unknown[:10]))} not in the genre list "
            f"({', '.join(genres)}); score with the genre list the model was trained on"
        )
    return labels.map(index_of).to_numpy(dtype=np.int64)


def score_against(tracks: pd.DataFrame, probs: pd.DataFrame, genres: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Score track probabilities (index track_id, one column per genre) against the table's labels.

    The scored tracks are the rows of `probs`; each must be in `tracks`. Returns {'given': vs tracks.genre}
    plus {'true': vs tracks.true_genre} when the table has that column (the synthetic corpus does).
    """
    missing_columns = [g for g in genres if g not in probs.columns]
    if missing_columns:
        raise EvaluationError(f"probs: no column for genre(s) {', '.join(missing_columns)}")
    by_id = tracks.set_index(tracks["track_id"].astype(str))
    track_ids = probs.index.astype(str)
    unknown_ids = [t for t in track_ids if t not in by_id.index]
    if unknown_ids:
        raise EvaluationError(
            f"probs: {len(unknown_ids)} track id(s) not in the track table, e.g. {', '.join(unknown_ids[:5])}"
        )
    rows = by_id.loc[track_ids]
    matrix = probs[list(genres)].to_numpy(dtype=np.float64)
    results = {"given": score(_genre_indices(rows["genre"], genres, "genre"), matrix, genres)}
    if "true_genre" in rows.columns:
        results["true"] = score(_genre_indices(rows["true_genre"], genres, "true_genre"), matrix, genres)
    return results


def track_means(window_track_ids: np.ndarray, rows: np.ndarray, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """The mean of each track's rows (float64): index track_id in order of first appearance, columns `columns`
    (e.g. the genres) or 0..K-1."""
    ids = np.asarray(window_track_ids)
    if ids.ndim != 1 or ids.size == 0:
        raise EvaluationError(f"window_track_ids: expected a non-empty 1-d array, got shape {ids.shape}")
    matrix = _check_probs(rows, ids.size)
    if columns is not None and len(columns) != matrix.shape[1]:
        raise EvaluationError(f"track_means: {len(columns)} column names for {matrix.shape[1]} columns")
    frame = pd.DataFrame(matrix, columns=list(columns) if columns is not None else None)
    frame.index = pd.Index(ids.astype(str), name="track_id")
    return frame.groupby(level="track_id", sort=False).mean()


def mean_window_probs(
    window_track_ids: np.ndarray, window_probs: np.ndarray, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Track-level probabilities: the mean of each track's window probabilities (rows sum to 1 when the
    window rows do); see track_means for the index and columns."""
    return track_means(window_track_ids, window_probs, columns)


def aggregate_window_probs(
    window_track_ids: np.ndarray, window_probs: np.ndarray, aggregation: str, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Track-level probabilities by `aggregation`: 'probs', the mean of the window probabilities (the paper's);
    'log_probs', their renormalised geometric mean (the mean of log-probabilities)."""
    means = track_means(window_track_ids, window_terms(window_probs, aggregation), columns)
    return pd.DataFrame(probs_from_mean_terms(means.to_numpy(), aggregation), index=means.index, columns=means.columns)


def pooled_window_features(window_track_ids: np.ndarray, features: np.ndarray) -> pd.DataFrame:
    """One vector per track: the mean and the (population) standard deviation of its window features, (n, 2D)."""
    values = np.asarray(features, dtype=np.float64)
    means = track_means(window_track_ids, np.concatenate([values, values**2], axis=1))
    return pd.DataFrame(pool_moments(means.to_numpy()), index=means.index)


def _cell(value: Any) -> str:
    """A table cell: floats with 4 decimals, missing values as '-'."""
    if value is None:
        return "-"
    if isinstance(value, (float, np.floating)):
        return f"{value:.4f}"
    return str(value)


def format_table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of TABLE_COLUMNS (model, labels, each metric's key), columns padded to align."""
    cells = [[_cell(row.get(column)) for column in TABLE_COLUMNS] for row in rows]
    widths = [
        max([len(column), *(len(line[i]) for line in cells)]) for i, column in enumerate(TABLE_COLUMNS)
    ]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(value.ljust(width) for value, width in zip(values, widths)) + " |"

    separator = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return "\n".join([line(TABLE_COLUMNS), separator, *(line(values) for values in cells)])
