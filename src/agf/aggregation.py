"""Window-to-track aggregation terms (NumPy only): what a track averages over its windows and its probabilities
from that mean; agf.metrics re-exports them, prediction imports them from here."""

from __future__ import annotations

import numpy as np

from agf.calibration import LOG_LOSS_EPS
from agf.errors import EvaluationError


def window_terms(window_probs: np.ndarray, aggregation: str) -> np.ndarray:
    """What a track averages over its windows: the probabilities ('probs') or their logarithms, clipped at
    LOG_LOSS_EPS ('log_probs')."""
    if aggregation == "probs":
        return np.asarray(window_probs, dtype=np.float64)
    if aggregation == "log_probs":
        return np.log(np.clip(np.asarray(window_probs, dtype=np.float64), LOG_LOSS_EPS, 1.0))
    raise EvaluationError(f"aggregation {aggregation!r}: window probabilities aggregate by 'probs' or 'log_probs'")


def probs_from_mean_terms(mean_terms: np.ndarray, aggregation: str) -> np.ndarray:
    """Track probabilities from the mean of window_terms (rows): as they are for 'probs', the renormalised
    geometric mean of the window probabilities for 'log_probs'."""
    terms = np.asarray(mean_terms, dtype=np.float64)
    if aggregation == "probs":
        return terms
    if aggregation == "log_probs":
        scaled = np.exp(terms - terms.max(axis=-1, keepdims=True))
        return scaled / scaled.sum(axis=-1, keepdims=True)
    raise EvaluationError(f"aggregation {aggregation!r}: window probabilities aggregate by 'probs' or 'log_probs'")


def pool_moments(mean_and_mean_square: np.ndarray) -> np.ndarray:
    """(..., 2D) per-track [E[x], E[x^2]] -> (..., 2D) [mean, standard deviation] of the window features."""
    moments = np.asarray(mean_and_mean_square, dtype=np.float64)
    mean, mean_square = np.split(moments, 2, axis=-1)
    return np.concatenate([mean, np.sqrt(np.clip(mean_square - mean**2, 0.0, None))], axis=-1)
