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

Power: the variance of a gain at each level of the nested design (corpus, split within corpus, run seed within
split) estimated from measured gains (`variance_components`), the standard deviation of a unit mean of a
planned design from them (`unit_sd`), and the power of the test over units to detect a given gain (`power`,
Student's t with its noncentral distribution) or the units needed for a target power (`units_needed`).
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
# Fewest units for which a two-sided sign-flip test can reach p < 0.05 (its smallest p is 2 / 2^n).
MIN_PERMUTATION_UNITS = 6


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


@dataclass(frozen=True)
class VarianceComponents:
    """The variance of a paired gain at each level of the nested design, estimated by the method of moments
    (NaN where the measured design has one level: a single corpus, one split per corpus or one run seed per
    split; the level above then holds that variance), and the design it was measured on."""

    corpus: float  # between corpora
    split: float  # between splits of one corpus
    seed: float  # between run seeds of one split
    corpora: int
    splits: int  # per corpus (mean)
    seeds: int  # per split (mean)
    df_corpus: int = 0  # the degrees of freedom behind each estimate
    df_split: int = 0
    df_seed: int = 0


def _pooled_variance(values: np.ndarray, groups: np.ndarray) -> float:
    """The pooled within-group variance (ddof 1 per group) over groups with at least two values; NaN if none."""
    sums, count = 0.0, 0
    for group in dict.fromkeys(groups):
        data = values[groups == group]
        if len(data) > 1:
            sums += float(((data - data.mean()) ** 2).sum())
            count += len(data) - 1
    return sums / count if count else float("nan")


def variance_components(gains: Sequence[float], corpora: Sequence[object], splits: Sequence[object],
                        seeds: Sequence[object]) -> VarianceComponents:
    """Variance components of paired gains in a nested design (each gain tagged with its corpus, its split within
    the corpus and its run seed). Moment estimates, clipped at zero: seed = the pooled variance within splits;
    split = the variance of split means within corpora less seed / seeds per split; corpus = the variance of
    corpus means less (split + seed / seeds) / splits per corpus."""
    values = np.asarray(gains, dtype=float)
    corpus = np.asarray(corpora, dtype=str)
    split = np.char.add(np.char.add(corpus, "/"), np.asarray(splits, dtype=str))
    split_ids = list(dict.fromkeys(split))
    split_means = np.array([values[split == s].mean() for s in split_ids])
    split_corpus = np.array([corpus[split == s][0] for s in split_ids])
    corpus_ids = list(dict.fromkeys(corpus))
    seeds_per_split = len(values) / len(split_ids)
    splits_per_corpus = len(split_ids) / len(corpus_ids)
    seed_var = _pooled_variance(values, split)
    split_var = _pooled_variance(split_means, split_corpus)
    if not np.isnan(split_var) and not np.isnan(seed_var):
        split_var = max(0.0, split_var - seed_var / seeds_per_split)
    corpus_var = float("nan")
    if len(corpus_ids) > 1:
        corpus_means = np.array([split_means[split_corpus == c].mean() for c in corpus_ids])
        below = np.nan_to_num(split_var) + np.nan_to_num(seed_var) / seeds_per_split
        corpus_var = max(0.0, float(corpus_means.var(ddof=1)) - below / splits_per_corpus)
    return VarianceComponents(corpus_var, split_var, seed_var, len(corpus_ids), round(splits_per_corpus),
                              round(seeds_per_split), len(corpus_ids) - 1, len(split_ids) - len(corpus_ids),
                              len(values) - len(split_ids))


def pooled_components(found: Sequence[VarianceComponents]) -> VarianceComponents:
    """Several comparisons' components pooled level by level, each weighted by its degrees of freedom (NaN where
    no comparison measured the level): one estimate of the design's variances when the comparisons share them."""

    def pool(level: str) -> tuple[float, int]:
        pairs = [(getattr(f, level), getattr(f, f"df_{level}")) for f in found
                 if not np.isnan(getattr(f, level)) and getattr(f, f"df_{level}") > 0]
        total = sum(df for _, df in pairs)
        return (sum(v * df for v, df in pairs) / total if total else float("nan")), total

    (corpus, df_corpus), (split, df_split), (seed, df_seed) = pool("corpus"), pool("split"), pool("seed")
    return VarianceComponents(corpus, split, seed, max(f.corpora for f in found),
                              round(float(np.mean([f.splits for f in found]))),
                              round(float(np.mean([f.seeds for f in found]))), df_corpus, df_split, df_seed)


def unit_sd(components: VarianceComponents, unit: str, splits: int = 1, seeds: int = 1,
            corpus_variance: float | None = None) -> float:
    """The standard deviation of one unit's mean gain in a planned design: a split unit averages `seeds` run
    seeds; a corpus unit averages `splits` splits of `seeds` seeds each. A component not measured (NaN) counts
    as 0, its variance held by the level above (conservative: more replicates of it do not shrink it). A corpus
    unit needs the corpus variance: the measured one, else `corpus_variance` (an assumption the caller states)."""
    split_var, seed_var = np.nan_to_num(components.split), np.nan_to_num(components.seed)
    if unit == "split":
        return float(np.sqrt(split_var + seed_var / seeds))
    corpus_var = components.corpus if corpus_variance is None else corpus_variance
    if np.isnan(corpus_var):
        return float("nan")
    return float(np.sqrt(corpus_var + split_var / splits + seed_var / (splits * seeds)))


def power(effect: float, sd: float, n: int, alpha: float = 0.05) -> float:
    """The power of the two-sided one-sample t-test over n independent unit means with standard deviation sd to
    detect a mean gain `effect` (noncentral t)."""
    if n < 2 or not sd > 0:
        return float("nan") if n < 2 or np.isnan(sd) else 1.0
    df = n - 1
    critical = stats.t.ppf(1 - alpha / 2, df)
    shift = abs(effect) * np.sqrt(n) / sd
    found = float(stats.nct.sf(critical, df, shift) + stats.nct.cdf(-critical, df, shift))
    # scipy's noncentral t gives NaN far in its tail: the shift is then many critical values away.
    return found if not np.isnan(found) else float(shift > critical)


def units_needed(effect: float, sd: float, alpha: float = 0.05, target: float = 0.8, limit: int = 100_000) -> int:
    """The fewest independent units for `target` power against a gain `effect` (at least MIN_PERMUTATION_UNITS,
    so that the sign-flip test can reject too); -1 when sd is unknown (NaN) or more than `limit` are needed."""
    if np.isnan(sd):
        return -1
    n = MIN_PERMUTATION_UNITS
    while power(effect, sd, n, alpha) < target:
        if n >= limit:
            return -1
        n = min(2 * n, limit)
    low = max(MIN_PERMUTATION_UNITS, n // 2)
    while low < n:  # the smallest n in [low, n] with enough power (power grows with n)
        middle = (low + n) // 2
        if power(effect, sd, middle, alpha) >= target:
            n = middle
        else:
            low = middle + 1
    return n
