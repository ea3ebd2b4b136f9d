"""The benchmark suite (`make bench`): every measurement beside its baseline, in one run, separate from the tests.

    .venv/bin/python benchmarks/suite.py [--only prepare,features,store,train,memory,transfer,predict,factors] [--reps 3]

Writes benchmarks/results.json (the machine, and per measurement its repetitions, their median, the baseline
measured in the same run and the ratio) and renders its table into docs/benchmarks.md between the markers
SUITE_BEGIN and SUITE_END (the rest of that page is prose and is kept). 15.3 minutes on 2 quiet CPU cores
(2026-12-05); the prepare group is a third of it. With a CUDA device, training, window-feature and
predict rows also get a GPU figure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from measure import Measurement, machine

import torch  # noqa: E402
from bench_factors import kmeans_measurements, lda_measurements  # noqa: E402
from bench_memory import memory_measurements  # noqa: E402
from bench_features import decoded_clips, feature_measurements  # noqa: E402
from bench_predict import predict_measurements  # noqa: E402
from bench_prepare import prepare_measurements, write_clips  # noqa: E402
from bench_store_scale import store_measurements  # noqa: E402
from bench_transfer import transfer_measurements  # noqa: E402
from bench_train import random_collection, train_measurements  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GROUPS = ("prepare", "features", "store", "train", "memory", "transfer", "predict", "factors")
# The training row whose baseline is the step's own speed (in memory, bf16 as agf trains) and whose GPU figure is
# training on the GPU, for the loader-vs-step row.
STEP_ROW = "training bf16 autocast + channels_last: from the store vs in memory"
SUITE_BEGIN = "<!-- suite results: written by benchmarks/suite.py -->"
SUITE_END = "<!-- end of suite results -->"


def run_groups(args: argparse.Namespace, scratch: Path) -> list[Measurement]:
    """The measurements of the chosen groups, in GROUPS order, over generated data under `scratch`."""
    chosen = set(args.only.split(","))

    def folder(name: str) -> Path:
        path = scratch / name
        path.mkdir()
        return path

    steps: dict[str, Callable[[], list[Measurement]]] = {
        "prepare": lambda: prepare_measurements(write_clips(folder("prepare"), args.files), scratch, args.reps),
        "features": lambda: feature_measurements(decoded_clips(write_clips(folder("features"), 8)), 5),
        "store": lambda: store_measurements(folder("store"), args.store_tracks, args.reps),
        "train": lambda: train_measurements(*random_collection(folder("train"), args.tracks, 1300), folder("nets"),
                                            args.epochs, threads=2),
        "memory": lambda: memory_measurements(folder("memory"), 2, n_tracks=30),
        "transfer": lambda: transfer_measurements(folder("transfer"), args.reps),
        "predict": lambda: predict_measurements(write_clips(folder("predict"), args.predict_files), scratch,
                                                args.reps, n_nets=2),
        "factors": lambda: kmeans_measurements(args.frames, args.reps) + lda_measurements(args.artists, args.reps),
    }
    rows = []
    for group in GROUPS:
        if group in chosen:
            start = time.perf_counter()
            found = steps[group]()
            print(f"{group}: {time.perf_counter() - start:.0f} s", flush=True)
            print_rows(found)
            rows += found
    bound = loader_vs_step(rows)
    if bound:
        print_rows(bound)
    return rows + bound


def loader_vs_step(rows: list[Measurement]) -> list[Measurement]:
    """One row: the crops/s one loader process reads from the store beside the patches/s a training step takes
    (on the GPU too, when there is one), saying which of the two bounds training; [] without both groups."""
    crops = next((row for row in rows if row.name.startswith("store: random 1-s crops")), None)
    step = next((row for row in rows if row.name.startswith(STEP_ROW)), None)
    if crops is None or step is None:
        return []
    bounds = {"CPU": "the loader" if crops.figure < step.baseline else "the training step"}
    if step.gpu is not None:
        bounds["GPU"] = "the loader" if crops.figure < step.gpu else "the training step"
    gpu = f"; GPU step {step.gpu:,.0f} patches/s: ratio {crops.figure / step.gpu:.1f}" if step.gpu else ""
    return [Measurement("loader vs training step: store crops/s per loader process over the step's patches/s",
                        "crops/s", crops.values, "training step patches/s (bf16, in memory)", step.baseline_values,
                        "bounds training: " + ", ".join(f"{k} {v}" for k, v in bounds.items()) + gpu
                        + "; ratio > 1: one loader process keeps up with the step")]


def number(value: float | None) -> str:
    """A figure with 3 significant digits (thousands separated), or an empty cell."""
    if value is None:
        return ""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def print_rows(rows: list[Measurement]) -> None:
    """The rows as plain text."""
    for row in rows:
        baseline = (f"  vs {number(row.baseline)} ({row.baseline_name})  ratio {row.ratio:.2f}"
                    if row.baseline_values else "")
        print(f"  {row.name}: {number(row.figure)} {row.unit}{baseline}  [{row.reps} reps]"
              + (f"  GPU {number(row.gpu)}" if row.gpu is not None else ""), flush=True)


def render(results: dict) -> str:
    """The results as the Markdown block of docs/benchmarks.md: the machine line, the table and its notes."""
    info = results["machine"]
    gpu = info["gpu"] or "none"
    before = ", ".join(f"{v:.2f}" for v in info["load_average_before"])
    after = ", ".join(f"{v:.2f}" for v in info["load_average_after"])
    lines = [
        SUITE_BEGIN,
        (f"Machine: {info['cpu']}, {info['cores']} cores (bf16 instructions: "
         f"{'yes' if info['bf16_instructions'] else 'no'}), torch {info['torch']}, Python {info['python']}, "
         f"GPU: {gpu}; {info['date']}; load average before {before}, after {after}; the suite took "
         f"{results['seconds'] / 60:.1f} min (`{results['command']}`)."),
        "",
        "| # | measurement | figure | baseline | ratio | reps | GPU |",
        "|---|---|---|---|---|---|---|",
    ]
    notes = []
    for i, row in enumerate(results["measurements"], 1):
        baseline = f"{number(row['baseline'])} ({row['baseline_name']})" if row["baseline"] is not None else "-"
        ratio = f"{row['ratio']:.2f}" if row["ratio"] is not None else "-"
        gpu_cell = (f"{number(row['gpu'])} {row['unit']}" if row["gpu"] is not None
                    else "not measured" if info["gpu"] is None else "-")
        lines.append(f"| {i} | {row['name']} | {number(row['figure'])} {row['unit']} | {baseline} | {ratio} | "
                     f"{row['reps']} | {gpu_cell} |")
        if row["note"]:
            notes.append(f"{i}. {row['note']}")
    return "\n".join([*lines, "", "Notes by row:", "", *notes, SUITE_END]) + "\n"


def write_doc(path: Path, block: str) -> None:
    """Replace the suite block of the page (or append one)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    if SUITE_BEGIN in text and SUITE_END in text:
        head, rest = text.split(SUITE_BEGIN, 1)
        text = head + block.rstrip("\n") + rest.split(SUITE_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


def main(argv: list[str] | None = None) -> None:
    """Run the suite, write results.json, render docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(GROUPS), help=f"comma-separated groups of {', '.join(GROUPS)}")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each measurement (median reported)")
    parser.add_argument("--files", type=int, default=240, help="30-s MP3s for the prepare rows")
    parser.add_argument("--predict-files", type=int, default=40, help="30-s MP3s for the predict rows")
    parser.add_argument("--tracks", type=int, default=500, help="stored tracks for the training rows")
    parser.add_argument("--store-tracks", type=int, default=20_000,
                        help="tracks of the stores the crop-read rows write (the first layout: a file each)")
    parser.add_argument("--epochs", type=int, default=6, help="training epochs (the first is warm-up)")
    parser.add_argument("--frames", type=int, default=100_000, help="MFCC frames for the K-means rows")
    parser.add_argument("--artists", type=int, default=300, help="artist bags for the LDA row")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results.json")
    parser.add_argument("--doc", default=str(ROOT / "docs" / "benchmarks.md"),
                        help="page to render the table into ('' for none)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    info = machine()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_groups(args, Path(tmp))
    info["load_average_after"] = list(os.getloadavg())
    command = " ".join(["benchmarks/suite.py", *(sys.argv[1:] if argv is None else argv)])
    results = {"machine": info, "seconds": time.perf_counter() - start, "command": command,
               "measurements": [row.as_dict() for row in rows]}
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out} ({results['seconds'] / 60:.1f} min)")
    if args.doc:
        write_doc(Path(args.doc), render(results))
        print(f"rendered {args.doc}")


if __name__ == "__main__":
    main()
