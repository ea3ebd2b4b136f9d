"""build_report: results.csv, tables.md, Figure 3 and the self-contained report.html in one directory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from agf.fileio import write_text_atomic
from agf.report.dataset import dataset_tables, split_warnings
from agf.report.document import (
    Block,
    Image,
    Section,
    read_png,
    render_html,
    render_markdown,
)
from agf.report.figures import figure3, figure3_caption, training_curves
from agf.report.results import (
    LABEL_KINDS,
    RESULT_SPLITS,
    canonical_order,
    validate_results,
    write_results_csv,
)
from agf.report.markup import Table
from agf.report.tables import (
    build_baselines_table,
    build_calibration_table,
    build_per_genre_table,
    build_table3,
    build_table4,
    build_table5,
    source_head_note,
    validate_baselines,
)
from agf.tasks import TASK_TITLES, canonical_tasks


@dataclass(frozen=True)
class ReportImages:
    """PNGs drawn by other stages: the best model's confusion matrices (given labels; true labels where the
    dataset has them) and reliability diagram, and the artist-group heatmaps per task."""

    confusion: str | Path | None = None
    heatmaps: Mapping[str, str | Path] = field(default_factory=dict)
    confusion_true: str | Path | None = None
    reliability: str | Path | None = None


def result_kinds(results: pd.DataFrame) -> list[tuple[str, str]]:
    """The (split, labels) pairs with results, test before val and given before true; (test, given) if none."""
    present = set(zip(results["split"], results["labels"]))
    kinds = [(split, labels) for split in RESULT_SPLITS for labels in LABEL_KINDS if (split, labels) in present]
    return kinds or [("test", "given")]


def _figure3_name(kind: tuple[str, str], primary: tuple[str, str]) -> str:
    """figure3.png for the primary (split, labels); figure3-<split>-<labels>.png for the others."""
    return "figure3.png" if kind == primary else f"figure3-{kind[0]}-{kind[1]}.png"


def _results_section(results: pd.DataFrame, baselines: pd.DataFrame | None, kind: tuple[str, str],
                     figure_path: Path) -> Section:
    """Figure 3 and Tables 3-5 (plus the baselines) of one split and label kind."""
    split, labels = kind
    blocks = [
        Image(figure_path, figure3_caption(results, split, labels)),
        build_table3(results, split, labels),
        build_table4(results, split, labels),
        build_table5(results, split, labels),
    ]
    if baselines is not None:
        blocks.append(build_baselines_table(baselines, split, labels))
    return Section(f"results-{split}-{labels}", f"Results: split {split}, labels {labels}", tuple(blocks))


def _best_model_section(best_model_name: str, confusions: Sequence[tuple[Path, str]], per_genre: pd.DataFrame | None,
                        curves: Path | None, reliability: Path | None, calibration: Table | None) -> Section:
    """The best model's confusion matrices, per-genre scores, calibration and training curves."""
    blocks: list[Block] = []
    for path, labels in confusions:
        blocks.append(Image(path, f"Confusion matrix of the best model ({best_model_name}), {labels} labels."))
    if per_genre is not None:
        blocks.append(build_per_genre_table(per_genre, best_model_name))
    if reliability is not None:
        blocks.append(Image(reliability, f"Reliability diagram of the best model ({best_model_name}): accuracy "
                                         "against confidence per bin, before and after temperature scaling."))
    if calibration is not None:
        blocks.append(calibration)
    if curves is not None:
        blocks.append(Image(curves, f"Training curves of the best model's nets and MLP ({best_model_name})."))
    return Section("best-model", f"Best model: {best_model_name}", tuple(blocks))


def _heatmap_section(heatmaps: Mapping[str, Path]) -> Section:
    """The artist-group heatmaps, in task order."""
    blocks = tuple(
        Image(heatmaps[task], f"Task {task} ({TASK_TITLES[task]}): mean artist-group mixture per genre.")
        for task in canonical_tasks(heatmaps)
    )
    return Section("artist-groups", "Artist group factors", blocks)


def build_report(
    out_dir: str | Path,
    results: pd.DataFrame,
    baselines: pd.DataFrame | None,
    tracks: pd.DataFrame,
    store_index: pd.DataFrame | None,
    images: ReportImages,
    best_model_name: str,
    per_genre: pd.DataFrame | None,
    title: str = "agf report",
    notes: Sequence[str] = (),
    curves: Mapping[str, pd.DataFrame] | None = None,
    calibration: tuple[pd.DataFrame, str] | None = None,
) -> dict[str, Path]:
    """Write results.csv, tables.md, Figure 3 (one PNG per split and label kind), the training curves of the best
    model (`curves`: model name -> its curves.csv) and report.html to `out_dir`; `calibration` is the calibration
    frame (CALIBRATION_COLUMNS) of the best model's evaluation and its split.

    Returns the paths: 'results', 'tables', 'html', 'figure3' (the first of test/val x given/true with
    results), 'figure3-<split>-<labels>' for the other kinds and 'curves' when given. Every input is checked
    before anything is written, so a bad input leaves no half-written report. Warnings about the splits
    (genres missing, few artists per genre) open the report.
    """
    out_dir = Path(out_dir)
    results = canonical_order(validate_results(results))
    if baselines is not None:
        baselines = validate_baselines(baselines)
    confusions = [(Path(path), labels) for path, labels in ((images.confusion, "given"), (images.confusion_true, "true"))
                  if path is not None]
    heatmaps = {task: Path(path) for task, path in images.heatmaps.items()}
    reliability = Path(images.reliability) if images.reliability is not None else None
    for path in [*(path for path, _ in confusions), *heatmaps.values(), *([reliability] if reliability else [])]:
        read_png(path)
    calibration_table = build_calibration_table(*calibration) if calibration is not None else None
    head_note = source_head_note(results, baselines) if baselines is not None else None
    notes = [*split_warnings(tracks), *notes, *([head_note] if head_note else [])]
    curves_path = out_dir / "curves.png" if curves else None

    kinds = result_kinds(results)
    figure_paths = {kind: out_dir / _figure3_name(kind, kinds[0]) for kind in kinds}
    sections = [_results_section(results, baselines, kind, figure_paths[kind]) for kind in kinds]
    if confusions or per_genre is not None or curves_path is not None or calibration_table is not None:
        sections.append(_best_model_section(best_model_name, confusions, per_genre, curves_path, reliability,
                                            calibration_table))
    if heatmaps:
        sections.append(_heatmap_section(heatmaps))
    sections.append(Section("dataset", "Dataset", tuple(dataset_tables(tracks, store_index))))

    paths = {"results": out_dir / "results.csv", "tables": out_dir / "tables.md", "html": out_dir / "report.html"}
    write_results_csv(results, paths["results"])
    for kind, figure_path in figure_paths.items():
        figure3(results, figure_path, *kind)
        paths[figure_path.stem] = figure_path
    if curves_path is not None:
        training_curves(curves, curves_path)
        paths["curves"] = curves_path
    write_text_atomic(paths["tables"], render_markdown(title, notes, sections, out_dir))
    write_text_atomic(paths["html"], render_html(title, notes, sections))
    return paths
