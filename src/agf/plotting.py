"""Figures as PNG files: matplotlib's object API and Agg canvas (no pyplot, no global backend), written atomically.

Text from the data (genre, artist and model names) is drawn literally: a name holding `$...$` is not parsed as
mathtext, so it can neither crash a figure nor change how it reads.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from agf.fileio import atomic_path


@contextlib.contextmanager
def png_figure(path: str | Path, figsize: tuple[float, float], dpi: int = 100, **options: Any) -> Iterator[Figure]:
    """A new Figure to draw on (`options` as for Figure, e.g. layout='constrained'), saved to `path` on exit."""
    with matplotlib.rc_context({"text.parse_math": False}):
        figure = Figure(figsize=figsize, **options)
        FigureCanvasAgg(figure)
        yield figure
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=dpi)
