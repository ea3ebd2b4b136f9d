"""Our log-mel (agf.features, torch STFT + matmul) against librosa.feature.melspectrogram + power_to_db on the
same decoded audio, one thread, as a prepare worker runs it.

    .venv/bin/python benchmarks/bench_features.py [--clips 8] [--reps 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from measure import Measurement

import librosa  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_prepare import write_clips  # noqa: E402

from agf.audio import decode  # noqa: E402
from agf.config import FeatureConfig  # noqa: E402
from agf.features import extractor_for  # noqa: E402


def librosa_log_mel(samples: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """librosa's log-mel with the feature settings (what agf.features reproduces)."""
    power = librosa.feature.melspectrogram(y=samples, sr=config.sample_rate, n_fft=config.n_fft,
                                           hop_length=config.hop_length, n_mels=config.n_mels, fmin=config.fmin,
                                           fmax=config.fmax, center=True, pad_mode="constant", power=2.0)
    return librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=config.top_db)


def real_time(func: Callable[[np.ndarray], object], clips: list[np.ndarray], sample_rate: int) -> float:
    """Audio-seconds per wall-second of func over the clips."""
    start = time.perf_counter()
    for clip in clips:
        func(clip)
    return sum(c.size for c in clips) / sample_rate / (time.perf_counter() - start)


def feature_measurements(clips: list[np.ndarray], reps: int) -> list[Measurement]:
    """Log-mel x real time of agf.features and of librosa, alternating, after one warm-up call of each."""
    torch.set_num_threads(1)
    config = FeatureConfig()
    ours, reference = extractor_for(config).log_mel, lambda clip: librosa_log_mel(clip, config)
    ours(clips[0]), reference(clips[0])  # warm-up: plans, filter banks, lazy imports
    values, baseline = [], []
    for _ in range(reps):
        values.append(real_time(ours, clips, config.sample_rate))
        baseline.append(real_time(reference, clips, config.sample_rate))
    return [Measurement("log-mel: agf.features vs librosa, 1 thread", "x real time", values,
                        "librosa melspectrogram + power_to_db", baseline)]


def decoded_clips(paths: list[str]) -> list[np.ndarray]:
    """The files decoded at the feature sample rate."""
    return [decode(p, FeatureConfig().sample_rate)[0] for p in paths]


def main() -> None:
    """Print the log-mel row."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    from suite import print_rows

    with tempfile.TemporaryDirectory() as tmp:
        print_rows(feature_measurements(decoded_clips(write_clips(Path(tmp), args.clips)), args.reps))


if __name__ == "__main__":
    main()
