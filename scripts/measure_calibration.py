"""Does temperature scaling lower the test log loss? Paired over every calibrated evaluation under a work
directory (a grid run's seeds, or every cell x seed of an `agf study` work directory), per model and labels.

    python scripts/measure_calibration.py WORKDIR [--split test]

Reads each evaluation's metrics.json (its calibrated 'scores' and its 'uncalibrated' ones), computes nothing
new. An evaluation shared by two grids of a study cell (the same transfer) is counted once.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pandas as pd

from agf.statistics import compare


def model_kind(name: str) -> str:
    """A model's name without its cell-specific sources: 'transfer MLP: STN[g] + STN[m]' stays, seeds merge."""
    return re.sub(r"\s+", " ", name)


def calibration_rows(workdir: Path, split: str) -> pd.DataFrame:
    """One row per (evaluation, model, labels): log loss and ECE before and after temperature scaling."""
    rows = []
    for path in sorted(workdir.glob("**/evaluation/*/metrics.json")):
        models = json.loads(path.read_text())["models"]
        for name, model in models.items():
            if "temperature" not in model or split not in model["scores"]:
                continue
            for labels, after in model["scores"][split].items():
                before = model["uncalibrated"][split][labels]
                rows.append({"evaluation": str(path.parent), "model": model_kind(name), "labels": labels,
                             "temperature": model["temperature"], "log_loss_before": before["log_loss"],
                             "log_loss_after": after["log_loss"], "ece_before": before["ece"],
                             "ece_after": after["ece"]})
    frame = pd.DataFrame(rows)
    return frame.drop_duplicates(["model", "labels", "log_loss_before", "log_loss_after"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", type=Path)
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    rows = calibration_rows(args.workdir, args.split)
    if rows.empty:
        raise SystemExit(f"{args.workdir}: no calibrated evaluation found")
    for labels, by_labels in rows.groupby("labels"):
        reductions = {model: (runs["log_loss_before"] - runs["log_loss_after"]).tolist()
                      for model, runs in by_labels.groupby("model")}
        means = by_labels.groupby("model")[["temperature", "log_loss_before", "log_loss_after", "ece_before",
                                             "ece_after"]].mean()
        print(f"\n{args.split} split, {labels} labels: log loss before -> after (reduction [95 % CI], sign-flip p)")
        for result in compare(reductions):
            m = means.loc[result.name]
            print(f"  {result.name}: n {result.n}, T {m.temperature:.2f}, {m.log_loss_before:.3f} -> "
                  f"{m.log_loss_after:.3f}, reduction {result.mean:+.3f} [{result.ci_low:+.3f}, "
                  f"{result.ci_high:+.3f}], p {result.p_permutation:.3g}; ECE {m.ece_before:.3f} -> {m.ece_after:.3f}")


if __name__ == "__main__":
    main()
