"""Benchmark: end-to-end `agf predict` throughput next to decode-only and model-only throughput, in one run.

    .venv/bin/python benchmarks/bench_predict.py [--files 160] [--seconds 30] [--nets 2] [--device cpu]

Writes N music-like 30-s 44.1 kHz stereo MP3s (FMA's format) and a bundle of the paper's architecture with
random weights (speed does not depend on what the weights learned; --nets genre STNs feed the MLP), then
measures, as clips per second:
  decode-only   decode + log-mel of every clip, in the decoding processes `agf predict` uses
  model-only    the nets + MLP over every window of the already-decoded clips, on the threads `agf predict` uses
  agf predict   the command itself (`agf predict BUNDLE DIR -o out.csv`): bundle loading, process start-up,
                decoding, nets, CSV
Target (issue 13): agf predict >= 80 % of the lower of decode-only and model-only (the two overlap instead
of adding up).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import torch  # noqa: E402
from bench_prepare import write_clips  # noqa: E402

from agf.cli import main as agf_main  # noqa: E402
from agf.parallel import available_cores, map_ordered  # noqa: E402
from agf.predict import GenreClassifier, save_bundle, untrained_bundle  # noqa: E402
from agf.predict.classifier import DecodeJob, decode_file, default_decode_workers  # noqa: E402

GENRES = tuple(f"genre {i}" for i in range(16))  # FMA-medium's 16 top-level genres


def clips_per_second(n: int, seconds: float) -> str:
    return f"{n / seconds:7.2f} clips/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=160)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--nets", type=int, default=2, help="source nets in the bundle (default 2)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    workers = default_decode_workers()
    threads = max(1, available_cores() - workers)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        audio = root / "audio"
        audio.mkdir()
        paths = write_clips(audio, args.files, args.seconds)
        bundle = save_bundle(untrained_bundle(GENRES, n_nets=args.nets), root / "model")
        classifier = GenreClassifier.load(bundle, device=args.device)
        print(f"{args.files} clips of {args.seconds:g} s, {args.nets} nets, device {args.device}, "
              f"{workers} decoding process(es), {threads} torch thread(s)")

        started = time.perf_counter()
        decoded = list(map_ordered(decode_file, (DecodeJob(p, classifier.bundle.features, None) for p in paths),
                                   workers))
        decode_wall = time.perf_counter() - started

        torch.set_num_threads(threads)
        list(classifier._score(decoded[:4]))  # warm-up (first-call allocations)
        started = time.perf_counter()
        predictions = list(classifier._score(decoded))
        model_wall = time.perf_counter() - started
        assert all(p.ok for p in predictions)
        windows = sum(p.n_windows for p in predictions)
        del decoded

        started = time.perf_counter()
        status = agf_main(["predict", str(bundle), str(audio), "-o", str(root / "out.csv"), "-q", "--device",
                           args.device])
        predict_wall = time.perf_counter() - started
        assert status == 0

    decode_rate, model_rate, predict_rate = (args.files / w for w in (decode_wall, model_wall, predict_wall))
    print(f"decode-only  {clips_per_second(args.files, decode_wall)}  ({decode_rate * args.seconds:6.0f}x real time)")
    print(f"model-only   {clips_per_second(args.files, model_wall)}  ({windows / model_wall:6.0f} windows/s)")
    print(f"agf predict  {clips_per_second(args.files, predict_wall)}  ({predict_rate * args.seconds:6.0f}x real time)")
    ratio = predict_rate / min(decode_rate, model_rate)
    print(f"agf predict / min(decode-only, model-only) = {ratio:.2f}  (target >= 0.80)")
    sys.exit(0 if ratio >= 0.8 else 1)


if __name__ == "__main__":
    main()
