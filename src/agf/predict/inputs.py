"""What `agf predict` was asked to classify: files, directories (searched recursively), globs, or a list on stdin."""

from __future__ import annotations

import glob
from collections.abc import Iterable
from pathlib import Path

# Files a directory search picks up (case-insensitive); a file named explicitly is tried whatever its suffix.
AUDIO_SUFFIXES = frozenset({".mp3", ".ogg", ".oga", ".opus", ".flac", ".wav", ".m4a", ".aac", ".aif", ".aiff",
                            ".wma", ".mp4", ".au"})
STDIN = "-"


def _is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_SUFFIXES and path.is_file()


def expand_inputs(inputs: Iterable[str], stdin_lines: Iterable[str] = ()) -> list[str]:
    """The files to classify, in the order given, each once: a directory gives its audio files (recursive,
    sorted), a pattern with * ? [ gives its matches, '-' gives the paths in stdin_lines (one per line).

    A path that names nothing, or a directory without audio files, stays in the list, so that its failure is
    reported with the others.
    """
    found: list[str] = []
    for given in inputs:
        if given == STDIN:
            found += [line.strip() for line in stdin_lines if line.strip()]
            continue
        path = Path(given).expanduser()
        if path.is_dir():
            found += sorted(str(p) for p in path.rglob("*") if _is_audio(p)) or [str(path)]
        elif not path.exists() and glob.has_magic(given):
            matches = sorted(glob.glob(str(path), recursive=True))
            found += [m for m in matches if not Path(m).is_dir()] or [given]
        else:
            found.append(str(path))
    return list(dict.fromkeys(found))
