"""Figure 3: mean log loss and macro-F1 against the number of tasks, with and without the genre task.

Built with matplotlib's object API and the Agg canvas (no pyplot, no global backend state).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from agf.fileio import atomic_path
from agf.report.tables import METRIC_NAMES, PAPER_METRICS, net_rows, subset_seed_means, wstn_rows
from agf.tasks import TASKS

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


def figure3(results: pd.DataFrame, path: str | Path, split: str = "test", labels: str = "given") -> None:
    """Write Figure 3 as PNG: two panels (log loss, macro-F1) vs N; STN/MTN x with/without g, wSTN markers.

    Each point is the mean over seeds of the per-seed mean over the task subsets of that group (as in
    Table 3); error bars are the sample std over seeds. N = 1 is one net, drawn for both STN and MTN.
    """
    by_n = seed_spread(subset_seed_means(net_rows(results, split, labels)),
                       ["arch", "n_tasks", "includes_genre", "metric"])
    wide = seed_spread(wstn_rows(results, split, labels), ["n_tasks", "metric"])
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    panels = figure.subplots(1, len(PAPER_METRICS))
    for axes, metric in zip(panels, PAPER_METRICS):
        for (arch, with_genre), style in LINES.items():
            points = by_n[(by_n["arch"] == arch) & (by_n["includes_genre"] == with_genre) & (by_n["metric"] == metric)]
            if not points.empty:
                axes.errorbar(points["n_tasks"] + OFFSETS[(arch, with_genre)], points["mean"], yerr=points["std"],
                              capsize=3, **style)
        wide_points = wide[wide["metric"] == metric]
        if not wide_points.empty:
            axes.errorbar(wide_points["n_tasks"] + WSTN_OFFSET, wide_points["mean"], yerr=wide_points["std"],
                          color="black", marker="D", linestyle="none", capsize=3, label="wSTN (genre only)")
        if not axes.has_data():
            axes.text(0.5, 0.5, "no results", transform=axes.transAxes, ha="center", va="center")
        axes.set_xticks(range(1, len(TASKS) + 1))
        axes.set_xlabel("number of tasks N")
        axes.set_ylabel(f"mean {METRIC_NAMES[metric]}")
        axes.set_title(f"{METRIC_NAMES[metric]} ({'lower' if metric == 'log_loss' else 'higher'} is better)")
        axes.grid(alpha=0.3)
    handles, names = panels[0].get_legend_handles_labels()
    if handles:
        figure.legend(handles, names, loc="outside right center")
    figure.suptitle(f"Figure 3: mean performance by number of tasks (split {split}, labels {labels})")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=100)
