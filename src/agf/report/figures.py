"""Figure 3 (mean log loss and macro-F1 against the number of tasks, with and without the genre task) and the
training curves of the best model.

Drawn with agf.plotting (matplotlib's object API, no pyplot; names drawn literally).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from agf.datasets.table import TEST, split_mask
from agf.metrics import METRIC_REGISTRY
from agf.plotting import png_figure
from agf.report.tables import (
    net_rows,
    subset_seed_means,
    wstn_rows,
)
from agf.tasks import TASKS

# The panels of the paper's Figure 3.
PAPER_METRICS: tuple[str, ...] = ("log_loss", "macro_f1")
# (arch, includes genre) -> line style; STN and MTN differ by colour, with/without g by dash.
LINES: dict[tuple[str, bool], dict[str, str]] = {
    ("stn", True): {"color": "tab:blue", "linestyle": "-", "marker": "o", "label": "STN with g"},
    ("stn", False): {"color": "tab:blue", "linestyle": "--", "marker": "o", "label": "STN without g"},
    ("mtn", True): {"color": "tab:orange", "linestyle": "-", "marker": "s", "label": "MTN with g"},
    ("mtn", False): {"color": "tab:orange", "linestyle": "--", "marker": "s", "label": "MTN without g"},
}
# Small horizontal offsets so the error bars of the five series do not overlap.
OFFSETS = {("stn", True): -0.09, ("stn", False): -0.03, ("mtn", True): 0.03, ("mtn", False): 0.09}
WSTN_OFFSET = 0.0


def seed_spread(seed_values: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per group of `keys`: mean and sample std (0 for one seed) over the per-seed values."""
    grouped = seed_values.groupby(keys)["value"]
    return pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1).fillna(0.0)}).reset_index()


def has_spread(results: pd.DataFrame, split: str, labels: str) -> bool:
    """Whether the results of a split and label kind come from two or more seeds (a std over seeds exists)."""
    return results.loc[split_mask(results, split) & (results["labels"] == labels), "seed"].nunique() >= 2


def figure3_caption(results: pd.DataFrame, split: str = TEST, labels: str = "given") -> str:
    """Figure 3's caption; it mentions error bars only when there are two or more seeds."""
    bars = "error bars: sample std over seeds" if has_spread(results, split, labels) else "one seed, no error bars"
    return (f"Figure 3: mean log loss and macro-F1 against the number of tasks, with and without the genre task; "
            f"{bars} (split {split}, labels {labels}).")


def figure3(results: pd.DataFrame, path: str | Path, split: str = TEST, labels: str = "given") -> Figure:
    """Write Figure 3 as PNG and return it: two panels (log loss, macro-F1) vs N; STN/MTN x with/without g,
    wSTN markers.

    Each point is the mean over seeds of the per-seed mean over the task subsets of that group (as in
    Table 3); error bars are the sample std over seeds (none for one seed). N = 1 is one net, drawn for both STN
    and MTN. A line breaks where the grid has no result for an N instead of joining its neighbours.
    """
    by_n = seed_spread(subset_seed_means(net_rows(results, split, labels)),
                       ["arch", "n_tasks", "includes_genre", "metric"])
    wide = seed_spread(wstn_rows(results, split, labels), ["n_tasks", "metric"])
    spread = has_spread(results, split, labels)
    with png_figure(path, (11, 4.2), layout="constrained") as figure:
        panels = figure.subplots(1, len(PAPER_METRICS))
        for axes, metric in zip(panels, PAPER_METRICS):
            for (arch, with_genre), style in LINES.items():
                points = by_n[(by_n["arch"] == arch) & (by_n["includes_genre"] == with_genre)
                              & (by_n["metric"] == metric)]
                if not points.empty:
                    every_n = points.set_index("n_tasks").reindex(range(1, len(TASKS) + 1))  # NaN breaks the line
                    axes.errorbar(every_n.index + OFFSETS[(arch, with_genre)], every_n["mean"],
                                  yerr=every_n["std"] if spread else None, capsize=3, **style)
            wide_points = wide[wide["metric"] == metric]
            if not wide_points.empty:
                axes.errorbar(wide_points["n_tasks"] + WSTN_OFFSET, wide_points["mean"],
                              yerr=wide_points["std"] if spread else None, color="black", marker="D",
                              linestyle="none", capsize=3, label="wSTN (genre only)")
            if not axes.has_data():
                axes.text(0.5, 0.5, "no results", transform=axes.transAxes, ha="center", va="center")
            axes.set_xticks(range(1, len(TASKS) + 1))
            axes.set_xlabel("number of tasks N")
            shown = METRIC_REGISTRY[metric]
            axes.set_ylabel(f"mean {shown.title}")
            axes.set_title(f"{shown.title} ({shown.direction})")
            axes.grid(alpha=0.3)
        handles, names = panels[0].get_legend_handles_labels()
        if handles:
            figure.legend(handles, names, loc="outside right center")
        figure.suptitle(f"Figure 3: mean performance by number of tasks (split {split}, labels {labels})")
    return figure


@dataclass(frozen=True)
class TrainingCurves:
    """A trained model's curves.csv and the epoch it kept (None when not recorded)."""

    frame: pd.DataFrame
    chosen_epoch: int | None = None


def _plot_losses(axes: Axes, frame: pd.DataFrame) -> None:
    """Training and validation loss per epoch (per task for a multi-task net); a curve with no value is not drawn,
    so the legend lists only drawn curves."""
    validation = "val_loss" if "val_loss" in frame.columns else "val_log_loss"
    tasks = frame.groupby("task") if "task" in frame.columns else [("", frame)]
    for task, rows in tasks:
        suffix = f" {task}" if task else ""
        for column, linestyle, what in (("train_loss", "-", "train"), (validation, "--", "validation")):
            drawn = rows.dropna(subset=[column])
            if not drawn.empty:
                axes.plot(drawn["epoch"], drawn[column], marker=".", linestyle=linestyle, label=f"{what}{suffix}")


def training_curves(curves: Mapping[str, TrainingCurves], path: str | Path) -> Figure:
    """Write one panel per trained model (name -> its curves) and return the figure: training and validation loss
    per epoch (per task for a multi-task net; the MLP's validation log loss), the kept epoch marked, integer epoch
    ticks."""
    with png_figure(path, (11, 3.2 * ((len(curves) + 1) // 2)), layout="constrained") as figure:
        panels = figure.subplots((len(curves) + 1) // 2, 2, squeeze=False).ravel()
        for axes, (name, model) in zip(panels, curves.items()):
            _plot_losses(axes, model.frame)
            if model.chosen_epoch is not None:
                axes.axvline(model.chosen_epoch, color="0.35", linestyle=":",
                             label=f"kept: epoch {model.chosen_epoch}")
            axes.xaxis.set_major_locator(MaxNLocator(nbins="auto", integer=True, min_n_ticks=1))  # one epoch too
            axes.set_title(name, fontsize=9)
            axes.set_xlabel("epoch")
            axes.set_ylabel("loss")
            axes.grid(alpha=0.3)
            if axes.get_legend_handles_labels()[0]:
                axes.legend(fontsize=7)
            else:
                axes.text(0.5, 0.5, "no losses recorded", transform=axes.transAxes, ha="center", va="center")
        for axes in panels[len(curves):]:
            axes.set_visible(False)
    return figure
