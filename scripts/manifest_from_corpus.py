"""Write a CSV manifest (path, artist, album, genre, subgenres) for a corpus in FMA's layout, e.g. one made by
`agf synth`: a collection to try `agf run --manifest` on (docs/small-collections.md).

    python scripts/manifest_from_corpus.py CORPUS_DIR OUT.csv
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from agf.config import DatasetConfig
from agf.datasets import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, help="folder holding fma_metadata/ and audio/")
    parser.add_argument("out", type=Path, help="the manifest CSV to write")
    args = parser.parse_args()
    config = DatasetConfig(kind="fma", metadata_dir=str(args.corpus / "fma_metadata"),
                           audio_dir=str(args.corpus / "audio"), subset="full")
    tracks = load_dataset(config).tracks
    base = args.out.resolve().parent
    manifest = tracks.assign(
        path=[os.path.relpath(path, base) for path in tracks["audio_path"]],
        artist=tracks["artist_id"], album=tracks["album_id"],
        subgenres=tracks["subgenres"].map("; ".join),
    )[["path", "artist", "album", "genre", "subgenres"]]
    manifest.to_csv(args.out, index=False)
    print(f"{args.out}: {len(manifest)} tracks, {manifest['artist'].nunique()} artists, "
          f"{manifest['genre'].nunique()} genres")


if __name__ == "__main__":
    main()
