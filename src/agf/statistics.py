"""Paired statistics for comparing models on the same corpora, splits and seeds.

A comparison is a set of paired differences (model minus baseline, one per replicate: the same corpus,
split and seed). For each: the mean, a percentile-bootstrap 95 % confidence interval (resampling replicates,
or whole clusters such as corpus seeds when given), a two-sided sign-flip permutation test (exact up to
2^16 sign patterns) and the Wilcoxon signed-rank test, with Holm's correction across the comparisons of one
family. The interaction question (does a gain grow with the noise rate?) is the least-squares slope of the
gain on the rate, with a bootstrap CI and a permutation test of the rates.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

EXACT_LIMIT = 16  # up to this many pairs, the sign-flip test enumerates all 2^n sign patterns


@dataclass(frozen=True)
class Comparison:
    """One paired comparison against the baseline."""

    name: str
    n: int
    mean: float
    ci_low: float
    ci_high: float
    p_permutation: float
    p_wilcoxon: float
    p_holm: float  # the permutation p-value, Holm-adjusted across the family


def _resample_means(values: np.ndarray, clusters: np.ndarray | None, n_boot: int,
                    rng: np.random.Generator) -> np.ndarray:
    """Means of n_boot bootstrap resamples: of the values, or of whole clusters (all values of a drawn cluster)."""
    if clusters is None:
        picks = rng.integers(0, len(values), size=(n_boot, len(values)))
        return values[picks].mean(axis=1)
    labels, inverse = np.unique(clusters, return_inverse=True)
    sums = np.bincount(inverse, weights=values, minlength=len(labels))
    counts = np.bincount(inverse, minlength=len(labels)).astype(float)
    picks = rng.integers(0, len(labels), size=(n_boot, len(labels)))
    return sums[picks].sum(axis=1) / counts[picks].sum(axis=1)


def bootstrap_ci(values: Sequence[float], level: float = 0.95, n_boot: int = 10_000, seed: int = 0,
                 clusters: Sequence[object] | None = None) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean (NaN, NaN for fewer than 2 values)."""
    data = np.asarray(values, dtype=float)
    if len(data) < 2:
        return float("nan"), float("nan")
    means = _resample_means(data, None if clusters is None else np.asarray(clusters), n_boot,
                            np.random.default_rng(seed))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def sign_flip_p(differences: Sequence[float], n_perm: int = 20_000, seed: int = 0) -> float:
    """Two-sided paired permutation test of mean difference 0: flip the signs of the differences.

    Exact (all 2^n patterns) for n <= EXACT_LIMIT, else Monte Carlo with the observed pattern counted.
    """
    data = np.asarray(differences, dtype=float)
    if len(data) == 0:
        return float("nan")
    observed = abs(data.mean())
    if len(data) <= EXACT_LIMIT:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=len(data))))
        null = np.abs(signs @ data / len(data))
        return float(np.mean(null >= observed - 1e-12))
    signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(n_perm, len(data)))
    null = np.abs(signs @ data / len(data))
    return float((np.sum(null >= observed - 1e-12) + 1) / (n_perm + 1))


def wilcoxon_p(differences: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value (1.0 when every difference is zero; NaN for no data)."""
    data = np.asarray(differences, dtype=float)
    if len(data) == 0:
        return float("nan")
    if np.allclose(data, 0):
        return 1.0
    return float(stats.wilcoxon(data, zero_method="wilcox", alternative="two-sided").pvalue)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and is not counted)."""
    p = np.asarray(p_values, dtype=float)
    adjusted = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def compare(differences: Mapping[str, Sequence[float]], clusters: Mapping[str, Sequence[object]] | None = None,
            level: float = 0.95, seed: int = 0) -> list[Comparison]:
    """Every comparison of one family (name -> paired differences), Holm-adjusted together."""
    names = list(differences)
    p_perm = [sign_flip_p(differences[n], seed=seed) for n in names]
    adjusted = holm(p_perm)
    result = []
    for name, p, p_adj in zip(names, p_perm, adjusted):
        data = np.asarray(differences[name], dtype=float)
        low, high = bootstrap_ci(data, level, seed=seed, clusters=None if clusters is None else clusters[name])
        result.append(Comparison(name, len(data), float(data.mean()) if len(data) else float("nan"), low, high,
                                 p, wilcoxon_p(data), float(p_adj)))
    return result


@dataclass(frozen=True)
class Trend:
    """The least-squares slope of a gain on the noise rate: does the gain grow with noise?"""

    slope: float
    ci_low: float
    ci_high: float
    p_permutation: float


def _slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slopes of each row of y (..., n) on x (n,)."""
    xc = x - x.mean()
    return (y - y.mean(axis=-1, keepdims=True)) @ xc / (xc @ xc)


def noise_trend(rates: Sequence[float], gains: Sequence[float], n_boot: int = 10_000, n_perm: int = 10_000,
                seed: int = 0, level: float = 0.95) -> Trend:
    """Slope of gain on rate, its percentile-bootstrap CI (resampling (rate, gain) pairs) and the two-sided
    p-value of a permutation test that shuffles the rates."""
    x, y = np.asarray(rates, dtype=float), np.asarray(gains, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0:
        return Trend(float("nan"), float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    slope = float(_slopes(x, y))
    picks = rng.integers(0, len(x), size=(n_boot, len(x)))
    xs, ys = x[picks], y[picks]
    keep = np.ptp(xs, axis=1) > 0
    xc = xs[keep] - xs[keep].mean(axis=1, keepdims=True)
    boot = (xc * (ys[keep] - ys[keep].mean(axis=1, keepdims=True))).sum(axis=1) / (xc**2).sum(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(boot, [tail, 100 - tail])
    shuffled = np.array([rng.permutation(x) for _ in range(n_perm)])
    xc = shuffled - shuffled.mean(axis=1, keepdims=True)
    null = (xc * (y - y.mean())).sum(axis=1) / (xc**2).sum(axis=1)
    p = (np.sum(np.abs(null) >= abs(slope) - 1e-12) + 1) / (n_perm + 1)
    return Trend(slope, float(low), float(high), float(p))
