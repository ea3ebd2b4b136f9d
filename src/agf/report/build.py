"""build_report: results.csv, tables.md, Figure 3 and the self-contained report.html in one directory.

The report leads with the headline (the best transfer setup beside genre-only training), then the notes, Figure 3 and
Tables 3-5 once per split and label kind (each note under its first table only, columns empty everywhere left
out), the best model, the artist groups, the dataset, and how the results were made (provenance).
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import torch

from agf import __version__
from agf.datasets.table import TEST
from agf.fileio import write_text_atomic
from agf.report.dataset import dataset_counts, dataset_tables, split_warnings
from agf.report.chosen import chosen_blocks
from agf.report.document import (
    Block,
    Code,
    Image,
    Section,
    read_png,
    render_html,
    render_markdown,
)
from agf.report.figures import TrainingCurves, figure3, figure3_caption, training_curves
from agf.report.markup import Table, duration_text, number, without_empty_columns
from agf.report.results import (
    LABEL_KINDS,
    RESULT_SPLITS,
    SELECTION_BIAS_NOTE,
    canonical_order,
    selection_split,
    validate_results,
    write_results_csv,
)
from agf.report.tables import (
    Headline,
    build_baselines_table,
    build_calibration_table,
    build_per_genre_table,
    build_table3,
    build_table4,
    build_table5,
    headline,
    source_head_note,
    validate_baselines,
)
from agf.tasks import TASK_TITLES, canonical_tasks

NOT_RECORDED = "not recorded"
GIT_TIMEOUT_S = 10.0
AGF_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # src/agf in a checkout


@dataclass(frozen=True)
class ReportImages:
    """PNGs drawn by other stages: the best model's confusion matrices (given labels; true labels where the
    dataset has them) and reliability diagram, and the artist-group heatmaps per task."""

    confusion: str | Path | None = None
    heatmaps: Mapping[str, str | Path] = field(default_factory=dict)
    confusion_true: str | Path | None = None
    reliability: str | Path | None = None


@dataclass(frozen=True)
class Provenance:
    """What the pipeline knows of how the results were made and the report cannot see for itself."""

    dataset: str = NOT_RECORDED  # the dataset's kind and source
    config_toml: str | None = None  # the text of the saved WORKDIR/config.toml
    device: str = NOT_RECORDED  # the torch device of the run
    stage_seconds: Mapping[str, float] = field(default_factory=dict)  # wall seconds per stage (StageTimes)
    stage_times_note: str = ""  # which run measured the stage times, and when


def source_commit(package_dir: Path = AGF_PACKAGE_DIR) -> str:
    """The git commit of the agf code that runs ('<hash>', '+ uncommitted changes' when the tracked files
    differ from it), or 'unknown' when it is not a git checkout (an installed package) or git cannot tell."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(package_dir), *args], capture_output=True, text=True, check=True,
                              timeout=GIT_TIMEOUT_S).stdout.strip()

    try:
        git("ls-files", "--error-unmatch", "__init__.py")  # the package's own files are tracked: a checkout
        commit = git("rev-parse", "--short=12", "HEAD")
        changed = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + (" + uncommitted changes" if changed else "")


def footer_text(written: str | None = None, commit: str | None = None) -> str:
    """The last line of a report: agf's version, the commit of its code and when it was written (now, unless
    given)."""
    written = written or datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"Written by agf {__version__} (git commit {commit or source_commit()}) on {written}."


def machine_facts(device: str) -> str:
    """CPU count, torch device, platform, Python and torch versions of this machine."""
    return (f"{os.cpu_count()} CPUs, torch device {device}, {platform.platform()}, Python "
            f"{platform.python_version()}, torch {torch.__version__}")


def _provenance_section(provenance: Provenance, tracks: pd.DataFrame, written: str, commit: str) -> Section:
    """Date, agf version and commit, dataset and counts, machine, run time per stage and the config."""
    total = sum(provenance.stage_seconds.values())
    run_time = (f"{duration_text(total)} over the stages below" if provenance.stage_seconds else NOT_RECORDED)
    facts = Table(
        title="How these results were made",
        columns=("what", "value"),
        rows=(("written", written), ("agf", f"{__version__}, git commit {commit}"),
              ("dataset", provenance.dataset), ("usable tracks", dataset_counts(tracks)),
              ("machine", machine_facts(provenance.device)),
              ("run time", run_time + (f" ({provenance.stage_times_note})" if provenance.stage_times_note else ""))),
    )
    blocks: list[Block] = [facts]
    if provenance.stage_seconds:
        blocks.append(Table(
            title="Wall time per stage", columns=("stage", "wall time", "seconds"),
            rows=tuple((stage, duration_text(seconds), number(seconds, 1))
                       for stage, seconds in provenance.stage_seconds.items()),
            notes=("A stage reused from an earlier run counts only the time to find it finished.",),
        ))
    blocks.append(Code("config.toml (the settings the run used)", provenance.config_toml) if provenance.config_toml
                  else f"config.toml: {NOT_RECORDED}.")
    return Section("provenance", "Provenance", tuple(blocks))


def _headline_section(lead: Headline) -> Section:
    """The answer first: the best model, the verdict on its difference from genre-only training, the table."""
    return Section("headline", "Headline", (f"Best transfer setup (chosen on validation): {lead.best}.", lead.verdict,
                                            lead.table))


def _notes_once(sections: Sequence[Section]) -> list[Section]:
    """The sections with each table's notes shown only under the first table that has them (and not after a
    paragraph that says the same), and each table's columns that are '-' in every row left out."""
    shown: set[str] = set()
    trimmed = []
    for section in sections:
        blocks = []
        for block in section.blocks:
            if isinstance(block, Table):
                block = replace(without_empty_columns(block), notes=tuple(n for n in block.notes if n not in shown))
                shown.update(block.notes)
            elif isinstance(block, str):
                shown.add(block)
            blocks.append(block)
        trimmed.append(replace(section, blocks=tuple(blocks)))
    return trimmed


def result_kinds(results: pd.DataFrame) -> list[tuple[str, str]]:
    """The (split, labels) pairs with results, test before val and given before true; (test, given) if none."""
    present = set(zip(results["split"], results["labels"]))
    kinds = [(split, labels) for split in RESULT_SPLITS for labels in LABEL_KINDS if (split, labels) in present]
    return kinds or [(TEST, "given")]


def _figure3_name(kind: tuple[str, str], primary: tuple[str, str]) -> str:
    """figure3.png for the primary (split, labels); figure3-<split>-<labels>.png for the others."""
    return "figure3.png" if kind == primary else f"figure3-{kind[0]}-{kind[1]}.png"


def _results_section(results: pd.DataFrame, baselines: pd.DataFrame | None, kind: tuple[str, str],
                     figure_path: Path, first: tuple[str, str]) -> Section:
    """Figure 3 and Tables 3-5 (plus the baselines) of one split and label kind; a section after the `first` kind
    says that the notes under the first one's tables apply. The split that chose the models is folded when
    another split is reported (its numbers are selection-biased)."""
    split, labels = kind
    biased = split == selection_split(results)
    lead = [SELECTION_BIAS_NOTE] if biased else []
    if kind != first:
        lead.append(f"The notes under the tables of split {first[0]}, labels {first[1]} apply here too.")
    blocks = [
        *lead,
        Image(figure_path, figure3_caption(results, split, labels)),
        build_table3(results, split, labels),
        build_table4(results, split, labels),
        build_table5(results, split, labels),
    ]
    if baselines is not None:
        blocks.append(build_baselines_table(baselines, split, labels))
    fold = ("Selection-biased numbers of the split that chose the epochs and models (open to show)"
            if biased and first[0] != split else "")
    return Section(f"results-{split}-{labels}", f"Results: split {split}, labels {labels}", tuple(blocks), fold)


def _best_model_section(best_model_name: str, confusions: Sequence[tuple[Path, str]], per_genre: pd.DataFrame | None,
                        curves: Path | None, reliability: Path | None, calibration: Table | None) -> Section:
    """The best model's confusion matrices, per-genre scores, calibration and training curves."""
    blocks: list[Block] = []
    for path, labels in confusions:
        blocks.append(Image(path, f"Confusion matrix of the best transfer setup ({best_model_name}), {labels} labels."))
    if per_genre is not None:
        blocks.append(build_per_genre_table(per_genre, best_model_name))
    if reliability is not None:
        blocks.append(Image(reliability, f"Reliability diagram of the best transfer setup ({best_model_name}): accuracy "
                                         "against confidence per bin, before and after temperature scaling."))
    if calibration is not None:
        blocks.append(calibration)
    if curves is not None:
        blocks.append(Image(curves, f"Training curves of the best transfer setup's nets and MLP ({best_model_name}); the "
                                    "dotted line marks the epoch each kept."))
    return Section("best-model", f"Best transfer setup: {best_model_name}", tuple(blocks))


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
    curves: Mapping[str, TrainingCurves] | None = None,
    calibration: tuple[pd.DataFrame, str] | None = None,
    provenance: Provenance = Provenance(),
    selection: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write results.csv, tables.md, Figure 3 (one PNG per split and label kind), the training curves of the best
    model (`curves`: model name -> its curves and kept epoch) and report.html to `out_dir`; `calibration` is the
    calibration frame (CALIBRATION_COLUMNS) of the best model's evaluation and its split; `provenance` what the
    pipeline knows of how the results were made; `selection` the chosen model's record (selection.json), shown
    after the headline.

    Returns the paths: 'results', 'tables', 'html', 'figure3' (the first of test/val x given/true with
    results), 'figure3-<split>-<labels>' for the other kinds and 'curves' when given. Every input is checked
    before anything is written, so a bad input leaves no half-written report. The headline opens the report;
    warnings about the splits (genres missing, few artists per genre) follow it.
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
    lead = _headline_section(headline(results))
    sections = [Section("chosen", "The chosen model", chosen_blocks(selection))] if selection else []
    sections += [_results_section(results, baselines, kind, figure_paths[kind], kinds[0]) for kind in kinds]
    if confusions or per_genre is not None or curves_path is not None or calibration_table is not None:
        sections.append(_best_model_section(best_model_name, confusions, per_genre, curves_path, reliability,
                                            calibration_table))
    if heatmaps:
        sections.append(_heatmap_section(heatmaps))
    sections.append(Section("dataset", "Dataset", tuple(dataset_tables(tracks, store_index))))
    written, commit = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), source_commit()
    sections.append(_provenance_section(provenance, tracks, written, commit))
    sections = _notes_once(sections)
    footer = footer_text(written, commit)

    paths = {"results": out_dir / "results.csv", "tables": out_dir / "tables.md", "html": out_dir / "report.html"}
    write_results_csv(results, paths["results"])
    for kind, figure_path in figure_paths.items():
        figure3(results, figure_path, *kind)
        paths[figure_path.stem] = figure_path
    if curves_path is not None:
        training_curves(curves, curves_path)
        paths["curves"] = curves_path
    write_text_atomic(paths["tables"], render_markdown(title, lead, notes, sections, out_dir, footer))
    write_text_atomic(paths["html"], render_html(title, lead, notes, sections, footer))
    return paths
