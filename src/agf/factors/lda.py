"""LDA over artist bags: each artist's topic distribution is its artist group factor.

The bags hold counts divided by the artist's number of tracks (the paper's choice), so they are
not integers. scikit-learn's variational LDA accepts non-negative real "counts": the division only
puts artists with many and few tracks on the same scale (one track's worth of words each).

Speed: scikit-learn's per-artist E-step loops up to `max_doc_update_iter` times (default 100)
until the artist's topic weights change by less than 1e-3 on average. With bags of about 1,300
words per artist (tasks m, d) that tolerance is rarely met, so the cap decides the cost; a cap of
DOC_UPDATE_ITERATIONS = 20 fits 1.5x faster with the same perplexity on synthetic bags
(benchmarks/bench_factors.py). The E-step runs in one process (n_jobs=1) because scikit-learn's
random start of each E-step depends on how the artists are split over jobs: the same seed must
give the same groups whatever the number of workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse
from sklearn.decomposition import LatentDirichletAllocation

DOC_UPDATE_ITERATIONS = 20


@dataclass(frozen=True)
class TopicModel:
    """Artist topic mixtures (rows sum to 1), which bags were empty, perplexity, topic-word weights and the fitted
    LDA (None when every bag was empty)."""

    topics: np.ndarray
    empty: np.ndarray
    perplexity: float
    components: np.ndarray
    lda: LatentDirichletAllocation | None = None

    def infer(self, bags: np.ndarray) -> np.ndarray:
        """Topic mixtures (rows sum to 1) of other bags by the fitted LDA, which they do not change; an empty bag,
        or any bag when nothing was fitted, gets the uniform distribution."""
        n_topics = self.components.shape[0]
        topics = np.full((len(bags), n_topics), 1.0 / n_topics)
        filled = bags.sum(axis=1) > 0
        if self.lda is not None and filled.any():
            mixtures = self.lda.transform(scipy.sparse.csr_matrix(bags[filled]))
            topics[filled] = mixtures / mixtures.sum(axis=1, keepdims=True)
        return topics


def fit_artist_topics(bags: np.ndarray, n_topics: int, max_iter: int, seed: int) -> TopicModel:
    """Fit LDA with `n_topics` on the non-empty bags; empty bags get the uniform distribution."""
    empty = bags.sum(axis=1) <= 0
    topics = np.full((len(bags), n_topics), 1.0 / n_topics)
    filled = scipy.sparse.csr_matrix(bags[~empty])
    if filled.shape[0] == 0:
        return TopicModel(topics, empty, float("nan"), np.zeros((n_topics, bags.shape[1])))
    lda = LatentDirichletAllocation(
        n_components=n_topics,
        learning_method="batch",
        max_iter=max_iter,
        max_doc_update_iter=DOC_UPDATE_ITERATIONS,
        random_state=seed,
        n_jobs=1,
    )
    mixtures = lda.fit(filled).transform(filled)
    topics[~empty] = mixtures / mixtures.sum(axis=1, keepdims=True)
    # bound_ is the perplexity of the training bags after the last iteration.
    return TopicModel(topics, empty, float(lda.bound_), lda.components_, lda)
