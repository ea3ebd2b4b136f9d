"""The built-in demo corpus: a seeded synthetic music collection written in FMA's layout (`agf synth`).

    synthesize_corpus(out_dir, config, workers=2, progress=True) -> out_dir
    corpus_summary(out_dir) -> CorpusSummary (prints as a short table)

See docs/synthetic-corpus.md for the generative model.
"""

from agf.datasets.synth.collection import Collection, build_collection
from agf.datasets.synth.corpus import (
    CorpusSummary,
    corpus_is_complete,
    corpus_summary,
    metadata_frames,
    synthesize_corpus,
)

__all__ = [
    "Collection",
    "CorpusSummary",
    "build_collection",
    "corpus_is_complete",
    "corpus_summary",
    "metadata_frames",
    "synthesize_corpus",
]
