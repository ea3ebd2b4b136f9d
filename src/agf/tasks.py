"""The tasks and architectures of the paper, declared once.

Tasks: g genre; artist-group tasks m (MFCC), d (delta-MFCC), e (Essentia), s (sub-genres). Task letters are
always written in this canonical order (e.g. 'gmd'). Architectures: stn (one net per task, features
concatenated), mtn (tasks share the first block), wstn (a genre net as large as a multi-task setup).
"""

from __future__ import annotations

import typing
from collections.abc import Iterable
from itertools import combinations
from typing import Literal

from agf.errors import ConfigError

GENRE_TASK = "g"
TASKS: tuple[str, ...] = ("g", "m", "d", "e", "s")
FACTOR_TASKS: tuple[str, ...] = TASKS[1:]
TASK_TITLES: dict[str, str] = {"g": "genre", "m": "MFCC", "d": "delta-MFCC", "e": "Essentia", "s": "subgenres"}
Arch = Literal["stn", "mtn", "wstn"]
ARCHS: tuple[str, ...] = typing.get_args(Arch)


def canonical_tasks(letters: Iterable[str]) -> str:
    """Known task letters in the canonical order g, m, d, e, s (unknown letters are dropped)."""
    chosen = set(letters)
    return "".join(t for t in TASKS if t in chosen)


def parse_tasks(text: str) -> tuple[str, ...]:
    """'g,m,d' or 'gmd' -> ('g', 'm', 'd') in canonical order; ConfigError for unknown letters or none."""
    letters = set(text.replace(",", "").replace(" ", ""))
    if not letters or letters - set(TASKS):
        legend = ", ".join(f"{t} {title}" for t, title in TASK_TITLES.items())
        raise ConfigError(f"tasks {text!r}: use letters of {','.join(TASKS)} ({legend})")
    return tuple(canonical_tasks(letters))


def task_subsets(tasks: Iterable[str] = TASKS) -> list[str]:
    """Every non-empty subset of `tasks` in the paper's order: by size, then combination order of g, m, d, e, s."""
    ordered = canonical_tasks(tasks)
    return ["".join(c) for n in range(1, len(ordered) + 1) for c in combinations(ordered, n)]



def setup_label(arch: str, tasks: str, n_tasks: int) -> str:
    """A setup's name: 'STN gm', 'MTN gmdes', 'WSTN g (N=2)' (a wSTN is named by the N it is matched to)."""
    return f"{arch.upper()} {tasks}" + (f" (N={n_tasks})" if arch == "wstn" else "")
