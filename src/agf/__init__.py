"""agf: music genre classification with Artist Group Factors (Kim et al., WWW 2018) and beyond.

`agf.GenreClassifier.load(bundle)` applies an exported model to any audio (imported on first use: torch is
loaded only when needed).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["GenreClassifier", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "GenreClassifier":
        from agf.predict import GenreClassifier

        return GenreClassifier
    raise AttributeError(f"module 'agf' has no attribute {name!r}")
