"""What a seed ensemble costs at prediction: a one-member bundle against a 3-member one (untrained, 2 genre STNs
per member, as agf.predict.bundle.untrained_member builds them), predicting the same 180-s noise file, side by side,
three times each, one torch thread (docs/predict.md).

    OMP_NUM_THREADS=1 python scripts/measure_ensemble_predict.py
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from agf.predict import GenreClassifier
from agf.predict.bundle import untrained_bundle, untrained_member

GENRES = [f"g{i}" for i in range(8)]
SECONDS = 180
SAMPLE_RATE = 22050


def main() -> None:
    torch.set_num_threads(1)
    one = untrained_bundle(GENRES)
    three = dataclasses.replace(one, members=tuple(untrained_member(GENRES, seed=seed) for seed in range(3)))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "noise.wav"
        noise = np.random.default_rng(0).normal(size=SAMPLE_RATE * SECONDS) * 0.1
        sf.write(path, noise.astype(np.float32), SAMPLE_RATE)
        for name, bundle in (("1 member", one), ("3 members", three)) * 3:
            classifier = GenreClassifier(bundle, device="cpu")
            start = time.perf_counter()
            classifier.predict(path)
            print(f"{name}: {time.perf_counter() - start:.2f} s for a {SECONDS}-s file")


if __name__ == "__main__":
    main()
