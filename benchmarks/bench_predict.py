"""End-to-end `agf predict` throughput next to decode-only and model-only throughput of the same clips.

    .venv/bin/python benchmarks/bench_predict.py [--files 40] [--reps 3] [--nets 2]

Writes N music-like 30-s 44.1 kHz stereo MP3s (FMA's format) and a bundle of the paper's architecture with
random weights (speed does not depend on what the weights learned; --nets genre STNs feed the MLP), then
measures, as clips per second:
  decode-only   decode + log-mel of every clip, in the decoding processes `agf predict` uses
  model-only    the nets + MLP over every window of the already-decoded clips, on the threads `agf predict` uses
  agf predict   the command itself (`agf predict BUNDLE FILES -o out.csv`)
Process start-up and bundle loading are split from throughput by timing runs of N/5 and N files
(measure.marginal_rate). Target (issue 13): agf predict >= 80 % of the lower of decode-only and model-only (the
two overlap instead of adding up). With a CUDA device, model-only windows/s and agf predict's clips/s there fill
the GPU column.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from measure import Measurement, marginal_rate, wall

import torch  # noqa: E402
from bench_prepare import write_clips  # noqa: E402

from agf.cli import main as agf_main  # noqa: E402
from agf.parallel import available_cores, map_ordered  # noqa: E402
from agf.predict import GenreClassifier, save_bundle, untrained_bundle  # noqa: E402
from agf.predict.classifier import Decoded, DecodeJob, decode_file, default_decode_workers  # noqa: E402

GENRES = tuple(f"genre {i}" for i in range(16))  # FMA-medium's 16 top-level genres


def make_bundle(folder: Path, n_nets: int) -> Path:
    """A bundle of the paper's architecture with random weights, saved under folder."""
    return save_bundle(untrained_bundle(GENRES, n_nets=n_nets), folder)


def decode_run(classifier: GenreClassifier, paths: list[str], workers: int) -> float:
    """Seconds to decode the files to log-mels in `workers` processes, as predict_many does."""
    jobs = (DecodeJob(p, classifier.bundle.features, None) for p in paths)
    return wall(lambda: list(map_ordered(decode_file, jobs, workers)))


def model_rate(classifier: GenreClassifier, decoded: list[Decoded]) -> tuple[float, float]:
    """(clips/s, windows/s) of the nets and MLP over decoded clips, after a warm-up on the first few."""
    list(classifier._score(decoded[:4]))  # warm-up: first-call allocations, oneDNN kernels
    predictions = []
    seconds = wall(lambda: predictions.extend(classifier._score(decoded)))
    if not all(p.ok for p in predictions):
        raise RuntimeError("model-only scoring failed")
    return len(decoded) / seconds, sum(p.n_windows for p in predictions) / seconds


def predict_run(bundle: Path, paths: list[str], out: Path, device: str) -> float:
    """Seconds of the `agf predict` command over the files."""
    def command() -> None:
        if agf_main(["predict", str(bundle), *paths, "-o", str(out), "-q", "--device", device]) != 0:
            raise RuntimeError("agf predict failed")
    return wall(command)


def predict_measurements(paths: list[str], root: Path, reps: int, n_nets: int) -> list[Measurement]:
    """agf predict vs min(decode-only, model-only), those two, and predict's start-up, over `reps` repetitions."""
    workers = default_decode_workers()
    threads = max(1, available_cores() - workers)
    large, small = len(paths), max(3, len(paths) // 5)
    bundle = make_bundle(root / "model", n_nets)
    classifier = GenreClassifier.load(bundle, device="cpu")
    decoded = list(map_ordered(decode_file, (DecodeJob(p, classifier.bundle.features, None) for p in paths), 0))
    decode_rates, model_rates, window_rates, predict_rates, startups = [], [], [], [], []
    for _ in range(reps):
        decode_rates.append(marginal_rate(lambda n: decode_run(classifier, paths[:n], workers), small, large)[0])
        torch.set_num_threads(threads)
        clips, windows = model_rate(classifier, decoded)
        model_rates.append(clips)
        window_rates.append(windows)
        rate, fixed = marginal_rate(lambda n: predict_run(bundle, paths[:n], root / "out.csv", "cpu"), small, large)
        predict_rates.append(rate)
        startups.append(fixed)
    gpu_windows = gpu_predict = None
    if torch.cuda.is_available():
        gpu_windows = model_rate(GenreClassifier.load(bundle, device="cuda"), decoded)[1]
        gpu_predict = marginal_rate(lambda n: predict_run(bundle, paths[:n], root / "out.csv", "cuda"), small,
                                    large)[0]
    setting = f"{workers} decoding process(es), {threads} torch thread(s), {n_nets} nets"
    return [
        Measurement("predict end-to-end vs min(decode-only, model-only)", "files/s", predict_rates,
                    "min(decode-only, model-only)", [min(d, m) for d, m in zip(decode_rates, model_rates)],
                    f"{setting}; target ratio >= 0.8", gpu_predict),
        Measurement("predict decode-only: decode + log-mel", "files/s", decode_rates, note=setting),
        Measurement("predict model-only: nets + MLP over every window", "windows/s", window_rates,
                    note=f"{setting}; {statistics.median(model_rates):.2f} files/s", gpu=gpu_windows),
        Measurement("predict start-up: bundle loading, decoder spawn, first batch", "s", startups),
    ]


def main() -> None:
    """Print the predict rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--nets", type=int, default=2, help="source nets in the bundle (default 2)")
    args = parser.parse_args()
    from suite import print_rows

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "audio").mkdir()
        print_rows(predict_measurements(write_clips(root / "audio", args.files), root, args.reps, args.nets))


if __name__ == "__main__":
    main()
