"""The picture per task: mean topic mixture per genre as a heatmap (drawn with agf.plotting)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from agf.plotting import png_figure


def plot_genre_mixtures(mixtures: pd.DataFrame, path: Path, title: str) -> None:
    """Save a genres x groups heatmap of `mixtures` (index genre, one column per group) as PNG."""
    n_genres, n_groups = mixtures.shape
    size = (max(6.0, 0.22 * n_groups + 2.5), max(2.5, 0.32 * n_genres + 1.2))
    with png_figure(path, size, dpi=120) as figure:
        axes = figure.subplots()
        image = axes.imshow(mixtures.to_numpy(), aspect="auto", cmap="viridis", interpolation="nearest")
        axes.set_yticks(range(n_genres), labels=[str(g) for g in mixtures.index])
        axes.set_xticks(range(0, n_groups, max(1, n_groups // 20)))
        axes.set_xlabel("artist group")
        axes.set_title(title)
        figure.colorbar(image, ax=axes, label="mean probability")
        figure.tight_layout()
