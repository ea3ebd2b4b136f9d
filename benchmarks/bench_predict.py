"""End-to-end `agf predict` throughput next to decode-only and model-only throughput of the same clips.

    .venv/bin/python benchmarks/bench_predict.py [--files 40] [--reps 3] [--nets 2] [--long-minutes 10]

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

Memory of a long file (issue 25): one --long-minutes 44.1 kHz stereo MP3, predicted in a fresh process per run,
one torch thread, malloc keeping freed memory as `agf` does: peak RSS of the streaming path (`agf predict BUNDLE
FILE`, decoding a block at a time) beside the whole-file path prediction took before (the segment decoded whole,
its whole log-mel, then the same nets), and the system share of the streaming run's CPU time (target < 10 %).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from measure import Measurement, marginal_rate, wall

import av  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench_prepare import SR, music_clip, write_clips  # noqa: E402

from agf.audio import Segment, decode_segment  # noqa: E402
from agf.cli import main as agf_main  # noqa: E402
from agf.features import extractor_for  # noqa: E402
from agf.parallel import available_cores, keep_freed_memory, map_ordered  # noqa: E402
from agf.predict import GenreClassifier, save_bundle, untrained_bundle  # noqa: E402
from agf.predict.classifier import Decoded, DecodeJob, decode_file, default_decode_workers  # noqa: E402

GENRES = tuple(f"genre {i}" for i in range(16))  # FMA-medium's 16 top-level genres
HERE = Path(__file__).resolve().parent
# A child process for the long-file rows: `python -c CHILD HERE MODE BUNDLE FILE` prints its report as JSON.
CHILD = """import sys
sys.path.insert(0, sys.argv[1])
import bench_predict
bench_predict.long_file_child(*sys.argv[2:])
"""


def make_bundle(folder: Path, n_nets: int) -> Path:
    """A bundle of the paper's architecture with random weights, saved under folder."""
    return save_bundle(untrained_bundle(GENRES, n_nets=n_nets), folder)


def decode_run(classifier: GenreClassifier, paths: list[str], workers: int) -> float:
    """Seconds to decode the files to log-mels in `workers` processes, as predict_many does."""
    jobs = (DecodeJob(p, classifier.bundle.features, None) for p in paths)  # 30-s clips: never spooled
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


def predict_measurements(paths: list[str], root: Path, reps: int, n_nets: int,
                         long_minutes: int = 10) -> list[Measurement]:
    """agf predict vs min(decode-only, model-only), those two, and predict's start-up, over `reps` repetitions;
    then the long-file rows (long_file_measurements)."""
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
        *long_file_measurements(root, long_minutes, reps, n_nets),
    ]


def write_long_mp3(path: Path, minutes: int) -> Path:
    """A `minutes`-long 44.1 kHz stereo MP3 of music-like audio (a 30-s clip, varied per half minute), encoded half
    a minute at a time so that writing it holds no more than that."""
    with av.open(str(path), "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=SR, layout="stereo")
        for part in range(2 * minutes):
            gain = 0.5 + 0.05 * ((part * 7) % 10)
            planar = np.clip(music_clip(30.0, part % 8) * gain, -1.0, 1.0).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar), format="fltp", layout="stereo")
            frame.sample_rate = SR
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def long_file_child(mode: str, bundle: str, path: str) -> None:
    """Predict one file in this fresh process ('streaming': `agf predict`; 'whole-file': the segment decoded
    whole, its whole log-mel, then the nets) and print peak RSS (MB), user and system CPU seconds as JSON."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        if mode == "streaming":
            if agf_main(["predict", bundle, path, "-o", str(Path(tmp) / "out.csv"), "-q", "--device", "cpu"]) != 0:
                raise RuntimeError("agf predict failed")
        else:
            keep_freed_memory()  # as agf's command does
            classifier = GenreClassifier.load(bundle, device="cpu")
            features = classifier.bundle.features
            samples, _ = decode_segment(path, features.sample_rate, Segment.of(features))
            mel = extractor_for(features).log_mel(samples).astype(np.float16)
            del samples
            if not next(classifier._score([Decoded(path, mel)])).ok:
                raise RuntimeError("whole-file prediction failed")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"peak_rss_mb": usage.ru_maxrss / 1024, "user": usage.ru_utime, "system": usage.ru_stime}))


def run_long_file_child(mode: str, bundle: Path, path: Path) -> dict:
    """The report of one long-file child process (one BLAS/OpenMP thread)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, "-c", CHILD, str(HERE), mode, str(bundle), str(path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def long_file_measurements(root: Path, minutes: int, reps: int, n_nets: int) -> list[Measurement]:
    """Peak RSS of predicting one long MP3, streaming vs the whole-file path; system share of the streaming CPU."""
    bundle = make_bundle(root / "model-long", n_nets)
    path = write_long_mp3(root / "long.mp3", minutes)
    streaming, whole = [], []
    for _ in range(reps):
        streaming.append(run_long_file_child("streaming", bundle, path))
        whole.append(run_long_file_child("whole-file", bundle, path))
    setting = f"one {minutes}-min 44.1 kHz stereo MP3, 1 torch thread, {n_nets} nets"
    return [
        Measurement(f"predict peak RSS, a {minutes}-min file: streaming vs whole-file decode", "MB",
                    [r["peak_rss_mb"] for r in streaming], "whole-file decode + log-mel",
                    [r["peak_rss_mb"] for r in whole], setting),
        Measurement(f"predict system share of CPU time, a {minutes}-min file (streaming)", "%",
                    [100 * r["system"] / (r["user"] + r["system"]) for r in streaming],
                    "whole-file decode + log-mel", [100 * r["system"] / (r["user"] + r["system"]) for r in whole],
                    f"{setting}; target < 10 %"),
    ]


def main() -> None:
    """Print the predict rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--nets", type=int, default=2, help="source nets in the bundle (default 2)")
    parser.add_argument("--long-minutes", type=int, default=10, help="the long file of the memory rows (default 10)")
    parser.add_argument("--only-long", action="store_true", help="the long-file rows only")
    args = parser.parse_args()
    from suite import print_rows

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "audio").mkdir()
        if args.only_long:
            print_rows(long_file_measurements(root, args.long_minutes, args.reps, args.nets))
        else:
            print_rows(predict_measurements(write_clips(root / "audio", args.files), root, args.reps, args.nets,
                                            args.long_minutes))


if __name__ == "__main__":
    main()
