"""Peak memory of choosing a model at FMA large's size (docs/selection.md): the paper's grid's candidates (61
transfers, 10 genre heads, 61 blends) x 3 seeds, each a frame of the validation tracks' probabilities (10 % of
106,574 tracks, 16 genres), ranked by agf.selection.choose; tracemalloc's peak, random probabilities.

    python scripts/measure_selection_memory.py
"""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pandas as pd

from agf.selection import choose

GENRES = [f"g{i}" for i in range(16)]
VAL_TRACKS = 10_657
CANDIDATES = {"transfer": 61, "genre STN softmax": 10, "blend": 61}
SEEDS = 3


def main() -> None:
    rng = np.random.default_rng(0)
    ids = pd.Index([str(i) for i in range(VAL_TRACKS)], name="track_id")
    labels = pd.Series(rng.choice(GENRES, VAL_TRACKS), index=ids)
    tracemalloc.start()
    frames, kinds = {}, {}
    for kind, count in CANDIDATES.items():
        for number in range(count):
            name = f"{kind} {number}"
            kinds[name] = kind
            frames[name] = [pd.DataFrame(rng.dirichlet(np.ones(len(GENRES)), VAL_TRACKS), index=ids, columns=GENRES)
                            for _ in range(SEEDS)]
    held = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    choice = choose(frames, kinds, labels, GENRES)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    print(f"{sum(len(f) for f in frames.values())} frames of {VAL_TRACKS} tracks: {held / 1e6:.0f} MB held, "
          f"peak {peak / 1e6:.0f} MB while choosing ({len(choice.ranking)} rows ranked in {seconds:.0f} s)")


if __name__ == "__main__":
    main()
