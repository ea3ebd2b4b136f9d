"""Calibration of track probabilities: temperature scaling fitted on validation, expected calibration error, the
reliability diagram.

Temperature scaling (Guo et al., 2017) divides a model's log-probabilities by one scalar T > 0 and renormalises:
T > 1 softens overconfident probabilities, T < 1 sharpens underconfident ones, and the ranking of the genres of
every track (hence accuracy and F1) never changes. T is the minimiser of the log loss on the validation tracks
only; the test split is scored with it, never used to choose it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agf.errors import EvaluationError

# log T is searched in [-LOG_T_BOUND, LOG_T_BOUND]: temperatures from 1/20 to 20.
LOG_T_BOUND = 3.0
# The floor of a probability before its log, in the temperature's fit and in the scored log loss alike
# (metrics.log_loss): the challenge's clip, the FMA authors' value.
LOG_LOSS_EPS = 1e-8
RELIABILITY_BINS = 10


def log_softmax(values: np.ndarray, axis: int) -> np.ndarray:
    """log(softmax(values)) along axis, computed stably (scipy.special.log_softmax's value)."""
    shifted = values - values.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def _log_probs(probs: np.ndarray) -> np.ndarray:
    matrix = np.asarray(probs, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] < 2:
        raise EvaluationError(f"calibration: expected (tracks, genres) probabilities, got shape {matrix.shape}")
    return np.log(np.clip(matrix, LOG_LOSS_EPS, 1.0))


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities softmax(log p / T): each row renormalised, its argmax unchanged."""
    if not temperature > 0:
        raise EvaluationError(f"calibration: the temperature must be positive, got {temperature}")
    return np.exp(log_softmax(_log_probs(probs) / temperature, axis=1))


def _nll(log_probs: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    scaled = log_softmax(log_probs / temperature, axis=1)
    return float(-scaled[np.arange(len(labels)), labels].mean())


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the mean log loss of `probs` (tracks x genres) against class indices `labels`."""
    log_probs = _log_probs(probs)
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (len(log_probs),) or not len(labels):
        raise EvaluationError(f"calibration: {len(labels)} labels for {len(log_probs)} tracks (need at least one)")
    if labels.min() < 0 or labels.max() >= log_probs.shape[1]:
        raise EvaluationError(f"calibration: labels must lie in 0..{log_probs.shape[1] - 1}")
    from scipy.optimize import minimize_scalar  # SciPy only where a temperature is fitted

    found = minimize_scalar(lambda log_t: _nll(log_probs, labels, float(np.exp(log_t))),
                            bounds=(-LOG_T_BOUND, LOG_T_BOUND), method="bounded", options={"xatol": 1e-6})
    return float(np.exp(found.x))


@dataclass(frozen=True)
class Reliability:
    """Per confidence bin (equal width on [0, 1]): tracks, mean confidence (top probability) and accuracy."""

    edges: np.ndarray
    counts: np.ndarray
    confidence: np.ndarray  # NaN in an empty bin
    accuracy: np.ndarray  # NaN in an empty bin

    @property
    def ece(self) -> float:
        """Expected calibration error: the track-weighted mean |accuracy - confidence| over the bins."""
        filled = self.counts > 0
        weights = self.counts[filled] / self.counts.sum()
        return float(np.sum(weights * np.abs(self.accuracy[filled] - self.confidence[filled])))


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = RELIABILITY_BINS) -> Reliability:
    """The reliability table of `probs` against class indices `labels`."""
    matrix = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    confidence = matrix.max(axis=1)
    correct = (matrix.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(which, confidence, bins) / counts
        mean_accuracy = np.bincount(which, correct, bins) / counts
    return Reliability(edges, counts, mean_confidence, mean_accuracy)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = RELIABILITY_BINS) -> float:
    """ECE of `probs` against `labels` over `bins` equal-width confidence bins."""
    return reliability(probs, labels, bins).ece
