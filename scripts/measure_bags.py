"""Measure how informative the artist-group targets are under each bag normalisation and Essentia binary-column
treatment: the numbers of docs/factors.md, "Artist bags".

For a work directory that `agf prepare` (or `agf run`) finished, builds the e and s artist group factors once per
variant (the Essentia vectors are cached in the feature store, so only the first variant extracts them) and
prints, per task and variant: the mean largest group probability of the artists (max p; 1/n_topics is uniform),
the mean entropy relative to log(n_topics) (rel H; 1 is uniform) and the NMI of the dominant group with genre
beside its 95th percentile under shuffled genres.

    .venv/bin/python scripts/measure_bags.py WORKDIR [-c CONFIG] [--topics N] [--words N]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import pandas as pd

from agf.config import Config, load_config
from agf.factors import build_factors
from agf.store import FeatureStore

VARIANTS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("authors: divide all, e quantile", ("m", "d", "e", "s"), "quantile"),
    ("divide m d s, e quantile", ("m", "d", "s"), "quantile"),
    ("divide m d s, e standardise", ("m", "d", "s"), "standardise"),
    ("divide m d, e quantile", ("m", "d"), "quantile"),
    ("divide m d, e standardise", ("m", "d"), "standardise"),
    ("divide m d, e drop binary", ("m", "d"), "drop"),
    ("divide all", ("m", "d", "e", "s"), "standardise"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("-c", "--config", help="the config the work directory was prepared with (default: defaults)")
    parser.add_argument("--topics", type=int, help="artist groups (default: the config's factors.n_topics)")
    parser.add_argument("--words", type=int, help="e dictionary size (default: the config's factors.n_words)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    config = load_config(args.config) if args.config else Config()
    topics, words = args.topics or config.factors.n_topics, args.words or config.factors.n_words
    store = FeatureStore.open(args.workdir, config.features)
    tracks = store.usable(pd.read_parquet(args.workdir / "tracks.parquet"))
    train = tracks[tracks["split"] == "train"]
    print(f"{len(train)} training tracks, {train['artist_id'].nunique()} training artists, "
          f"{train['genre'].nunique()} genres, {topics} groups, {words} words")
    print(f"{'variant':36s} {'task':4s} {'max p':>6s} {'rel H':>6s} {'NMI':>6s} {'shuffled p95':>13s}")
    with tempfile.TemporaryDirectory() as scratch:
        for number, (name, divide, binary) in enumerate(VARIANTS):
            factors = dataclasses.replace(config.factors, tasks=("e", "s"), n_topics=topics,
                                          n_words=words, divide_bags=divide, essentia_binary=binary)
            results = build_factors(tracks, store, factors, Path(scratch) / str(number), args.workers, False)
            for task, result in results.items():
                s = result.summary
                if not result.available:
                    print(f"{name:36s} {task:4s} {s['status']}")
                    continue
                print(f"{name:36s} {task:4s} {s['mean_max_topic']:6.2f} {s['mean_relative_entropy']:6.2f} "
                      f"{s['nmi_genre']:6.3f} {s['nmi_shuffled_p95']:13.3f}")


if __name__ == "__main__":
    main()
