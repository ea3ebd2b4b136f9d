"""Speed of the factors stage (issue 4) at the paper's settings (2,048 words, 40 topics): the K-means dictionary,
word assignment and LDA, each beside a baseline, with what that means for FMA medium (25,000 tracks); Essentia
extraction on request.

    .venv/bin/python benchmarks/bench_factors.py [--frames 100000] [--artists 300] [--reps 3] [--essentia]

Data is generated (seeded): frames from a 256-component Gaussian mixture, artist bags from a synthetic topic
model with 1-9 tracks of 1,292 frames per artist, 30-s clips of tones and noise.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from measure import Measurement, wall

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from sklearn.cluster import MiniBatchKMeans  # noqa: E402
from sklearn.decomposition import LatentDirichletAllocation  # noqa: E402

from agf.config import FactorConfig  # noqa: E402
from agf.factors.dictionary import assign_words, fit_dictionary  # noqa: E402
from agf.factors.essentia_features import essentia_unavailable_reason, extract_many  # noqa: E402
from agf.factors.lda import fit_artist_topics  # noqa: E402

FRAMES_PER_TRACK = 1292
FMA_MEDIUM_TRACKS = 25_000
MFCC_DIMS = 25
PAPER = FactorConfig()  # 2,048 words, 40 topics, batches of 4,096, 10 LDA iterations


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


def sklearn_kmeans(frames: np.ndarray) -> MiniBatchKMeans:
    """scikit-learn's MiniBatchKMeans as fit_dictionary calls it, without the wrapper's distinct-row count."""
    return MiniBatchKMeans(n_clusters=PAPER.n_words, batch_size=PAPER.kmeans_batch_size, n_init=1, random_state=0,
                           compute_labels=False).fit(frames)


def kmeans_measurements(n_frames: int, reps: int) -> list[Measurement]:
    """Dictionary fit (ours vs the bare scikit-learn call) and word assignment (scikit-learn's
    pairwise_distances_argmin, which assign_words is: no baseline), with assignment scaled to FMA medium."""
    frames = mixture_frames(n_frames, MFCC_DIMS)
    fits, bare, assigns, steps = [], [], [], []
    for _ in range(reps):
        start = time.perf_counter()
        centres = fit_dictionary(frames, PAPER.n_words, PAPER.kmeans_batch_size, seed=0).centres
        fits.append(n_frames / (time.perf_counter() - start))
        start = time.perf_counter()
        steps.append(sklearn_kmeans(frames).n_steps_)
        bare.append(n_frames / (time.perf_counter() - start))
        assigns.append(n_frames / wall(lambda: assign_words(frames, centres)))
    full = FMA_MEDIUM_TRACKS * FRAMES_PER_TRACK
    assign_rate = statistics.median(assigns)
    return [
        Measurement(f"K-means dictionary fit, {PAPER.n_words} words: fit_dictionary vs bare MiniBatchKMeans",
                    "frames/s", fits, "sklearn MiniBatchKMeans.fit", bare,
                    f"measured on {n_frames:,} frames of {MFCC_DIMS} MFCCs, {steps[0]} mini-batch steps to the early "
                    "stop; the step count grows with the data, so no full-scale time is extrapolated"),
        Measurement(f"word assignment, {PAPER.n_words} words (assign_words)", "frames/s", assigns,
                    note=f"measured on {n_frames:,} frames; FMA medium's {full / 1e6:.1f} M frames: ~{full / assign_rate:.0f} s"
                    f" per task, scaled x{full / n_frames:.0f} linear"),
    ]


def sklearn_default_lda(bags: np.ndarray) -> None:
    """LDA with scikit-learn's default E-step cap (max_doc_update_iter=100), otherwise as fit_artist_topics."""
    LatentDirichletAllocation(n_components=PAPER.n_topics, learning_method="batch", max_iter=PAPER.lda_max_iter,
                              random_state=0, n_jobs=1).fit(bags).transform(bags)


def lda_measurements(n_artists: int, reps: int) -> list[Measurement]:
    """LDA over artist bags: fit_artist_topics (E-step capped at 20) vs scikit-learn's default cap of 100."""
    bags = synthetic_bags(n_artists, PAPER.n_words, PAPER.n_topics)
    ours = [n_artists / wall(lambda: fit_artist_topics(bags, PAPER.n_topics, PAPER.lda_max_iter, 0))
            for _ in range(reps)]
    default = [n_artists / wall(lambda: sklearn_default_lda(bags)) for _ in range(reps)]
    rate = statistics.median(ours)
    return [Measurement(f"LDA, {PAPER.n_topics} topics, {PAPER.lda_max_iter} iterations: fit_artist_topics vs "
                        "sklearn defaults", "artist bags/s", ours, "sklearn LDA, max_doc_update_iter=100", default,
                        f"measured on {n_artists:,} bags of {PAPER.n_words} words; FMA medium's at most "
                        f"{FMA_MEDIUM_TRACKS:,} artist bags: ~{FMA_MEDIUM_TRACKS / rate / 60:.1f} min per task, "
                        f"scaled x{FMA_MEDIUM_TRACKS / n_artists:.0f} linear")]


def essentia_rates(n_clips: int, seconds: float, worker_counts: list[int]) -> dict:
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
    """Print the factor rows (and Essentia's rates with --essentia)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=100_000, help="frames the dictionary is fitted on")
    parser.add_argument("--artists", type=int, default=300, help="artist bags LDA is fitted on")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--essentia", action="store_true", help="also Essentia extraction, 1 and 2 workers")
    args = parser.parse_args()
    from suite import print_rows

    print_rows(kmeans_measurements(args.frames, args.reps) + lda_measurements(args.artists, args.reps))
    if args.essentia:
        print("essentia", essentia_rates(12, 30.0, [1, 2]))


if __name__ == "__main__":
    main()
