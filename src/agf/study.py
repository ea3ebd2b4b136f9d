"""`agf study`: does learning from artist groups make genre learning robust to label noise? (issue: the paper's claim)

For every corpus seed (its own synthetic corpus), split seed (its own artist-disjoint split of that corpus) and
noise cell (kind x rate; rate 0 is one clean cell shared by both kinds), the same models are trained and scored against the TRUE
genres: genre-only STN (the baseline), genre + artist-group STN and MTN, the same with two controls (random
artist groups: each artist keeps one target, but not its own; groups drawn per track: no artist information at
all; agf.factors' `control`), and the parameter-matched wSTN, all with the config's epochs, over grid.seeds. Each model's gain over genre-only is paired by corpus,
split, noise cell and run seed; agf.statistics gives its mean, 95 % CI, permutation and Wilcoxon tests with
Holm's correction, and the slope of the gain on the noise rate.

Work directory (run.workdir):
    corpus<seed>/          one pipeline work directory per corpus seed (corpus, feature store, nets, ...),
                           shared by its splits and noise cells: the audio and features are computed once,
                           and a net whose targets carry no label (artist groups from audio) once per split
    study/cells/*.csv      one finished cell's results each, written last: a killed study resumes there
    study/results.csv      every score: corpus_seed, split_seed, noise_kind, noise_rate, model, seed, split, labels,
                           metric, value
    study/noise.csv        the realised label noise of every noisy cell: per genre and split, albums, relabelled, rate
    study/comparisons.csv  per metric, noise kind, rate and model: the paired gain over genre-only and its tests
    study/trends.csv       per metric, noise kind and model: the gain's slope on the noise rate
    study/power.csv        per metric, noise kind, rate and model: the gain's variance components, the power of
                           this design to detect TARGET_GAINS, and the splits or corpora that would have 80 %
    study/power-pooled.csv the same per metric, the components pooled over every comparison (the report's)
    study/gain.png, study/report.html, study/report.md
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from agf.config import FACTOR_CONTROLS, Config, NoiseConfig, key_settings
from agf.datasets.noise import flip_rates
from agf.datasets.synth import build_collection
from agf.datasets.table import HELD_OUT_SPLITS, SPLITS, TEST, VAL, split_mask
from agf.errors import PipelineError
from agf.fileio import stable_key, write_text_atomic
from agf.grid import Case
from agf.metrics import METRIC_REGISTRY, METRICS, Metric
from agf.parallel import map_unordered
from agf.pipeline import (
    Prepared,
    check_dataset,
    collect_results,
    run_context,
    run_grid,
    stage_prepare,
    stage_tracks,
)
from agf.plotting import png_figure
from agf.report.build import footer_text
from agf.report.document import Image, Section, render_html, render_markdown
from agf.report.markup import Table, number
from agf.statistics import (
    MIN_BOOTSTRAP_UNITS,
    MIN_PERMUTATION_UNITS,
    Comparison,
    compare,
    noise_trend,
    power,
    VarianceComponents,
    pooled_components,
    unit_sd,
    units_needed,
    variance_components,
)
from agf.tasks import GENRE_TASK, canonical_tasks
from agf.workdir import WorkDir, save_config

Log = Callable[[str], None]
BASELINE = "genre"
CLEAN = "none"  # the noise kind of the rate-0 cell
PRIMARY_METRIC = "accuracy"
# The log loss of the uncalibrated probabilities (temperature 1), kept beside the calibrated one: the registry's
# log loss under another name, so it is better when lower.
UNCALIBRATED_LOG_LOSS = "log_loss_uncalibrated"
# The metrics of the paired gains (each gain the improvement over genre-only, in the registry's direction): the
# primary metric, the registry's other higher-is-better ones, its lower-is-better ones, then the uncalibrated log
# loss (the row order of comparisons.csv and trends.csv).
STUDY_METRICS: dict[str, Metric] = {
    name: METRIC_REGISTRY[name]
    for name in sorted(METRICS, key=lambda m: (m != PRIMARY_METRIC, not METRIC_REGISTRY[m].higher_is_better))
} | {UNCALIBRATED_LOG_LOSS: replace(METRIC_REGISTRY["log_loss"], name=UNCALIBRATED_LOG_LOSS,
                                   title="log loss, no temperature")}
# The smallest gains the study should detect (80 % power, alpha 0.05): 2 points of accuracy, 0.05 of log loss.
TARGET_GAINS = {"accuracy": 0.02, "log_loss": 0.05}
TARGET_POWER = 0.8
RESULT_COLUMNS = ["corpus_seed", "split_seed", "noise_kind", "noise_rate", "model", "seed", "split", "labels", "metric",
                  "value"]
MODEL_TITLES = {"genre": "genre-only STN", "stn": "STN genre + artist groups", "mtn": "MTN genre + artist groups",
                "wstn": "wSTN (genre, as large as the MTN)",
                "stn-random-groups": "STN, random artist groups", "mtn-random-groups": "MTN, random artist groups",
                "stn-per-track": "STN, groups drawn per track", "mtn-per-track": "MTN, groups drawn per track"}


@dataclass(frozen=True)
class Cell:
    """One noise condition of one split of one corpus."""

    corpus_seed: int
    split_seed: int
    kind: str  # 'symmetric', 'structured', or CLEAN for rate 0
    rate: float

    @property
    def label(self) -> str:
        return f"corpus {self.corpus_seed} split {self.split_seed}, " + (
            "clean labels" if self.kind == CLEAN else f"{self.kind} noise {self.rate:g}")

    @property
    def name(self) -> str:
        """The cell's file-name stem."""
        return f"corpus{self.corpus_seed}-split{self.split_seed}-{self.kind}-{self.rate:g}"


def study_cells(config: Config) -> list[Cell]:
    """Every cell of the study, corpus by corpus and split by split; rate 0 once per split."""
    study = config.study
    cells = []
    for corpus in study.corpus_seeds:
        for split in study.split_seeds:
            if 0 in study.noise_rates:
                cells.append(Cell(corpus, split, CLEAN, 0.0))
            cells += [Cell(corpus, split, kind, rate) for kind in study.noise_kinds for rate in study.noise_rates
                      if rate > 0]
    return cells


def corpus_config(config: Config, cell: Cell, root: Path) -> Config:
    """The pipeline config of a cell's corpus and split: the corpus seed renders the corpus (its work directory
    shared by every split and noise cell), the split seed draws the artist-disjoint split."""
    return replace(config, synth=replace(config.synth, seed=cell.corpus_seed),
                   dataset=replace(config.dataset, seed=cell.split_seed),
                   run=replace(config.run, workdir=str(root / f"corpus{cell.corpus_seed}")))


def cell_config(config: Config, cell: Cell) -> Config:
    """The corpus config with the cell's label noise; structured noise flips within the synthetic corpus's
    confusable pairs, or another dataset's noise.confusable."""
    if cell.kind == CLEAN:
        return replace(config, noise=NoiseConfig())
    confusable: tuple[str, ...] = ()
    if cell.kind == "structured":
        synthetic = config.dataset.kind == "synth"
        confusable = tuple(build_collection(config.synth).confusable_pairs) if synthetic else config.noise.confusable
        if not confusable:
            raise PipelineError("structured noise needs confusable genre pairs: set synth.confusable_pairs > 0 "
                                "(synthetic corpus) or noise.confusable, e.g. ['Rock/Pop']")
    subgenre_rate = cell.rate if config.study.subgenre_noise else 0.0
    return replace(config, noise=NoiseConfig(rate=cell.rate, kind=cell.kind, confusable=confusable,
                                             subgenre_rate=subgenre_rate, seed=cell.split_seed))


def check_held_out_artists(tracks: pd.DataFrame, minimum: int) -> None:
    """PipelineError unless every genre has `minimum` artists in the validation and in the test split."""
    genre = "true_genre" if "true_genre" in tracks.columns else "genre"
    for split in HELD_OUT_SPLITS:
        counts = tracks[split_mask(tracks, split)].groupby(genre)["artist_id"].nunique()
        counts = counts.reindex(sorted(tracks[genre].unique()), fill_value=0)
        short = counts[counts < minimum]
        if len(short):
            raise PipelineError(f"the {split} split has fewer than study.min_artists = {minimum} artists for "
                                f"{len(short)} genre(s) (e.g. {short.index[0]}: {short.iloc[0]}); render more "
                                "artists per genre or raise dataset.val_fraction / test_fraction")


def _grid_config(config: Config, control: str) -> Config | None:
    """The grid of the artist-group models the study asks for with this factor control ('none': the real
    groups, with the genre-only baseline); None when there are none."""
    tasks = canonical_tasks(GENRE_TASK + "".join(config.study.artist_tasks))
    archs = tuple(dict.fromkeys(arch for arch, wanted in map(_model_parts, config.study.models)
                                if wanted == control and arch))
    if control != "none" and not archs:
        return None
    subsets = ([GENRE_TASK] if control == "none" else []) + ([tasks] if archs else [])
    grid = replace(config.grid, tasks=tuple(tasks), archs=archs or ("stn",), subsets=tuple(subsets))
    factors = replace(config.factors, tasks=tuple(config.study.artist_tasks), control=control)
    return replace(config, grid=grid, factors=factors)


def _model_parts(model: str) -> tuple[str, str]:
    """(architecture, control) of a study model name ('' for the baseline): 'stn-per-track' -> ('stn', 'per-track')."""
    if model == BASELINE:
        return "", "none"
    arch, _, control = model.partition("-")
    return arch, control or "none"


def model_of(case: Case, control: str) -> str:
    """The study's name of a grid case."""
    if case.arch == "stn" and case.tasks == GENRE_TASK:
        return BASELINE
    return case.arch + ("" if control == "none" else f"-{control}")


def run_cell(config: Config, cell: Cell, progress: bool, log: Log) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every requested model of one cell, scored: the results rows tagged with the cell and the model; and the
    realised label noise per genre and split (empty for the clean cell)."""
    workdir = WorkDir(Path(config.run.workdir))
    save_config(config, workdir)
    loaded = stage_tracks(config, workdir, progress=progress)
    for warning in loaded.warnings:
        log(f"  {warning}")
    store, _ = stage_prepare(config, workdir, loaded.tracks, progress=progress)
    prepared = Prepared(workdir, store.usable(loaded.tracks), store)
    check_dataset(prepared.tracks)
    check_held_out_artists(prepared.tracks, config.study.min_artists)
    frames = []
    for control in FACTOR_CONTROLS:
        grid_config = _grid_config(config, control)
        if grid_config is None:
            continue
        grid = run_grid(grid_config, prepared, progress=progress, log=lambda line: log(f"  {line}"))
        results = with_uncalibrated_log_loss(collect_results(grid)[0], collect_results(grid, "uncalibrated")[0])
        models = {(c.arch, c.tasks, c.n_tasks): model_of(c, control) for c in grid.transfers}
        results["model"] = [models[key] for key in zip(results["arch"], results["tasks"], results["n_tasks"])]
        frames.append(results[results["model"].isin(config.study.models)])
    rows = pd.concat(frames, ignore_index=True).drop_duplicates(["model", "seed", "split", "labels", "metric"])
    tags = {"corpus_seed": cell.corpus_seed, "split_seed": cell.split_seed, "noise_kind": cell.kind,
            "noise_rate": cell.rate}
    noisy = loaded.tracks
    rates = flip_rates(noisy).assign(**tags) if "genre_flipped" in noisy.columns else pd.DataFrame()
    return rows.assign(**tags)[RESULT_COLUMNS], rates


def with_uncalibrated_log_loss(calibrated: pd.DataFrame, uncalibrated: pd.DataFrame) -> pd.DataFrame:
    """The calibrated results with the uncalibrated log loss added as metric UNCALIBRATED_LOG_LOSS."""
    extra = uncalibrated[uncalibrated["metric"] == "log_loss"].assign(metric=UNCALIBRATED_LOG_LOSS)
    return pd.concat([calibrated, extra], ignore_index=True)


def cell_plan(config: Config, cell: Cell, root: Path) -> tuple[Config, Path]:
    """A cell's pipeline config and its results file under root/study/cells (keyed by every setting but [run] and
    [select]: a cell scores every model of every seed, choosing none)."""
    cell_cfg = cell_config(corpus_config(config, cell, root), cell)
    settings = {k: v for k, v in key_settings(cell_cfg).items() if k not in ("run", "select")}
    return cell_cfg, root / "study" / "cells" / f"{cell.name}-{stable_key(settings)}.csv"


def noise_path(results_path: Path) -> Path:
    """Where a cell's realised label noise is kept, beside its results file."""
    return results_path.with_suffix(".noise.csv")


def finish_cell(config: Config, cell: Cell, root: Path, progress: bool, log: Log) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run one cell here and write its realised noise, then its results file (atomically, last: the marker);
    return both."""
    cell_cfg, path = cell_plan(config, cell, root)
    rows, rates = run_cell(cell_cfg, cell, progress, log)
    write_text_atomic(noise_path(path), rates.to_csv(index=False))
    write_text_atomic(path, rows.to_csv(index=False))
    return rows, rates


@dataclass(frozen=True)
class CorpusJob:
    """The unfinished cells of one corpus, for one cluster task: the study's config and its absolute root."""

    config: Config
    root: Path
    cells: tuple[Cell, ...]


def run_corpus_job(job: CorpusJob) -> int:
    """Run a CorpusJob's cells in this process (every stage local, one process); return the corpus seed."""
    config = replace(job.config, run=replace(job.config.run, scheduler="", workers=1))
    for cell in job.cells:
        finish_cell(config, cell, job.root, False, lambda _: None)
    return job.cells[0].corpus_seed


def run_cells_on_cluster(config: Config, cells: Sequence[Cell], root: Path, progress: bool, log: Log) -> None:
    """Run `cells` on run.scheduler's cluster: one task per corpus, since the cells of a corpus share its work
    directory (corpus, feature store, factor folders, nets) and run in order; each asks for a GPU where workers
    declare GPU resources."""
    by_corpus: dict[int, list[Cell]] = {}
    for cell in cells:
        by_corpus.setdefault(cell.corpus_seed, []).append(cell)
    jobs = [CorpusJob(config, root.absolute(), tuple(group)) for group in by_corpus.values()]
    if jobs:
        log(f"{len(cells)} cell(s) of {len(jobs)} corpus seed(s) on the dask cluster {config.run.scheduler}, "
            "a task per corpus")
    for seed in map_unordered(run_corpus_job, jobs, config.run.workers, desc="corpora", progress=progress,
                              unit="corpus", scheduler=config.run.scheduler, resource="GPU"):
        log(f"corpus {seed}: its cells finished on the cluster")


def run_study(config: Config, progress: bool = True, log: Log = print) -> dict[str, Path]:
    """Every cell (each reused when finished; with run.scheduler, the unfinished ones run on its cluster first),
    then the statistics, the figure and the report."""
    root = Path(config.run.workdir)
    cells = study_cells(config)
    frames = []
    with run_context(config):
        paths = {cell: cell_plan(config, cell, root)[1] for cell in cells}
        if config.run.scheduler:
            run_cells_on_cluster(config, [cell for cell in cells if not paths[cell].exists()], root, progress, log)
        for position, cell in enumerate(cells, 1):
            if paths[cell].exists():
                log(f"[{position}/{len(cells)}] {cell.label}: reused")
                frames.append((pd.read_csv(paths[cell]), _read_rates(noise_path(paths[cell]))))
                continue
            log(f"[{position}/{len(cells)}] {cell.label}")
            frames.append(finish_cell(config, cell, root, progress, log))
        results = pd.concat([rows for rows, _ in frames], ignore_index=True)
        rates = pd.concat([rates for _, rates in frames], ignore_index=True)
        return write_study_report(config, results, root / "study", rates)


def _read_rates(path: Path) -> pd.DataFrame:
    """A cell's realised noise (empty for a clean cell, or one finished before it was recorded)."""
    return pd.read_csv(path) if path.exists() and path.stat().st_size > 1 else pd.DataFrame()


# -- statistics ------------------------------------------------------------------------------------------


def reported_split(results: pd.DataFrame) -> tuple[str, str]:
    """The split and labels the study reports: test and true genres when there are (never what chose epochs)."""
    split = TEST if split_mask(results, TEST).any() else VAL
    labels = "true" if (results["labels"] == "true").any() else "given"
    return split, labels


def paired_gains(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per noise kind, rate, model, corpus seed, split seed and run seed: the model's improvement over genre-only on the
    reported split and labels (the rate-0 cell counts for every noise kind)."""
    split, labels = reported_split(results)
    rows = results[(results["split"] == split) & (results["labels"] == labels) & (results["metric"] == metric)]
    kinds = sorted(set(rows["noise_kind"]) - {CLEAN}) or [CLEAN]
    clean = rows[rows["noise_kind"] == CLEAN]
    rows = pd.concat([rows[rows["noise_kind"] != CLEAN]] + [clean.assign(noise_kind=k) for k in kinds])
    keys = ["noise_kind", "noise_rate", "corpus_seed", "split_seed", "seed"]
    table = rows.pivot_table(index=keys, columns="model", values="value", aggfunc="first")
    gains = [(table[m] - table[BASELINE]).mul(STUDY_METRICS[metric].sign).rename("gain").reset_index().assign(model=m)
             for m in table.columns if m != BASELINE]
    return pd.concat(gains, ignore_index=True).dropna(subset=["gain"]) if gains else pd.DataFrame()


def independent_units(gains: pd.DataFrame) -> tuple[pd.Series, str]:
    """The independent unit of each paired gain, and its kind: the corpus when there are MIN_PERMUTATION_UNITS
    corpora or more (a sign-flip test over fewer cannot reach p < 0.05); else the split within its corpus
    (inference about these corpora). Run seeds are never units."""
    if gains["corpus_seed"].nunique() >= MIN_PERMUTATION_UNITS:
        return gains["corpus_seed"].astype(str), "corpus"
    return gains["corpus_seed"].astype(str) + "/" + gains["split_seed"].astype(str), "split"


def comparisons(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(comparisons, trends): per metric and noise kind, every (model, rate) against genre-only, tested over
    independent units and Holm-adjusted within the family; and each model's gain slope on the noise rate."""
    rows, trends = [], []
    for metric in STUDY_METRICS:
        gains = paired_gains(results, metric)
        if gains.empty:
            continue
        units, unit_kind = independent_units(gains)
        gains = gains.assign(unit=units)
        for kind, family in gains.groupby("noise_kind"):
            groups = {f"{m}@{r}": g for (m, r), g in family.groupby(["model", "noise_rate"])}
            found_all = compare({name: g["gain"].to_numpy() for name, g in groups.items()},
                                units={name: g["unit"].to_numpy() for name, g in groups.items()})
            for group, found in zip(groups.values(), found_all):
                rows.append({"metric": metric, "noise_kind": kind, "noise_rate": group["noise_rate"].iloc[0],
                             "model": group["model"].iloc[0], **_inference(found, unit_kind),
                             "mean_gain": found.mean, "p_wilcoxon": found.p_wilcoxon, "p_holm": found.p_holm})
            for model, series in family.groupby("model"):
                trend = noise_trend(series["noise_rate"], series["gain"], series["unit"])
                trends.append({"metric": metric, "noise_kind": kind, "model": model, **_inference(trend, unit_kind),
                               "slope": trend.mean})
    return pd.DataFrame(rows), pd.DataFrame(trends)


def power_analysis(results: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per metric of TARGET_GAINS, noise kind, rate and model, and per metric pooled over all of them (weighted
    by degrees of freedom: a few units per comparison give a poor estimate each): the variance components of the
    gain over genre-only, the power of this design's test to detect the target gain, and the units a test with
    TARGET_POWER needs: splits of one corpus (run seeds as here), or corpora (splits and run seeds per corpus as
    here; with one corpus measured, its variance assumed equal to the split variance, column corpus_assumed)."""
    rows, pooled = [], []
    for metric, target in TARGET_GAINS.items():
        gains = paired_gains(results, metric)
        if gains.empty:
            continue
        units, unit_kind = independent_units(gains)
        found = []
        for (kind, rate, model), group in gains.assign(unit=units).groupby(["noise_kind", "noise_rate", "model"]):
            parts = variance_components(group["gain"], group["corpus_seed"], group["split_seed"], group["seed"])
            found.append(parts)
            rows.append({"metric": metric, "noise_kind": kind, "noise_rate": rate, "model": model,
                         **_power_columns(target, parts, group["unit"].nunique(), unit_kind)})
        together = pooled_components(found)
        pooled.append({"metric": metric, "comparisons": len(found),
                       **_power_columns(target, together, units.nunique(), unit_kind)})
    return pd.DataFrame(rows), pd.DataFrame(pooled)


def _power_columns(target: float, parts: VarianceComponents, n_units: int, unit_kind: str) -> dict:
    """The power columns of one set of variance components measured over n_units units of a kind."""
    assumed = bool(np.isnan(parts.corpus))
    corpus_var = parts.split if assumed else None
    return {
        "target_gain": target, "var_corpus": parts.corpus, "var_split": parts.split, "var_seed": parts.seed,
        "df_split": parts.df_split, "units": n_units, "unit": unit_kind,
        "power": power(target, unit_sd(parts, unit_kind, parts.splits, parts.seeds, corpus_var), n_units),
        "splits_needed": units_needed(target, unit_sd(parts, "split", seeds=parts.seeds), target=TARGET_POWER),
        "corpora_needed": units_needed(target, unit_sd(parts, "corpus", parts.splits, parts.seeds, corpus_var),
                                       target=TARGET_POWER),
        "splits_per_corpus": parts.splits, "seeds_per_split": parts.seeds, "corpus_assumed": assumed,
    }


def _inference(found: Comparison, unit_kind: str) -> dict:
    """The columns every comparison and trend row shares: what it rests on, its interval and its test."""
    return {"units": found.n, "unit": unit_kind, "pairs": found.pairs, "interval": found.interval,
            "ci_low": found.ci_low, "ci_high": found.ci_high, "p_permutation": found.p_permutation}


# -- the report ------------------------------------------------------------------------------------------------


def plot_gains(table: pd.DataFrame, path: Path, metric: str = PRIMARY_METRIC) -> Path:
    """Gain over genre-only against the noise rate with its 95 % CI band, one line per model, a panel per kind."""
    rows = table[table["metric"] == metric]
    kinds = sorted(rows["noise_kind"].unique())
    with png_figure(path, (5.2 * max(1, len(kinds)), 4.0), layout="constrained") as figure:
        axes = np.atleast_1d(figure.subplots(1, max(1, len(kinds)), sharey=True))
        for ax, kind in zip(axes, kinds):
            for model, line in rows[rows["noise_kind"] == kind].groupby("model"):
                line = line.sort_values("noise_rate")
                ax.plot(line["noise_rate"], line["mean_gain"], marker="o", label=MODEL_TITLES.get(model, model))
                ax.fill_between(line["noise_rate"], line["ci_low"], line["ci_high"], alpha=0.15)
            ax.axhline(0.0, color="0.4", linewidth=0.8)
            ax.set_title(f"{kind} label noise")
            ax.set_xlabel("share of albums relabelled")
        axes[0].set_ylabel(f"{metric} gain over genre-only (true genres)")
        axes[-1].legend(fontsize=8)
    return path


def _units_note(table: pd.DataFrame) -> str:
    """What the tests and intervals of a table rest on."""
    kind = table["unit"].iloc[0] if len(table) else "split"
    unit = {"corpus": "corpus (its splits and run seeds averaged)",
            "split": "split within a corpus (its run seeds averaged; inference about these corpora)"}[kind]
    return (f"Units: the independent {unit}; pairs: the runs averaged into them. Tests (sign-flip permutation, "
            f"Wilcoxon) and 95 % intervals are over the unit means: Student's t below {MIN_BOOTSTRAP_UNITS} units, "
            "a percentile bootstrap of units from there.")


def _comparison_table(table: pd.DataFrame) -> Table:
    rows = table[table["metric"] == PRIMARY_METRIC].sort_values(["noise_kind", "model", "noise_rate"])
    return Table(
        title=f"Paired gain in {PRIMARY_METRIC} over genre-only",
        columns=("noise", "rate", "model", "units", "pairs", "mean gain", "95 % CI", "p (permutation)",
                 "p (Wilcoxon)", "p (Holm)"),
        rows=tuple((r.noise_kind, f"{r.noise_rate:g}", MODEL_TITLES.get(r.model, r.model), str(r.units),
                    str(r.pairs), number(r.mean_gain, 3), f"[{number(r.ci_low, 3)}, {number(r.ci_high, 3)}]",
                    number(r.p_permutation, 3), number(r.p_wilcoxon, 3), number(r.p_holm, 3))
                   for r in rows.itertuples()),
        notes=("Pairs: the same corpus, split, noise cell and run seed. Holm's correction runs over every "
               "(model, rate) comparison of one noise kind.", _units_note(rows)),
    )


def _trend_table(trends: pd.DataFrame) -> Table:
    rows = trends[trends["metric"] == PRIMARY_METRIC].sort_values(["noise_kind", "model"])
    return Table(
        title="Does the gain grow with the noise rate? (slope of the gain on the rate)",
        columns=("noise", "model", "units", "pairs", "slope", "95 % CI", "p (permutation)"),
        rows=tuple((r.noise_kind, MODEL_TITLES.get(r.model, r.model), str(r.units), str(r.pairs),
                    number(r.slope, 3), f"[{number(r.ci_low, 3)}, {number(r.ci_high, 3)}]",
                    number(r.p_permutation, 3))
                   for r in rows.itertuples()),
        notes=("A positive slope means artist groups help more as the labels get noisier: the paper's claim. The "
               "slope is fitted within each unit, then averaged.", _units_note(rows)),
    )


def _score_table(results: pd.DataFrame) -> Table:
    split, labels = reported_split(results)
    rows = results[(results["split"] == split) & (results["labels"] == labels) & (results["metric"] == PRIMARY_METRIC)]
    means = rows.groupby(["noise_kind", "noise_rate", "model"])["value"].agg(["mean", "std", "count"]).reset_index()
    return Table(
        title=f"Mean {PRIMARY_METRIC} ({split} split, {labels} genres)",
        columns=("noise", "rate", "model", "runs", "mean", "std"),
        rows=tuple((r.noise_kind, f"{r.noise_rate:g}", MODEL_TITLES.get(r.model, r.model), str(r.count),
                    number(r.mean, 3), number(r.std, 3)) for r in means.itertuples()),
    )


def _log_loss_table(results: pd.DataFrame) -> Table:
    """Mean log loss per cell and model, with and without the temperature, each saying what fitted it."""
    split, labels = reported_split(results)
    rows = results[(results["split"] == split) & (results["labels"] == labels)
                   & results["metric"].isin(["log_loss", UNCALIBRATED_LOG_LOSS])]
    means = rows.pivot_table(index=["noise_kind", "noise_rate", "model"], columns="metric", values="value",
                             aggfunc="mean").reset_index()
    return Table(
        title=f"Mean log loss ({split} split, {labels} genres): calibrated and not",
        columns=("noise", "rate", "model", "temperature fitted on validation's given labels", "no temperature"),
        rows=tuple((r["noise_kind"], f"{r['noise_rate']:g}", MODEL_TITLES.get(r["model"], r["model"]),
                    number(r.get("log_loss", np.nan), 3), number(r.get(UNCALIBRATED_LOG_LOSS, np.nan), 3))
                   for _, r in means.iterrows()),
        notes=("Calibrated: each model's temperature fitted on the validation split against its given labels, which "
               "in a noisy cell are the noisy ones (agf.calibration); it is then scored against the true genres. "
               "No temperature: the model's own probabilities.",),
    )


def _power_table(pooled: pd.DataFrame) -> Table:
    note_corpus = ("Corpora needed assume the variance between corpora equals the variance between splits (one "
                   "corpus measured)." if pooled["corpus_assumed"].any() else
                   "Corpora needed use the measured variance between corpora.")
    return Table(
        title=f"Power: can this design detect the target gain? (alpha 0.05, {TARGET_POWER:.0%} power wanted)",
        columns=("metric", "comparisons", "target gain", "sd between splits", "sd between seeds", "units",
                 "power now", "splits needed", "corpora needed"),
        rows=tuple((r.metric, str(r.comparisons), number(r.target_gain, 3), number(np.sqrt(r.var_split), 4),
                    number(np.sqrt(r.var_seed), 4), f"{r.units} {r.unit}s", number(r.power, 2),
                    _needed(r.splits_needed), _needed(r.corpora_needed))
                   for r in pooled.itertuples()),
        notes=("Variance components of the paired gain over genre-only, estimated by the method of moments for each "
               "comparison (model, noise kind, rate) and pooled over them weighted by their degrees of freedom "
               "(agf.statistics.variance_components, pooled_components; a level measured once holds the variance "
               "of the level below); each comparison's own estimate is in power.csv. Power of the t-test over unit "
               "means (the permutation test's is close from 6 units). Splits needed: artist-disjoint splits of one "
               "corpus (inference about that corpus), each with the run seeds used here; corpora needed: each with "
               f"the splits and run seeds used here (inference about corpora like it), at least "
               f"{MIN_PERMUTATION_UNITS}.", note_corpus),
    )


def _headline(table: pd.DataFrame, trends: pd.DataFrame, pooled: pd.DataFrame) -> Section:
    """The answer first: per noise kind and artist-group model (controls aside), the gain over genre-only at the
    highest noise rate and its trend with the rate; then the power this design had to detect the target gain."""
    lines = []
    primary = table[(table["metric"] == PRIMARY_METRIC) & (table["noise_rate"] > 0)]
    for (kind, model), rows in primary.groupby(["noise_kind", "model"]):
        if _model_parts(model)[1] != "none":
            continue
        top = rows.loc[rows["noise_rate"].idxmax()]
        trend = trends[(trends["metric"] == PRIMARY_METRIC) & (trends["noise_kind"] == kind)
                       & (trends["model"] == model)]
        line = (f"{kind} noise {top['noise_rate']:g}, {MODEL_TITLES.get(model, model)}: {top['mean_gain']:+.3f} "
                f"{PRIMARY_METRIC} over genre-only, 95 % CI [{number(top['ci_low'], 3)}, {number(top['ci_high'], 3)}] "
                f"over {top['units']} {top['unit']}s, p {number(top['p_permutation'], 3)} (Holm "
                f"{number(top['p_holm'], 3)})")
        if len(trend):
            t = trend.iloc[0]
            line += (f"; slope on the rate {t['slope']:+.3f} [{number(t['ci_low'], 3)}, {number(t['ci_high'], 3)}], "
                     f"p {number(t['p_permutation'], 3)}")
        lines.append(line + ".")
    found = pooled[pooled["metric"] == PRIMARY_METRIC]
    if len(found):
        f = found.iloc[0]
        lines.append(f"Power of this design ({f['units']} {f['unit']}s) to detect a gain of "
                     f"{f['target_gain']:+g} {PRIMARY_METRIC}: {number(f['power'], 2)}; {TARGET_POWER:.0%} power "
                     f"needs {_needed(f['splits_needed'])} splits of one corpus or {_needed(f['corpora_needed'])} "
                     "corpora (the Power section).")
    if not lines:
        lines = ["No noisy cell with an artist-group model has finished yet."]
    return Section("headline", "Headline", tuple(lines))


def _needed(units: int) -> str:
    return "over 100,000" if units < 0 else str(units)


def _noise_table(rates: pd.DataFrame) -> Table:
    """The realised noise: per kind, rate and genre, the share of its albums relabelled in each split, pooled over
    corpora and splits."""
    pooled = rates.groupby(["noise_kind", "noise_rate", "genre", "split"])[["albums", "flipped"]].sum()
    shares = (pooled["flipped"] / pooled["albums"]).unstack("split")
    splits = [split for split in SPLITS if split in shares.columns]
    return Table(
        title="Realised label noise: share of each genre's albums relabelled",
        columns=("noise", "rate", "genre", *splits),
        rows=tuple((kind, f"{rate:g}", genre, *(number(row[split], 3) for split in splits))
                   for (kind, rate, genre), row in shares.iterrows()),
        notes=("The rate is the share of the eligible albums relabelled: every album for symmetric noise, the "
               "albums of the confusable genres for structured noise (other genres: 0). Pooled over corpora and "
               "splits; an album's tracks flip together.",),
    )


def write_study_report(config: Config, results: pd.DataFrame, out: Path,
                       rates: pd.DataFrame | None = None) -> dict[str, Path]:
    """results.csv, noise.csv (the realised noise), comparisons.csv, trends.csv, power.csv, power-pooled.csv,
    gain.png, report.html and report.md under `out`."""
    rates = pd.DataFrame() if rates is None else rates
    table, trends = comparisons(results)
    power_rows, pooled = power_analysis(results)
    paths = {"results": out / "results.csv", "noise": out / "noise.csv", "comparisons": out / "comparisons.csv",
             "trends": out / "trends.csv", "power": out / "power.csv",
             "power_pooled": out / "power-pooled.csv", "figure": out / "gain.png",
             "html": out / "report.html", "markdown": out / "report.md"}
    write_text_atomic(paths["results"], results.to_csv(index=False))
    write_text_atomic(paths["noise"], rates.to_csv(index=False))
    write_text_atomic(paths["comparisons"], table.to_csv(index=False))
    write_text_atomic(paths["trends"], trends.to_csv(index=False))
    write_text_atomic(paths["power"], power_rows.to_csv(index=False))
    write_text_atomic(paths["power_pooled"], pooled.to_csv(index=False))
    split, labels = reported_split(results)
    study = config.study
    notes = [
        f"Corpus seeds {list(study.corpus_seeds)}, split seeds {list(study.split_seeds)}, run seeds "
        f"{list(config.grid.seeds)}, noise kinds "
        f"{list(study.noise_kinds)} at rates {list(study.noise_rates)} (albums relabelled; sub-genres too: "
        f"{study.subgenre_noise}); artist-group tasks {''.join(study.artist_tasks)}; {config.train.epochs} epochs "
        f"per net (MTN x tasks), transfer MLP {config.transfer.epochs} epochs.",
        f"Scores on the {split} split against the {labels} genres; epochs chosen on validation with the noisy labels.",
    ]
    scores = (_score_table(results),)
    if (results["metric"] == UNCALIBRATED_LOG_LOSS).any():
        scores += (_log_loss_table(results),)
    sections = [Section("setup", "Scores", scores)]
    if not rates.empty:
        sections.append(Section("noise", "Realised label noise", (_noise_table(rates),)))
    if not table.empty:
        plot_gains(table, paths["figure"])
        sections += [
            Section("gain", "Gain over genre-only",
                    (Image(paths["figure"], f"{PRIMARY_METRIC} gain over genre-only against the noise rate; "
                                            "bands: 95 % CI over independent units"), _comparison_table(table))),
            Section("trend", "Trend with noise", (_trend_table(trends),)),
        ]
    if not pooled.empty:
        sections.append(Section("power", "Power", (_power_table(pooled),)))
    title = "agf study: artist groups against label noise"
    lead = _headline(table, trends, pooled) if not table.empty else Section(
        "headline", "Headline", ("No comparison yet: every cell needs the genre-only model and another.",))
    footer = footer_text()
    write_text_atomic(paths["html"], render_html(title, lead, notes, sections, footer))
    write_text_atomic(paths["markdown"], render_markdown(title, lead, notes, sections, out, footer))
    return paths


def summary_lines(paths: dict[str, Path]) -> str:
    """What a finished study wrote, with its trend table as text."""
    trends = pd.read_csv(paths["trends"]) if paths["trends"].stat().st_size > 1 else pd.DataFrame()
    buffer = io.StringIO()
    if not trends.empty:
        shown = trends[trends["metric"] == PRIMARY_METRIC][["noise_kind", "model", "units", "unit", "slope", "ci_low",
                                                            "ci_high", "p_permutation"]]
        buffer.write(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}") + "\n")
    buffer.write(f"report: {paths['html']}")
    return buffer.getvalue()
