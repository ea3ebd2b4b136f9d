"""How informative a task's artist groups are: concentration of the mixtures and NMI with genre."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import entropy
from sklearn.metrics import normalized_mutual_info_score


def topic_concentration(topics: np.ndarray) -> dict[str, float]:
    """Mean largest topic probability and mean entropy relative to uniform (0 = one group, 1 = uniform)."""
    if len(topics) == 0:
        return {"mean_max_topic": float("nan"), "mean_relative_entropy": float("nan")}
    relative_entropy = entropy(topics, axis=1) / np.log(topics.shape[1])
    return {
        "mean_max_topic": float(topics.max(axis=1).mean()),
        "mean_relative_entropy": float(relative_entropy.mean()),
    }


def genre_information(
    groups: Sequence[int], genres: Sequence[str], n_shuffles: int = 20, seed: int = 0
) -> dict[str, float]:
    """NMI between each track's dominant group and its genre, and the same with the genres shuffled.

    The shuffled NMIs (mean and 95th percentile over `n_shuffles` permutations) are the level a
    grouping that knows nothing about genre reaches by chance with these group and genre sizes.
    """
    if len(groups) == 0:
        nan = float("nan")
        return {"nmi_genre": nan, "nmi_shuffled_mean": nan, "nmi_shuffled_p95": nan}
    rng = np.random.default_rng(seed)
    genres = np.asarray(genres)
    shuffled = [normalized_mutual_info_score(rng.permutation(genres), groups) for _ in range(n_shuffles)]
    return {
        "nmi_genre": float(normalized_mutual_info_score(genres, groups)),
        "nmi_shuffled_mean": float(np.mean(shuffled)),
        "nmi_shuffled_p95": float(np.percentile(shuffled, 95)),
    }
