"""Benchmark: `agf prepare` throughput against decode-only throughput of the same files, in one run.

    .venv/bin/python benchmarks/bench_prepare.py [--files 96] [--seconds 30]

Writes N music-like 30-s 44.1 kHz stereo MP3s (FMA's usual format), then measures, each as
audio-seconds per wall-second ("x real time"):
  decode-only, 1 worker     agf.audio.decode on every file
  prepare, 1 worker         decode + log-mel + MFCC + atomic writes + entries + index
  prepare, 2 workers        the same over two processes
Targets (issue 2): prepare >= 85 % of decode-only per worker; 2 workers >= 1.7x one worker.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from agf.audio import decode, write_audio  # noqa: E402
from agf.config import FeatureConfig  # noqa: E402
from agf.parallel import map_unordered  # noqa: E402
from agf.prepare import prepare_features  # noqa: E402
from agf.store import FeatureStore  # noqa: E402

SR = 44100


def music_clip(seconds: float, seed: int) -> np.ndarray:
    """A stereo clip of decaying harmonic notes over noise bursts: MP3-encodes like music."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    left = np.zeros_like(t)
    note_length = 0.25
    for start in np.arange(0.0, seconds, note_length):
        f0 = 110.0 * 2 ** (rng.integers(0, 24) / 12)
        seg = (t >= start) & (t < start + note_length)
        local = t[seg] - start
        env = np.exp(-local * 8.0)
        left[seg] += sum(np.sin(2 * np.pi * f0 * k * local) / k for k in range(1, 6)) * env * 0.2
    left += rng.normal(0, 0.02, t.size) * (np.sin(2 * np.pi * 2 * t) > 0.6)
    right = np.roll(left, 200) * 0.9
    return np.stack([left, right]).astype(np.float32)


def write_clips(folder: Path, n: int, seconds: float) -> list[str]:
    """n MP3s in folder (000000.mp3, ...): copies of 8 encodes, distinct files with the same decode cost."""
    base = [folder / f"src{i}.mp3" for i in range(8)]
    for i, path in enumerate(base):
        write_audio(path, music_clip(seconds, i), SR, bitrate=320000)
    paths = []
    for i in range(n):
        target = folder / f"{i:06d}.mp3"
        target.write_bytes(base[i % len(base)].read_bytes())
        paths.append(str(target))
    for path in base:
        path.unlink()
    return paths


def _decode_seconds(path: str) -> float:
    samples, _ = decode(path, 22050)
    return samples.size / 22050


def rate(audio_seconds: float, wall: float) -> float:
    return audio_seconds / wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=96)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = write_clips(root, args.files, args.seconds)
        tracks = pd.DataFrame({"track_id": [f"{i:06d}" for i in range(args.files)], "audio_path": paths})
        total_audio = args.files * args.seconds
        config = FeatureConfig()

        start = time.perf_counter()
        decoded = sum(map_unordered(_decode_seconds, paths, workers=1, progress=False))
        decode_1 = rate(total_audio, time.perf_counter() - start)
        assert abs(decoded - total_audio) < args.files * 0.1

        results = {}
        for workers in (1, 2):
            store = FeatureStore.open(root / f"work{workers}", config)
            start = time.perf_counter()
            summary = prepare_features(tracks, store, workers=workers, progress=False)
            results[workers] = rate(total_audio, time.perf_counter() - start)
            assert summary.status["ok"] == args.files, summary.format()

        start = time.perf_counter()
        decoded = sum(map_unordered(_decode_seconds, paths, workers=2, progress=False))
        decode_2 = rate(total_audio, time.perf_counter() - start)

    print(f"files: {args.files} x {args.seconds:.0f} s, 44.1 kHz stereo MP3 320 kbit/s; cores: {os.cpu_count()}")
    print(f"{'run':28s} {'x real time':>12s}")
    print(f"{'decode-only, 1 worker':28s} {decode_1:12.0f}")
    print(f"{'prepare, 1 worker':28s} {results[1]:12.0f}")
    print(f"{'decode-only, 2 workers':28s} {decode_2:12.0f}")
    print(f"{'prepare, 2 workers':28s} {results[2]:12.0f}")
    print(f"prepare / decode-only, 1 worker: {results[1] / decode_1:.2f}  (target >= 0.85)")
    print(f"prepare / decode-only, 2 workers: {results[2] / decode_2:.2f}")
    print(f"prepare 2 workers / 1 worker:    {results[2] / results[1]:.2f}  (target >= 1.70)")


if __name__ == "__main__":
    main()
