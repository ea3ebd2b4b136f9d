"""The cost table of docs/scaling.md: core-hours per stage for FMA medium and FMA full under the paper's grid,
from speeds measured here and now, per core.

Counts come from agf.plan.make_plan (exactly what `agf run` would do) on a track table of FMA's sizes; speeds
from agf.plan.measure_throughput with one torch thread (decode + features, training, window features, MLP), plus
Essentia's MusicExtractor timed on a generated clip. Hours on N cores assume independent tasks spread evenly
(tracks, files, nets), which the stages are; dictionaries and LDA are not included.

    python scripts/scaling_costs.py            # prints the markdown table and the speeds it used
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from agf.audio import write_audio
from agf.config import load_config
from agf.factors.essentia_features import essentia_unavailable_reason
from agf.plan import Plan, Throughput, make_plan, measure_throughput

# FMA's sizes (FMA-FORMAT.md; fma_full: 343 days of audio over 106,574 tracks, FMA's paper).
DATASETS = {
    "FMA medium (25,000 clips of 30 s)": dict(tracks=25_000, seconds=30.0, splits=(19_922, 2_505, 2_573)),
    "FMA full (106,574 tracks, mean 278 s)": dict(tracks=106_574, seconds=343 * 86_400 / 106_574,
                                                  splits=(85_259, 10_657, 10_658)),
}
GENRES = 16
CORES = (1, 16, 64)
ESSENTIA_CLIP_S = 30.0


def track_table(tracks: int, seconds: float, splits: tuple[int, int, int]) -> pd.DataFrame:
    """A track table of FMA's size: splits in FMA's proportions, 5 tracks per artist (artist counts do not enter
    the cost with the paper's fixed dictionary and topic sizes), genres dealt round-robin."""
    split = np.repeat(["train", "val", "test"], splits)
    return pd.DataFrame({
        "track_id": [f"{i:06d}" for i in range(tracks)], "artist_id": np.arange(tracks) // 5,
        "genre": np.arange(tracks) % GENRES, "split": split, "declared_duration": seconds,
    })


def essentia_realtime() -> float | None:
    """Seconds of audio Essentia's MusicExtractor analyses per second on one core (None without Essentia)."""
    if essentia_unavailable_reason():
        return None
    import essentia.standard as es

    with tempfile.TemporaryDirectory() as scratch:
        path = str(Path(scratch) / "clip.mp3")
        noise = np.random.default_rng(0).standard_normal(int(ESSENTIA_CLIP_S * 44100)).astype(np.float32)
        write_audio(path, 0.1 * noise, 44100)
        extractor = es.MusicExtractor()
        extractor(path)
        started = time.perf_counter()
        extractor(path)
        return ESSENTIA_CLIP_S / (time.perf_counter() - started)


def stage_hours(plan: Plan, speed: Throughput, essentia_x: float | None, train_tracks: int,
                seconds: float) -> dict[str, float | None]:
    """Core-hours per stage."""
    stages = {name: value / 3600 for name, value in plan.stage_seconds(speed, workers=1).items()}
    stages["Essentia (task e)"] = None if essentia_x is None else train_tracks * seconds / essentia_x / 3600
    return stages


def table(config_name: str) -> str:
    """The markdown table and the speeds behind it."""
    torch.set_num_threads(1)
    config = load_config(config_name)
    speed = measure_throughput(replace(config, run=replace(config.run, device="cpu")))
    essentia_x = essentia_realtime()
    lines = ["| dataset | stage | core-hours | " + " | ".join(f"hours on {n} cores" for n in CORES[1:]) + " |",
             "|---|---|---:|" + "---:|" * (len(CORES) - 1)]
    for name, sizes in DATASETS.items():
        tracks = track_table(sizes["tracks"], sizes["seconds"], sizes["splits"])
        plan = make_plan(config, tracks, store=None)
        stages = stage_hours(plan, speed, essentia_x, sizes["splits"][0], sizes["seconds"])
        known = [h for h in stages.values() if h is not None]
        for stage, hours in [*stages.items(), ("all of the above", sum(known))]:
            cells = ["not measured"] * len(CORES) if hours is None else [f"{hours / n:,.1f}" for n in CORES]
            lines.append(f"| {name} | {stage} | " + " | ".join(cells) + " |")
        epochs = sum(net.epochs for net in plan.nets)
        lines.append(f"| {name} | (grid: {len(plan.nets)} nets, {epochs:,} epochs of "
                     f"{sizes['splits'][0]:,} crops; {plan.transfers} MLPs) | | | |")
    lines.append("")
    lines.append(f"Speeds measured on one core (`python scripts/scaling_costs.py --config {config_name}`): decode + "
                 f"features {speed.decode_realtime:.0f}x real time, training {speed.train_patches_s:.0f} patches/s, "
                 f"window features {speed.infer_windows_s:.0f}/s, MLP {speed.mlp_windows_s:,.0f} windows/s, "
                 + (f"Essentia {essentia_x:.1f}x real time." if essentia_x else "Essentia not installed."))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="paper", help="the preset or TOML whose grid is costed (default paper)")
    print(table(parser.parse_args().config))


if __name__ == "__main__":
    main()
