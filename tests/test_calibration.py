"""Temperature scaling, ECE and the reliability table (agf.calibration)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import softmax

from agf.calibration import apply_temperature, expected_calibration_error, fit_temperature, reliability
from agf.errors import EvaluationError
from agf.metrics import log_loss


def _sampled(temperature: float, n: int = 20_000, genres: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(logits) and the probabilities of a model `temperature` times too confident."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, (n, genres))
    truth = softmax(logits, axis=1)
    labels = (truth.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return softmax(logits * temperature, axis=1), labels


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.5])
def test_fit_temperature_recovers_a_known_temperature(temperature: float) -> None:
    probs, labels = _sampled(temperature)
    assert fit_temperature(probs, labels) == pytest.approx(temperature, rel=0.05)
    calibrated = apply_temperature(probs, fit_temperature(probs, labels))
    assert expected_calibration_error(calibrated, labels) < 0.02
    if temperature != 1.0:
        assert expected_calibration_error(probs, labels) > 0.05


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.1, 10.0))
def test_temperature_keeps_the_ranking_and_sums_to_one(seed: int, temperature: float) -> None:
    probs = np.random.default_rng(seed).dirichlet(np.ones(5), size=7)
    scaled = apply_temperature(probs, temperature)
    assert np.allclose(scaled.sum(axis=1), 1.0)
    assert (np.argsort(-scaled, axis=1, kind="stable")[:, 0] == probs.argmax(axis=1)).all()
    assert np.allclose(apply_temperature(probs, 1.0), probs)


def test_reliability_and_ece_by_hand() -> None:
    # Bin (0.5, 0.6]: two tracks at confidence 0.6, one right: |0.5 - 0.6| = 0.1; bin (0.9, 1]: one at 1.0, right.
    probs = np.array([[0.6, 0.4], [0.4, 0.6], [1.0, 0.0]])
    labels = np.array([0, 0, 0])
    table = reliability(probs, labels)
    assert table.counts.sum() == 3 and table.counts[5] == 2 and table.counts[9] == 1
    assert table.accuracy[5] == pytest.approx(0.5) and table.confidence[5] == pytest.approx(0.6)
    assert table.ece == pytest.approx(2 / 3 * 0.1)


def test_bad_inputs_are_clear_errors() -> None:
    probs = np.full((2, 3), 1 / 3)
    with pytest.raises(EvaluationError, match="temperature must be positive"):
        apply_temperature(probs, 0.0)
    with pytest.raises(EvaluationError, match="labels must lie in 0..2"):
        fit_temperature(probs, np.array([0, 3]))
    with pytest.raises(EvaluationError, match="2 labels for 1 tracks"):
        fit_temperature(probs[:1], np.array([0, 1]))


def test_the_fitted_temperature_minimises_the_log_loss_it_is_scored_with() -> None:
    """One floor for fitting and scoring: a true genre given probability 0 costs -ln(1e-8) in both. With a
    floor of 1e-15 in the fit (ln 1e-15 = -34.5), the fit chased that one track to a temperature the scored log
    loss did not prefer."""
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 4, size=200)
    logits = rng.normal(0, 1, size=(200, 4))
    logits[np.arange(200), labels] += 2.0
    probs = softmax(3 * logits, axis=1)  # overconfident: the best temperature is above 1
    probs[0] = [0.0, 0.0, 0.0, 0.0]
    probs[0, (labels[0] + 1) % 4] = 1.0  # one track sure of a wrong genre
    fitted = fit_temperature(probs, labels)
    grid = np.exp(np.linspace(np.log(0.5), np.log(10), 400))
    scored = [log_loss(labels, apply_temperature(probs, t)) for t in grid]
    best = grid[int(np.argmin(scored))]
    assert fitted == pytest.approx(best, rel=0.02)
