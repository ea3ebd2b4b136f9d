"""Measure training-crop augmentation on the hard synthetic corpus: the numbers of docs/training.md, "Augmentation".

Runs the genre-only model of the `study-quick` preset (its 4 artist-disjoint splits, one run seed) once per
augmentation variant, each in its own work directory under OUT_DIR: the baseline first (it renders the corpus and
computes its features, or starts from a hard-linked copy of --source, a quick study of the same [synth] settings),
then each variant in a hard-linked copy of the baseline's (corpus and features reused; only the genre nets,
transfers and evaluations are computed). It prints, per
metric and noise rate, each variant's paired difference to no augmentation on the test split against the true
genres (variant minus baseline; pairs: the same corpus, split, noise cell and run seed): mean, 95 % bootstrap CI,
sign-flip permutation p and Holm's p over the variants (agf.statistics.compare).

    OMP_NUM_THREADS=1 .venv/bin/python scripts/measure_augment.py OUT_DIR [--source DIR] [--rates 0 0.4]
        [--split-seeds 0 1 2 3 4 5 6 7] [--variants gain masks mixup]

With 4 pairs the exact sign-flip test cannot give p below 2/16 = 0.125: more split seeds give more pairs.
"""

from __future__ import annotations

import argparse
import dataclasses
import subprocess
from pathlib import Path

import pandas as pd
import torch

from agf.config import Config, load_config
from agf.statistics import compare
from agf.study import BASELINE, run_study
from agf.workdir import LOCK_FILE

# Variant name -> the train settings it changes (none: the baseline).
VARIANTS: dict[str, dict[str, float]] = {
    "baseline": {},
    "gain": {"gain_db": 6.0},
    "masks": {"time_mask_frames": 8, "freq_mask_bins": 16},
    "mixup": {"mixup_alpha": 0.2},
}
METRICS = ("accuracy", "log_loss")
PAIR_KEYS = ["corpus_seed", "split_seed", "noise_kind", "noise_rate", "seed"]


def variant_config(base: Config, name: str, workdir: Path, rates: list[float], splits: list[int] | None) -> Config:
    """The quick study restricted to the genre-only model at the given symmetric noise rates (and split seeds, if
    given), with the variant's augmentation, one torch thread."""
    study = dataclasses.replace(base.study, noise_rates=tuple(rates), noise_kinds=("symmetric",), models=(BASELINE,),
                                split_seeds=tuple(splits or base.study.split_seeds))
    train = dataclasses.replace(base.train, **VARIANTS[name])
    run = dataclasses.replace(base.run, workdir=str(workdir), threads=1)
    return dataclasses.replace(base, study=study, train=train, run=run)


def run_variant(source: Path | None, out: Path, name: str, rates: list[float], splits: list[int] | None = None
                ) -> pd.DataFrame:
    """The variant's study results (test split, true genres), in out/name: a hard-linked copy of source, if any
    (its lock file dropped: a lock is written in place, and the copy's must not be the source's)."""
    workdir = out / name
    if source is not None and not workdir.exists():
        subprocess.run(["cp", "-al", str(source), str(workdir)], check=True)
        (workdir / LOCK_FILE).unlink(missing_ok=True)
    config = variant_config(load_config("study-quick"), name, workdir, rates, splits)
    paths = run_study(config, progress=False, log=lambda line: print(f"{name}: {line}", flush=True))
    results = pd.read_csv(paths["results"])
    chosen = results[(results["split"] == "test") & (results["labels"] == "true") & (results["model"] == BASELINE)]
    return chosen.assign(variant=name)


def paired_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per metric and noise rate, each variant minus the baseline, paired by PAIR_KEYS, Holm over the variants."""
    rows = []
    for metric in METRICS:
        scores = results[results["metric"] == metric].pivot_table(
            index=PAIR_KEYS, columns="variant", values="value", aggfunc="first")
        for rate, table in scores.groupby(level="noise_rate"):
            variants = [v for v in table.columns if v != "baseline"]
            differences = {v: (table[v] - table["baseline"]).dropna().to_numpy() for v in variants}
            for variant, found in zip(variants, compare(differences)):
                rows.append({"metric": metric, "noise_rate": rate, "variant": variant, "pairs": found.n,
                             "baseline": table["baseline"].mean(), "with": table[variant].mean(),
                             "difference": found.mean, "ci_low": found.ci_low, "ci_high": found.ci_high,
                             "p_permutation": found.p_permutation, "p_holm": found.p_holm})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="where each variant's work directory is made")
    parser.add_argument("--source", type=Path, help="a quick study work directory to start from (not modified)")
    parser.add_argument("--rates", type=float, nargs="+", default=[0.0], help="symmetric noise rates (default 0)")
    parser.add_argument("--split-seeds", type=int, nargs="+", help="split seeds (default: the preset's 0 1 2 3)")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS)[1:], choices=list(VARIANTS)[1:])
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    frames = [run_variant(args.source, args.out, "baseline", args.rates, args.split_seeds)]
    frames += [run_variant(args.out / "baseline", args.out, name, args.rates, args.split_seeds) for name in args.variants]
    results = pd.concat(frames, ignore_index=True)
    results.to_csv(args.out / "results.csv", index=False)
    table = paired_table(results)
    table.to_csv(args.out / "paired.csv", index=False)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()
