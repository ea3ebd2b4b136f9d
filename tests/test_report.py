"""Tests of agf.report: Tables 3-5 against independently computed numbers, partial grids, Figure 3,
the dataset section and the self-contained report.html."""

from __future__ import annotations

import itertools
import re
import statistics
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from agf.errors import ReportError
from agf.evaluation import plot_confusion
from agf.factors.plots import plot_genre_mixtures
from agf.metrics import METRICS, per_class_report
from agf.report import (
    RESULTS_COLUMNS,
    ReportImages,
    build_report,
    dataset_section,
    figure3,
    read_results_csv,
    table3,
    table4,
    table5,
    write_results_csv,
)
from agf.report.markup import to_markdown
from agf.report.results import rank_by_selection, select
from agf.report.tables import build_calibration_table, source_head_note
from agf.tasks import task_subsets

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def synthetic_results(
    seeds: tuple[int, ...] = (0, 1),
    subsets: tuple[str, ...] | None = None,
    archs: tuple[str, ...] = ("stn", "mtn", "wstn"),
    splits: tuple[str, ...] = ("val", "test"),
    label_kinds: tuple[str, ...] = ("given", "true"),
) -> pd.DataFrame:
    """A results frame as the pipeline writes it, with random but seeded values."""
    rng = np.random.default_rng(2018)
    rows = []

    def add(tasks: str, arch: str, n_tasks: int, seed: int, split: str, labels: str) -> None:
        for metric in METRICS:
            value = rng.uniform(0.9, 2.2) if metric == "log_loss" else rng.uniform(0.2, 0.8)
            rows.append({"tasks": tasks, "arch": arch, "n_tasks": n_tasks, "includes_genre": "g" in tasks,
                         "seed": seed, "split": split, "labels": labels, "metric": metric, "value": value})

    for split, labels, seed in itertools.product(splits, label_kinds, seeds):
        for tasks in subsets or task_subsets():
            for arch in ("stn", "mtn"):
                if arch in archs and not (arch == "mtn" and len(tasks) == 1):
                    add(tasks, arch, len(tasks), seed, split, labels)
        if "wstn" in archs:
            for n_tasks in range(2, 6):
                add("g", "wstn", n_tasks, seed, split, labels)
    return pd.DataFrame(rows)


def synthetic_baselines() -> pd.DataFrame:
    """Two baseline models over two seeds, every split and label kind."""
    rows = [
        {"model": model, "seed": seed, "split": split, "labels": labels, "metric": metric,
         "value": 0.1 * (i + 1) + 0.01 * seed}
        for i, model in enumerate(("genre STN softmax", "classical: logreg on MFCC stats"))
        for seed, split, labels, metric in itertools.product((0, 1), ("val", "test"), ("given", "true"), METRICS)
    ]
    return pd.DataFrame(rows)


def synthetic_tracks() -> pd.DataFrame:
    """12 tracks: 3 artists, 4 albums (one of them mixed-genre), one track without album, label noise."""
    return pd.DataFrame({
        "track_id": [f"t{i}" for i in range(12)],
        "artist_id": ["a1"] * 6 + ["a2"] * 4 + ["a3"] * 2,
        "album_id": ["x1", "x1", "x1", "x2", "x2", "x2", "y1", "y1", "y1", "y1", "z1", ""],
        "genre": ["rock", "rock", "pop", "rock", "rock", "rock", "pop", "pop", "pop", "pop", "jazz", "jazz"],
        "subgenres": [[] for _ in range(12)],
        "split": ["train"] * 4 + ["val", "test"] + ["train"] * 3 + ["test", "train", "val"],
        "true_genre": ["rock"] * 6 + ["pop"] * 3 + ["rock", "jazz", "jazz"],
    })


def synthetic_store_index() -> pd.DataFrame:
    """The feature-store index of synthetic_tracks: two files flagged."""
    status = ["ok"] * 10 + ["too_short", "failed"]
    return pd.DataFrame({
        "track_id": [f"t{i}" for i in range(12)],
        "status": status,
        "reason": ["" if s == "ok" else f"{s} reason" for s in status],
        "sample_rate": [44100.0] * 8 + [22050.0, 22050.0, 44100.0, np.nan],
        "channels": [2.0] * 8 + [1.0, 1.0, 2.0, np.nan],
        "duration": [30.0] * 10 + [0.5, np.nan],
    })


def synthetic_images(directory: Path) -> ReportImages:
    """A confusion matrix and two artist-group heatmaps drawn by the stages that make them."""
    plot_confusion(np.array([[5, 1, 0], [2, 3, 0], [0, 1, 4]]), ["jazz", "pop", "rock"], directory / "cm.png", "cm")
    heatmaps = {}
    for task in ("s", "m"):
        mixtures = pd.DataFrame(np.random.default_rng(0).dirichlet(np.ones(6), size=3), index=["jazz", "pop", "rock"])
        heatmaps[task] = directory / f"heatmap_{task}.png"
        plot_genre_mixtures(mixtures, heatmaps[task], f"task {task}")
    return ReportImages(confusion=directory / "cm.png", heatmaps=heatmaps)


def synthetic_per_genre() -> pd.DataFrame:
    """A per-genre report as agf.evaluation makes it."""
    return per_class_report(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), ["jazz", "pop", "rock"])


def parse_table(markdown: str) -> list[dict[str, str]]:
    """The rows of a Markdown table as dicts keyed by header."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]


def parse_cell(cell: str) -> tuple[float, float | None]:
    """'m ± s' -> (m, s); 'm' -> (m, None)."""
    mean, _, std = cell.partition(" ± ")
    return float(mean), float(std) if std else None


def expected_mean_std(per_seed: list[float]) -> tuple[float, float]:
    """Mean and sample std of per-seed values, computed with the statistics module."""
    return statistics.fmean(per_seed), statistics.stdev(per_seed)


def records(results: pd.DataFrame, split: str = "test", labels: str = "given") -> list[dict]:
    """The rows of one split and label kind as plain dicts."""
    return [r for r in results.to_dict("records") if r["split"] == split and r["labels"] == labels]


def assert_cell(cell: str, per_seed: list[float]) -> None:
    """A 'mean ± std' cell equals the mean and sample std of per-seed values (to the 4 shown decimals)."""
    mean, std = parse_cell(cell)
    want_mean, want_std = expected_mean_std(per_seed)
    assert mean == pytest.approx(want_mean, abs=6e-5)
    assert std == pytest.approx(want_std, abs=6e-5)


RESULTS = synthetic_results()


@pytest.mark.parametrize(("split", "labels"), [("test", "given"), ("val", "true")])
def test_table3_is_the_seed_spread_of_subset_means(split: str, labels: str) -> None:
    rows = records(RESULTS, split, labels)
    table = parse_table(table3(RESULTS, split, labels))
    assert [(r["N"], r["genre task"]) for r in table] == [
        ("1", "with g"), ("1", "without g"), ("2", "with g"), ("2", "without g"), ("3", "with g"),
        ("3", "without g"), ("4", "with g"), ("4", "without g"), ("5", "with g"),
    ]
    for line in table:
        n, with_genre = int(line["N"]), line["genre task"] == "with g"
        for arch, metric, column in [("stn", "log_loss", "STN log loss"), ("stn", "macro_f1", "STN macro-F1"),
                                     ("mtn", "log_loss", "MTN log loss"), ("mtn", "macro_f1", "MTN macro-F1")]:
            source_arch = "stn" if n == 1 else arch  # N = 1: one net, shown under both columns
            per_seed = [
                statistics.fmean(r["value"] for r in rows if r["arch"] == source_arch and r["n_tasks"] == n
                                 and ("g" in r["tasks"]) == with_genre and r["metric"] == metric and r["seed"] == s)
                for s in (0, 1)
            ]
            assert_cell(line[column], per_seed)
    with_g_3 = next(r for r in table if r["N"] == "3" and r["genre task"] == "with g")
    assert with_g_3["subsets"] == "6/6"


def test_table4_lists_every_combination_in_paper_order() -> None:
    rows = records(RESULTS)
    table = parse_table(table4(RESULTS))
    assert [r["tasks"] for r in table] == task_subsets()
    assert [r["tasks"] for r in table][:7] == ["g", "m", "d", "e", "s", "gm", "gd"]
    for line in table:
        tasks = line["tasks"]
        assert line["N"] == str(len(tasks))
        for arch, metric, column in [("stn", "log_loss", "STN log loss"), ("mtn", "macro_f1", "MTN macro-F1")]:
            source_arch = "stn" if len(tasks) == 1 else arch
            per_seed = [next(r["value"] for r in rows if r["tasks"] == tasks and r["arch"] == source_arch
                             and r["metric"] == metric and r["seed"] == s) for s in (0, 1)]
            assert_cell(line[column], per_seed)


def chosen_subset(rows: list[dict], arch: str, n: int) -> str:
    """The selection rule by hand: the highest mean validation accuracy (given labels), then the lower log loss."""
    def mean(tasks: str, metric: str) -> float:
        return statistics.fmean(r["value"] for r in rows if r["tasks"] == tasks and r["arch"] == arch
                                and r["metric"] == metric and r["split"] == "val" and r["labels"] == "given")

    subsets = {r["tasks"] for r in rows if r["arch"] == arch and r["n_tasks"] == n}
    return min(subsets, key=lambda tasks: (-mean(tasks, "accuracy"), mean(tasks, "log_loss")))


def test_table5_best_subsets_are_chosen_on_validation_and_reported_on_test() -> None:
    all_rows = RESULTS.to_dict("records")
    rows = records(RESULTS)
    table = parse_table(table5(RESULTS))
    assert [r["N"] for r in table] == ["1", "2", "3", "4", "5"]
    for line in table:
        n = int(line["N"])
        for arch, prefix in (("stn", "STN"), ("mtn", "MTN")):
            source_arch = "stn" if n == 1 else arch
            best = chosen_subset(all_rows, source_arch, n)
            assert line[f"best {prefix}"] == best
            test_loss = statistics.fmean(r["value"] for r in rows if r["tasks"] == best and r["arch"] == source_arch
                                         and r["metric"] == "log_loss")
            assert parse_cell(line[f"{prefix} log loss"])[0] == pytest.approx(test_loss, abs=6e-5)
        if n == 1:
            assert line["wSTN log loss"] == "-"
        else:
            per_seed = [next(r["value"] for r in rows if r["arch"] == "wstn" and r["n_tasks"] == n
                             and r["metric"] == "macro_f1" and r["seed"] == s) for s in (0, 1)]
            assert_cell(line["wSTN macro-F1"], per_seed)
    assert "chosen by the highest mean validation accuracy" in table5(RESULTS)


def test_poisoned_test_split_changes_no_choice() -> None:
    """Replacing every test (and true-label) number changes the numbers shown, never the subsets chosen."""
    poisoned = RESULTS.copy()
    reported = (poisoned["split"] == "test") | (poisoned["labels"] == "true")
    poisoned.loc[reported, "value"] = np.random.default_rng(7).permutation(poisoned.loc[reported, "value"].to_numpy())
    for labels in ("given", "true"):
        before, after = parse_table(table5(RESULTS, "test", labels)), parse_table(table5(poisoned, "test", labels))
        assert [(r["best STN"], r["best MTN"]) for r in before] == [(r["best STN"], r["best MTN"]) for r in after]
    assert table5(RESULTS) != table5(poisoned)  # the numbers shown did change
    # Nor do the labels shown choose (an oracle choice on true labels picked other subsets before).
    test_choice = {r["N"]: r["best STN"] for r in parse_table(table5(RESULTS, "test", "true"))}
    assert test_choice == {r["N"]: r["best STN"] for r in parse_table(table5(RESULTS, "test", "given"))}


def test_validation_tables_say_they_are_selection_biased() -> None:
    assert "selection-biased" in table3(RESULTS, "val") + table4(RESULTS, "val") + table5(RESULTS, "val")
    assert "selection-biased" not in table3(RESULTS, "test") + table4(RESULTS, "test") + table5(RESULTS, "test")


def test_partial_grid_shows_dashes_and_never_crashes() -> None:
    partial = synthetic_results(subsets=("g", "gm", "md"), archs=("stn",), splits=("val",), label_kinds=("given",))
    rows3 = {(r["N"], r["genre task"]): r for r in parse_table(table3(partial, "val"))}
    assert rows3[("1", "with g")]["MTN log loss"] != "-"  # N = 1 is the STN, shown for MTN too
    assert rows3[("2", "with g")]["MTN log loss"] == "-"
    assert rows3[("2", "with g")]["subsets"] == "1/4"
    assert rows3[("5", "with g")]["STN macro-F1"] == "-"
    assert [r["tasks"] for r in parse_table(table4(partial, "val"))] == ["g", "gm", "md"]
    rows5 = parse_table(table5(partial, "val"))
    assert [r["N"] for r in rows5] == ["1", "2"]
    assert rows5[1]["best STN"] == chosen_subset(partial.to_dict("records"), "stn", 2)
    assert rows5[1]["best MTN"] == "-" and rows5[1]["wSTN log loss"] == "-"
    # A split without results: the fixed rows of Table 3 are all '-', Tables 4 and 5 say so.
    assert all(r["STN log loss"] == "-" for r in parse_table(table3(partial, "test")))
    assert "(no results)" in table4(partial, "test") and "(no results)" in table5(partial, "test")


def test_single_seed_shows_no_spread() -> None:
    single = synthetic_results(seeds=(3,))
    text = table3(single) + table4(single) + table5(single)
    assert "±" not in text
    assert "a single seed" in text
    value = next(r["value"] for r in records(single) if r["tasks"] == "gm" and r["arch"] == "mtn"
                 and r["metric"] == "log_loss")
    assert next(r for r in parse_table(table4(single)) if r["tasks"] == "gm")["MTN log loss"] == f"{value:.4f}"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns="labels"), "missing column"),
        (lambda f: f.assign(arch=f["arch"].replace("mtn", "mlp")), "unknown arch"),
        (lambda f: f.assign(tasks=f["tasks"].replace("gm", "mg")), "in that order"),
        (lambda f: f.assign(n_tasks=f["n_tasks"].where(f["tasks"] != "gm", 3)), "number of task letters"),
        (lambda f: f.assign(includes_genre=False), "includes_genre"),
        (lambda f: pd.concat([f, f[f["tasks"] == "m"].assign(arch="mtn")]), "one-task MTN"),
        (lambda f: f.assign(n_tasks=f["n_tasks"].where(f["arch"] != "wstn", 6)), "wSTN"),
        (lambda f: f.assign(value=f["value"].where(f["tasks"] != "gm", np.nan)), "missing or infinite"),
        (lambda f: pd.concat([f, f.head(1)]), "duplicated"),
    ],
)
def test_invalid_results_are_rejected_by_name(change, message: str, tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=message):
        write_results_csv(change(RESULTS), tmp_path / "results.csv")
    assert list(tmp_path.iterdir()) == []


def test_results_csv_is_tidy_and_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    shuffled = RESULTS.sample(frac=1.0, random_state=0)
    write_results_csv(shuffled, path)
    assert path.read_text().splitlines()[0] == ",".join(RESULTS_COLUMNS)
    back = read_results_csv(path)
    assert len(back) == len(RESULTS)
    assert back["tasks"].iloc[0] == "g" and back["split"].iloc[0] == "test"
    key = ["tasks", "arch", "n_tasks", "seed", "split", "labels", "metric"]
    merged = back.merge(RESULTS, on=key, suffixes=("", "_in"))
    assert len(merged) == len(RESULTS)
    np.testing.assert_allclose(merged["value"], merged["value_in"], rtol=1e-9)
    assert table3(back) == table3(RESULTS)
    with pytest.raises(ReportError, match="no results file"):
        read_results_csv(tmp_path / "absent.csv")


def test_figure3_writes_a_png_even_for_partial_grids(tmp_path: Path) -> None:
    for name, frame in [("full.png", RESULTS), ("partial.png", synthetic_results(subsets=("gm",), archs=("mtn",))),
                        ("empty.png", RESULTS.iloc[:0])]:
        figure3(frame, tmp_path / name)
        assert (tmp_path / name).read_bytes().startswith(PNG_SIGNATURE)
        height, width, _ = matplotlib.image.imread(tmp_path / name).shape
        assert width > 2 * height > 400


def test_figure3_plots_the_table3_means_and_breaks_lines_at_missing_n(tmp_path: Path) -> None:
    partial = synthetic_results(subsets=("g", "gm", "gmde"), archs=("stn",))
    figure = figure3(partial, tmp_path / "f.png")
    log_loss_panel = figure.axes[0]
    [series] = [c for c in log_loss_panel.containers if c.get_label() == "STN with g"]
    x, y = (np.asarray(values, dtype=float) for values in series.lines[0].get_data())
    assert np.round(x).tolist() == [1, 2, 3, 4, 5]
    assert np.isnan(y[[2, 4]]).all() and not np.isnan(y[[0, 1, 3]]).any()  # no result for N = 3 and 5
    rows = records(partial)
    for n, tasks in ((1, "g"), (2, "gm"), (4, "gmde")):
        expected = statistics.fmean(r["value"] for r in rows if r["tasks"] == tasks and r["arch"] == "stn"
                                    and r["metric"] == "log_loss")
        assert y[n - 1] == pytest.approx(expected)


def test_figure3_shows_error_bars_only_over_two_or_more_seeds(tmp_path: Path) -> None:
    """One seed has no spread: no error bars drawn and none announced in the caption."""
    single = synthetic_results(seeds=(0,), subsets=("g", "gm"), splits=("val",), label_kinds=("given",))
    paths = build_report(tmp_path / "one", single, None, synthetic_tracks(), None, ReportImages(), "STN g", None)
    markdown = paths["tables"].read_text()
    assert "error bars" in markdown and "std over seeds" not in markdown and "one seed, no error bars" in markdown
    assert not any(c.has_yerr for c in figure3(single, tmp_path / "one.png", "val").axes[0].containers)
    paths = build_report(tmp_path / "two", RESULTS, None, synthetic_tracks(), None, ReportImages(), "STN g", None)
    assert "error bars: sample std over seeds (split test, labels given)" in paths["tables"].read_text()
    assert all(c.has_yerr for c in figure3(RESULTS, tmp_path / "two.png").axes[0].containers)


def test_dataset_section_counts() -> None:
    text = dataset_section(synthetic_tracks(), synthetic_store_index())
    sections = text.split("**")

    def table_titled(title: str) -> list[dict[str, str]]:
        return parse_table(sections[sections.index(title) + 1])

    genre_rows = {r["genre"]: r for r in table_titled("Tracks, artists and albums per genre and split")}
    assert genre_rows["rock"]["train tracks"] == "3" and genre_rows["rock"]["all albums"] == "2"
    assert genre_rows["pop"]["all artists"] == "2" and genre_rows["pop"]["all albums"] == "2"
    assert genre_rows["all"]["all tracks"] == "12" and genre_rows["all"]["all albums"] == "4"
    assert genre_rows["jazz"]["val tracks"] == "1" and genre_rows["jazz"]["all albums"] == "1"
    per_artist = {r["tracks per artist"]: r["artists"] for r in table_titled("Tracks per artist")}
    assert per_artist == {"1": "0", "2-4": "2", "5-9": "1", "10-19": "0", "20-49": "0", "50+": "0"}
    mixed = table_titled("Albums whose tracks carry different genres")
    assert [r["album"] for r in mixed] == ["x1"] and mixed[0]["genres"] == "rock (2), pop (1)"
    assert "1 of 4 albums (25.0%)" in text
    noise = {r["split"]: r["wrong label"] for r in table_titled("Given genre vs true genre")}
    assert noise == {"train": "1", "val": "0", "test": "1", "all": "2"}
    flagged = table_titled("Files flagged by prepare")
    assert [(r["track"], r["status"]) for r in flagged] == [("t11", "failed"), ("t10", "too_short")]
    assert "12 files: ok 10" in text
    audio = table_titled("Audio files by sample rate and channels")
    assert [(r["sample rate"], r["channels"], r["files"]) for r in audio] == [("22050", "1", "2"), ("44100", "2", "9")]


def test_dataset_section_names_missing_columns() -> None:
    with pytest.raises(ReportError, match="tracks: missing column.*album_id"):
        dataset_section(synthetic_tracks().drop(columns="album_id"), None)


def build_synthetic_report(out_dir: Path, results: pd.DataFrame = RESULTS) -> dict[str, Path]:
    """A full report from the synthetic inputs (also used by the browser test)."""
    return build_report(
        out_dir, results, synthetic_baselines(), synthetic_tracks(), synthetic_store_index(),
        synthetic_images(out_dir.parent), "MTN genre head (gmdes)", synthetic_per_genre(),
        title="agf test report", notes=["Synthetic numbers for a test."],
    )


# The headline; per split and label kind: Tables 3, 4, 5 and baselines; then per-genre; then 6 dataset tables;
# then the provenance table (no stage times given).
EXPECTED_TABLES = 1 + 4 * 4 + 1 + 6 + 1


def test_build_report_writes_a_self_contained_page(tmp_path: Path) -> None:
    paths = build_synthetic_report(tmp_path / "report")
    assert set(paths) == {"results", "tables", "html", "figure3", "figure3-test-true", "figure3-val-given",
                          "figure3-val-true"}
    assert all(path.is_file() for path in paths.values())
    page = paths["html"].read_text()
    assert page.count("<table>") == EXPECTED_TABLES
    for title in ("Table 3:", "Table 4:", "Table 5:", "Baselines (split val, labels true)", "Per-genre scores",
                  "Tracks per artist", "Files flagged by prepare", "Albums whose tracks carry different genres"):
        assert title in page
    sources = re.findall(r'<img src="([^"]*)"', page)
    assert len(sources) == 4 + 1 + 2  # Figure 3 per kind, confusion, two heatmaps
    assert all(src.startswith("data:image/png;base64,") for src in sources)
    assert "<script" not in page.lower()
    assert not re.search(r'(src|href)="(?!data:|#)', page)
    assert "http" not in page.replace("http-equiv", "")
    markdown = paths["tables"].read_text()
    assert markdown.count("**Table 3:") == 4 and "![Figure 3" in markdown and "(figure3.png)" in markdown
    assert "Files flagged by prepare" in markdown


def test_build_report_checks_inputs_before_writing(tmp_path: Path) -> None:
    out_dir = tmp_path / "report"
    missing = ReportImages(confusion=tmp_path / "absent.png")
    with pytest.raises(ReportError, match="absent.png: image not found"):
        build_report(out_dir, RESULTS, None, synthetic_tracks(), None, missing, "m", None)
    with pytest.raises(ReportError, match="per_genre: missing column"):
        build_report(out_dir, RESULTS, None, synthetic_tracks(), None, ReportImages(), "m",
                     synthetic_per_genre().drop(columns="support"))
    assert not out_dir.exists()


def test_build_report_with_a_minimal_grid(tmp_path: Path) -> None:
    single = synthetic_results(seeds=(0,), subsets=("g", "gm"), archs=("stn", "mtn"), splits=("val",),
                               label_kinds=("given",))
    paths = build_report(tmp_path, single, None, synthetic_tracks(), None, ReportImages(), "STN g", None)
    assert set(paths) == {"results", "tables", "html", "figure3"}
    page = paths["html"].read_text()
    assert page.count("<table>") == 1 + 3 + 4 + 1 and "±" not in page


def test_per_genre_table_lists_absent_genres_instead_of_scoring_them() -> None:
    from agf.report.tables import build_per_genre_table

    per_genre = per_class_report(np.array([0, 0, 1]), np.array([0, 2, 1]), ["jazz", "pop", "rock"])
    table = build_per_genre_table(per_genre, "STN g")
    assert [row[0] for row in table.rows] == ["jazz", "pop"]
    assert any("rock" in note and "not scored" in note for note in table.notes)


def test_split_warnings_name_missing_genres_and_thin_splits() -> None:
    from agf.report.dataset import split_warnings

    rows = [("train", g, f"{g}-a{i}") for g in ("jazz", "pop", "rock") for i in range(6)]
    rows += [("val", g, f"{g}-v{i}") for g in ("jazz", "pop", "rock") for i in range(5)]
    rows += [("test", g, f"{g}-t{i}") for g in ("jazz", "pop") for i in range(5 if g == "jazz" else 2)]
    tracks = pd.DataFrame(rows, columns=["split", "genre", "artist_id"])
    warnings = split_warnings(tracks)
    assert len(warnings) == 2 and all(w.startswith("warning: the test split") for w in warnings)
    assert "1 of 3 genres (rock)" in warnings[0] and "(pop 2)" in warnings[1]
    assert split_warnings(tracks[tracks["split"] != "test"]) == []


def test_calibration_table_pairs_the_seeds() -> None:
    frame = pd.DataFrame({
        "model": ["transfer"] * 3 + ["head"],
        "seed": [0, 1, 2, 0],
        "temperature": [1.5, 2.0, 2.5, 0.8],
        "log_loss_before": [1.0, 1.2, 1.1, 0.5],
        "log_loss_after": [0.9, 1.0, 1.0, 0.5],
        "ece_before": [0.2, 0.3, 0.25, 0.1],
        "ece_after": [0.05, 0.04, 0.06, 0.1],
    })
    table = build_calibration_table(frame, "test")
    transfer, head = table.rows
    # Student's t over the 3 seeds' reductions (0.1, 0.2, 0.1); the percentile bootstrap gave [0.1000, 0.2000].
    assert transfer[:3] == ("transfer", "3", "2.000") and transfer[5] == "0.1333 [-0.0101, 0.2768]"
    assert head[1] == "1" and head[5] == "0.0000 [-, -]"  # one seed: no interval
    with pytest.raises(ReportError, match="missing column"):
        build_calibration_table(frame.drop(columns="ece_after"), "test")


def test_the_report_says_when_a_source_head_beats_the_best_transfer_on_validation(tmp_path: Path) -> None:
    results = synthetic_results(subsets=("g", "gm"), archs=("stn", "mtn"))
    arch, tasks, _ = rank_by_selection(results, ["arch", "tasks", "n_tasks"])[0]
    chosen = results[(results["arch"] == arch) & (results["tasks"] == tasks) & (results["split"] == "val")
                     & (results["labels"] == "given")]
    accuracy = chosen.loc[chosen["metric"] == "accuracy", "value"].mean()

    def heads(val_accuracy: float) -> pd.DataFrame:
        frame = synthetic_baselines()
        frame["model"] = frame["model"].replace("genre STN softmax", "genre STN softmax: STN[g]")
        rows = (frame["split"] == "val") & (frame["metric"] == "accuracy")
        frame.loc[rows & frame["model"].str.startswith("genre"), "value"] = val_accuracy
        frame.loc[rows & frame["model"].str.startswith("classical"), "value"] = 1.0  # not a source head
        frame.loc[(frame["split"] == "test") & (frame["metric"] == "accuracy"), "value"] = 1.0  # never read
        return frame

    assert source_head_note(results, heads(accuracy - 0.01)) is None
    note = source_head_note(results, heads(accuracy + 0.01))
    assert note.startswith("On the val split (given labels) the source net's own genre head genre STN softmax: STN[g]")
    assert f"beats the best transfer, {arch.upper()} {tasks}" in note
    paths = build_report(tmp_path, results, heads(accuracy + 0.01), synthetic_tracks(), None, ReportImages(),
                         "STN g", None)
    assert note in paths["tables"].read_text()


# -- the headline, notes once, provenance, training curves ----------------------------------------------------


def with_val_accuracy(results: pd.DataFrame, setup: tuple[str, str, int], accuracy: float) -> pd.DataFrame:
    """`results` with the validation accuracy (given labels) of one setup set to `accuracy` for every seed."""
    frame = results.copy()
    arch, tasks, n_tasks = setup
    rows = ((frame["arch"] == arch) & (frame["tasks"] == tasks) & (frame["n_tasks"] == n_tasks)
            & (frame["split"] == "val") & (frame["labels"] == "given") & (frame["metric"] == "accuracy"))
    frame.loc[rows, "value"] = accuracy
    return frame


def per_seed_values(results: pd.DataFrame, setup: tuple[str, str, int], labels: str, metric: str) -> list[float]:
    """The test values of one setup, label kind and metric, seed by seed."""
    return [r["value"] for r in records(results, "test", labels) if (r["arch"], r["tasks"], r["n_tasks"]) == setup
            and r["metric"] == metric]


def test_new_headline_is_the_validation_choice_beside_genre_only_with_the_spread_verdict() -> None:
    from agf.report import headline

    results = with_val_accuracy(synthetic_results(subsets=("g", "gm", "md"), archs=("stn", "mtn")), ("mtn", "gm", 2),
                                0.95)
    lead = headline(results)
    assert lead.best == "MTN gm"
    rows = {(r["model"], r["labels"]): r for r in parse_table(to_markdown(lead.table))}
    assert set(rows) == {(model, labels) for model in ("best: MTN gm", "genre only: STN g")
                         for labels in ("given", "true")}
    for (model, labels), row in rows.items():
        setup = ("mtn", "gm", 2) if model.startswith("best") else ("stn", "g", 1)
        for metric, column in (("accuracy", "accuracy"), ("log_loss", "log loss"), ("macro_f1", "macro-F1")):
            assert_cell(row[column], per_seed_values(results, setup, labels, metric))
    best = per_seed_values(results, ("mtn", "gm", 2), "true", "accuracy")
    genre = per_seed_values(results, ("stn", "g", 1), "true", "accuracy")
    difference = statistics.fmean(best) - statistics.fmean(genre)
    spread = max(statistics.stdev(best), statistics.stdev(genre))
    assert lead.verdict == (f"MTN gm vs STN g: test accuracy (true labels) difference {difference:+.3f} is "
                            f"{'within' if abs(difference) <= spread else 'beyond'} the spread over 2 seeds (largest "
                            f"std {spread:.3f})")
    assert lead.text().endswith(lead.verdict) and "best: MTN gm" in lead.text()
    # The test numbers never choose.
    poisoned = results.copy()
    test = poisoned["split"] == "test"
    poisoned.loc[test, "value"] = np.random.default_rng(1).permutation(poisoned.loc[test, "value"].to_numpy())
    assert headline(poisoned).best == "MTN gm"


def test_new_when_genre_only_is_best_the_headline_compares_it_with_the_best_artist_group_setup() -> None:
    from agf.report import headline

    results = synthetic_results(seeds=(0,), subsets=("g", "gm", "md"), archs=("stn", "mtn"))
    results = with_val_accuracy(with_val_accuracy(results, ("stn", "g", 1), 0.99), ("stn", "md", 2), 0.98)
    lead = headline(results)
    assert lead.best == "STN g"
    assert [row[0] for row in lead.table.rows[:2]] == ["best, genre only: STN g", "best with artist groups: STN md"]
    assert lead.verdict.startswith("STN md vs STN g: test accuracy (true labels) difference ")
    assert lead.verdict.endswith("one seed: no spread to compare with (run more seeds, e.g. --seeds 0,1,2)")
    only_val = synthetic_results(seeds=(0,), subsets=("g",), archs=("stn",), splits=("val",), label_kinds=("given",))
    alone = headline(only_val)
    assert alone.best == "STN g" and "no other setup" in alone.verdict
    assert any("selection-biased" in note for note in alone.table.notes)


def test_new_report_opens_with_the_headline(tmp_path: Path) -> None:
    from agf.report import headline

    results = with_val_accuracy(synthetic_results(subsets=("g", "gm", "md"), archs=("stn", "mtn")), ("stn", "md", 2),
                                0.97)
    paths = build_report(tmp_path, results, None, synthetic_tracks(), None, ReportImages(), "STN md", None,
                         notes=["a run note"])
    page = paths["html"].read_text()
    body = page[page.index("<body>"):]
    assert body.index('<section id="headline">') < body.index("warning: ") < body.index("a run note")
    assert body.index("a run note") < body.index("<nav>") < body.index("Table 3:")
    lead = headline(results)
    assert "Best transfer setup (chosen on validation): STN md." in page and lead.verdict in page
    markdown = paths["tables"].read_text()
    assert re.findall(r"^## .*", markdown, flags=re.MULTILINE)[0] == "## Headline"
    assert markdown.index(lead.verdict) < markdown.index("warning: ") < markdown.index("**Table 3:")


def test_new_tables_appear_once_per_kind_with_each_note_once_and_no_empty_columns(tmp_path: Path) -> None:
    from agf.report.tables import METRIC_NOTE, SHARED_N1_NOTE, TASK_LETTERS_NOTE

    no_wide = synthetic_results(subsets=("g", "gm", "md"), archs=("stn", "mtn"))
    paths = build_report(tmp_path, no_wide, synthetic_baselines(), synthetic_tracks(), None, ReportImages(), "STN g",
                         None)
    markdown, page = paths["tables"].read_text(), paths["html"].read_text()
    assert markdown.count("**Table 3:") == markdown.count("**Table 5:") == 4
    for note in (METRIC_NOTE, SHARED_N1_NOTE, TASK_LETTERS_NOTE, "Cells: mean ± sample std over 2 seeds."):
        assert markdown.count(note) == 1 and page.count(note) == 1, note
    assert markdown.count("The notes under the tables of split test, labels given apply here too.") == 3
    assert "wSTN log loss" not in page and "wSTN log loss" not in markdown
    sections = markdown.split("**")
    shown = parse_table(sections[sections.index(
        "Table 5: best STN and MTN for each number of tasks N vs the wide single-task net (split test, labels given)"
    ) + 1])
    assert list(shown[0]) == ["N", "best STN", "STN log loss", "STN macro-F1", "STN accuracy", "STN ECE", "best MTN",
                              "MTN log loss", "MTN macro-F1", "MTN accuracy", "MTN ECE"]
    assert "wSTN log loss" in table5(no_wide)  # the full table keeps them; the report leaves them out
    # The validation split chose the models: its sections are folded when a test split is reported.
    folded = {section: "<details><summary>Selection-biased" in page.split(f'<section id="results-{section}">')[1]
              .split("</section>")[0] for section in ("test-given", "test-true", "val-given", "val-true")}
    assert folded == {"test-given": False, "test-true": False, "val-given": True, "val-true": True}
    val_only = build_report(tmp_path / "val", no_wide[no_wide["split"] == "val"], None, synthetic_tracks(), None,
                            ReportImages(), "STN g", None)["html"].read_text()
    assert "<details><summary>Selection-biased" not in val_only  # the only split there is stays open


def test_new_report_records_how_the_results_were_made(tmp_path: Path) -> None:
    import os
    from datetime import UTC, datetime

    import agf
    from agf.report import Provenance
    from agf.report.build import source_commit

    provenance = Provenance(dataset="the manifest music.csv; split: artist", config_toml='[run]\nworkdir = "w<1>"\n',
                            device="cpu", stage_seconds={"prepare": 12.0, "nets": 200.4},
                            stage_times_note="this run, up to the report")
    single = synthetic_results(seeds=(0,), subsets=("g", "gm"), splits=("val",), label_kinds=("given",))
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    paths = build_report(tmp_path, single, None, synthetic_tracks(), None, ReportImages(), "STN g", None,
                         provenance=provenance)
    markdown, page = paths["tables"].read_text(), paths["html"].read_text()
    sections = markdown.split("**")
    facts = {r["what"]: r["value"] for r in parse_table(sections[sections.index("How these results were made") + 1])}
    commit = source_commit()
    assert facts["written"].startswith(today) and facts["written"].endswith(" UTC")
    assert facts["agf"] == f"{agf.__version__}, git commit {commit}"
    assert facts["dataset"] == "the manifest music.csv; split: artist"
    assert facts["usable tracks"] == "12 tracks (train 8, val 2, test 2), 3 artists, 3 genres"
    assert facts["machine"].startswith(f"{os.cpu_count()} CPUs, torch device cpu, ")
    assert facts["run time"] == "3 min 32 s over the stages below (this run, up to the report)"
    stages = parse_table(sections[sections.index("Wall time per stage") + 1])
    assert [(r["stage"], r["wall time"], r["seconds"]) for r in stages] == [("prepare", "12 s", "12.0"),
                                                                            ("nets", "3 min 20 s", "200.4")]
    assert '<details><summary>config.toml' in page and '<pre>[run]\nworkdir = &quot;w&lt;1&gt;&quot;\n</pre>' in page
    assert '```\n[run]\nworkdir = "w<1>"\n```' in markdown
    assert f"(git commit {commit}) on {today}" in page.split("<footer>")[1]
    bare = build_report(tmp_path / "bare", single, None, synthetic_tracks(), None, ReportImages(), "STN g", None)
    bare_markdown = bare["tables"].read_text()
    assert "config.toml: not recorded." in bare_markdown and "| run time      | not recorded" in bare_markdown


def test_new_source_commit_is_the_checkout_s_commit_or_unknown(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from agf.report.build import source_commit

    package = tmp_path / "repo" / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    assert source_commit(package) == "unknown"  # not a git repository

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(package), "-c", "user.name=t", "-c", "user.email=t@example.org",
                               *args], check=True, capture_output=True, text=True).stdout.strip()

    git("init", "-q")
    assert source_commit(package) == "unknown"  # a repository that does not track the package
    git("add", "__init__.py")
    git("commit", "-q", "-m", "first")
    head = git("rev-parse", "--short=12", "HEAD")
    assert source_commit(package) == head
    (package / "__init__.py").write_text("changed = True\n")
    assert source_commit(package) == f"{head} + uncommitted changes"
    monkeypatch.setenv("PATH", str(tmp_path / "no-git-here"))
    assert source_commit(package) == "unknown"


def test_new_training_curves_legend_lists_drawn_curves_and_marks_the_kept_epoch(tmp_path: Path) -> None:
    from agf.report import TrainingCurves
    from agf.report.figures import training_curves

    epochs = range(1, 11)
    net = pd.DataFrame([{"epoch": e, "task": task, "train_loss": 2.0 / e,
                         "val_loss": 1.0 + 0.1 * (e - 3) ** 2 if task == "g" else np.nan}  # m: no validation
                        for e in epochs for task in ("g", "m")])
    mlp = pd.DataFrame({"epoch": list(epochs), "train_loss": [1.0 / e for e in epochs],
                        "val_log_loss": [np.nan] * 10})  # no validation split
    figure = training_curves({"STN gm": TrainingCurves(net, 3), "transfer MLP": TrainingCurves(mlp, 10),
                              "unknown": TrainingCurves(mlp), "one epoch": TrainingCurves(net[net["epoch"] == 1], 1)},
                             tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes().startswith(PNG_SIGNATURE)
    net_axes, mlp_axes, unknown_axes, one_epoch_axes = figure.axes[:4]
    assert [t.get_text() for t in net_axes.get_legend().get_texts()] == ["train g", "validation g", "train m",
                                                                          "kept: epoch 3"]
    assert [t.get_text() for t in mlp_axes.get_legend().get_texts()] == ["train", "kept: epoch 10"]
    assert [t.get_text() for t in unknown_axes.get_legend().get_texts()] == ["train"]
    for axes in (net_axes, mlp_axes):
        [kept] = [line for line in axes.get_lines() if line.get_label().startswith("kept")]
        assert list(kept.get_xdata()) == [int(kept.get_label().split()[-1])] * 2
        assert all(np.isfinite(np.asarray(line.get_ydata(), dtype=float)).all() for line in axes.get_lines()
                   if not line.get_label().startswith("kept"))
    for axes, at_least in ((net_axes, 3), (mlp_axes, 3), (one_epoch_axes, 1)):
        low, high = axes.get_xlim()
        ticks = [tick for tick in axes.get_xticks() if low <= tick <= high]
        assert len(ticks) >= at_least and all(float(tick).is_integer() for tick in ticks), ticks


# -- the metric registry and the one selection sort ----------------------------------------------------------


def with_val_mean(results: pd.DataFrame, setup: tuple[str, str, int], metric: str, values: tuple[float, ...]
                  ) -> pd.DataFrame:
    """`results` with one setup's validation values (given labels) of `metric` set to `values`, seed by seed."""
    frame = results.copy()
    arch, tasks, n_tasks = setup
    for seed, value in zip(sorted(frame["seed"].unique()), values):
        rows = ((frame["arch"] == arch) & (frame["tasks"] == tasks) & (frame["n_tasks"] == n_tasks)
                & (frame["seed"] == seed) & (frame["split"] == "val") & (frame["labels"] == "given")
                & (frame["metric"] == metric))
        frame.loc[rows, "value"] = value
    return frame


def test_new_the_one_selection_sort_ranks_by_mean_accuracy_then_by_the_lower_log_loss() -> None:
    from agf.report import headline
    from agf.metrics import sort_by_selection

    means = pd.DataFrame({"accuracy": [0.5, 0.7, 0.7, 0.7, 0.6], "log_loss": [0.1, 1.2, 0.9, 1.2, 0.2]},
                         index=["a", "b", "c", "d", "e"])
    assert list(sort_by_selection(means).index) == ["c", "b", "d", "e", "a"]  # full ties keep their order
    # Over seeds: STN gm and STN md tie on mean validation accuracy (one seed of gm is the best of all); md's lower
    # mean log loss breaks the tie. Every place that ranks agrees.
    results = synthetic_results(subsets=("g", "gm", "md"), archs=("stn",), splits=("val", "test"))
    results = with_val_mean(results, ("stn", "gm", 2), "accuracy", (0.99, 0.81))
    results = with_val_mean(results, ("stn", "md", 2), "accuracy", (0.9, 0.9))
    results = with_val_mean(results, ("stn", "gm", 2), "log_loss", (0.5, 0.7))
    results = with_val_mean(results, ("stn", "md", 2), "log_loss", (0.7, 0.4))
    assert rank_by_selection(results, ["arch", "tasks", "n_tasks"])[:2] == [("stn", "md", 2), ("stn", "gm", 2)]
    assert headline(results).best == "STN md"
    assert next(r for r in parse_table(table5(results)) if r["N"] == "2")["best STN"] == "md"
    # A source head with the best transfer's mean accuracy beats it only by a lower mean log loss.
    best = select(results, "val", "given")
    best = best[(best["tasks"] == "md")].groupby("metric")["value"].mean()

    def head(accuracy: float, log_loss: float) -> pd.DataFrame:
        frame = synthetic_baselines()
        frame = frame[frame["model"] == "genre STN softmax"]
        frame.loc[frame["metric"] == "accuracy", "value"] = accuracy
        frame.loc[frame["metric"] == "log_loss", "value"] = log_loss
        return frame

    assert source_head_note(results, head(best["accuracy"], best["log_loss"])) is None  # a full tie: the transfer
    assert source_head_note(results, head(best["accuracy"], best["log_loss"] + 0.1)) is None
    note = source_head_note(results, head(best["accuracy"], best["log_loss"] - 0.1))
    assert note is not None and "beats the best transfer, STN md" in note


def test_new_tables_figure_and_selection_take_titles_and_directions_from_the_registry(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from agf.metrics import METRIC_REGISTRY, Metric
    from agf.report import headline
    from agf.report.tables import METRIC_NOTE, build_baselines_table

    for metric in METRIC_REGISTRY.values():  # the note names every metric under its direction
        sentence = next(s for s in METRIC_NOTE.split(". ") if s.lower().startswith(metric.direction))
        assert metric.title in sentence.partition(": ")[2]
    monkeypatch.setitem(METRIC_REGISTRY, "macro_f1", Metric("macro_f1", "mean F1", higher_is_better=True))
    monkeypatch.setitem(METRIC_REGISTRY, "accuracy", Metric("accuracy", "hit rate", higher_is_better=False))
    results = synthetic_results(subsets=("g", "gm", "md"), archs=("stn", "mtn"))
    for table in (table3(results), table4(results), table5(results)):
        columns = parse_table(table)[0]
        assert {f"{arch} {m.title}" for arch in ("STN", "MTN") for m in METRIC_REGISTRY.values()} <= set(columns)
    assert build_baselines_table(synthetic_baselines()).columns == ("model", "log loss", "mean F1", "hit rate", "ECE")
    assert headline(results).table.columns == ("model", "labels", "log loss", "mean F1", "hit rate")
    titles = [axes.get_title() for axes in figure3(results, tmp_path / "figure3.png").axes]
    assert titles == ["log loss (lower is better)", "mean F1 (higher is better)"]
    # Accuracy now lower-is-better: the selection picks the setup with the lowest mean validation accuracy.
    chosen = select(results, "val", "given")
    means = chosen[chosen["metric"] == "accuracy"].groupby(["arch", "tasks", "n_tasks"])["value"].mean()
    assert rank_by_selection(results, ["arch", "tasks", "n_tasks"])[0] == means.idxmin() != means.idxmax()
