"""The paired statistics agree with scipy and with textbook cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from agf.statistics import bootstrap_ci, compare, holm, noise_trend, sign_flip_p, wilcoxon_p


def test_sign_flip_test_is_scipys_exact_paired_permutation_test() -> None:
    rng = np.random.default_rng(0)
    for n in (5, 8, 12):
        differences = rng.normal(0.3, 1.0, size=n)
        expected = stats.permutation_test(
            (differences,), np.mean, permutation_type="samples", alternative="two-sided", n_resamples=np.inf
        ).pvalue
        assert sign_flip_p(differences) == pytest.approx(expected, abs=1e-9)


def test_sign_flip_test_monte_carlo_is_close_to_the_exact_value() -> None:
    differences = np.random.default_rng(1).normal(0.2, 1.0, size=24)
    expected = stats.permutation_test((differences,), np.mean, permutation_type="samples",
                                      n_resamples=200_000, random_state=0).pvalue
    assert sign_flip_p(differences, n_perm=200_000) == pytest.approx(expected, abs=0.01)


def test_wilcoxon_is_scipys_and_all_zero_differences_give_one() -> None:
    differences = [0.5, -0.1, 0.3, 0.8, 0.2, 0.05, -0.3, 0.6]
    assert wilcoxon_p(differences) == stats.wilcoxon(differences).pvalue
    assert wilcoxon_p([0.0, 0.0, 0.0]) == 1.0


def test_holm_matches_a_worked_example() -> None:
    # p = 0.01, 0.04, 0.03, 0.005 -> sorted 0.005*4, 0.01*3, 0.03*2, 0.04*1, made monotone.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = holm([0.2, np.nan, 0.01])
    assert adjusted[0] == pytest.approx(0.2) and np.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)
    assert holm([0.6, 0.7]).max() <= 1.0


def test_bootstrap_ci_agrees_with_scipys_percentile_bootstrap() -> None:
    values = np.random.default_rng(2).normal(1.0, 2.0, size=40)
    ours = bootstrap_ci(values, n_boot=40_000)
    theirs = stats.bootstrap((values,), np.mean, method="percentile", n_resamples=40_000, random_state=0)
    assert ours == pytest.approx((theirs.confidence_interval.low, theirs.confidence_interval.high), abs=0.05)
    assert ours[0] < values.mean() < ours[1]


def test_a_cluster_bootstrap_is_wider_when_clusters_share_an_offset() -> None:
    rng = np.random.default_rng(3)
    clusters = np.repeat(np.arange(6), 5)
    values = rng.normal(0, 0.1, size=30) + rng.normal(0, 1.0, size=6)[clusters]
    plain = bootstrap_ci(values)
    clustered = bootstrap_ci(values, clusters=clusters)
    assert clustered[1] - clustered[0] > 2 * (plain[1] - plain[0])


def test_compare_adjusts_the_family_and_finds_a_real_gain() -> None:
    rng = np.random.default_rng(4)
    family = {"real gain": rng.normal(0.05, 0.02, size=12), "no gain": rng.normal(0.0, 0.02, size=12)}
    real, none = compare(family)
    assert real.p_permutation < 0.01 and real.ci_low > 0 and real.p_holm >= real.p_permutation
    assert none.p_holm > 0.05 and none.ci_low < 0 < none.ci_high
    assert real.n == none.n == 12


def test_noise_trend_finds_a_slope_and_its_absence() -> None:
    rng = np.random.default_rng(5)
    rates = np.repeat([0.0, 0.1, 0.2, 0.3, 0.4], 6)
    growing = 0.2 * rates + rng.normal(0, 0.01, size=rates.size)
    trend = noise_trend(rates, growing)
    assert trend.slope == pytest.approx(stats.linregress(rates, growing).slope)
    assert trend.ci_low < 0.2 < trend.ci_high and trend.p_permutation < 0.001
    flat = noise_trend(rates, rng.normal(0, 0.01, size=rates.size))
    assert flat.ci_low < 0 < flat.ci_high and flat.p_permutation > 0.01
