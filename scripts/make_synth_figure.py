"""Draw docs/img/synth-spectrograms.png and measure the numbers docs/synthetic-corpus.md reports.

Renders the default corpus (seed 0, into build/synth-corpus) unless it is there, timing it; prints the
classical baseline (logistic regression on per-track MFCC mean/std, 20 MFCCs at 22,050 Hz) on the
artist-disjoint split, against true and against noisy labels; then draws log-mel spectrograms side by
side: tracks of two genres (one artist per row), then two artists of the first genre (one album per row).
The genres are the true ones: a wrong album label does not change the audio.

    .venv/bin/python scripts/make_synth_figure.py [--corpus DIR] [--out PNG] [--workers N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import librosa
import librosa.display
import matplotlib
import numpy as np
import pandas as pd

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import GroupKFold, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from agf.audio import decode  # noqa: E402
from agf.config import SynthConfig  # noqa: E402
from agf.datasets.fma import load_fma  # noqa: E402
from agf.datasets.synth import corpus_summary, synthesize_corpus  # noqa: E402

SAMPLE_RATE = 22050
ROWS = 2
N_MFCC = 20


def log_mel(path: str) -> np.ndarray:
    """A 128-band log-mel spectrogram (dB) of an audio file at 22,050 Hz (n_fft 1024, hop 512)."""
    samples, _ = decode(path, SAMPLE_RATE)
    mel = librosa.feature.melspectrogram(y=samples, sr=SAMPLE_RATE, n_fft=1024, hop_length=512, n_mels=128)
    return librosa.power_to_db(mel, ref=np.max, top_db=80.0)


def mfcc_stats(paths: pd.Series) -> np.ndarray:
    """Per-track mean and standard deviation of N_MFCC MFCCs at 22,050 Hz."""
    rows = []
    for path in paths:
        samples, _ = decode(path, SAMPLE_RATE)
        mfcc = librosa.feature.mfcc(y=samples, sr=SAMPLE_RATE, n_mfcc=N_MFCC)
        rows.append(np.concatenate([mfcc.mean(axis=1), mfcc.std(axis=1)]))
    return np.array(rows)


def report_baseline(tracks: pd.DataFrame) -> None:
    """Print the MFCC + logistic-regression accuracy: official split (true and noisy labels) and artist-grouped CV."""
    features = mfcc_stats(tracks["audio_path"])
    train = (tracks["split"] == "train").to_numpy()
    for target in ("true_genre", "genre"):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
        model.fit(features[train], tracks.loc[train, target])
        truth = tracks.loc[~train, "true_genre"]
        accuracy = (model.predict(features[~train]) == truth).mean()
        print(f"baseline trained on {target!r} labels, val+test accuracy vs true genres: {accuracy:.3f}")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000))
    folds = cross_val_score(model, features, tracks["true_genre"], groups=tracks["artist_id"], cv=GroupKFold(5))
    print(f"baseline, 5-fold artist-grouped CV on true genres: {folds.mean():.3f} (folds {np.round(folds, 2)}); "
          f"chance {1 / tracks['true_genre'].nunique():.3f}")


def pick_columns(tracks: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Four columns of ROWS tracks: two genres (one artist per row), then two artists of the first genre
    (one album per row)."""
    genres = sorted(tracks["true_genre"].unique())[:2]
    columns = []
    for genre in genres:
        of_genre = tracks[tracks["true_genre"] == genre].drop_duplicates("artist_id").head(ROWS)
        columns.append((f"genre: {genre}", of_genre))
    first_genre = tracks[tracks["true_genre"] == genres[0]]
    for artist_id in first_genre["artist_id"].unique()[:2]:
        of_artist = first_genre[first_genre["artist_id"] == artist_id]
        of_artist = of_artist.drop_duplicates("album_id", keep="last").head(ROWS)  # not the genre columns' tracks
        columns.append((f"artist: {of_artist['artist_name'].iloc[0]} ({genres[0]})", of_artist))
    return columns


def draw(columns: list[tuple[str, pd.DataFrame]], out: Path) -> None:
    """Plot the spectrograms in a ROWS x len(columns) grid and save the PNG."""
    figure, axes = plt.subplots(ROWS, len(columns), figsize=(4.2 * len(columns), 2.6 * ROWS), sharey=True,
                                constrained_layout=True)
    for column, (title, rows) in enumerate(columns):
        for row, track in enumerate(rows.itertuples()):
            axis = axes[row, column]
            image = librosa.display.specshow(log_mel(track.audio_path), sr=SAMPLE_RATE, hop_length=512,
                                             x_axis="time", y_axis="mel", ax=axis, cmap="magma")
            axis.set_title(f"{title}\ntrack {track.track_id}" if row == 0 else f"track {track.track_id}", fontsize=9)
            if column:
                axis.set_ylabel("")
    figure.colorbar(image, ax=axes, format="%+2.0f dB", shrink=0.8)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=80)
    plt.close(figure)


def main() -> None:
    """Render (or reuse) the corpus, then draw the figure."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("build/synth-corpus"), help="corpus folder")
    parser.add_argument("--out", type=Path, default=Path("docs/img/synth-spectrograms.png"), help="PNG to write")
    parser.add_argument("--workers", type=int, default=2, help="render processes")
    args = parser.parse_args()
    started = time.perf_counter()
    synthesize_corpus(args.corpus, SynthConfig(), workers=args.workers)
    print(f"corpus ready in {time.perf_counter() - started:.1f} s:\n{corpus_summary(args.corpus)}")
    tracks = load_fma(args.corpus / "fma_metadata", args.corpus / "audio", subset="large").tracks
    report_baseline(tracks)
    draw(pick_columns(tracks), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
