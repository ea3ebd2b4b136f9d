"""Why can the transfer MLP lose to a source net's own genre head? Fit the MLP variants on finished work directories.

Reads, never writes, the window-feature caches (transfer/windows/<net>/hop<hop>/) and track tables of finished
work directories: the 3-seed demo grid and the hard-corpus noise study (40 % structured label noise). For each
source net (a genre STN or an MTN with a genre head) and each variant of the MLP, every aggregation is fitted
with agf.transfer.mlp.fit_candidates (training tracks only, early-stopped on validation) and scored like the
evaluation: temperature fitted on the validation tracks' given labels, then log loss and accuracy on
validation and test. The source head is scored the same way (its window probabilities averaged, or their logs).

    PYTHONPATH=src OMP_NUM_THREADS=1 python scripts/measure_transfer.py --out /tmp/tr/measure.csv

Prints one row per (case, variant, aggregation), then the means per corpus and variant, and how often each
variant's validation choice (agf.transfer.mlp.choose_candidate) matches or beats the head on validation.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from agf.calibration import apply_temperature, fit_temperature
from agf.config import TransferConfig, load_config
from agf.datasets.table import genre_list
from agf.metrics import accuracy, aggregate_window_probs, log_loss
from agf.transfer.mlp import Candidate, Rows, choose_candidate, fit_candidates, shared_windows, window_rows
from agf.transfer.windows import read_window_cache

ALL = ("probs", "log_probs", "pooled")


@dataclass(frozen=True)
class Case:
    """One source net of a finished work directory and the run seed its transfer used."""

    corpus: str
    workdir: Path
    net: str
    seed: int


# The source nets with a genre head: demo grid (`agf run demo --seeds 0,1,2`), its STN[g] and MTN[gm] of each
# seed; the study's two corpora in their structured-noise cell (the work directory's current tracks.parquet).
CASES = (
    *(Case("demo", Path("/tmp/grid/demo"), net, seed) for seed, net in enumerate(
        ("stn-g-67c575790891", "stn-g-0289a4022992", "stn-g-3ca63e256e4a",))),
    *(Case("demo", Path("/tmp/grid/demo"), net, seed) for seed, net in enumerate(
        ("mtn-gm-994d68a8b00b", "mtn-gm-a461cd6d9acb", "mtn-gm-2f0d30a6207e"))),
    Case("study", Path("/tmp/qs/study-quick/corpus0"), "stn-g-0fc0b6ea9b3e", 0),
    Case("study", Path("/tmp/qs/study-quick/corpus0"), "mtn-gm-41b030bfe764", 0),
    Case("study", Path("/tmp/qs/study-quick/corpus1"), "stn-g-883a625cd876", 0),
    Case("study", Path("/tmp/qs/study-quick/corpus1"), "mtn-gm-32a5ec3f4adc", 0),
)

# name -> (config changes, aggregations)
VARIANTS: dict[str, tuple[dict, tuple[str, ...]]] = {
    "paper": ({"standardize": False}, ALL),
    "standardised": ({"standardize": True}, ALL),
    "standardised, cap 4": ({"standardize": True, "max_windows_per_track": 4}, ("probs", "log_probs")),
    "standardised, dropout 0.8": ({"standardize": True, "dropout": 0.8}, ("probs", "log_probs")),
}


def load_case(case: Case) -> tuple[Rows, pd.DataFrame, np.ndarray, TransferConfig]:
    """The case's window rows, usable tracks, the head's window probabilities and the work directory's [transfer]."""
    config = load_config(case.workdir / "config.toml").transfer
    cache = case.workdir / "transfer" / "windows" / case.net / f"hop{config.window_hop}"
    tracks = pd.read_parquet(case.workdir / "tracks.parquet")
    window = read_window_cache(cache, tuple(genre_list(tracks)))
    tracks = tracks[tracks["track_id"].astype(str).isin(set(window.tracks))].reset_index(drop=True)
    genres = genre_list(tracks)
    rows = window_rows(shared_windows([window]), tracks, genres, torch.device("cpu"))
    return rows, tracks, np.asarray(window.genre_probs), config


def scores(predictions: pd.DataFrame, tracks: pd.DataFrame) -> dict[str, float]:
    """Validation and test log loss (after a temperature fitted on validation) and accuracy, given labels."""
    genres = genre_list(tracks)
    given = tracks.set_index("track_id")["genre"].map({g: i for i, g in enumerate(genres)})
    frame = predictions.set_index("track_id")
    split = tracks.set_index("track_id").loc[frame.index, "split"].to_numpy()
    probs, labels = frame[genres].to_numpy(dtype=np.float64), given.loc[frame.index].to_numpy()
    val, test = split == "val", split == "test"
    temperature = fit_temperature(probs[val], labels[val])
    scaled = apply_temperature(probs, temperature)
    return {
        "T": temperature,
        "val_log_loss": log_loss(labels[val], scaled[val]),
        "val_accuracy": accuracy(labels[val], probs[val].argmax(axis=1)),
        "test_log_loss": log_loss(labels[test], scaled[test]),
        "test_accuracy": accuracy(labels[test], probs[test].argmax(axis=1)),
    }


def head_rows(case: Case, rows: Rows, tracks: pd.DataFrame, head: np.ndarray) -> list[dict]:
    """The source head's scores, its window probabilities averaged ('probs') or their logs ('log_probs')."""
    genres = genre_list(tracks)
    return [{"corpus": case.corpus, "net": case.net, "variant": "source head", "aggregation": aggregation,
             **scores(aggregate_window_probs(rows.track_ids[rows.track_of_row], head, aggregation, genres).reset_index(),
                       tracks)}
            for aggregation in ("probs", "log_probs")]


def variant_rows(case: Case, rows: Rows, tracks: pd.DataFrame, config: TransferConfig, name: str) -> list[dict]:
    """Every aggregation of one MLP variant, and which of them the validation choice keeps."""
    changes, aggregations = VARIANTS[name]
    variant = dataclasses.replace(config, **changes, aggregations=aggregations)
    started = time.perf_counter()
    candidates: list[Candidate] = fit_candidates(rows, tracks, tuple(genre_list(tracks)), variant, case.seed,
                                                 progress=False)
    seconds = time.perf_counter() - started
    chosen, _ = choose_candidate(candidates, tracks, genre_list(tracks))
    return [{"corpus": case.corpus, "net": case.net, "variant": name, "aggregation": c.aggregation,
             "chosen": c is chosen, "best_epoch": c.fitted.best_epoch, "seconds": seconds,
             **scores(c.predictions, tracks)} for c in candidates]


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Means over the cases of each corpus, per variant and aggregation (the chosen aggregation as 'chosen')."""
    chosen = table[table["chosen"] == True].assign(aggregation="chosen on val")
    rows = pd.concat([table, chosen])
    metrics = ["val_log_loss", "val_accuracy", "test_log_loss", "test_accuracy"]
    return rows.groupby(["corpus", "variant", "aggregation"], sort=False)[metrics].mean().round(3)


def head_comparison(table: pd.DataFrame) -> pd.DataFrame:
    """Per corpus and variant: in how many cases the chosen transfer matches or beats the head (probs) on
    validation accuracy, and on validation log loss."""
    head = table[(table["variant"] == "source head") & (table["aggregation"] == "probs")].set_index("net")
    chosen = table[table["chosen"] == True]
    rows = []
    for (corpus, variant), group in chosen.groupby(["corpus", "variant"], sort=False):
        versus = head.loc[group["net"]]
        rows.append({"corpus": corpus, "variant": variant, "cases": len(group),
                     "accuracy >= head": int((group["val_accuracy"].to_numpy() >= versus["val_accuracy"].to_numpy()).sum()),
                     "log loss <= head": int((group["val_log_loss"].to_numpy() <= versus["val_log_loss"].to_numpy()).sum())})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("measure_transfer.csv"))
    parser.add_argument("--corpus", choices=("demo", "study"), action="append", help="default: both")
    args = parser.parse_args()
    torch.set_num_threads(1)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    print(f"agf commit {commit}")
    table = []
    for case in CASES:
        if args.corpus and case.corpus not in args.corpus:
            continue
        rows, tracks, head, config = load_case(case)
        table += head_rows(case, rows, tracks, head)
        for name in VARIANTS:
            table += variant_rows(case, rows, tracks, config, name)
            print(pd.DataFrame(table[-len(VARIANTS[name][2]):]).round(3).to_string(header=False), flush=True)
        pd.DataFrame(table).to_csv(args.out, index=False)
    table = pd.DataFrame(table)
    print(summary(table).to_string())
    print(head_comparison(table).to_string(index=False))


if __name__ == "__main__":
    main()
