"""How a track's windows become its genre probabilities (NumPy only): the aggregations (`Aggregation`, declared
here only), what a track averages over its windows and its probabilities from that mean; agf.metrics re-exports
the terms, configuration, transfer and prediction import them from here; `combine_members`: an ensemble's members'
track probabilities as one (the evaluation and prediction)."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

import numpy as np

from agf.calibration import LOG_LOSS_EPS
from agf.errors import EvaluationError


class Aggregation(StrEnum):
    """A track aggregation (TransferConfig.aggregations, a bundle's manifest); its value is the name written."""

    PROBS = "probs"  # the mean of a window MLP's probabilities (the paper's)
    LOG_PROBS = "log_probs"  # the renormalised geometric mean of those probabilities
    POOLED = "pooled"  # an MLP of its own on the mean and standard deviation of the window features

    @property
    def is_pooled(self) -> bool:
        """Whether an MLP classifies the track's pooled window features (else a window MLP's outputs are averaged)."""
        return self is Aggregation.POOLED

    def mlp_input_width(self, feature_width: int) -> int:
        """The MLP's input width over window features `feature_width` wide: their mean and std when pooled."""
        return 2 * feature_width if self.is_pooled else feature_width


AGGREGATIONS: tuple[str, ...] = tuple(Aggregation)


def window_terms(window_probs: np.ndarray, aggregation: str) -> np.ndarray:
    """What a track averages over its windows: the probabilities ('probs') or their logarithms, clipped at
    LOG_LOSS_EPS ('log_probs')."""
    if aggregation == Aggregation.PROBS:
        return np.asarray(window_probs, dtype=np.float64)
    if aggregation == Aggregation.LOG_PROBS:
        return np.log(np.clip(np.asarray(window_probs, dtype=np.float64), LOG_LOSS_EPS, 1.0))
    raise EvaluationError(f"aggregation {aggregation!r}: window probabilities aggregate by 'probs' or 'log_probs'")


def probs_from_mean_terms(mean_terms: np.ndarray, aggregation: str) -> np.ndarray:
    """Track probabilities from the mean of window_terms (rows): as they are for 'probs', the renormalised
    geometric mean of the window probabilities for 'log_probs'."""
    terms = np.asarray(mean_terms, dtype=np.float64)
    if aggregation == Aggregation.PROBS:
        return terms
    if aggregation == Aggregation.LOG_PROBS:
        scaled = np.exp(terms - terms.max(axis=-1, keepdims=True))
        return scaled / scaled.sum(axis=-1, keepdims=True)
    raise EvaluationError(f"aggregation {aggregation!r}: window probabilities aggregate by 'probs' or 'log_probs'")


def pool_moments(mean_and_mean_square: np.ndarray) -> np.ndarray:
    """(..., 2D) per-track [E[x], E[x^2]] -> (..., 2D) [mean, standard deviation] of the window features."""
    moments = np.asarray(mean_and_mean_square, dtype=np.float64)
    mean, mean_square = np.split(moments, 2, axis=-1)
    return np.concatenate([mean, np.sqrt(np.clip(mean_square - mean**2, 0.0, None))], axis=-1)


def combine_members(probs_list: Sequence[np.ndarray], how: str) -> np.ndarray:
    """The (tracks, genres) probabilities of several models (an ensemble's members) as one: their mean ('probs') or
    their renormalised geometric mean, the log-probabilities clipped at LOG_LOSS_EPS ('log_probs')."""
    if how not in (Aggregation.PROBS, Aggregation.LOG_PROBS):
        raise EvaluationError(f"combination {how!r}: members combine by 'probs' or 'log_probs'")
    if not probs_list:
        raise EvaluationError("combine_members: no member's probabilities given")
    shapes = {np.shape(probs) for probs in probs_list}
    if len(shapes) != 1:
        raise EvaluationError(f"combine_members: the members' probabilities differ in shape ({sorted(shapes)})")
    mean_terms = np.mean([window_terms(probs, how) for probs in probs_list], axis=0)
    return probs_from_mean_terms(mean_terms, how)
