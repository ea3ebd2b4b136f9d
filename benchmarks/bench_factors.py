"""Speed of the factors stage (issue 4): dictionary fit, word assignment, LDA, Essentia extraction.

Targets on 2 cores: a 2,048-word dictionary over 1,000,000 frames of 25 MFCCs fits in under a
minute; LDA (40 topics) over 5,000 artists' 2,048-word bags in under a minute; Essentia extraction
runs in parallel across workers.

    .venv/bin/python benchmarks/bench_factors.py                  # full sizes
    .venv/bin/python benchmarks/bench_factors.py --quick          # a smoke run at small sizes
    .venv/bin/python benchmarks/bench_factors.py --only lda --out lda.json

Data is generated (seeded): frames from a 256-component Gaussian mixture, artist bags from a
synthetic topic model with 1-9 tracks of 1,292 frames per artist, 30-s clips of tones and noise.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from agf.config import FactorConfig
from agf.factors.dictionary import assign_words, fit_dictionary
from agf.factors.essentia_features import essentia_unavailable_reason, extract_many
from agf.factors.lda import fit_artist_topics

FRAMES_PER_TRACK = 1292


def mixture_frames(n_frames: int, dims: int, seed: int = 0) -> np.ndarray:
    """(n_frames, dims) float32 frames from a Gaussian mixture of 256 components."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0, 4, (256, dims))
    return (means[rng.integers(0, 256, n_frames)] + rng.normal(size=(n_frames, dims))).astype(np.float32)


def synthetic_bags(n_artists: int, n_words: int, n_topics: int, seed: int = 0) -> np.ndarray:
    """Artist bags: word counts of 1-9 tracks of FRAMES_PER_TRACK words, divided by the track count."""
    rng = np.random.default_rng(seed)
    topic_words = rng.dirichlet(np.full(n_words, 0.05), n_topics)
    mixtures = rng.dirichlet(np.full(n_topics, 0.1), n_artists)
    tracks = rng.integers(1, 10, n_artists)
    return np.stack([rng.multinomial(FRAMES_PER_TRACK * n, m @ topic_words) / n for m, n in zip(mixtures, tracks)])


class Timer:
    """Wall-clock and CPU seconds (all threads of this process) of a block, with the load average."""

    def __enter__(self) -> Timer:
        self.load = os.getloadavg()[0]
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = round(time.perf_counter() - self.wall, 1)
        self.cpu = round(time.process_time() - self.cpu, 1)

    def report(self, prefix: str) -> dict:
        """The times as {prefix_wall_s, prefix_cpu_s, load_average}."""
        return {f"{prefix}_wall_s": self.wall, f"{prefix}_cpu_s": self.cpu, "load_average": round(self.load, 1)}


def bench_dictionary(n_frames: int, n_words: int, dims: int, batch_size: int) -> dict:
    """Seconds to fit the dictionary, and word assignment throughput."""
    frames = mixture_frames(n_frames, dims)
    with Timer() as fit_timer:
        dictionary = fit_dictionary(frames, n_words, batch_size, seed=0)
    with Timer() as assign_timer:
        assign_words(frames[:200_000], dictionary.centres)
    return {"frames": n_frames, "dims": dims, "words": dictionary.n_words, **fit_timer.report("fit"),
            "assign_frames_per_s": round(min(n_frames, 200_000) / assign_timer.wall)}


def bench_lda(n_artists: int, n_words: int, n_topics: int, max_iter: int) -> dict:
    """Seconds to fit LDA on synthetic artist bags (and transform them)."""
    bags = synthetic_bags(n_artists, n_words, n_topics)
    with Timer() as timer:
        model = fit_artist_topics(bags, n_topics, max_iter, seed=0)
    return {"artists": n_artists, "words": n_words, "topics": n_topics, "max_iter": max_iter,
            **timer.report("fit"), "perplexity": round(model.perplexity, 1)}


def bench_essentia(n_clips: int, seconds: float, worker_counts: list[int]) -> dict:
    """Tracks per second of MusicExtractor over generated clips, per number of workers."""
    reason = essentia_unavailable_reason()
    if reason:
        return {"unavailable": reason}
    rng = np.random.default_rng(0)
    rates = {}
    with tempfile.TemporaryDirectory() as folder:
        jobs = []
        for i in range(n_clips):
            time_axis = np.arange(int(seconds * 22050)) / 22050
            tone = np.sin(2 * np.pi * rng.uniform(100, 800) * time_axis)
            signal = 0.3 * tone + 0.05 * rng.normal(size=time_axis.size)
            path = Path(folder) / f"clip{i}.wav"
            sf.write(path, signal.astype(np.float32), 22050)
            jobs.append((f"clip{i}", str(path)))
        for workers in worker_counts:
            start = time.perf_counter()
            failed = sum(o.error is not None for o in extract_many(jobs, workers, timeout_s=300, progress=False))
            rates[workers] = round(n_clips / (time.perf_counter() - start), 2)
            if failed:
                rates[f"{workers}_failed"] = failed
    return {"clips": n_clips, "clip_s": seconds, "tracks_per_s_by_workers": rates}


def main() -> None:
    """Run the chosen benchmarks and print (and optionally save) the measurements."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--only", default="dictionary,lda,essentia", help="comma-separated benchmarks")
    parser.add_argument("--workers", type=int, default=2, help="Essentia workers to compare with 1")
    parser.add_argument("--lda-iter", type=int, default=FactorConfig().lda_max_iter, help="LDA iterations")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    defaults = FactorConfig()
    chosen = set(args.only.split(","))
    results = {}
    if "dictionary" in chosen:
        results["dictionary"] = bench_dictionary(50_000 if args.quick else 1_000_000, 256 if args.quick else
                                                 defaults.n_words, 25, defaults.kmeans_batch_size)
        print("dictionary", results["dictionary"], flush=True)
    if "lda" in chosen:
        results["lda"] = bench_lda(300 if args.quick else 5_000, 256 if args.quick else defaults.n_words,
                                   defaults.n_topics, args.lda_iter)
        print("lda", results["lda"], flush=True)
    if "essentia" in chosen:
        results["essentia"] = bench_essentia(4 if args.quick else 12, 5.0 if args.quick else 30.0,
                                             sorted({1, args.workers}))
        print("essentia", results["essentia"], flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
