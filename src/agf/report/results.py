"""The tidy results frame: one row per (tasks, arch, n_tasks, includes_genre, seed, split, labels, metric).

Conventions (written by the pipeline, read by the tables and Figure 3):
    tasks           the task letters in the canonical order g, m, d, e, s (e.g. 'gmd')
    arch            'stn' (separate nets, features concatenated) | 'mtn' (shared first block) | 'wstn'
    n_tasks         len(tasks) for STN/MTN; for wSTN the N of the multi-task setup it is matched to (2..5)
    includes_genre  'g' in tasks (always True for wSTN, whose tasks are 'g')
    split           'val' | 'test';  labels: 'given' (dataset labels) | 'true' (synthetic corpus's true genres)
    metric          a key of agf.metrics.METRIC_REGISTRY: 'log_loss' | 'macro_f1' | 'accuracy' | 'ece'
For N = 1 the STN and the MTN are the same net: only 'stn' rows exist for N = 1.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from agf.datasets.table import TEST, VAL, split_mask
from agf.errors import ReportError
from agf.fileio import atomic_path
from agf.metrics import METRICS, sort_by_selection
from agf.tasks import ARCHS, TASKS, task_subsets

RESULT_SPLITS: tuple[str, ...] = (TEST, VAL)
LABEL_KINDS: tuple[str, ...] = ("given", "true")
RESULTS_COLUMNS: tuple[str, ...] = (
    "tasks", "arch", "n_tasks", "includes_genre", "seed", "split", "labels", "metric", "value",
)
KEY_COLUMNS: tuple[str, ...] = ("tasks", "arch", "n_tasks", "seed", "split", "labels", "metric")
_CANONICAL_TASKS = re.compile(r"^g?m?d?e?s?$")
WSTN_N_RANGE = (2, len(TASKS))


# Every choice (best subset, best model) is made on the validation split against the given labels, never on
# the split or labels reported: the highest mean accuracy over seeds, ties broken by the lower mean log loss.
SELECTION_SPLIT = VAL
SELECTION_LABELS = "given"
SELECTION_RULE = ("highest mean validation accuracy (given labels) over seeds, ties broken by the lower mean "
                  "validation log loss")
SELECTION_BIAS_NOTE = ("These numbers are on the validation split, which also chose the best epochs and models: "
                       "they are selection-biased (optimistic). Add a test split for unbiased numbers.")


# The columns that name a setup (an architecture over a task subset): one row of the paper's tables, over seeds.
SETUP_KEYS: list[str] = ["arch", "tasks", "n_tasks"]


def selection_split(results: pd.DataFrame) -> str:
    """The split choices are made on: validation; without validation rows, the only split there is."""
    return SELECTION_SPLIT if split_mask(results, SELECTION_SPLIT).any() else str(results["split"].iloc[0])


def selection_means(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per group of `keys`: each metric's mean over the rows (seeds) of `frame`, best first by the selection rule."""
    return sort_by_selection(frame.pivot_table(index=keys, columns="metric", values="value", aggfunc="mean"))


def rank_by_selection(results: pd.DataFrame, keys: list[str]) -> list[tuple]:
    """The groups of `keys` (e.g. arch, tasks, n_tasks) best first by the selection rule, on the selection split."""
    ranked = selection_means(select(results, selection_split(results), SELECTION_LABELS), keys)
    return [key if isinstance(key, tuple) else (key,) for key in ranked.index]


def _fail_rows(source: str, mask: pd.Series, frame: pd.DataFrame, problem: str, fix: str) -> None:
    """Raise ReportError naming the first offending row when `mask` selects any."""
    if mask.any():
        first = frame.loc[mask].iloc[0]
        shown = ", ".join(f"{c}={first[c]!r}" for c in ("tasks", "arch", "n_tasks", "seed", "metric"))
        raise ReportError(f"{source}: {int(mask.sum())} row(s) {problem}, e.g. ({shown}); {fix}")


def _check_values(frame: pd.DataFrame, column: str, allowed: tuple[str, ...], source: str) -> None:
    """Every value of `column` must be one of `allowed`."""
    unknown = sorted(set(frame[column]) - set(allowed))
    if unknown:
        raise ReportError(f"{source}: unknown {column} value(s) {unknown}; use one of {', '.join(allowed)}")


def validate_results(results: pd.DataFrame, source: str = "results") -> pd.DataFrame:
    """Check the results schema and conventions; return a copy with canonical columns and dtypes."""
    missing = [c for c in RESULTS_COLUMNS if c not in results.columns]
    if missing:
        raise ReportError(f"{source}: missing column(s) {', '.join(missing)}; expected {', '.join(RESULTS_COLUMNS)}")
    frame = results[list(RESULTS_COLUMNS)].copy()
    for column in ("tasks", "arch", "split", "labels", "metric"):
        frame[column] = frame[column].astype(str)
    try:
        frame["n_tasks"] = frame["n_tasks"].astype(np.int64)
        frame["seed"] = frame["seed"].astype(np.int64)
        frame["value"] = frame["value"].astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ReportError(f"{source}: n_tasks and seed must be integers and value numbers ({exc})") from exc
    frame["includes_genre"] = frame["includes_genre"].astype(bool)
    _check_values(frame, "arch", ARCHS, source)
    _check_values(frame, "split", RESULT_SPLITS, source)
    _check_values(frame, "labels", LABEL_KINDS, source)
    _check_values(frame, "metric", METRICS, source)
    bad_tasks = ~frame["tasks"].map(lambda t: bool(t) and bool(_CANONICAL_TASKS.match(t)))
    _fail_rows(source, bad_tasks, frame, "with tasks not a non-empty subset of g, m, d, e, s in that order",
               "write the letters in the order g, m, d, e, s")
    wide = frame["arch"] == "wstn"
    _fail_rows(source, ~wide & (frame["n_tasks"] != frame["tasks"].str.len()), frame,
               "whose n_tasks is not the number of task letters", "set n_tasks = len(tasks) for stn/mtn")
    _fail_rows(source, frame["includes_genre"] != frame["tasks"].str.contains("g", regex=False), frame,
               "whose includes_genre disagrees with tasks", "set includes_genre = 'g' in tasks")
    _fail_rows(source, (frame["arch"] == "mtn") & (frame["n_tasks"] == 1), frame,
               "of a one-task MTN", "write N = 1 nets as arch 'stn' only (the STN and the MTN are the same net)")
    low, high = WSTN_N_RANGE
    _fail_rows(source, wide & ((frame["tasks"] != "g") | ~frame["n_tasks"].between(low, high)), frame,
               f"of a wSTN with tasks other than 'g' or n_tasks outside {low}..{high}",
               "write wSTN rows with tasks 'g' and n_tasks = the N of the setup it is matched to")
    _fail_rows(source, ~np.isfinite(frame["value"]), frame, "with a missing or infinite value",
               "drop unscored rows")
    _fail_rows(source, frame.duplicated(list(KEY_COLUMNS), keep=False), frame, "duplicated",
               f"keep one row per ({', '.join(KEY_COLUMNS)})")
    return frame.reset_index(drop=True)


def canonical_order(results: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by split, labels, arch, subset (paper order), n_tasks, seed, metric."""
    subset_rank = {tasks: rank for rank, tasks in enumerate(task_subsets())}
    keys = pd.DataFrame({
        "split": results["split"].map(RESULT_SPLITS.index),
        "labels": results["labels"].map(LABEL_KINDS.index),
        "arch": results["arch"].map(ARCHS.index),
        "subset": results["tasks"].map(subset_rank),
        "n_tasks": results["n_tasks"],
        "seed": results["seed"],
        "metric": results["metric"].map(METRICS.index),
    })
    order = keys.sort_values(list(keys.columns), kind="stable").index
    return results.loc[order].reset_index(drop=True)


def write_results_csv(results: pd.DataFrame, path: str | Path) -> None:
    """Validate `results` and write it as a tidy CSV (canonical column and row order), atomically."""
    frame = canonical_order(validate_results(results))
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.10g")


def read_results_csv(path: str | Path) -> pd.DataFrame:
    """Read and validate a results.csv written by write_results_csv."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"{path}: no results file; run the grid first (agf run) or pass the right work directory")
    frame = pd.read_csv(path, dtype={"tasks": str, "arch": str, "split": str, "labels": str, "metric": str})
    return validate_results(frame, source=str(path))


def select(results: pd.DataFrame, split: str, labels: str) -> pd.DataFrame:
    """The rows of one split and label kind."""
    return results[split_mask(results, split) & (results["labels"] == labels)]
