"""Paired statistics for comparing models on the same corpora, splits and seeds.

A comparison is a set of paired differences (model minus baseline, one per replicate: the same corpus, split
and seed). Replicates are nested (run seeds within a split, splits within a corpus), so they are not
independent: every test and interval here works on the mean of each independent unit (a corpus, or a split
when corpora are few; the caller says which replicate belongs to which unit). For each comparison: the mean
of the unit means, a 95 % confidence interval (Student's t over the unit means below MIN_BOOTSTRAP_UNITS units,
where a percentile bootstrap is too narrow; a percentile bootstrap of units from there), a two-sided sign-flip
permutation test of the unit means (exact up to 2^16 sign patterns) and the Wilcoxon signed-rank test, with
Holm's correction across the comparisons of one family. The interaction question (does a gain grow with the
noise rate?) is the least-squares slope of the gain on the rate within each unit, compared the same way.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

EXACT_LIMIT = 16  # up to this many units, the sign-flip test enumerates all 2^n sign patterns
# Below this many independent units the confidence interval is Student's t over the unit means: a percentile
# bootstrap of 3 or 4 values covered the truth 75-79 % of the time at a nominal 95 %.
MIN_BOOTSTRAP_UNITS = 10


@dataclass(frozen=True)
class Comparison:
    """One paired comparison against the baseline."""

    name: str
    n: int  # independent units: what the tests and the interval rest on
    pairs: int  # paired replicates, averaged within their unit
    mean: float  # the mean of the unit means
    ci_low: float
    ci_high: float
    interval: str  # "t" or "bootstrap"
    p_permutation: float
    p_wilcoxon: float
    p_holm: float  # the permutation p-value, Holm-adjusted across the family


def bootstrap_ci(values: Sequence[float], level: float = 0.95, n_boot: int = 10_000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the mean of independent values (NaN, NaN below 2 values)."""
    data = np.asarray(values, dtype=float)
    if len(data) < 2:
        return float("nan"), float("nan")
    picks = np.random.default_rng(seed).integers(0, len(data), size=(n_boot, len(data)))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(data[picks].mean(axis=1), [tail, 100 - tail])
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


def unit_means(values: Sequence[float], units: Sequence[object] | None) -> np.ndarray:
    """The mean of each independent unit's values (in order of the units' first appearance); each value is its own
    unit when `units` is None."""
    data = np.asarray(values, dtype=float)
    if units is None:
        return data
    labels, first, inverse = np.unique(np.asarray(units, dtype=str), return_index=True, return_inverse=True)
    sums = np.bincount(inverse, weights=data, minlength=len(labels))
    counts = np.bincount(inverse, minlength=len(labels))
    order = np.argsort(first, kind="stable")
    return (sums / counts)[order]


def mean_ci(unit_values: Sequence[float], level: float = 0.95, n_boot: int = 10_000,
            seed: int = 0) -> tuple[float, float, str]:
    """Confidence interval of the mean of independent unit values, and its kind: Student's t below
    MIN_BOOTSTRAP_UNITS units, a percentile bootstrap from there; NaN, NaN below 2 units."""
    data = np.asarray(unit_values, dtype=float)
    if len(data) < 2:
        return float("nan"), float("nan"), "none"
    if len(data) < MIN_BOOTSTRAP_UNITS:
        half = stats.t.ppf(0.5 + level / 2, len(data) - 1) * data.std(ddof=1) / np.sqrt(len(data))
        return float(data.mean() - half), float(data.mean() + half), "t"
    return (*bootstrap_ci(data, level, n_boot, seed), "bootstrap")


def compare(differences: Mapping[str, Sequence[float]], units: Mapping[str, Sequence[object]] | None = None,
            level: float = 0.95, seed: int = 0) -> list[Comparison]:
    """Every comparison of one family (name -> paired differences, with the independent unit of each difference),
    tested on the unit means and Holm-adjusted together."""
    names = list(differences)
    means = {n: unit_means(differences[n], None if units is None else units[n]) for n in names}
    p_perm = [sign_flip_p(means[n], seed=seed) for n in names]
    result = []
    for name, p, p_adj in zip(names, p_perm, holm(p_perm)):
        data = means[name]
        low, high, interval = mean_ci(data, level, seed=seed)
        result.append(Comparison(name, len(data), len(differences[name]),
                                 float(data.mean()) if len(data) else float("nan"), low, high, interval, p,
                                 wilcoxon_p(data), float(p_adj)))
    return result


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    """The least-squares slope of y on x (NaN when x does not vary)."""
    xc = x - x.mean()
    return float(xc @ (y - y.mean()) / (xc @ xc)) if np.ptp(x) > 0 else float("nan")


def noise_trend(rates: Sequence[float], gains: Sequence[float], units: Sequence[object], level: float = 0.95,
                seed: int = 0) -> Comparison:
    """Does a gain grow with the noise rate? The least-squares slope of gain on rate within each independent unit
    (units with fewer than two rates are left out), compared with zero as `compare` does (n: the units used)."""
    x, y, labels = np.asarray(rates, dtype=float), np.asarray(gains, dtype=float), np.asarray(units, dtype=str)
    slopes = [_slope(x[labels == unit], y[labels == unit]) for unit in dict.fromkeys(labels)]
    found = [slope for slope in slopes if not np.isnan(slope)]
    return replace(compare({"slope": found}, level=level, seed=seed)[0], pairs=len(x))
